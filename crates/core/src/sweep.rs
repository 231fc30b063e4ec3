//! Runs a planned sweep on one device: for each point, set the power cap, check
//! support, prepare, verify, measure, and append the record — nothing downstream
//! of the record reaches back. Unsupported points become skipped records, a failed
//! check an invalid one, a backend error a failed one; only a lost meter, a
//! refused power change or an unwritable results file stops the sweep.

use crate::backend::{Backend, BackendError, Support};
use crate::clock::Clock;
use crate::clocks::{ClockControl, ClockRecord};
use crate::meter::{EnergyMeter, MeterError};
use crate::plan::PlanPoint;
use crate::power::{PowerCap, PowerControl, PowerError, PowerLimits};
use crate::precision::Precision;
use crate::protocol::{
    measure, measure_idle, IdleBaseline, MeasureContext, ProtocolConfig, ProtocolError,
    ValidityFlag,
};
use crate::record::{
    MeterInfo, PointOverhead, PointStatus, PowerCapRecord, Record, RecordError, RecordSink,
    ToolInfo, SCHEMA_VERSION,
};
use crate::verify::verify_with;
use crate::workload::Workload;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One device's backend, meter, power control, clock control and clock.
pub struct DeviceSession<'a> {
    pub backend: &'a mut dyn Backend,
    pub meter: &'a mut dyn EnergyMeter,
    pub power: Option<&'a mut dyn PowerControl>,
    /// Locks the GPU's clocks, for points that ask for a locked clock.
    pub clocks: Option<&'a mut dyn ClockControl>,
    pub clock: &'a dyn Clock,
}

pub struct SweepOptions {
    pub protocol: ProtocolConfig,
    pub seed: u64,
    pub command: String,
    pub tool: ToolInfo,
    pub host: String,
    /// Seconds to wait after a cap change once the enforced limit reads back.
    pub cap_settle_s: f64,
    /// Measure every point this many times, in an order shuffled (within each power
    /// cap) with the sweep's seed, so run-to-run spread can be told from the spread
    /// within one run. 1: each point once, in plan order, records without `repeat`.
    pub repeat: u32,
}

/// The points in the order they are measured, each with its repeat number (`None`
/// when `repeat` is 1). Repeats are shuffled within each run of equal power cap and
/// clocks, so the cap and clocks still change as rarely as the plan allows.
pub fn schedule(points: &[PlanPoint], repeat: u32, seed: u64) -> Vec<(PlanPoint, Option<u32>)> {
    if repeat <= 1 {
        return points.iter().map(|p| (p.clone(), None)).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x007e_9ea7);
    let mut out = Vec::with_capacity(points.len() * repeat as usize);
    for group in points.chunk_by(|a, b| {
        (a.cap, a.sm_clock_mhz, a.mem_clock_mhz) == (b.cap, b.sm_clock_mhz, b.mem_clock_mhz)
    }) {
        let mut runs: Vec<(PlanPoint, Option<u32>)> = (0..repeat)
            .flat_map(|r| group.iter().map(move |p| (p.clone(), Some(r + 1))))
            .collect();
        runs.shuffle(&mut rng);
        out.extend(runs);
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Power(#[from] PowerError),
    #[error("energy meter failed mid-sweep: {0}; every finished point is kept")]
    Meter(#[from] MeterError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("interrupted; every finished point is kept (continue with --resume)")]
    Interrupted,
}

/// Told about progress; the CLI draws a progress bar from it.
pub trait SweepObserver {
    fn started(&mut self, _total: usize, _already_done: usize) {}
    fn point_started(&mut self, _point: &PlanPoint) {}
    fn point_finished(&mut self, _record: &Record) {}
    fn note(&mut self, _message: &str) {}
}

pub struct SilentObserver;
impl SweepObserver for SilentObserver {}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepOutcome {
    pub measured: usize,
    pub invalid: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Points already in the results file, not repeated.
    pub resumed: usize,
}

/// Every cap the plan asks for, checked against the device before anything changes.
pub fn check_caps(
    points: &[PlanPoint],
    power: Option<&mut (dyn PowerControl + '_)>,
) -> Result<Option<PowerLimits>, PowerError> {
    let wants_change = points.iter().any(|p| !p.cap.is_default());
    let Some(power) = power else {
        if wants_change {
            return Err(PowerError::Unavailable(
                "this device has no power-limit control".into(),
            ));
        }
        return Ok(None);
    };
    let limits = match power.limits() {
        Ok(l) => l,
        // limits are only read to record them: a device that cannot say is fine
        Err(_) if !wants_change => return Ok(None),
        Err(e) => return Err(e),
    };
    for p in points {
        if !p.cap.is_default() {
            limits.check(p.cap.resolve_w(&limits))?;
        }
    }
    Ok(Some(limits))
}

/// Caps that name one limit on this device (`150W` and `50%` of a 300 W default;
/// `default` and the limit as found) are one cap: each point is kept once, at the
/// first cap that names it. What was merged, for a note.
pub fn merge_equal_caps(points: &mut Vec<PlanPoint>, limits: &PowerLimits) -> Vec<String> {
    let watts = |c: &PowerCap| {
        if c.is_default() {
            limits.current_w
        } else {
            c.resolve_w(limits)
        }
    };
    let mut first_cap: Vec<(PowerCap, f64)> = Vec::new();
    let mut notes = Vec::new();
    for p in points.iter() {
        let w = watts(&p.cap);
        match first_cap.iter().find(|(_, fw)| same_limit_w(*fw, w)) {
            Some((c, _)) if *c != p.cap => {
                let note = format!(
                    "power caps {c} and {} are both {w:.0} W on this GPU: measured once, as {c}",
                    p.cap
                );
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
            Some(_) => {}
            None => first_cap.push((p.cap, w)),
        }
    }
    // each point under the first cap naming its limit; a point twice is measured once
    let mut seen = HashSet::new();
    points.retain_mut(|p| {
        let w = watts(&p.cap);
        if let Some((c, _)) = first_cap.iter().find(|(_, fw)| same_limit_w(*fw, w)) {
            p.cap = *c;
        }
        seen.insert(format!("{p:?}"))
    });
    notes
}

/// Every locked clock the plan asks for, checked against the clocks the device
/// supports before anything changes; the device's highest SM clock, where it says.
pub fn check_clocks(
    points: &[PlanPoint],
    clocks: Option<&mut (dyn ClockControl + '_)>,
) -> Result<Option<u32>, PowerError> {
    let wants = |f: fn(&PlanPoint) -> Option<u32>| -> Vec<u32> {
        let mut v: Vec<u32> = points.iter().filter_map(f).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (sm, mem) = (wants(|p| p.sm_clock_mhz), wants(|p| p.mem_clock_mhz));
    let Some(control) = clocks else {
        if sm.is_empty() && mem.is_empty() {
            return Ok(None);
        }
        return Err(PowerError::Unavailable(
            "this device has no clock control: its clocks cannot be locked".into(),
        ));
    };
    let supported_sm = match control.supported_sm_clocks_mhz() {
        Ok(v) => v,
        // read only to record the maximum: a device that cannot say is fine
        Err(_) if sm.is_empty() && mem.is_empty() => return Ok(None),
        Err(e) => return Err(e),
    };
    for c in &sm {
        if !supported_sm.contains(c) {
            return Err(PowerError::Failed(format!(
                "{c} MHz is not an SM clock this device supports"
            )));
        }
    }
    if !mem.is_empty() {
        let supported_mem = control.supported_mem_clocks_mhz()?;
        if let Some(c) = mem.iter().find(|c| !supported_mem.contains(c)) {
            return Err(PowerError::Failed(format!(
                "{c} MHz is not a memory clock this device supports"
            )));
        }
    }
    Ok(supported_sm.iter().copied().max())
}

/// Move the clocks from `from` to `to` (SM, memory): lock what is locked, reset
/// what goes back to the default.
fn set_clocks(
    control: &mut dyn ClockControl,
    from: (Option<u32>, Option<u32>),
    to: (Option<u32>, Option<u32>),
    observer: &mut dyn SweepObserver,
) -> Result<(), PowerError> {
    if from.0 != to.0 {
        match to.0 {
            Some(mhz) => {
                observer.note(&format!("locking the SM clock at {mhz} MHz"));
                control.lock_sm_clocks_mhz(mhz, mhz)?;
            }
            None => control.reset_sm_clocks()?,
        }
    }
    if from.1 != to.1 {
        match to.1 {
            Some(mhz) => {
                observer.note(&format!("locking the memory clock at {mhz} MHz"));
                control.lock_mem_clocks_mhz(mhz, mhz)?;
            }
            None => control.reset_mem_clocks()?,
        }
    }
    Ok(())
}

/// `seed` mixed with `key` by FNV-1a: the same on every run and platform.
fn point_seed(seed: u64, key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ seed, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The seed of a point's random inputs: every kernel and every repeat of one shape
/// and precision sees the same inputs, so kernels are compared on equal data. Stable
/// across runs, so `--resume` can tell whether a file was measured with the same
/// sweep seed.
pub fn input_seed(seed: u64, workload: &Workload, precision: Precision) -> u64 {
    point_seed(
        seed,
        &format!(
            "{}|{}",
            serde_json::to_string(workload).unwrap_or_default(),
            precision
        ),
    )
}

pub fn run_sweep(
    session: &mut DeviceSession<'_>,
    points: &[PlanPoint],
    opts: &SweepOptions,
    done: &HashSet<String>,
    sink: &mut dyn RecordSink,
    observer: &mut dyn SweepObserver,
    stop: &AtomicBool,
) -> Result<SweepOutcome, SweepError> {
    let limits = check_caps(points, session.power.as_deref_mut())?;
    let sm_max_mhz = check_clocks(points, session.clocks.as_deref_mut())?;
    let device = session.backend.device().clone();
    let scheduled = schedule(points, opts.repeat, opts.seed);
    let keys: Vec<String> = scheduled
        .iter()
        .map(|(p, r)| p.key(&device, session.backend.name(), *r))
        .collect();
    let already = keys.iter().filter(|k| done.contains(*k)).count();
    observer.started(scheduled.len(), already);
    let mut outcome = SweepOutcome {
        resumed: already,
        ..Default::default()
    };
    if already == scheduled.len() {
        return Ok(outcome);
    }

    let idle = if opts.protocol.idle_baseline_s > 0.0 {
        observer.note("measuring idle power");
        measure_idle(
            session.meter,
            session.clock,
            opts.protocol.idle_baseline_s,
            Some(stop),
        )?
    } else {
        None
    };
    if stop.load(Ordering::SeqCst) {
        return Err(SweepError::Interrupted);
    }
    let meter = MeterInfo {
        source: session.meter.source(),
        update_period_s: session.meter.update_period_s(),
        check: None,
        host: session.meter.host_meter(),
    };
    let mut current_cap = PowerCap::Default;
    let mut current_clocks: (Option<u32>, Option<u32>) = (None, None);

    for ((point, repeat), key) in scheduled.iter().zip(&keys) {
        if done.contains(key) {
            continue;
        }
        if stop.load(Ordering::SeqCst) {
            return Err(SweepError::Interrupted);
        }
        observer.point_started(point);

        if point.cap != current_cap {
            if let (Some(power), Some(l)) = (session.power.as_deref_mut(), limits.as_ref()) {
                let watts = if point.cap.is_default() {
                    l.current_w
                } else {
                    point.cap.resolve_w(l)
                };
                observer.note(&format!("setting power cap {} ({watts:.0} W)", point.cap));
                power.set_limit_w(watts)?;
                settle_cap(power, session.clock, watts, opts.cap_settle_s)?;
            }
            current_cap = point.cap;
        }
        let clocks_wanted = (point.sm_clock_mhz, point.mem_clock_mhz);
        if clocks_wanted != current_clocks {
            if let Some(control) = session.clocks.as_deref_mut() {
                set_clocks(control, current_clocks, clocks_wanted, observer)?;
                session
                    .clock
                    .sleep(Duration::from_secs_f64(opts.cap_settle_s));
            }
            current_clocks = clocks_wanted;
        }

        let requested_w = match (&limits, point.cap.is_default()) {
            (Some(l), false) => Some(point.cap.resolve_w(l)),
            _ => None,
        };
        let enforced_w = session
            .power
            .as_deref_mut()
            .and_then(|p| p.enforced_limit_w().ok());
        let seed = input_seed(opts.seed, &point.workload, point.precision);
        let mut record = Record {
            schema: SCHEMA_VERSION,
            tool: opts.tool.clone(),
            host: opts.host.clone(),
            unix_time_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            command: opts.command.clone(),
            simulated: device.simulated,
            status: PointStatus::Skipped,
            reason: None,
            device: device.clone(),
            backend: session.backend.name().to_string(),
            kernel: point.kernel.clone(),
            kernel_variant: None,
            vendor_kernel: point.vendor,
            precision: point.precision,
            workload: point.workload,
            group: point.group.clone(),
            batch_size: point.batch_size,
            seed,
            inputs: point.inputs,
            flop: point.workload.flop().unwrap_or(0),
            min_bytes: point.workload.min_bytes(point.precision),
            power_cap: PowerCapRecord {
                requested: point.cap,
                requested_w,
                enforced_w,
                default_w: limits.map(|l| l.default_w),
            },
            meter: meter.clone(),
            idle,
            verification: None,
            measurement: None,
            flags: Vec::new(),
            protocol: opts.protocol.clone(),
            repeat: *repeat,
            overhead: None,
            clocks: ClockRecord {
                sm_requested_mhz: point.sm_clock_mhz,
                mem_requested_mhz: point.mem_clock_mhz,
                sm_max_mhz,
                ..ClockRecord::default()
            },
        };

        measure_point(session, point, &mut record, idle, &opts.protocol, stop)?;
        if device.cpu_emulation && record.status == PointStatus::Measured {
            record.flags.push(ValidityFlag::CpuEmulation);
        }
        // "default" means the limit as found: where that is not the default limit,
        // the point must not pass for the default-limit baseline
        if point.cap.is_default()
            && record.status == PointStatus::Measured
            && limit_differs_from_default(session.power.as_deref_mut()) == Some(true)
        {
            record.flags.push(ValidityFlag::CapNotDefault);
            record.flags.sort();
        }
        // the same for clocks: "default" must mean the device's default clocks
        if record.status == PointStatus::Measured
            && clocks_differ_from_default(session.clocks.as_deref_mut(), point)
        {
            record.flags.push(ValidityFlag::ClocksNotDefault);
            record.flags.sort();
        }
        if let (Some(req), Some(enf)) = (record.power_cap.requested_w, record.power_cap.enforced_w)
        {
            if (req - enf).abs() > (0.01 * req).max(1.0) {
                record.flags.push(ValidityFlag::CapNotEnforced);
            }
        }
        match record.status {
            PointStatus::Measured => outcome.measured += 1,
            PointStatus::Invalid => outcome.invalid += 1,
            PointStatus::Skipped => outcome.skipped += 1,
            PointStatus::Failed => outcome.failed += 1,
        }
        sink.write(&record)?;
        observer.point_finished(&record);
    }
    Ok(outcome)
}

/// Whether a device's power limit now differs from its default (`None`: no control,
/// or it cannot say). Drivers round limits, so half a watt or 0.5% is the same.
pub fn limit_differs_from_default(power: Option<&mut (dyn PowerControl + '_)>) -> Option<bool> {
    let l = power?.limits().ok()?;
    Some(!same_limit_w(l.current_w, l.default_w))
}

/// Whether a clock this point leaves at its default is locked on the device now
/// (`false` where the device cannot say).
fn clocks_differ_from_default(
    clocks: Option<&mut (dyn ClockControl + '_)>,
    point: &PlanPoint,
) -> bool {
    let Some(locks) = clocks.and_then(|c| c.clock_locks().ok()) else {
        return false;
    };
    (point.sm_clock_mhz.is_none() && locks.sm_mhz.is_some())
        || (point.mem_clock_mhz.is_none() && locks.mem_mhz.is_some())
}

/// Two power limits that differ by less than a driver's rounding.
pub fn same_limit_w(a: f64, b: f64) -> bool {
    (a - b).abs() <= (0.005 * b.abs()).max(0.5)
}

/// Fill `record` with the outcome of one point: skipped, invalid, failed or measured.
fn measure_point(
    session: &mut DeviceSession<'_>,
    point: &PlanPoint,
    record: &mut Record,
    idle: Option<IdleBaseline>,
    protocol: &ProtocolConfig,
    stop: &AtomicBool,
) -> Result<(), SweepError> {
    if let Support::Unsupported(reason) =
        session
            .backend
            .support(&point.kernel, point.precision, &point.workload)
    {
        record.status = PointStatus::Skipped;
        record.reason = Some(reason);
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut kernel = match session.backend.prepare_with_inputs(
        &point.kernel,
        point.precision,
        &point.workload,
        record.seed,
        point.inputs,
    ) {
        Ok(k) => k,
        Err(e) => {
            record.status = match e {
                BackendError::Unsupported(_) | BackendError::DoesNotFit(_) => PointStatus::Skipped,
                _ => PointStatus::Failed,
            };
            record.reason = Some(e.to_string());
            return Ok(());
        }
    };
    record.kernel_variant = kernel.variant();
    let prepare_s = started.elapsed().as_secs_f64();
    // the check's inputs are the prepared ones (same seed, same distribution):
    // generated, not new data, and left in place for the measurement
    let check = match verify_with(
        kernel.as_mut(),
        &point.workload,
        point.precision,
        record.seed,
        point.inputs,
    ) {
        Ok(v) => v,
        Err(e) => {
            record.status = PointStatus::Failed;
            record.reason = Some(format!("correctness check could not run: {e}"));
            return Ok(());
        }
    };
    let passed = check.passed;
    if !passed {
        record.reason = Some(if check.non_finite_elements > 0 {
            format!(
                "{} of {} output elements are not finite (unwritten or overflowed)",
                check.non_finite_elements, check.output_elements
            )
        } else {
            format!(
                "relative error {:.3e} exceeds the {} tolerance {:.0e}",
                check.relative_error, point.precision, check.tolerance
            )
        });
    }
    record.verification = Some(check);
    record.overhead = Some(PointOverhead {
        prepare_s,
        verify_s: started.elapsed().as_secs_f64() - prepare_s,
    });
    if !passed {
        record.status = PointStatus::Invalid;
        return Ok(());
    }
    let mut ctx = MeasureContext {
        meter: &mut *session.meter,
        clock: session.clock,
        config: protocol,
        idle,
        cap_requested: point.changes_device(),
        stop: Some(stop),
    };
    ctx.meter.take_agreement(); // only this point's windows count
    let measured = measure(kernel.as_mut(), record.flop, &mut ctx);
    record.meter.check = ctx.meter.take_agreement();
    match measured {
        Ok(m) => {
            record.flags = m.flags.clone();
            if record.power_cap.enforced_w.is_none() {
                record.power_cap.enforced_w = m.telemetry.enforced_power_limit_w;
            }
            let sm: Vec<crate::window::Range> = m
                .windows
                .iter()
                .filter_map(|w| w.during.as_ref()?.sm_clock_mhz)
                .collect();
            record.clocks.sm_seen_mhz_median = m.telemetry.sm_clock_mhz_median;
            record.clocks.sm_seen_mhz_min = sm.iter().map(|r| r.min).reduce(f64::min);
            record.clocks.sm_seen_mhz_max = sm.iter().map(|r| r.max).reduce(f64::max);
            record.clocks.mem_seen_mhz_median = m.telemetry.mem_clock_mhz_median;
            record.measurement = Some(m);
            record.status = PointStatus::Measured;
        }
        Err(ProtocolError::Meter(e)) => return Err(SweepError::Meter(e)),
        // abandoned half-way: not a measurement, and not recorded
        Err(ProtocolError::Interrupted) => return Err(SweepError::Interrupted),
        Err(e) => {
            record.status = PointStatus::Failed;
            record.reason = Some(e.to_string());
        }
    }
    Ok(())
}

/// Wait until the enforced limit reads back the requested one, then let power settle.
fn settle_cap(
    power: &mut dyn PowerControl,
    clock: &dyn Clock,
    watts: f64,
    settle_s: f64,
) -> Result<(), PowerError> {
    let deadline = clock.now_s() + 5.0;
    loop {
        let enforced = power.enforced_limit_w()?;
        if (enforced - watts).abs() <= (0.01 * watts).max(1.0) {
            break;
        }
        if clock.now_s() > deadline {
            return Err(PowerError::Failed(format!(
                "the enforced limit stayed at {enforced:.0} W after asking for {watts:.0} W"
            )));
        }
        clock.sleep(Duration::from_millis(100));
    }
    clock.sleep(Duration::from_secs_f64(settle_s));
    Ok(())
}

static BUILD_COMMIT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The git commit the running program was built from, for [`tool_info`]: the
/// `joulebench` binary sets it at start (its build script reads it), so a commit
/// rebuilds only the binary's crate.
pub fn set_build_commit(commit: &str) {
    let _ = BUILD_COMMIT.set(commit.to_string());
}

/// The tool's identity for records: version and, when the program said which, the
/// commit it was built from.
pub fn tool_info() -> ToolInfo {
    ToolInfo {
        name: "joulebench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        git_commit: BUILD_COMMIT.get().cloned(),
    }
}
