//! A sweep planned on its device: the points, what they cost, the device's limits
//! and what was noted while checking them — a library object that a printer (a
//! dry run, a progress bar) reads — and the one call that runs it: permissions
//! checked, the guard armed, the points measured into a sink, the GPU put back.

use super::clocks;
use super::error::{Change, SweepSetupError};
use super::spec::Sweep;
use crate::device::OpenDevice;
use crate::error::RestoreFailed;
use joulebench_core::backend::{Backend, Support};
use joulebench_core::plan::{PlanEstimate, PlanPoint, SweepConfig};
use joulebench_core::record::{RecordSink, ResultsFile};
use joulebench_core::resume::{check_same_measurement, done_keys, ResumeMismatch};
use joulebench_core::sweep::{
    check_caps, check_clocks, merge_equal_caps, run_sweep, same_limit_w, tool_info, SweepError,
    SweepObserver, SweepOptions, SweepOutcome,
};
use joulebench_core::{DeviceInfo, MeterSource, PowerLimits};
use joulebench_energy::guard::RestoreReport;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;

pub struct PlannedSweep {
    sweep: Sweep,
    device: DeviceInfo,
    backend: String,
    points: Vec<PlanPoint>,
    limits: Option<PowerLimits>,
    /// The meter's update period, seconds; 0 without a meter.
    update_period_s: f64,
    estimate: PlanEstimate,
    notes: Vec<String>,
    warnings: Vec<String>,
    /// Runs the results file already holds, by key: skipped.
    done: HashSet<String>,
    armed: bool,
}

/// One point of the plan with its runs: whether the backend can run it, and how many
/// of its runs (`--repeat`) the results file already holds.
pub struct PlannedRun<'a> {
    pub point: &'a PlanPoint,
    pub support: Support,
    pub runs: usize,
    pub in_file: usize,
}

/// How a sweep ended.
pub struct SweepRun {
    /// Its counts, or what stopped it; every point finished is in the sink either way.
    pub outcome: Result<SweepOutcome, SweepError>,
    /// What the guard put back (`Ok(None)`: nothing was changed).
    pub restored: Result<Option<RestoreReport>, RestoreFailed>,
}

impl PlannedSweep {
    pub(crate) fn new(
        sweep: Sweep,
        dev: &mut OpenDevice,
        mut points: Vec<PlanPoint>,
    ) -> Result<PlannedSweep, SweepSetupError> {
        let device = dev.backend.device().clone();
        let backend = dev.backend.name().to_string();
        let mut notes = Vec::new();
        let mut warnings = Vec::new();
        // read-only: the refusals a run would meet before it changes anything
        let limits = check_caps(&points, dev.power_mut())?;
        if let Some(l) = &limits {
            notes.extend(merge_equal_caps(&mut points, l));
            if !same_limit_w(l.current_w, l.default_w) {
                warnings.push(format!(
                    "the power limit of {} is {:.0} W, not its default {:.0} W (a killed sweep \
                     or another tool left it changed? see `joulebench power status`); points at \
                     the cap \"default\" run at {:.0} W and are flagged cap-not-default, never \
                     used as the default-limit baseline",
                    device.name, l.current_w, l.default_w, l.current_w
                ));
            }
        }
        check_clocks(&points, dev.clocks_mut())?;
        let update_period_s = match dev.meter.source() {
            MeterSource::None => 0.0,
            _ => dev.meter.update_period_s(),
        };
        let estimate = PlanEstimate::of(
            &points,
            dev.backend.as_ref(),
            &sweep.config.protocol,
            update_period_s,
            sweep.repeat,
        );
        Ok(PlannedSweep {
            sweep,
            device,
            backend,
            points,
            limits,
            update_period_s,
            estimate,
            notes,
            warnings,
            done: HashSet::new(),
            armed: false,
        })
    }

    pub fn config(&self) -> &SweepConfig {
        &self.sweep.config
    }

    pub fn points(&self) -> &[PlanPoint] {
        &self.points
    }

    pub fn estimate(&self) -> &PlanEstimate {
        &self.estimate
    }

    /// The device's power limits as planning read them (`None`: it has no control,
    /// or cannot say and no cap was asked for).
    pub fn limits(&self) -> Option<&PowerLimits> {
        self.limits.as_ref()
    }

    /// The device as its records will name it.
    pub fn device(&self) -> &DeviceInfo {
        &self.device
    }

    pub fn backend(&self) -> &str {
        &self.backend
    }

    pub fn repeat(&self) -> u32 {
        self.sweep.repeat
    }

    /// What planning changed and why (caps that name one limit, measured once).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// What the user should know before the sweep runs: a limit or clocks not at
    /// their defaults, and what that does to the points at "default".
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The changes of the GPU's state the plan asks for.
    pub fn changes(&self) -> Vec<Change> {
        let caps = self.points.iter().any(|p| !p.cap.is_default());
        let clocks = self
            .points
            .iter()
            .any(|p| p.sm_clock_mhz.is_some() || p.mem_clock_mhz.is_some());
        [(caps, Change::PowerLimit), (clocks, Change::Clocks)]
            .into_iter()
            .filter_map(|(wanted, c)| wanted.then_some(c))
            .collect()
    }

    /// The changes the plan asks for of `dev` that the caller did not allow (a real
    /// GPU's need permission; the simulated device's do not).
    pub fn not_allowed(&self, dev: &OpenDevice) -> Vec<Change> {
        if !dev.power_needs_permission() {
            return Vec::new();
        }
        self.changes()
            .into_iter()
            .filter(|c| match c {
                Change::PowerLimit => !self.sweep.allow_power_changes,
                Change::Clocks => !self.sweep.allow_clock_changes,
            })
            .collect()
    }

    /// Seconds a typical runnable point takes (the idle baseline apart): a progress
    /// bar's first estimate.
    pub fn typical_point_s(&self) -> f64 {
        let e = &self.estimate;
        if e.runnable == 0 {
            return 0.0;
        }
        let idle = if self.update_period_s > 0.0 {
            self.config().protocol.idle_baseline_s
        } else {
            0.0
        };
        (e.typical_s - idle) / e.runnable as f64
    }

    /// Skip the runs `file` (at `path`) already holds, once its records of this
    /// device and backend are shown to have been measured as this sweep measures
    /// (or `allow_mismatch` says to add points measured otherwise). How many of the
    /// plan's runs are skipped.
    pub fn resume_from(
        &mut self,
        file: &ResultsFile,
        path: &Path,
        allow_mismatch: bool,
    ) -> Result<usize, ResumeMismatch> {
        if !allow_mismatch {
            check_same_measurement(
                file,
                path,
                &self.device,
                &self.backend,
                &self.sweep.config,
                self.sweep.repeat,
            )?;
        }
        self.done = done_keys(file);
        Ok(self.runs_done())
    }

    fn repeats(&self) -> Vec<Option<u32>> {
        match self.sweep.repeat {
            0 | 1 => vec![None],
            n => (1..=n).map(Some).collect(),
        }
    }

    fn runs_done(&self) -> usize {
        let repeats = self.repeats();
        self.points
            .iter()
            .flat_map(|p| {
                repeats
                    .iter()
                    .map(move |&r| p.key(&self.device, &self.backend, r))
            })
            .filter(|k| self.done.contains(k))
            .count()
    }

    /// Each point with its runs, as a run would meet them: for a dry run's table.
    pub fn runs(&self, backend: &dyn Backend) -> Vec<PlannedRun<'_>> {
        let repeats = self.repeats();
        self.points
            .iter()
            .map(|p| PlannedRun {
                point: p,
                support: backend.support(&p.kernel, p.precision, &p.workload),
                runs: repeats.len(),
                in_file: repeats
                    .iter()
                    .filter(|&&r| self.done.contains(&p.key(&self.device, &self.backend, r)))
                    .count(),
            })
            .collect()
    }

    /// Get `dev` ready to change what the plan asks for: every change allowed, the
    /// guard armed (it writes the state file before the first change and restores on
    /// every exit path), clocks found locked checked. Adds to [`Self::warnings`];
    /// [`Self::run`] does it itself where it was not done.
    pub fn arm(&mut self, dev: &mut OpenDevice) -> Result<(), SweepSetupError> {
        if self.armed {
            return Ok(());
        }
        if let Some(&change) = self.not_allowed(dev).first() {
            return Err(SweepSetupError::NotAllowed(change));
        }
        let changes = self.changes();
        if !changes.is_empty() {
            dev.arm_guard(
                self.sweep.allow_power_changes,
                self.sweep.allow_clock_changes,
            )?;
        }
        let wants_clocks = changes.contains(&Change::Clocks);
        self.warnings
            .extend(clocks::check_found_locks(dev, wants_clocks)?);
        self.armed = true;
        Ok(())
    }

    /// Measure every point not already in the results file on `dev`, each record
    /// appended to `sink` as it is made, `observer` told of progress, until done or
    /// `stop` is set (the point under way is then abandoned, unrecorded); then put
    /// back what the guard changed. `Err` only for what stops the sweep before it
    /// starts; how it ended is in [`SweepRun`].
    pub fn run(
        mut self,
        dev: &mut OpenDevice,
        sink: &mut dyn RecordSink,
        observer: &mut dyn SweepObserver,
        stop: &AtomicBool,
    ) -> Result<SweepRun, SweepSetupError> {
        self.arm(dev)?;
        let opts = SweepOptions {
            protocol: self.sweep.config.protocol.clone(),
            seed: self.sweep.config.seed,
            command: self.sweep.command.clone(),
            tool: tool_info(),
            host: self.sweep.host.clone(),
            cap_settle_s: if self.device.simulated { 0.0 } else { 2.0 },
            repeat: self.sweep.repeat,
        };
        let outcome = run_sweep(
            &mut dev.session(),
            &self.points,
            &opts,
            &self.done,
            sink,
            observer,
            stop,
        );
        Ok(SweepRun {
            outcome,
            restored: dev.restore(),
        })
    }
}
