//! A whole program's energy (`joulebench run`, docs/ARCHITECTURE.md §6.1): the
//! settings each GPU should run under are checked, then applied through the same
//! guard as a sweep's; the program is started, its GPUs' and the host's meters are
//! followed from its start to its end, with the phases and tokens it marks; signals
//! joulebench receives are passed on to it; once it has ended the settings are
//! restored, and the figures become one record for the run and one per GPU.

mod child;
mod figures;
pub mod marks;
mod track;

pub use marks::{Mark, OutputPatterns, TimedMark, PHASE_FIFO_ENV};

use crate::guard::{
    default_lock_dir, default_state_dir, found_clock_locks, PowerGuard, RestoreReport,
    SignalForwarding,
};
use child::Program;
use joulebench_core::clock::monotonic_s;
use joulebench_core::{
    ClockControl, ClockSpec, DeviceInfo, EnergyMeter, HostMeterInfo, MeterSource, PowerCap,
    PowerControl, PowerError, PowerLimits,
};
use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};
use track::Track;

pub use figures::RecordContext;

/// What one GPU should run under: the power cap (`default`: the limit as found, not
/// changed) and locked clocks, and where that came from.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuSetting {
    pub power_cap: PowerCap,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    /// "settings.toml: [[device]] NVIDIA H100 80GB HBM3", "--power-cap", "none".
    pub source: String,
}

impl GpuSetting {
    /// The GPU as found: nothing changed.
    pub fn none() -> GpuSetting {
        GpuSetting {
            power_cap: PowerCap::Default,
            sm_clock_mhz: None,
            mem_clock_mhz: None,
            source: "none".into(),
        }
    }

    pub fn changes_power(&self) -> bool {
        !self.power_cap.is_default()
    }

    pub fn changes_clocks(&self) -> bool {
        self.sm_clock_mhz.is_some() || self.mem_clock_mhz.is_some()
    }
}

/// One GPU of the run: its meter, and its controls.
pub struct RunGpu {
    pub device: DeviceInfo,
    /// Not a real GPU: a fake device of a test build.
    pub simulated: bool,
    pub meter: Box<dyn EnergyMeter>,
    /// Where a setting changes the GPU: the guard every change goes through (armed
    /// by whoever opened the GPU), which also reads the limits.
    pub guard: Option<PowerGuard>,
    /// Reads the limits where no guard is armed.
    pub power: Option<Box<dyn PowerControl>>,
    /// The guard's clock handle where armed, else the device's own.
    pub clocks: Option<Box<dyn ClockControl>>,
    pub setting: GpuSetting,
}

impl RunGpu {
    fn power(&mut self) -> Option<&mut dyn PowerControl> {
        match (&mut self.guard, &mut self.power) {
            (Some(g), _) => Some(g as &mut dyn PowerControl),
            (None, Some(p)) => Some(p.as_mut()),
            _ => None,
        }
    }
}

/// The program and how it marks its phases and tokens.
#[derive(Clone, Debug, Default)]
pub struct ProgramSpec {
    /// The program and its arguments.
    pub argv: Vec<OsString>,
    /// Patterns matched on its output (which is then read and passed through).
    pub patterns: OutputPatterns,
    /// The run's tokens, where the user gives them rather than the program.
    pub tokens: Option<u64>,
    /// The phases the steady state is made of; `None`: every phase whose name does
    /// not start with "warm".
    pub steady_phases: Option<Vec<String>>,
}

/// What the user allowed to change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub power: bool,
    pub clocks: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Nothing was changed and the program was not started: a setting the GPU
    /// cannot take, a permission not given, a program that is not there.
    #[error("{0}")]
    Refused(String),
    /// Applying a setting failed; what was applied is restored and the program was
    /// not started.
    #[error("{0}")]
    Power(#[from] PowerError),
    /// The program could not be started (after the checks); settings restored.
    #[error("cannot start {program}: {message}")]
    Start { program: String, message: String },
}

impl RunError {
    /// A refusal the user settles (a flag, a setting, a pending restore, a held lock).
    pub fn is_refusal(&self) -> bool {
        match self {
            RunError::Refused(_) | RunError::Start { .. } => true,
            RunError::Power(e) => e.is_refusal(),
        }
    }
}

/// What a GPU's setting means on it, checked before anything changes.
#[derive(Clone, Debug, Default)]
struct Planned {
    limits: Option<PowerLimits>,
    set_limit_w: Option<f64>,
    /// A limit already away from its default at the start (another tool, a killed run).
    found_off_default: bool,
    found_clocks_locked: bool,
    enforced_w: Option<f64>,
}

/// What one GPU measured.
pub struct GpuOutcome {
    pub device: DeviceInfo,
    pub simulated: bool,
    pub meter_source: MeterSource,
    pub meter_update_period_s: f64,
    pub setting: GpuSetting,
    pub limits: Option<PowerLimits>,
    pub applied_limit_w: Option<f64>,
    pub enforced_limit_w: Option<f64>,
    pub found_off_default: bool,
    pub found_clocks_locked: bool,
    /// `None`: nothing was changed; else whether the restore put everything back.
    pub restored: Option<bool>,
}

/// The run measured (see [`RunOutcome::records`]). Signals are still passed on —
/// to nobody, the program has ended — while it lives, so writing the records is
/// not cut short; drop it when done.
pub struct RunOutcome {
    pub gpus: Vec<GpuOutcome>,
    pub host_meter: Option<HostMeterInfo>,
    pub argv: Vec<String>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub signals: Vec<String>,
    pub started_unix_s: f64,
    pub seconds: f64,
    /// The restores: what each said, and every failure (exit 1; state files kept).
    pub restores: Vec<RestoreReport>,
    pub restore_errors: Vec<String>,
    /// What the reader should know (an end extrapolated, a meter that stopped).
    pub notes: Vec<String>,
    /// Meters that stopped during the run: their GPU has no energy figure.
    pub meter_failures: Vec<String>,
    figures: figures::Figures,
    _forwarding: Option<SignalForwarding>,
}

impl RunOutcome {
    /// The shell status the program ended with (its code, or 128 + its signal).
    pub fn program_status(&self) -> Option<i32> {
        self.exit_code.or(self.exit_signal.map(|s| 128 + s))
    }
}

/// See the module comment.
pub struct ProgramRun {
    gpus: Vec<RunGpu>,
    host: Option<(Box<dyn EnergyMeter>, HostMeterInfo)>,
    spec: ProgramSpec,
    permissions: Permissions,
    planned: Option<Vec<Planned>>,
}

/// How often the run's loop takes the meters' readings and the program's marks.
const POLL: Duration = Duration::from_millis(20);

impl ProgramRun {
    pub fn new(
        gpus: Vec<RunGpu>,
        host: Option<(Box<dyn EnergyMeter>, HostMeterInfo)>,
        spec: ProgramSpec,
        permissions: Permissions,
    ) -> ProgramRun {
        ProgramRun {
            gpus,
            host,
            spec,
            permissions,
            planned: None,
        }
    }

    /// Every check a run makes before it changes anything or starts the program: the
    /// program exists; each cap is within its GPU's range and each clock one it
    /// supports; the changes are allowed; no clock is found locked where one is to be
    /// locked (its reset would put back a state the run did not find). Returns what
    /// will change, one line per GPU.
    pub fn check(&mut self) -> Result<Vec<String>, RunError> {
        let program = self
            .spec
            .argv
            .first()
            .ok_or_else(|| RunError::Refused("no program to run: give it after `--`".into()))?;
        if child::find_program(program).is_none() {
            return Err(RunError::Refused(format!(
                "program '{}' not found (not an executable file, nor on PATH); nothing was changed",
                program.to_string_lossy()
            )));
        }
        let permissions = self.permissions;
        let mut planned = Vec::new();
        let mut lines = Vec::new();
        for gpu in &mut self.gpus {
            let name = gpu.device.name.clone();
            let s = gpu.setting.clone();
            let mut p = Planned::default();
            let power = gpu.power();
            p.limits = power.and_then(|c| c.limits().ok());
            if let Some(l) = p.limits {
                p.found_off_default = (l.current_w - l.default_w).abs() >= 0.5;
            }
            if s.changes_power() {
                if !permissions.power {
                    return Err(RunError::Refused(format!(
                        "{name}: applying the power cap {} needs --allow-power-changes (the \
                         original limit is restored when the program ends)",
                        s.power_cap
                    )));
                }
                let limits = p.limits.ok_or_else(|| {
                    RunError::Refused(format!(
                        "{name}: its power limit cannot be read or changed here, so the cap {} \
                         cannot be applied",
                        s.power_cap
                    ))
                })?;
                let w = s.power_cap.resolve_w(&limits);
                limits
                    .check(w)
                    .map_err(|e| RunError::Refused(format!("{name}: {e}; nothing was changed")))?;
                if gpu.guard.is_none() {
                    return Err(RunError::Refused(format!(
                        "{name}: no guard is armed to restore its power limit; nothing was changed"
                    )));
                }
                p.set_limit_w = Some(w);
            }
            if s.changes_clocks() {
                check_clocks(gpu, &name, permissions)?;
                if gpu.guard.is_none() {
                    return Err(RunError::Refused(format!(
                        "{name}: no guard is armed to reset its clocks; nothing was changed"
                    )));
                }
                let found = found_clock_locks(
                    gpu.clocks.as_deref_mut(),
                    &gpu.device,
                    default_state_dir().as_deref(),
                    &default_lock_dir(),
                );
                if let Some(f) = found {
                    return Err(RunError::Refused(format!(
                        "{name}: {}, not at its default; a run that locks clocks resets them to \
                         the default when it ends and cannot put back a lock it did not make: run \
                         `joulebench power restore` (or `nvidia-smi -rgc`) first",
                        f.describe()
                    )));
                }
            } else {
                p.found_clocks_locked = gpu
                    .clocks
                    .as_deref_mut()
                    .and_then(|c| c.clock_locks().ok())
                    .is_some_and(|l| l.any());
            }
            lines.push(describe_plan(&name, &s, &p));
            planned.push(p);
        }
        self.planned = Some(planned);
        Ok(lines)
    }

    /// Apply the settings, run the program to its end, restore, and measure (see the
    /// module comment). An error before the program starts leaves every GPU as found.
    pub fn run(mut self) -> Result<RunOutcome, RunError> {
        if self.planned.is_none() {
            self.check()?;
        }
        let mut planned = self.planned.take().unwrap_or_default();
        if let Err(e) = self.apply(&mut planned) {
            self.restore_all();
            return Err(e);
        }
        let result = self.measure(&mut planned);
        // whatever happened, the settings go back now that the program has ended
        let (restores, restore_errors) = self.restore_all();
        let mut outcome = result?;
        for (gpu, o) in self.gpus.iter().zip(outcome.gpus.iter_mut()) {
            if gpu.setting.changes_power() || gpu.setting.changes_clocks() {
                let failed = restore_errors.iter().any(|e| e.contains(&gpu.device.name));
                o.restored = Some(!failed);
            }
        }
        outcome.restores = restores;
        outcome.restore_errors = restore_errors;
        Ok(outcome)
    }

    fn apply(&mut self, planned: &mut [Planned]) -> Result<(), RunError> {
        for (gpu, p) in self.gpus.iter_mut().zip(planned.iter_mut()) {
            let s = gpu.setting.clone();
            if let (Some(w), Some(g)) = (p.set_limit_w, gpu.guard.as_mut()) {
                g.set_limit_w(w)?;
            }
            if let Some(c) = gpu.clocks.as_mut() {
                if let Some(m) = s.sm_clock_mhz {
                    c.lock_sm_clocks_mhz(m, m)?;
                }
                if let Some(m) = s.mem_clock_mhz {
                    c.lock_mem_clocks_mhz(m, m)?;
                }
            }
            p.enforced_w = gpu.power().and_then(|c| c.enforced_limit_w().ok());
        }
        Ok(())
    }

    /// Every guard's restore; the reports and the failures.
    fn restore_all(&mut self) -> (Vec<RestoreReport>, Vec<String>) {
        let mut reports = Vec::new();
        let mut errors = Vec::new();
        for gpu in &mut self.gpus {
            if let Some(g) = gpu.guard.as_mut() {
                match g.restore() {
                    Ok(Some(r)) => reports.push(r),
                    Ok(None) => {}
                    Err(e) => errors.push(format!("{}: {e}", gpu.device.name)),
                }
            }
        }
        (reports, errors)
    }

    fn measure(&mut self, planned: &mut [Planned]) -> Result<RunOutcome, RunError> {
        let mut tracks: Vec<Track> = Vec::new();
        let mut periods = Vec::new();
        let mut sources = Vec::new();
        for gpu in &mut self.gpus {
            let meter = std::mem::replace(
                &mut gpu.meter,
                Box::new(joulebench_core::NoMeter {
                    reason: "taken by the run".into(),
                }),
            );
            sources.push(meter.source());
            periods.push(meter.update_period_s());
            tracks.push(Track::new(meter));
        }
        let host_info = self.host.as_ref().map(|(_, i)| i.clone());
        if let Some((meter, _)) = self.host.take() {
            tracks.push(Track::new(meter));
        }
        // every meter with a reading before the program starts, so its start is
        // interpolated rather than taken from the first update after it
        let ready_by = Instant::now() + Duration::from_secs(1);
        loop {
            for t in &mut tracks {
                t.poll(f64::INFINITY);
            }
            let now = monotonic_s();
            if tracks
                .iter()
                .all(|t| !t.has_energy() || t.has_update_before(now))
                || Instant::now() > ready_by
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }

        let (tx, rx) = channel::<TimedMark>();
        let mut fifo = marks::PhaseFifo::open(tx.clone()).map_err(|e| RunError::Start {
            program: "the phase FIFO".into(),
            message: e.to_string(),
        })?;
        let argv = self.spec.argv.clone();
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]).env(PHASE_FIFO_ENV, fifo.path());
        let piped = self.spec.patterns.any();
        if piped {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let shown = argv[0].to_string_lossy().into_owned();
        let started_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut program = Program::start(command).map_err(|e| RunError::Start {
            program: shown.clone(),
            message: e.to_string(),
        })?;
        let t0 = monotonic_s();
        let mut boundaries: Vec<f64> = vec![t0];
        for t in &mut tracks {
            t.add_boundary(0, t0);
            t.start_telemetry_at(t0);
        }
        let mut tees = Vec::new();
        if piped {
            let patterns = Arc::new(self.spec.patterns.clone());
            if let Some(out) = program.stdout() {
                let copy = marks::tee(
                    "stdout",
                    out,
                    std::io::stdout(),
                    patterns.clone(),
                    tx.clone(),
                );
                tees.extend(copy.ok());
            }
            if let Some(err) = program.stderr() {
                let copy = marks::tee("stderr", err, std::io::stderr(), patterns, tx.clone());
                tees.extend(copy.ok());
            }
        }
        drop(tx);

        let mut all_marks: Vec<(TimedMark, Option<usize>)> = Vec::new();
        let take_marks = |rx: &std::sync::mpsc::Receiver<TimedMark>,
                          boundaries: &mut Vec<f64>,
                          tracks: &mut [Track],
                          all: &mut Vec<(TimedMark, Option<usize>)>,
                          end: Option<f64>| {
            while let Ok(mut m) = rx.try_recv() {
                if let Some(end) = end {
                    m.time_s = m.time_s.min(end);
                }
                m.time_s = m.time_s.max(t0);
                let id = match m.mark {
                    Mark::Tokens(_) => None,
                    _ => {
                        let id = boundaries.len();
                        boundaries.push(m.time_s);
                        for t in tracks.iter_mut() {
                            t.add_boundary(id, m.time_s);
                        }
                        Some(id)
                    }
                };
                all.push((m, id));
            }
        };
        let t_end = loop {
            take_marks(&rx, &mut boundaries, &mut tracks, &mut all_marks, None);
            for t in &mut tracks {
                t.poll(f64::INFINITY);
            }
            if let Some(t) = program.exited_at(POLL) {
                break t;
            }
        };
        let status = program.reap().map_err(|e| RunError::Start {
            program: shown.clone(),
            message: format!("waiting for it failed: {e}"),
        })?;
        let (exit_code, exit_signal) = child::exit_parts(status);

        // what the program said last: the FIFO read to its end, the output copied
        // until it closes (a process the program left behind may keep it open)
        fifo.finish();
        let deadline = Instant::now() + Duration::from_secs(1);
        while tees
            .iter()
            .any(|t: &std::thread::JoinHandle<()>| !t.is_finished())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        take_marks(
            &rx,
            &mut boundaries,
            &mut tracks,
            &mut all_marks,
            Some(t_end),
        );

        let end_id = boundaries.len();
        boundaries.push(t_end);
        for t in &mut tracks {
            t.add_boundary(end_id, t_end);
        }
        // the end is interpolated once each meter has updated after it
        let longest = periods.iter().copied().fold(0.0f64, f64::max);
        let wait = Duration::from_secs_f64((3.0 * longest).clamp(0.3, 5.0));
        let deadline = Instant::now() + wait;
        loop {
            for t in &mut tracks {
                t.poll(t_end);
            }
            if !tracks.iter().any(Track::waiting) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut notes = Vec::new();
        let mut meter_failures = Vec::new();
        for (i, t) in tracks.iter_mut().enumerate() {
            if t.waiting() {
                let who = self
                    .gpus
                    .get(i)
                    .map(|g| g.device.name.clone())
                    .unwrap_or_else(|| "the host".into());
                notes.push(format!(
                    "{who}: the meter did not update within {:.1} s of the program's end; the \
                     energy at the end is extrapolated from its last updates",
                    wait.as_secs_f64()
                ));
                t.give_up_waiting();
            }
            if let Some(e) = &t.error {
                let who = self
                    .gpus
                    .get(i)
                    .map(|g| g.device.name.clone())
                    .unwrap_or_else(|| "the host".into());
                let failure = format!(
                    "{who}: the energy meter stopped during the run ({e}); no energy is given for it"
                );
                notes.push(failure.clone());
                meter_failures.push(failure);
            }
        }
        all_marks.sort_by(|a, b| a.0.time_s.total_cmp(&b.0.time_s));
        let figures = figures::Figures::compute(
            &tracks,
            self.gpus.len(),
            &boundaries,
            &all_marks,
            &self.spec,
            &periods,
        );
        let signals = program.signal_log();
        let forwarding = program.into_forwarding();
        let gpus = self
            .gpus
            .iter()
            .zip(planned.iter())
            .zip(sources.iter().zip(periods.iter()))
            .map(|((g, p), (source, period))| GpuOutcome {
                device: g.device.clone(),
                simulated: g.simulated,
                meter_source: *source,
                meter_update_period_s: *period,
                setting: g.setting.clone(),
                limits: p.limits,
                applied_limit_w: p.set_limit_w,
                enforced_limit_w: p.enforced_w,
                found_off_default: p.found_off_default,
                found_clocks_locked: p.found_clocks_locked,
                restored: None,
            })
            .collect();
        Ok(RunOutcome {
            gpus,
            host_meter: host_info,
            argv: argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            exit_code,
            exit_signal,
            signals,
            started_unix_s,
            seconds: (t_end - t0).max(1e-6),
            restores: Vec::new(),
            restore_errors: Vec::new(),
            notes,
            meter_failures,
            figures,
            _forwarding: forwarding,
        })
    }
}

/// The clocks asked for are ones the GPU supports, and locking them is allowed.
fn check_clocks(gpu: &mut RunGpu, name: &str, permissions: Permissions) -> Result<(), RunError> {
    if !permissions.clocks {
        return Err(RunError::Refused(format!(
            "{name}: locking its clocks needs --allow-clock-changes (the default clocks are \
             restored when the program ends)"
        )));
    }
    let s = gpu.setting.clone();
    let Some(c) = gpu.clocks.as_mut() else {
        return Err(RunError::Refused(format!(
            "{name} has no clock control, so its clocks cannot be locked"
        )));
    };
    for (mhz, what) in [(s.sm_clock_mhz, "SM"), (s.mem_clock_mhz, "memory")] {
        let Some(mhz) = mhz else { continue };
        let supported = match what {
            "SM" => c.supported_sm_clocks_mhz(),
            _ => c.supported_mem_clocks_mhz(),
        }
        .map_err(|e| RunError::Refused(format!("{name}: reading its {what} clocks: {e}")))?;
        ClockSpec::resolve(&[ClockSpec::Mhz(mhz)], &supported, what)
            .map_err(|e| RunError::Refused(format!("{name}: {e}; nothing was changed")))?;
    }
    Ok(())
}

/// "NVIDIA H100: power limit 700 W → 560 W (80%), SM clock locked at 1410 MHz".
fn describe_plan(name: &str, s: &GpuSetting, p: &Planned) -> String {
    let mut parts = Vec::new();
    match (p.set_limit_w, p.limits) {
        (Some(w), Some(l)) => parts.push(match s.power_cap {
            PowerCap::Watts(_) => format!("power limit {:.0} W → {w:.0} W", l.current_w),
            cap => format!("power limit {:.0} W → {w:.0} W ({cap})", l.current_w),
        }),
        (_, Some(l)) => parts.push(format!("power limit {:.0} W as found", l.current_w)),
        _ => parts.push("power limit not readable".into()),
    }
    if let Some(m) = s.sm_clock_mhz {
        parts.push(format!("SM clock locked at {m} MHz"));
    }
    if let Some(m) = s.mem_clock_mhz {
        parts.push(format!("memory clock locked at {m} MHz"));
    }
    format!("{name}: {} (from {})", parts.join(", "), s.source)
}
