//! The measurement protocol of DESIGN.md §4, written once against the traits:
//! warm-up, windows of a minimum duration split into phase-shifted blocks, a stop
//! rule on the relative spread of J/FLOP with a per-point time budget, telemetry
//! and validity flags. Every backend and meter goes through this one function.

use crate::backend::{BackendError, PreparedKernel};
use crate::clock::Clock;
use crate::meter::{EnergyMeter, MeterError, MeterSource, Telemetry};
use crate::stats::{median, relative_spread, Stat};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Every knob of the protocol, with the defaults of DESIGN.md §4. Settable from a
/// sweep config's `[protocol]` table and from `joulebench sweep` flags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolConfig {
    /// Idle power measured once per device per sweep, over this many seconds.
    pub idle_baseline_s: f64,
    /// Run the kernel this long before measuring, so clocks and power settle.
    pub warmup_s: f64,
    /// Shortest window in seconds; the window is also at least
    /// `min_counter_updates` updates of the energy meter.
    pub min_window_s: f64,
    pub min_counter_updates: u32,
    /// Blocks per window, separated by short sleeps that shift the work's phase
    /// against the power sensor's own window.
    pub blocks_per_window: u32,
    /// Mean sleep between blocks, seconds (each gap varies between 0.5× and 1.5×).
    pub block_gap_s: f64,
    /// Stop once the relative spread of J/FLOP across windows is under this.
    pub target_rel_spread: f64,
    pub min_windows: u32,
    pub max_windows: u32,
    /// Time budget per point (warm-up included), seconds; `min_windows` is always met.
    pub point_budget_s: f64,
    /// Start and end each window on an update of the energy counter (polled every
    /// `counter_poll_s`), so a window's energy is not off by up to one update
    /// period at each end; the idle wait at the end is removed with the idle baseline.
    pub align_to_counter: bool,
    pub counter_poll_s: f64,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            idle_baseline_s: 3.0,
            warmup_s: 1.0,
            min_window_s: 1.0,
            min_counter_updates: 10,
            blocks_per_window: 4,
            block_gap_s: 0.02,
            target_rel_spread: 0.01,
            min_windows: 3,
            max_windows: 20,
            point_budget_s: 60.0,
            align_to_counter: true,
            counter_poll_s: 0.001,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid protocol setting: {0}")]
    Config(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Meter(#[from] MeterError),
}

impl ProtocolConfig {
    pub fn validate(&self) -> Result<(), ProtocolError> {
        let bad = |m: &str| Err(ProtocolError::Config(m.to_string()));
        let finite_nonneg = |x: f64| x.is_finite() && x >= 0.0;
        if !finite_nonneg(self.idle_baseline_s) || !finite_nonneg(self.warmup_s) {
            return bad("idle_baseline_s and warmup_s must be ≥ 0");
        }
        if !(self.min_window_s.is_finite() && self.min_window_s > 0.0) {
            return bad("min_window_s must be > 0");
        }
        if self.blocks_per_window == 0 {
            return bad("blocks_per_window must be ≥ 1");
        }
        if !finite_nonneg(self.block_gap_s) {
            return bad("block_gap_s must be ≥ 0");
        }
        if !(self.target_rel_spread.is_finite() && self.target_rel_spread > 0.0) {
            return bad("target_rel_spread must be > 0 (e.g. 0.01 for 1%)");
        }
        if self.min_windows < 2 {
            return bad("min_windows must be ≥ 2 (a spread needs two windows)");
        }
        if self.max_windows < self.min_windows {
            return bad("max_windows must be ≥ min_windows");
        }
        if !(self.point_budget_s.is_finite() && self.point_budget_s > 0.0) {
            return bad("point_budget_s must be > 0");
        }
        if !(self.counter_poll_s.is_finite() && self.counter_poll_s > 0.0) {
            return bad("counter_poll_s must be > 0");
        }
        Ok(())
    }

    /// The window length this meter needs: max(min_window_s, min_counter_updates × period).
    pub fn window_target_s(&self, meter_update_period_s: f64) -> f64 {
        self.min_window_s
            .max(self.min_counter_updates as f64 * meter_update_period_s)
    }
}

/// Why a record's numbers deserve caution. Reports show flags; they never hide them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValidityFlag {
    /// A window was shorter than max(1 s, 10 meter updates).
    ShortWindow,
    /// The spread of J/FLOP (or of time, without a meter) stayed above the target.
    HighSpread,
    /// SM clock under 75% of its default, or a thermal / power-brake throttle reason.
    Throttled,
    /// No energy meter: time only.
    NoEnergy,
    /// Measured on a CPU emulation of a GPU (lavapipe and the like).
    CpuEmulation,
    /// The enforced power limit differs from the one requested.
    CapNotEnforced,
}

impl ValidityFlag {
    pub fn name(self) -> &'static str {
        match self {
            ValidityFlag::ShortWindow => "short-window",
            ValidityFlag::HighSpread => "high-spread",
            ValidityFlag::Throttled => "throttled",
            ValidityFlag::NoEnergy => "no-energy",
            ValidityFlag::CpuEmulation => "cpu-emulation",
            ValidityFlag::CapNotEnforced => "cap-not-enforced",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            ValidityFlag::ShortWindow => "a window was shorter than max(1 s, 10 energy-meter updates); its energy may be off by a sensor period",
            ValidityFlag::HighSpread => "the relative spread across windows stayed above the target within the time budget",
            ValidityFlag::Throttled => "the SM clock fell under 75% of its default, or a thermal / power-brake reason was active",
            ValidityFlag::NoEnergy => "no energy meter on this device: time was measured, energy was not",
            ValidityFlag::CpuEmulation => "measured on a CPU emulation of a GPU (e.g. lavapipe): not a GPU's numbers",
            ValidityFlag::CapNotEnforced => "the enforced power limit differed from the requested cap",
        }
    }

    pub const ALL: [ValidityFlag; 6] = [
        ValidityFlag::ShortWindow,
        ValidityFlag::HighSpread,
        ValidityFlag::Throttled,
        ValidityFlag::NoEnergy,
        ValidityFlag::CpuEmulation,
        ValidityFlag::CapNotEnforced,
    ];
}

/// One measurement window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub iterations: u64,
    /// Wall clock from the first block's start to the last block's end.
    pub wall_s: f64,
    /// Wall clock spent running blocks (the window less its gaps).
    pub busy_s: f64,
    /// Sum of the blocks' device time, where the backend has timestamps.
    pub device_s: Option<f64>,
    /// Idle time inside the window: sleeps between blocks and the wait for the
    /// closing counter update. Its idle energy is removed from the op's energy.
    pub gap_s: f64,
    /// Energy-meter delta over the whole window, gaps included.
    pub joules: Option<f64>,
    pub telemetry: Telemetry,
}

impl Window {
    /// Seconds per op: device time where measured, else busy wall time.
    pub fn seconds_per_op(&self) -> f64 {
        self.device_s.unwrap_or(self.busy_s) / self.iterations as f64
    }

    /// Joules per op: the window's energy less idle power over its gaps.
    pub fn joules_per_op(&self, idle_w: Option<f64>) -> Option<f64> {
        let e = self.joules? - idle_w.unwrap_or(0.0) * self.gap_s;
        Some(e / self.iterations as f64)
    }
}

/// A point's medians and spreads (DESIGN.md §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub seconds_per_op: Stat,
    pub tflops: f64,
    pub joules_per_op: Option<Stat>,
    pub joules_per_flop: Option<Stat>,
    /// Energy per op above the idle baseline (idle power × busy time subtracted).
    pub above_idle_joules_per_op: Option<f64>,
    pub average_w: Option<f64>,
}

impl Summary {
    pub fn picojoules_per_flop(&self) -> Option<f64> {
        self.joules_per_flop.map(|s| s.median * 1e12)
    }
}

/// What the windows' telemetry came to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetrySummary {
    pub sm_clock_mhz_median: Option<f64>,
    pub sm_clock_mhz_min: Option<u32>,
    pub mem_clock_mhz_median: Option<f64>,
    pub temperature_c_max: Option<u32>,
    pub throttle_reasons: Vec<String>,
    pub enforced_power_limit_w: Option<f64>,
    pub performance_state: Option<String>,
}

impl TelemetrySummary {
    pub fn of(samples: &[Telemetry]) -> TelemetrySummary {
        let sm: Vec<f64> = samples
            .iter()
            .filter_map(|t| t.sm_clock_mhz)
            .map(f64::from)
            .collect();
        let mem: Vec<f64> = samples
            .iter()
            .filter_map(|t| t.mem_clock_mhz)
            .map(f64::from)
            .collect();
        let mut reasons: Vec<String> = samples
            .iter()
            .flat_map(|t| t.throttle_reasons.clone())
            .collect();
        reasons.sort();
        reasons.dedup();
        TelemetrySummary {
            sm_clock_mhz_median: (!sm.is_empty()).then(|| median(&sm)),
            sm_clock_mhz_min: samples.iter().filter_map(|t| t.sm_clock_mhz).min(),
            mem_clock_mhz_median: (!mem.is_empty()).then(|| median(&mem)),
            temperature_c_max: samples.iter().filter_map(|t| t.temperature_c).max(),
            throttle_reasons: reasons,
            enforced_power_limit_w: samples.iter().rev().find_map(|t| t.enforced_power_limit_w),
            performance_state: samples
                .iter()
                .rev()
                .find_map(|t| t.performance_state.clone()),
        }
    }
}

/// Everything the protocol measured for one point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub warmup_s: f64,
    pub warmup_iterations: u64,
    pub window_target_s: f64,
    pub windows: Vec<Window>,
    pub summary: Summary,
    pub telemetry: TelemetrySummary,
    pub flags: Vec<ValidityFlag>,
}

/// Idle power over a few seconds of rest, once per device per sweep.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleBaseline {
    pub watts: f64,
    pub seconds: f64,
}

pub fn measure_idle(
    meter: &mut dyn EnergyMeter,
    clock: &dyn Clock,
    seconds: f64,
) -> Result<Option<IdleBaseline>, MeterError> {
    if meter.source() == MeterSource::None || seconds <= 0.0 {
        return Ok(None);
    }
    let (e0, t0) = (meter.energy_j()?, clock.now_s());
    clock.sleep(Duration::from_secs_f64(seconds));
    let (e1, t1) = (meter.energy_j()?, clock.now_s());
    let dt = t1 - t0;
    Ok((dt > 0.0).then(|| IdleBaseline {
        watts: (e1 - e0) / dt,
        seconds: dt,
    }))
}

/// Where the protocol gets its time and energy.
pub struct MeasureContext<'a> {
    pub meter: &'a mut dyn EnergyMeter,
    pub clock: &'a dyn Clock,
    pub config: &'a ProtocolConfig,
    pub idle: Option<IdleBaseline>,
    /// A power cap was requested for this point: a lower clock is then its purpose,
    /// so only thermal and power-brake reasons count as throttling.
    pub cap_requested: bool,
}

/// A low-discrepancy fraction in [0, 1): successive gaps land at well-spread phases.
fn phase(n: u64) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    (n as f64 * GOLDEN).fract()
}

/// Run warm-up, then windows until the stop rule is met, for one prepared kernel.
pub fn measure(
    kernel: &mut dyn PreparedKernel,
    flop: u64,
    ctx: &mut MeasureContext<'_>,
) -> Result<Measurement, ProtocolError> {
    let cfg = ctx.config;
    cfg.validate()?;
    let has_meter = ctx.meter.source() != MeterSource::None;
    let window_target_s = cfg.window_target_s(if has_meter {
        ctx.meter.update_period_s()
    } else {
        0.0
    });
    let point_start = ctx.clock.now_s();

    // Warm-up doubles the batch until one batch takes ≥ 20 ms, then keeps running
    // until warmup_s has passed; the last batch calibrates seconds per iteration.
    let mut batch = 1u64;
    let mut warmup_iterations = 0u64;
    let mut seconds_per_iter;
    loop {
        let t = kernel.run(batch)?;
        warmup_iterations += batch;
        let s = t.device_s.unwrap_or(t.wall_s).max(t.wall_s * 0.5);
        seconds_per_iter = (s / batch as f64).max(1e-9);
        let elapsed = ctx.clock.now_s() - point_start;
        if s >= 0.02 && elapsed >= cfg.warmup_s {
            break;
        }
        if s < 0.02 {
            batch = batch.saturating_mul(2);
        }
    }
    let warmup_s = ctx.clock.now_s() - point_start;

    let blocks = cfg.blocks_per_window as u64;
    let block_iters = ((window_target_s / blocks as f64) / seconds_per_iter)
        .ceil()
        .max(1.0) as u64;

    let period = if has_meter {
        ctx.meter.update_period_s()
    } else {
        0.0
    };
    let align = cfg.align_to_counter && period > 0.0;
    let idle_w = ctx.idle.map(|i| i.watts);
    // the stop rule's spread over the windows so far: after the loop, the final one
    let mut spread;
    let mut windows: Vec<Window> = Vec::new();
    let mut gap_counter = 0u64;
    loop {
        let e0 = match (has_meter, align) {
            (true, true) => Some(await_counter_update(
                ctx.meter,
                ctx.clock,
                period,
                cfg.counter_poll_s,
            )?),
            (true, false) => Some(ctx.meter.energy_j()?),
            _ => None,
        };
        let t0 = ctx.clock.now_s();
        let (mut busy, mut device, mut device_ok, mut gaps) = (0.0, 0.0, true, 0.0);
        for b in 0..blocks {
            let tb = ctx.clock.now_s();
            let timing = kernel.run(block_iters)?;
            busy += ctx.clock.now_s() - tb;
            match timing.device_s {
                Some(d) => device += d,
                None => device_ok = false,
            }
            if b + 1 < blocks {
                let g = cfg.block_gap_s * (0.5 + phase(gap_counter));
                gap_counter += 1;
                let tg = ctx.clock.now_s();
                ctx.clock.sleep(Duration::from_secs_f64(g));
                gaps += ctx.clock.now_s() - tg;
            }
        }
        let work_end = ctx.clock.now_s();
        let e1 = match (has_meter, align && ctx.idle.is_some()) {
            (true, true) => Some(await_counter_update(
                ctx.meter,
                ctx.clock,
                period,
                cfg.counter_poll_s,
            )?),
            (true, false) => Some(ctx.meter.energy_j()?),
            _ => None,
        };
        let t1 = ctx.clock.now_s();
        // the wait for the closing update is idle time, removed like the gaps
        gaps += t1 - work_end;
        let telemetry = ctx.meter.telemetry().unwrap_or_default();
        windows.push(Window {
            iterations: block_iters * blocks,
            wall_s: t1 - t0,
            busy_s: busy,
            device_s: device_ok.then_some(device),
            gap_s: gaps,
            joules: e0.zip(e1).map(|(a, b)| b - a),
            telemetry,
        });

        spread = stop_metric_spread(&windows, flop, idle_w);
        let n = windows.len() as u32;
        let elapsed = ctx.clock.now_s() - point_start;
        let last_window_s = t1 - t0;
        if n >= cfg.min_windows
            && (spread <= cfg.target_rel_spread
                || n >= cfg.max_windows
                || elapsed + last_window_s > cfg.point_budget_s)
        {
            break;
        }
    }

    let summary = summarize(&windows, flop, idle_w);
    let telemetry = TelemetrySummary::of(
        &windows
            .iter()
            .map(|w| w.telemetry.clone())
            .collect::<Vec<_>>(),
    );
    let mut flags = Vec::new();
    if windows.iter().any(|w| w.wall_s < window_target_s * 0.98) {
        flags.push(ValidityFlag::ShortWindow);
    }
    if spread > cfg.target_rel_spread {
        flags.push(ValidityFlag::HighSpread);
    }
    if is_throttled(&windows, ctx.cap_requested) {
        flags.push(ValidityFlag::Throttled);
    }
    if !has_meter {
        flags.push(ValidityFlag::NoEnergy);
    }
    Ok(Measurement {
        warmup_s,
        warmup_iterations,
        window_target_s,
        windows,
        summary,
        telemetry,
        flags,
    })
}

/// Poll the meter until its reading changes (an update just happened) and return
/// the new reading; give up after three update periods.
fn await_counter_update(
    meter: &mut dyn EnergyMeter,
    clock: &dyn Clock,
    period_s: f64,
    poll_s: f64,
) -> Result<f64, MeterError> {
    let first = meter.energy_j()?;
    let deadline = clock.now_s() + 3.0 * period_s;
    loop {
        clock.sleep(Duration::from_secs_f64(poll_s));
        let e = meter.energy_j()?;
        if e != first || clock.now_s() >= deadline {
            return Ok(e);
        }
    }
}

/// The spread the stop rule watches: J/FLOP where energy is measured, else time per op.
fn stop_metric_spread(windows: &[Window], flop: u64, idle_w: Option<f64>) -> f64 {
    let energy: Option<Vec<f64>> = windows
        .iter()
        .map(|w| w.joules_per_op(idle_w).map(|j| j / flop as f64))
        .collect();
    match energy {
        Some(e) => relative_spread(&e),
        None => relative_spread(
            &windows
                .iter()
                .map(Window::seconds_per_op)
                .collect::<Vec<_>>(),
        ),
    }
}

/// Clock under 75% of its default (when no cap was requested), or a thermal /
/// power-brake reason, in any window.
fn is_throttled(windows: &[Window], cap_requested: bool) -> bool {
    windows.iter().any(|w| {
        let t = &w.telemetry;
        let slow = !cap_requested
            && matches!((t.sm_clock_mhz, t.default_sm_clock_mhz),
            (Some(c), Some(d)) if d > 0 && (c as f64) < 0.75 * d as f64);
        slow || t.has_brake_reason()
    })
}

pub fn summarize(windows: &[Window], flop: u64, idle_w: Option<f64>) -> Summary {
    let spo: Vec<f64> = windows.iter().map(Window::seconds_per_op).collect();
    let seconds_per_op = Stat::of(&spo);
    let jpo: Option<Vec<f64>> = windows.iter().map(|w| w.joules_per_op(idle_w)).collect();
    let joules_per_op = jpo.as_deref().map(Stat::of);
    let joules_per_flop = jpo
        .as_deref()
        .map(|v| Stat::of(&v.iter().map(|j| j / flop as f64).collect::<Vec<_>>()));
    let average_w = jpo.as_deref().map(|v| {
        let watts: Vec<f64> = v
            .iter()
            .zip(windows)
            .map(|(j, w)| j * w.iterations as f64 / w.busy_s)
            .collect();
        median(&watts)
    });
    let above_idle = match (joules_per_op, idle_w) {
        (Some(j), Some(idle)) => Some(j.median - idle * seconds_per_op.median),
        _ => None,
    };
    Summary {
        tflops: flop as f64 / seconds_per_op.median / 1e12,
        seconds_per_op,
        joules_per_op,
        joules_per_flop,
        above_idle_joules_per_op: above_idle,
        average_w,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RunTiming;
    use crate::reference::CheckInputs;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Mutex;

    /// A device in virtual time: work at `busy_w`, idle at `idle_w`, and a counter
    /// that updates every `period_s`; each run's duration is scaled by the next
    /// entry of `noise` (cycled).
    struct World {
        now: f64,
        energy: f64,
        counter: f64,
        next_tick: f64,
        period_s: f64,
        idle_w: f64,
    }

    impl World {
        fn advance(&mut self, dt: f64, w: f64) {
            let end = self.now + dt;
            while self.period_s > 0.0 && self.next_tick <= end {
                self.energy += w * (self.next_tick - self.now);
                self.now = self.next_tick;
                self.counter = self.energy;
                self.next_tick += self.period_s;
            }
            self.energy += w * (end - self.now);
            self.now = end;
            if self.period_s == 0.0 {
                self.counter = self.energy;
            }
        }
    }

    #[derive(Clone)]
    struct Shared(Rc<RefCell<World>>);
    struct FakeClock(Mutex<Shared>);
    unsafe impl Send for FakeClock {}
    unsafe impl Sync for FakeClock {}
    impl Clock for FakeClock {
        fn now_s(&self) -> f64 {
            self.0.lock().unwrap().0.borrow().now
        }
        fn sleep(&self, d: Duration) {
            let s = self.0.lock().unwrap();
            let idle = s.0.borrow().idle_w;
            s.0.borrow_mut().advance(d.as_secs_f64(), idle);
        }
    }
    struct FakeMeter(Shared);
    unsafe impl Send for FakeMeter {}
    impl EnergyMeter for FakeMeter {
        fn source(&self) -> MeterSource {
            MeterSource::Simulated
        }
        fn energy_j(&mut self) -> Result<f64, MeterError> {
            Ok(self.0 .0.borrow().counter)
        }
        fn update_period_s(&self) -> f64 {
            self.0 .0.borrow().period_s
        }
    }
    struct FakeKernel {
        world: Shared,
        seconds_per_iter: f64,
        busy_w: f64,
        noise: Vec<f64>,
        runs: usize,
    }
    impl PreparedKernel for FakeKernel {
        fn run_for_check(&mut self, _: &CheckInputs) -> Result<Vec<f32>, BackendError> {
            Ok(vec![])
        }
        fn run(&mut self, n: u64) -> Result<RunTiming, BackendError> {
            let f = self.noise[self.runs % self.noise.len()];
            self.runs += 1;
            let t = self.seconds_per_iter * n as f64 * f;
            self.world.0.borrow_mut().advance(t, self.busy_w);
            Ok(RunTiming {
                wall_s: t,
                device_s: Some(t),
            })
        }
    }

    fn setup(period_s: f64, noise: Vec<f64>) -> (FakeClock, FakeMeter, FakeKernel) {
        let w = Shared(Rc::new(RefCell::new(World {
            now: 0.0,
            energy: 0.0,
            counter: 0.0,
            next_tick: period_s,
            period_s,
            idle_w: 50.0,
        })));
        (
            FakeClock(Mutex::new(w.clone())),
            FakeMeter(w.clone()),
            FakeKernel {
                world: w,
                seconds_per_iter: 1e-3,
                busy_w: 300.0,
                noise,
                runs: 0,
            },
        )
    }

    const FLOP: u64 = 1_000_000_000;

    fn run(period_s: f64, noise: Vec<f64>, cfg: &ProtocolConfig, idle: bool) -> Measurement {
        let (clock, mut meter, mut kernel) = setup(period_s, noise);
        let idle = idle.then_some(IdleBaseline {
            watts: 50.0,
            seconds: 1.0,
        });
        let mut ctx = MeasureContext {
            meter: &mut meter,
            clock: &clock,
            config: cfg,
            idle,
            cap_requested: false,
        };
        measure(&mut kernel, FLOP, &mut ctx).unwrap()
    }

    #[test]
    fn steady_work_stops_at_min_windows_with_exact_energy() {
        let cfg = ProtocolConfig::default();
        let m = run(0.1, vec![1.0], &cfg, true);
        assert_eq!(m.windows.len(), cfg.min_windows as usize);
        assert!(m.flags.is_empty(), "{:?}", m.flags);
        // 300 W × 1 ms per op = 0.3 J/op, exact once idle gaps are removed
        let j = m.summary.joules_per_op.unwrap().median;
        assert!((j - 0.3).abs() / 0.3 < 2e-3, "joules per op {j}");
        assert!(m
            .windows
            .iter()
            .all(|w| w.wall_s >= cfg.window_target_s(0.1)));
    }

    #[test]
    fn window_spans_ten_counter_updates_when_they_are_slow() {
        let cfg = ProtocolConfig::default();
        let m = run(0.25, vec![1.0], &cfg, true);
        assert!((m.window_target_s - 2.5).abs() < 1e-9);
        assert!(
            m.windows.iter().all(|w| w.busy_s >= 2.4),
            "{:?}",
            m.windows[0].busy_s
        );
    }

    #[test]
    fn noisy_work_runs_more_windows_and_is_flagged_when_it_cannot_settle() {
        let cfg = ProtocolConfig {
            max_windows: 8,
            ..ProtocolConfig::default()
        };
        // block run times swing ±10% irregularly: J/FLOP per window varies by a few %
        let noise = vec![
            1.1, 0.9, 1.12, 0.93, 1.0, 1.08, 0.88, 1.05, 0.9, 1.1, 0.95, 1.07, 0.91,
        ];
        let m = run(0.1, noise, &cfg, true);
        assert_eq!(m.windows.len(), 8);
        assert!(m.flags.contains(&ValidityFlag::HighSpread), "{:?}", m.flags);
    }

    #[test]
    fn the_time_budget_stops_a_point_after_min_windows() {
        let cfg = ProtocolConfig {
            point_budget_s: 4.0,
            max_windows: 50,
            ..ProtocolConfig::default()
        };
        let m = run(0.1, vec![1.05, 0.95, 1.02], &cfg, true);
        let total = m.warmup_s + m.windows.iter().map(|w| w.wall_s).sum::<f64>();
        assert!(m.windows.len() >= cfg.min_windows as usize);
        assert!(
            total < cfg.point_budget_s + 1.5,
            "ran {total} s on a 4 s budget"
        );
    }

    #[test]
    fn aligned_windows_beat_unaligned_reads_of_a_slow_counter() {
        let aligned = ProtocolConfig::default();
        let naive = ProtocolConfig {
            align_to_counter: false,
            ..ProtocolConfig::default()
        };
        let err = |m: &Measurement| (m.summary.joules_per_op.unwrap().median - 0.3).abs() / 0.3;
        let a = run(0.1, vec![1.0], &aligned, true);
        let n = run(0.1, vec![1.0], &naive, true);
        assert!(err(&a) < 0.002, "aligned error {}", err(&a));
        assert!(
            err(&n) > err(&a),
            "naive {} vs aligned {}",
            err(&n),
            err(&a)
        );
    }

    #[test]
    fn no_meter_measures_time_only_and_says_so() {
        let (clock, _m, mut kernel) = setup(0.1, vec![1.0]);
        let mut none = crate::meter::NoMeter {
            reason: "no meter".into(),
        };
        let cfg = ProtocolConfig::default();
        let mut ctx = MeasureContext {
            meter: &mut none,
            clock: &clock,
            config: &cfg,
            idle: None,
            cap_requested: false,
        };
        let m = measure(&mut kernel, FLOP, &mut ctx).unwrap();
        assert!(m.summary.joules_per_flop.is_none());
        assert!(m.flags.contains(&ValidityFlag::NoEnergy));
        assert!((m.summary.seconds_per_op.median - 1e-3).abs() < 1e-9);
    }

    #[test]
    fn invalid_settings_are_refused() {
        let bad = ProtocolConfig {
            min_windows: 1,
            ..ProtocolConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = ProtocolConfig {
            target_rel_spread: 0.0,
            ..ProtocolConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = ProtocolConfig {
            max_windows: 2,
            min_windows: 3,
            ..ProtocolConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
