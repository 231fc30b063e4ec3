//! The protocol on a device in virtual time: work at 300 W, idle at 50 W, a
//! counter that books the exact energy every period, telemetry every 50 ms with a
//! temperature that approaches 60 °C while busy.

use super::summary::clock_flags;
use super::*;
use crate::meter::{CounterUpdate, MeterSource, Telemetry, TelemetrySample};
use crate::reference::CheckInputs;
use crate::stop::StopRuleKind;
use crate::window::WindowTelemetry;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

/// A device in virtual time: work at `busy_w`, idle at `idle_w`, a counter that
/// updates every `period_s`, telemetry every 50 ms with a temperature that
/// approaches 60 °C with a time constant of `tau_s` while busy.
struct World {
    now: f64,
    energy: f64,
    next_tick: f64,
    next_sample: f64,
    period_s: f64,
    idle_w: f64,
    temp_c: f64,
    tau_s: f64,
    updates: Vec<CounterUpdate>,
    samples: Vec<TelemetrySample>,
    /// Telemetry reports a thermal slowdown while busy until then.
    brake_until_s: f64,
}

impl World {
    fn advance(&mut self, dt: f64, w: f64) {
        let end = self.now + dt;
        loop {
            let next = self.next_tick.min(self.next_sample).min(end);
            let h = next - self.now;
            self.energy += w * h;
            let target = if w > self.idle_w { 60.0 } else { 30.0 };
            self.temp_c = target + (self.temp_c - target) * (-h / self.tau_s).exp();
            self.now = next;
            if self.period_s > 0.0 && self.now >= self.next_tick {
                self.updates.push(CounterUpdate {
                    time_s: self.now,
                    joules: self.energy,
                });
                self.next_tick += self.period_s;
            }
            if self.now >= self.next_sample {
                self.samples.push(TelemetrySample {
                    time_s: self.now,
                    telemetry: Telemetry {
                        power_w: Some(w),
                        temperature_c: Some(self.temp_c.round() as u32),
                        throttle_reasons: if w > self.idle_w && self.now < self.brake_until_s {
                            vec!["hw-thermal-slowdown".into()]
                        } else {
                            Vec::new()
                        },
                        ..Telemetry::default()
                    },
                });
                self.next_sample += 0.05;
            }
            if self.now >= end {
                break;
            }
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
        Ok(self.0 .0.borrow().energy)
    }
    fn update_period_s(&self) -> f64 {
        self.0 .0.borrow().period_s
    }
    fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
        Ok(std::mem::take(&mut self.0 .0.borrow_mut().updates))
    }
    fn take_telemetry(&mut self) -> Result<Vec<TelemetrySample>, MeterError> {
        Ok(std::mem::take(&mut self.0 .0.borrow_mut().samples))
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
        // noise scales power: J/op varies, time per op does not
        let t = self.seconds_per_iter * n as f64;
        self.world.0.borrow_mut().advance(t, self.busy_w * f);
        Ok(RunTiming {
            wall_s: t,
            device_s: Some(t),
        })
    }
}

fn setup(period_s: f64, tau_s: f64, noise: Vec<f64>) -> (FakeClock, FakeMeter, FakeKernel) {
    let w = Shared(Rc::new(RefCell::new(World {
        now: 0.0,
        energy: 0.0,
        next_tick: period_s,
        next_sample: 0.05,
        period_s,
        idle_w: 50.0,
        temp_c: 30.0,
        tau_s,
        updates: Vec::new(),
        samples: Vec::new(),
        brake_until_s: 0.0,
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

fn run_with(period_s: f64, tau_s: f64, noise: Vec<f64>, cfg: &ProtocolConfig) -> Measurement {
    let (clock, mut meter, mut kernel) = setup(period_s, tau_s, noise);
    let mut ctx = MeasureContext {
        meter: &mut meter,
        clock: &clock,
        config: cfg,
        idle: Some(IdleBaseline {
            watts: 50.0,
            seconds: 1.0,
        }),
        cap_requested: false,
        stop: None,
    };
    measure(&mut kernel, FLOP, &mut ctx).unwrap()
}

#[test]
fn steady_work_stops_at_min_windows_with_exact_energy() {
    let cfg = ProtocolConfig::default();
    let m = run_with(0.1, 2.0, vec![1.0], &cfg);
    assert_eq!(m.windows.len(), cfg.min_windows as usize);
    assert!(m.flags.is_empty(), "{:?}", m.flags);
    assert_eq!(m.method, WindowMethod::Busy);
    // 300 W × 1 ms per op = 0.3 J/op, and every window's power is the work's
    let j = m.summary.joules_per_op.unwrap().median;
    assert!((j - 0.3).abs() / 0.3 < 1e-3, "joules per op {j}");
    assert!((m.summary.average_w.unwrap() - 300.0).abs() < 0.5);
    assert!(m.windows.iter().all(|w| w.seconds >= 1.0 - 1e-9));
    assert_eq!(m.stop.as_ref().unwrap().reason, StopReason::Converged);
}

#[test]
fn window_spans_ten_counter_updates_when_they_are_slow() {
    let m = run_with(0.25, 2.0, vec![1.0], &ProtocolConfig::default());
    assert!((m.window_target_s - 2.5).abs() < 1e-9);
    assert!(
        m.windows.iter().all(|w| w.seconds >= 2.5 - 1e-6),
        "{:?}",
        m.windows[0]
    );
}

#[test]
fn warm_up_lasts_until_temperature_settles_within_its_bound() {
    let cfg = ProtocolConfig::default();
    let slow = run_with(0.1, 5.0, vec![1.0], &cfg);
    // it had a whole settle window at load before it could settle
    assert!(slow.warmup_s >= cfg.settle_window_s);
    assert_eq!(slow.warmup_settled, Some(true));
    // 30 → 60 °C with τ = 5 s: the slope is 0.1 °C/s after about 5·ln(60) ≈ 20 s,
    // and the slope over the trailing 10 s is under it about 5 s later
    assert!(
        slow.warmup_s > 15.0 && slow.warmup_s <= cfg.warmup_max_s,
        "{}",
        slow.warmup_s
    );
    let bounded = ProtocolConfig {
        warmup_max_s: 5.0,
        ..ProtocolConfig::default()
    };
    let m = run_with(0.1, 8.0, vec![1.0], &bounded);
    assert_eq!(m.warmup_settled, Some(false));
    assert!(m.warmup_s < 5.2, "{}", m.warmup_s);
    assert!(m.flags.contains(&ValidityFlag::Unsettled), "{:?}", m.flags);
    assert_eq!(m.telemetry.temperature_warmup_start_c, Some(30.0));
    assert!(m.telemetry.temperature_end_c.unwrap() > m.telemetry.temperature_start_c.unwrap());
}

#[test]
fn noisy_work_ends_early_when_its_estimate_stops_moving_and_is_flagged() {
    // per-block power swings ±30% irregularly: J/FLOP per window varies by a few %
    let noise: Vec<f64> = (0..997u64)
        .map(|i| 0.7 + 0.6 * ((i * 7919 % 997) as f64 / 997.0))
        .collect();
    let cfg = ProtocolConfig {
        max_windows: 8,
        ..ProtocolConfig::default()
    };
    let m = run_with(0.1, 2.0, noise.clone(), &cfg);
    assert!(m.windows.len() < 8, "{}", m.windows.len());
    assert!(m.flags.contains(&ValidityFlag::HighSpread), "{:?}", m.flags);
    assert_eq!(m.stop.unwrap().reason, StopReason::EstimateStable);
    // without the stability check it runs to its window count, as flagged
    let full = ProtocolConfig {
        stop_when_stable: false,
        ..cfg
    };
    let m = run_with(0.1, 2.0, noise, &full);
    assert_eq!(m.windows.len(), 8);
    assert!(m.flags.contains(&ValidityFlag::HighSpread), "{:?}", m.flags);
    assert_eq!(m.stop.unwrap().reason, StopReason::WindowCount);
}

#[test]
fn every_rule_stops_within_the_loops_limits() {
    let noise: Vec<f64> = (0..997u64)
        .map(|i| 0.7 + 0.6 * ((i * 7919 % 997) as f64 / 997.0))
        .collect();
    for rule in StopRuleKind::ALL {
        let cfg = ProtocolConfig {
            stop_rule: rule,
            stop_when_stable: false,
            min_windows: 3,
            max_windows: 6,
            ..ProtocolConfig::default()
        };
        let m = run_with(0.1, 2.0, noise.clone(), &cfg);
        let n = m.windows.len();
        let stop = m.stop.unwrap();
        assert_eq!(stop.rule, rule.name());
        match rule {
            StopRuleKind::FixedCount => assert_eq!(n, 3),
            _ => assert!((3..=6).contains(&n), "{rule:?}: {n}"),
        }
    }
    // steady work converges under the standard-error rule at the minimum
    let cfg = ProtocolConfig {
        stop_rule: StopRuleKind::StdError,
        ..ProtocolConfig::default()
    };
    let m = run_with(0.1, 2.0, vec![1.0], &cfg);
    assert_eq!(m.windows.len(), 3);
    assert_eq!(m.stop.unwrap().reason, StopReason::Converged);
}

#[test]
fn the_time_budget_stops_a_point_after_min_windows() {
    let cfg = ProtocolConfig {
        point_budget_s: 6.0,
        warmup_max_s: 2.0,
        max_windows: 50,
        ..ProtocolConfig::default()
    };
    let noise = (0..997u64)
        .map(|i| 0.7 + 0.6 * ((i * 7919 % 997) as f64 / 997.0))
        .collect();
    let m = run_with(0.1, 2.0, noise, &cfg);
    let total = m.warmup_s + m.windows.iter().map(|w| w.seconds).sum::<f64>();
    assert!(m.windows.len() >= cfg.min_windows as usize);
    assert!(
        total < cfg.point_budget_s + 1.5,
        "ran {total} s on a 6 s budget"
    );
}

#[test]
fn fixed_count_takes_exactly_its_windows() {
    let cfg = ProtocolConfig {
        stop_rule: StopRuleKind::FixedCount,
        min_windows: 4,
        ..ProtocolConfig::default()
    };
    let m = run_with(0.1, 2.0, vec![1.0], &cfg);
    assert_eq!(m.windows.len(), 4);
    assert_eq!(m.stop.unwrap().rule, "fixed-count");
}

#[test]
fn no_meter_measures_time_only_and_says_so() {
    let (clock, _m, mut kernel) = setup(0.1, 2.0, vec![1.0]);
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
        stop: None,
    };
    let m = measure(&mut kernel, FLOP, &mut ctx).unwrap();
    assert!(m.summary.joules_per_flop.is_none());
    assert!(m.flags.contains(&ValidityFlag::NoEnergy));
    assert_eq!(m.warmup_settled, None);
    assert!((m.summary.seconds_per_op.median - 1e-3).abs() < 1e-9);
}

#[test]
fn a_card_at_its_power_limit_is_power_limited_not_throttled() {
    let d = |reasons: &[&str], clock: f64, limit: f64| WindowTelemetry {
        samples: 10,
        sm_clock_mhz: Range::of(&[clock]),
        default_sm_clock_mhz: Some(1980),
        throttle_reasons: reasons.iter().map(|s| s.to_string()).collect(),
        enforced_power_limit_w: Some(limit),
        ..WindowTelemetry::default()
    };
    let w = |t: WindowTelemetry| Window {
        iterations: 1.0,
        seconds: 1.0,
        joules: Some(690.0),
        during: Some(t),
        ..Window::default()
    };
    let s = summarize(&[w(d(&[], 1300.0, 700.0))], 1, None);
    let at_limit = [w(d(&["sw-power-cap"], 1290.0, 700.0))];
    assert_eq!(
        clock_flags(&at_limit, &s, false),
        vec![ValidityFlag::PowerLimited]
    );
    let hot = [w(d(
        &["sw-power-cap", "hw-thermal-slowdown"],
        1200.0,
        700.0,
    ))];
    assert_eq!(
        clock_flags(&hot, &s, false),
        vec![ValidityFlag::PowerLimited, ValidityFlag::Throttled]
    );
    // a low clock with no power reason and far under the limit is throttling
    let low = [w(d(&[], 900.0, 2000.0))];
    let s_low = summarize(&low, 1, None);
    assert_eq!(
        clock_flags(&low, &s_low, false),
        vec![ValidityFlag::Throttled]
    );
    assert!(clock_flags(&low, &s_low, true).is_empty());
    // the self-check: average power well above the enforced limit
    let over = [w(d(&["sw-power-cap"], 1290.0, 650.0))];
    let flags = clock_flags(&over, &summarize(&over, 1, None), false);
    assert!(flags.contains(&ValidityFlag::AboveLimit), "{flags:?}");
    assert!(!ValidityFlag::PowerLimited.is_caution() && ValidityFlag::Throttled.is_caution());
}

#[test]
fn host_energy_is_summarised_alone_and_with_the_gpus_only_when_every_window_has_it() {
    let w = |host: Option<f64>| Window {
        iterations: 10.0,
        seconds: 2.0,
        joules: Some(600.0),
        host_joules: host,
        ..Window::default()
    };
    let s = summarize(&[w(Some(200.0)), w(Some(200.0))], 1000, None);
    let h = s.host.unwrap();
    // 200 J over 10 ops of 1000 FLOP; the GPU adds 600 J
    assert!((h.host_joules_per_flop.median - 0.02).abs() < 1e-12);
    assert!((h.gpu_and_host_joules_per_flop.unwrap().median - 0.08).abs() < 1e-12);
    assert!((h.host_average_w - 100.0).abs() < 1e-9);
    assert!(summarize(&[w(Some(200.0)), w(None)], 1000, None)
        .host
        .is_none());
    // an old record without host energy still reads, and writes no `host`
    let json = serde_json::to_value(summarize(&[w(None)], 1000, None)).unwrap();
    assert!(json.get("host").is_none(), "{json}");
    let back: Summary = serde_json::from_value(json).unwrap();
    assert!(back.host.is_none());
}

#[test]
fn invalid_settings_are_refused() {
    for bad in [
        ProtocolConfig {
            min_windows: 1,
            ..ProtocolConfig::default()
        },
        ProtocolConfig {
            target_rel_spread: 0.0,
            ..ProtocolConfig::default()
        },
        ProtocolConfig {
            max_windows: 2,
            min_windows: 3,
            ..ProtocolConfig::default()
        },
        ProtocolConfig {
            warmup_s: 1e308,
            warmup_max_s: 1e308,
            ..ProtocolConfig::default()
        },
        ProtocolConfig {
            warmup_max_s: 0.5,
            ..ProtocolConfig::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

#[test]
fn a_quick_protocol_bounds_its_points() {
    let cfg = ProtocolConfig {
        warmup_max_s: 4.0,
        max_windows: 4,
        point_budget_s: 8.0,
        ..ProtocolConfig::default()
    };
    let bound = cfg.point_bound_s(0.1);
    assert!(bound > 7.0 && bound < 13.0, "{bound}");
    assert!(cfg.point_typical_s(0.1) < bound);
}

/// A kernel whose timestamps leave out a flush before each iteration, on the
/// engine's world; the flush draws as much as the kernel.
struct Flushing(FakeKernel);
impl PreparedKernel for Flushing {
    fn run_for_check(&mut self, inputs: &CheckInputs) -> Result<Vec<f32>, BackendError> {
        self.0.run_for_check(inputs)
    }
    fn run(&mut self, n: u64) -> Result<RunTiming, BackendError> {
        let t = self.0.run(n)?;
        // a tenth of each iteration is the flush, outside device time
        Ok(RunTiming {
            wall_s: t.wall_s,
            device_s: t.device_s.map(|d| 0.9 * d),
        })
    }
    fn work_besides_kernel(&self) -> Option<String> {
        Some("a flush before every iteration".into())
    }
}

#[test]
fn one_time_base_with_device_time_beside_and_work_besides_the_kernel_recorded() {
    let cfg = ProtocolConfig::default();
    let (clock, mut meter, kernel) = setup(0.1, 2.0, vec![1.0]);
    let mut flushing = Flushing(kernel);
    let mut ctx = MeasureContext {
        meter: &mut meter,
        clock: &clock,
        config: &cfg,
        idle: None,
        cap_requested: false,
        stop: None,
    };
    let m = measure(&mut flushing, FLOP, &mut ctx).unwrap();
    let s = &m.summary;
    assert_eq!(s.time_base, TimeBase::Window);
    // J/op, time per op and average power over the same interval agree exactly
    let j = s.joules_per_op.unwrap().median;
    assert!((j / s.seconds_per_op.median / s.average_w.unwrap() - 1.0).abs() < 1e-3);
    assert!((s.seconds_per_op.median - 1e-3).abs() / 1e-3 < 1e-3);
    // the kernel's own time leaves the flush out, and is named as such
    let device = s.device_seconds_per_op.unwrap().median;
    assert!((device / s.seconds_per_op.median - 0.9).abs() < 1e-3);
    assert!((s.device_tflops.unwrap() / s.tflops - 1.0 / 0.9).abs() < 1e-3);
    let besides = m.besides_kernel.as_ref().unwrap();
    assert_eq!(besides.placement, BesidesKernelPlacement::InWindow);
    // timestamps that leave work out cannot tell idle time from it
    assert!(m.windows.iter().all(|w| w.idle_share.is_none()));
    assert!(!m.flags.contains(&ValidityFlag::IdleInWindow));
}

#[test]
fn a_window_the_device_idled_in_is_flagged() {
    // 20 µs of every 1 ms block idle: 2%
    struct Gappy(FakeKernel);
    impl PreparedKernel for Gappy {
        fn run_for_check(&mut self, i: &CheckInputs) -> Result<Vec<f32>, BackendError> {
            self.0.run_for_check(i)
        }
        fn run(&mut self, n: u64) -> Result<RunTiming, BackendError> {
            let t = self.0.run(n)?;
            let idle = 0.02 * t.wall_s;
            self.0.world.0.borrow_mut().advance(idle, 50.0);
            Ok(RunTiming {
                wall_s: t.wall_s + idle,
                device_s: t.device_s,
            })
        }
    }
    let cfg = ProtocolConfig::default();
    let (clock, mut meter, kernel) = setup(0.1, 2.0, vec![1.0]);
    let mut gappy = Gappy(kernel);
    let mut ctx = MeasureContext {
        meter: &mut meter,
        clock: &clock,
        config: &cfg,
        idle: None,
        cap_requested: false,
        stop: None,
    };
    let m = measure(&mut gappy, FLOP, &mut ctx).unwrap();
    let share = m.windows[0].idle_share.unwrap();
    assert!((share - 0.02 / 1.02).abs() < 2e-3, "{share}");
    assert!(
        m.flags.contains(&ValidityFlag::IdleInWindow),
        "{:?}",
        m.flags
    );
    // steady work with no gaps is not flagged
    let m = run_with(0.1, 2.0, vec![1.0], &cfg);
    assert!(m.windows.iter().all(|w| w.idle_share == Some(0.0)));
    assert!(!m.flags.contains(&ValidityFlag::IdleInWindow));
}

#[test]
fn throttled_windows_are_dropped_with_a_cool_down_that_grows() {
    let cfg = ProtocolConfig {
        drop_throttled: true,
        throttle_cooldown_s: 0.5,
        ..ProtocolConfig::default()
    };
    let (clock, mut meter, mut kernel) = setup(0.1, 2.0, vec![1.0]);
    // the card reports a thermal slowdown until some 8 s after the warm-up (16 s)
    kernel.world.0.borrow_mut().brake_until_s = 24.0;
    let mut ctx = MeasureContext {
        meter: &mut meter,
        clock: &clock,
        config: &cfg,
        idle: None,
        cap_requested: false,
        stop: None,
    };
    let m = measure(&mut kernel, FLOP, &mut ctx).unwrap();
    assert!(
        m.throttled_windows_dropped >= 3,
        "{} dropped after a warm-up of {} s",
        m.throttled_windows_dropped,
        m.warmup_s
    );
    // 0.5 s, then 1 s, then 2 s …
    let n = m.throttled_windows_dropped as i32;
    let expected: f64 = (0..n).map(|i| 0.5 * 2f64.powi(i).min(16.0)).sum();
    assert!(
        (m.cooldown_s - expected).abs() < 1e-9,
        "{} vs {expected}",
        m.cooldown_s
    );
    assert!(!m.flags.contains(&ValidityFlag::Throttled), "{:?}", m.flags);
    assert_eq!(m.windows.len(), cfg.min_windows as usize);
    // kept, where not asked to drop them: flagged
    let (clock, mut meter, mut kernel) = setup(0.1, 2.0, vec![1.0]);
    kernel.world.0.borrow_mut().brake_until_s = 1e9;
    let cfg = ProtocolConfig::default();
    let mut ctx = MeasureContext {
        meter: &mut meter,
        clock: &clock,
        config: &cfg,
        idle: None,
        cap_requested: false,
        stop: None,
    };
    let m = measure(&mut kernel, FLOP, &mut ctx).unwrap();
    assert_eq!(m.throttled_windows_dropped, 0);
    assert!(m.flags.contains(&ValidityFlag::Throttled), "{:?}", m.flags);
}
