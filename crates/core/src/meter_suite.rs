//! One conformance suite for every energy meter, as [`crate::suite`] is for
//! backends: the same checks for each `EnergyMeter`, instantiated by one line of
//! [`meter_conformance!`] against a rig that stands in for the meter's device (a
//! fake driver, a sysfs fixture tree, the simulated device) and can make its counter
//! misbehave. A meter that passes can be put under the window engine: its counter
//! reads the power drawn and never goes down, a wrap keeps counting, a counter that
//! stands still or goes backwards rejects its window instead of yielding a wrong
//! one, it says how often it updates, and its telemetry holds what the device has.
//!
//! Windows here are short (0.2 s, 10 updates) so that a meter polled in real time
//! passes the suite in a few seconds; the simulated device runs in virtual time.

use crate::backend::RunTiming;
use crate::clock::{Clock, SystemClock};
use crate::meter::{CounterUpdate, EnergyMeter, MeterError, MeterSource, Telemetry};
use crate::stats::median;
use crate::window::{Range, Window, WindowEngine, WindowError, WindowRules};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// A meter whose counter stands still and never reports an update: what every
/// reader of a meter must turn into an error, never into 0 J.
pub struct StuckMeter;

impl EnergyMeter for StuckMeter {
    fn source(&self) -> MeterSource {
        MeterSource::NvmlCounter
    }
    fn energy_j(&mut self) -> Result<f64, MeterError> {
        Ok(5.0)
    }
    fn update_period_s(&self) -> f64 {
        0.1
    }
    fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
        Ok(Vec::new())
    }
}

/// Something a rig can make its device's counter do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Before the meter opens: start the counter within a tenth of a second of work
    /// of the largest value it holds, so it wraps in the first window.
    StartNearWrap,
    /// After the meter opens: the counter stops changing while the work goes on.
    Stall,
    /// While a window runs: the counter falls by a lot, as after a driver reload.
    GoBackwards,
}

/// What a meter's telemetry should hold on the rig's device.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedTelemetry {
    /// A reading as the device gives it, power aside: each field the device has is
    /// `Some`, with its value; each field it lacks is `None`, and the meter must not
    /// invent it.
    pub fields: Telemetry,
    /// Compare the values too; `false` for a device whose readings move (the
    /// simulated device's temperature), where only which fields are there is checked.
    pub exact: bool,
    /// Whether the readings sampled while the work runs carry power.
    pub power_during_work: bool,
}

/// A device that a meter under test reads, driven by the suite.
pub trait MeterRig {
    /// Open the meter under test on the device as it stands.
    fn open(&mut self) -> Result<Box<dyn EnergyMeter>, String>;
    /// The clock the meter stamps its readings on: the host's, unless the device
    /// has its own (the simulated device's virtual clock).
    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }
    /// `iterations` milliseconds of work on the device, on its clock. By default
    /// time passes: a fake driver or a fixture tree draws its power whether or not
    /// anything runs.
    fn work(&mut self, iterations: u64) {
        self.clock().sleep(Duration::from_millis(iterations));
    }
    /// What the device draws while the work runs, watts.
    fn watts(&self) -> f64;
    /// How often the meter should say its reading changes, seconds.
    fn update_period_s(&self) -> f64;
    /// Make the counter misbehave; `Err` says why this device cannot (a counter
    /// too wide to wrap, a meter that integrates power and has no counter to stall).
    fn inject(&mut self, fault: Fault) -> Result<(), String>;
    /// What the meter's telemetry should hold.
    fn telemetry(&self) -> ExpectedTelemetry;
}

/// How far a window's average power may be from what the device drew.
const POWER_TOLERANCE: f64 = 0.1;

fn rules() -> WindowRules {
    WindowRules {
        min_window_s: 0.2,
        min_counter_updates: 10,
    }
}

/// Milliseconds of work in `seconds`, at least one.
fn ms(seconds: f64) -> u64 {
    ((seconds * 1e3).ceil() as u64).max(1)
}

struct Opened<R> {
    rig: R,
    meter: Box<dyn EnergyMeter>,
    clock: Arc<dyn Clock>,
}

fn open<R: MeterRig>(mut rig: R) -> Opened<R> {
    let meter = rig
        .open()
        .unwrap_or_else(|e| panic!("the meter did not open on a working device: {e}"));
    let clock = rig.clock();
    Opened { rig, meter, clock }
}

impl<R: MeterRig> Opened<R> {
    /// One window of work in blocks of 5 ms; `during(rig, seconds)` runs before
    /// each block with the seconds of work so far.
    fn window_with(
        &mut self,
        mut during: impl FnMut(&mut R, f64),
    ) -> Result<Window, WindowError<Infallible>> {
        let (rig, clock) = (&mut self.rig, self.clock.clone());
        let start_s = clock.now_s();
        let mut run = |n: u64| {
            during(rig, clock.now_s() - start_s);
            rig.work(n);
            Ok(RunTiming {
                wall_s: n as f64 * 1e-3,
                device_s: None,
            })
        };
        let mut engine = WindowEngine::new(self.meter.as_mut(), self.clock.as_ref(), rules());
        engine.window(&mut run, 5, 0.0)
    }

    fn window(&mut self) -> Result<Window, WindowError<Infallible>> {
        self.window_with(|_, _| {})
    }

    /// Two windows back to back whose energy over their time is the power drawn.
    /// A meter polled in real time stamps an update late by however long its
    /// thread waited for a core, a share of a short window: so each pair must be
    /// within half of the power drawn (a counter that lost a wrap or a unit is off
    /// by far more), and one of two pairs within [`POWER_TOLERANCE`].
    fn assert_windows_read_power(&mut self, what: &str) {
        let want = self.rig.watts();
        let mut pairs = Vec::new();
        for _ in 0..2 {
            let (mut joules, mut seconds) = (0.0, 0.0);
            let mut seen = Vec::new();
            for _ in 0..2 {
                let w = self
                    .window()
                    .unwrap_or_else(|e| panic!("{what}: the window was rejected: {e}"));
                let j = w.joules.expect("a window on a meter has energy");
                assert!(j > 0.0 && j.is_finite(), "{what}: {w:?}");
                joules += j;
                seconds += w.seconds;
                seen.push(w);
            }
            let got = joules / seconds;
            assert!(
                (got - want).abs() <= 0.5 * want,
                "{what}: the windows read {got:.1} W, the device drew {want:.1} W: {seen:?}"
            );
            if (got - want).abs() <= POWER_TOLERANCE * want {
                return;
            }
            pairs.push(format!("{got:.1} W over {seen:?}"));
        }
        panic!(
            "{what}: the device drew {want:.1} W, two pairs of windows read {}",
            pairs.join(", then ")
        );
    }
}

/// Says why a fault does not apply to this meter (as the correctness suite says
/// `n/a` for a shape a kernel cannot run); `true` when it does apply.
fn applies(outcome: Result<(), String>, fault: Fault) -> bool {
    match outcome {
        Ok(()) => true,
        Err(why) => {
            eprintln!("n/a      {fault:?}: {why}");
            false
        }
    }
}

/// Energy over a window is the power drawn times its length; readings never go
/// down and are stamped in order.
pub fn counter_reads_the_power_drawn_and_never_goes_down<R: MeterRig>(make: impl FnOnce() -> R) {
    let mut m = open(make());
    assert!(m.meter.update_period_s() > 0.0, "a meter updates");
    m.assert_windows_read_power("a healthy counter");
    let period = m.meter.update_period_s();
    m.rig.work(ms(10.0 * period));
    let ups = m.meter.take_updates().expect("updates");
    assert!(ups.len() >= 3, "{} updates over 10 periods", ups.len());
    for p in ups.windows(2) {
        assert!(p[1].time_s > p[0].time_s, "updates out of order: {p:?}");
        assert!(p[1].joules >= p[0].joules, "the reading went down: {p:?}");
    }
    let a = m.meter.energy_j().expect("energy now");
    m.rig.work(ms(3.0 * period));
    let b = m.meter.energy_j().expect("energy now");
    assert!(b >= a, "energy now went down: {a} J then {b} J");
}

/// Reading the energy now takes nothing from what the window engine will take: a
/// monitor that reads it between windows must not lose the counter's changes.
pub fn reading_energy_now_leaves_the_updates_to_the_windows<R: MeterRig>(make: impl FnOnce() -> R) {
    let mut m = open(make());
    let period = m.meter.update_period_s();
    m.meter.take_updates().expect("updates");
    // long enough that no wait for a core hides every update before the read
    m.rig.work(ms(40.0 * period));
    let read_at_s = m.clock.now_s();
    m.meter.energy_j().expect("energy now");
    m.rig.work(ms(4.0 * period));
    let ups = m.meter.take_updates().expect("updates");
    let before = ups
        .iter()
        .filter(|u| u.time_s < read_at_s - 2.0 * period)
        .count();
    assert!(
        before >= 3,
        "of {} updates, {before} came before the energy was read: reading it took them",
        ups.len()
    );
}

/// A counter that passes its largest value keeps counting up.
pub fn a_counter_that_wraps_keeps_counting<R: MeterRig>(make: impl FnOnce() -> R) {
    let mut rig = make();
    if !applies(rig.inject(Fault::StartNearWrap), Fault::StartNearWrap) {
        return;
    }
    open(rig).assert_windows_read_power("a counter that wraps");
}

/// A counter that stops changing while the device works rejects the window: never
/// a window of zero joules.
pub fn a_counter_that_stands_still_rejects_the_window<R: MeterRig>(make: impl FnOnce() -> R) {
    let mut m = open(make());
    m.window()
        .unwrap_or_else(|e| panic!("before the stall: {e}"));
    if !applies(m.rig.inject(Fault::Stall), Fault::Stall) {
        return;
    }
    match m.window() {
        Err(WindowError::MeterStalled { .. }) => {}
        Ok(w) => panic!("a stalled counter gave a window: {w:?}"),
        Err(e) => panic!("a stalled counter is a stall, not: {e}"),
    }
}

/// A counter that goes down while a window runs rejects it, saying so.
pub fn a_counter_that_goes_backwards_rejects_the_window<R: MeterRig>(make: impl FnOnce() -> R) {
    let mut m = open(make());
    let mut injected = None;
    let result = m.window_with(|rig, worked_s| {
        if injected.is_none() && worked_s >= 0.05 {
            injected = Some(rig.inject(Fault::GoBackwards));
        }
    });
    let Some(outcome) = injected else {
        panic!("the window closed before the counter could go back: {result:?}");
    };
    if !applies(outcome, Fault::GoBackwards) {
        return;
    }
    match result {
        Ok(w) => panic!("a counter that went backwards gave a window: {w:?}"),
        Err(e) => assert!(
            e.to_string().contains("backwards"),
            "the rejection should say the counter went backwards: {e}"
        ),
    }
}

/// The update period a meter reports is how often its reading changes. Never much
/// shorter than the device's (windows of ten updates would then span fewer, and
/// the stall check would fire early), nor many times longer (a fallback taken for
/// a measurement). A period measured over a few changes on a busy host reads long,
/// hence the wider bound above.
pub fn the_update_period_is_how_often_the_reading_changes<R: MeterRig>(make: impl FnOnce() -> R) {
    let mut m = open(make());
    let (said, want) = (m.meter.update_period_s(), m.rig.update_period_s());
    assert!(
        said >= 0.5 * want && said <= 4.0 * want,
        "the meter says it updates every {:.2} ms, its device every {:.2} ms",
        said * 1e3,
        want * 1e3
    );
    assert!(m.meter.response_s() >= said * (1.0 - 1e-9));
    // watched twice at most: a polling thread kept from its core for a while
    // sees one change where there were several
    let mut seen = Vec::new();
    for _ in 0..2 {
        m.meter.take_updates().expect("updates");
        m.rig.work(ms(30.0 * said));
        let ups = m.meter.take_updates().expect("updates");
        let gaps: Vec<f64> = ups.windows(2).map(|p| p[1].time_s - p[0].time_s).collect();
        let typical = if gaps.is_empty() {
            f64::INFINITY
        } else {
            median(&gaps)
        };
        if gaps.len() >= 10 && typical >= 0.25 * said && typical <= 2.0 * said {
            return;
        }
        seen.push(format!(
            "{} changes, typically {:.2} ms apart",
            ups.len(),
            typical * 1e3
        ));
    }
    panic!(
        "the meter says it updates every {:.2} ms; over 30 such periods its reading made {}",
        said * 1e3,
        seen.join(", then ")
    );
}

/// The meter's telemetry has the fields the device has, with their values, now
/// and in the readings sampled during a window, and invents none it lacks.
pub fn telemetry_holds_what_the_device_reports<R: MeterRig>(make: impl FnOnce() -> R) {
    let mut m = open(make());
    let want = m.rig.telemetry();
    let now = m.meter.telemetry().expect("telemetry now");
    compare_telemetry(&want, &now);
    let w = m.window().expect("a window");
    let during = w
        .during
        .as_ref()
        .expect("a window summarises its telemetry");
    assert!(during.samples >= 1, "{during:?}");
    let median_u32 = |r: Option<Range>| r.map(|r| r.median.round() as u32);
    let seen = Telemetry {
        sm_clock_mhz: median_u32(during.sm_clock_mhz),
        mem_clock_mhz: median_u32(during.mem_clock_mhz),
        default_sm_clock_mhz: during.default_sm_clock_mhz,
        temperature_c: median_u32(during.temperature_c),
        throttle_reasons: during.throttle_reasons.clone(),
        enforced_power_limit_w: during.enforced_power_limit_w,
        performance_state: during.performance_state.clone(),
        power_w: None,
    };
    compare_telemetry(&want, &seen);
    match (want.power_during_work, during.power_w) {
        (true, Some(p)) => assert!(
            (p.median - m.rig.watts()).abs() <= 0.15 * m.rig.watts(),
            "power during the work {:.1} W, drawn {:.1} W",
            p.median,
            m.rig.watts()
        ),
        (true, None) => panic!("no power in the telemetry sampled during the work"),
        (false, Some(p)) => panic!("power {p:?} from a device that reports none"),
        (false, None) => {}
    }
}

fn compare_telemetry(want: &ExpectedTelemetry, got: &Telemetry) {
    fn field<T: PartialEq + std::fmt::Debug>(
        name: &str,
        exact: bool,
        w: &Option<T>,
        g: &Option<T>,
    ) {
        match (w, g) {
            (Some(w), Some(g)) if exact => assert_eq!(w, g, "telemetry field {name}"),
            (Some(_), Some(_)) | (None, None) => {}
            (Some(w), None) => panic!("telemetry field {name}: missing, the device has {w:?}"),
            (None, Some(g)) => panic!("telemetry field {name}: {g:?}, the device has none"),
        }
    }
    let (f, x) = (&want.fields, want.exact);
    field("sm_clock_mhz", x, &f.sm_clock_mhz, &got.sm_clock_mhz);
    field("mem_clock_mhz", x, &f.mem_clock_mhz, &got.mem_clock_mhz);
    field(
        "default_sm_clock_mhz",
        x,
        &f.default_sm_clock_mhz,
        &got.default_sm_clock_mhz,
    );
    field("temperature_c", x, &f.temperature_c, &got.temperature_c);
    field(
        "enforced_power_limit_w",
        x,
        &f.enforced_power_limit_w,
        &got.enforced_power_limit_w,
    );
    field(
        "performance_state",
        x,
        &f.performance_state,
        &got.performance_state,
    );
    if x {
        assert_eq!(
            f.throttle_reasons, got.throttle_reasons,
            "telemetry field throttle_reasons"
        );
    }
}

/// Instantiate the suite for one meter: one test per check.
///
/// ```ignore
/// mod nvml_counter {
///     joulebench_core::meter_conformance!(|| NvmlCounterRig::new());
/// }
/// ```
#[macro_export]
macro_rules! meter_conformance {
    ($make:expr) => {
        $crate::meter_conformance!(@one $make, counter_reads_the_power_drawn_and_never_goes_down);
        $crate::meter_conformance!(@one $make, reading_energy_now_leaves_the_updates_to_the_windows);
        $crate::meter_conformance!(@one $make, a_counter_that_wraps_keeps_counting);
        $crate::meter_conformance!(@one $make, a_counter_that_stands_still_rejects_the_window);
        $crate::meter_conformance!(@one $make, a_counter_that_goes_backwards_rejects_the_window);
        $crate::meter_conformance!(@one $make, the_update_period_is_how_often_the_reading_changes);
        $crate::meter_conformance!(@one $make, telemetry_holds_what_the_device_reports);
    };
    (@one $make:expr, $name:ident) => {
        #[test]
        fn $name() {
            $crate::meter_suite::$name($make);
        }
    };
}
