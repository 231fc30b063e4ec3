//! The protocol's error, measured: the simulated device knows its true energy and
//! misbehaves like a real card (power that stays above idle for hundreds of
//! milliseconds after work stops, a sensor that sees a quarter of the time, a
//! power limiter, leakage that grows with temperature). The busy-window protocol
//! must come within 0.3% of the truth with its average power at or under the
//! limit; the gapped protocol that joulebench used before (reproduced here) is
//! shown to be off by more than 1% with an average power above the limit, as it
//! was on an H200.

use joulebench_core::protocol::{
    measure, IdleBaseline, MeasureContext, ProtocolConfig, ValidityFlag,
};
use joulebench_core::{
    Backend, Clock, EnergyMeter, MatmulShape, Precision, PreparedKernel, Workload,
};
use joulebench_energy::sim::SimDevice;
use std::time::Duration;

fn square(n: u64) -> Workload {
    Workload::Matmul(MatmulShape {
        batch: 1,
        m: n,
        n,
        k: n,
    })
}

/// Run the kernel for `seconds` of device time, so the die reaches the thermal
/// steady state the measurement will run at.
fn preheat(k: &mut dyn PreparedKernel, seconds: f64) {
    let mut t = 0.0;
    while t < seconds {
        t += k.run(50).unwrap().wall_s;
    }
}

struct Outcome {
    joules_per_op: f64,
    true_joules_per_op: f64,
    average_w: f64,
}

impl Outcome {
    fn error(&self) -> f64 {
        (self.joules_per_op - self.true_joules_per_op) / self.true_joules_per_op
    }
}

/// The busy-window protocol, as `joulebench sweep` runs it.
fn busy_protocol(kernel: &str, precision: Precision, w: Workload) -> (Outcome, Vec<ValidityFlag>) {
    let mut dev = SimDevice::open("sim-h100", 0, 3).unwrap();
    let truth = dev.truth();
    let flop = w.flop().unwrap();
    let mut k = dev.backend.prepare(kernel, precision, &w, 1).unwrap();
    preheat(k.as_mut(), 240.0);
    let before = truth.snapshot();
    let cfg = ProtocolConfig::default();
    let mut ctx = MeasureContext {
        meter: &mut dev.meter,
        clock: dev.clock.as_ref(),
        config: &cfg,
        idle: Some(IdleBaseline {
            watts: 120.0,
            seconds: 3.0,
        }),
        cap_requested: false,
        stop: None,
    };
    let m = measure(k.as_mut(), flop, &mut ctx).unwrap();
    let after = truth.snapshot();
    (
        Outcome {
            joules_per_op: m.summary.joules_per_op.unwrap().median,
            true_joules_per_op: (after.busy_energy_j - before.busy_energy_j)
                / (after.busy_iterations - before.busy_iterations),
            average_w: m.summary.average_w.unwrap(),
        },
        m.flags,
    )
}

/// The protocol of schema-1 records: four blocks per window with 10–30 ms sleeps
/// between them, a window started on a counter update after an idle wait for it,
/// an idle wait for the closing update, idle power subtracted for every gap and the
/// rest divided by the busy time.
fn gapped_protocol(precision: Precision, w: Workload) -> Outcome {
    let mut dev = SimDevice::open("sim-h100", 0, 3).unwrap();
    let truth = dev.truth();
    let clock = dev.clock.clone();
    let mut k = dev.backend.prepare("sim-vendor", precision, &w, 1).unwrap();
    preheat(k.as_mut(), 240.0);
    let idle_w = 120.0;
    let spi = k.run(20).unwrap().device_s.unwrap() / 20.0;
    let block = ((1.0 / 4.0) / spi).ceil() as u64;
    let await_update = |meter: &mut dyn EnergyMeter| {
        let first = meter.energy_j().unwrap();
        loop {
            clock.sleep(Duration::from_millis(1));
            let e = meter.energy_j().unwrap();
            if e != first {
                return e;
            }
        }
    };
    let (mut jpo, mut watts, mut true_jpo) = (Vec::new(), Vec::new(), Vec::new());
    for window in 0..3 {
        let e0 = await_update(&mut dev.meter);
        let truth0 = truth.snapshot();
        let (mut busy, mut gaps) = (0.0, 0.0);
        for b in 0..4 {
            busy += k.run(block).unwrap().wall_s;
            if b < 3 {
                let g = 0.02 * (0.5 + ((window * 3 + b) as f64 * 0.618).fract());
                clock.sleep(Duration::from_secs_f64(g));
                gaps += g;
            }
        }
        let work_end = clock.now_s();
        let e1 = await_update(&mut dev.meter);
        gaps += clock.now_s() - work_end;
        let truth1 = truth.snapshot();
        let j = (e1 - e0 - idle_w * gaps) / (4 * block) as f64;
        jpo.push(j);
        watts.push(j * (4 * block) as f64 / busy);
        true_jpo.push(
            (truth1.busy_energy_j - truth0.busy_energy_j)
                / (truth1.busy_iterations - truth0.busy_iterations),
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Outcome {
        joules_per_op: median(&mut jpo),
        true_joules_per_op: median(&mut true_jpo),
        average_w: median(&mut watts),
    }
}

#[test]
fn busy_windows_are_within_a_third_of_a_percent_at_the_power_limit() {
    let (busy, flags) = busy_protocol("sim-vendor", Precision::Bf16, square(8192));
    eprintln!(
        "busy windows, bf16 8192³ at the 700 W limit: error {:+.3}%, average {:.1} W",
        100.0 * busy.error(),
        busy.average_w
    );
    assert!(
        busy.error().abs() < 0.003,
        "error {:+.3}%",
        100.0 * busy.error()
    );
    assert!(busy.average_w <= 700.0 + 1e-6, "{} W", busy.average_w);
    assert!(busy.average_w > 690.0, "{} W", busy.average_w);
    assert!(flags.contains(&ValidityFlag::PowerLimited), "{flags:?}");
    assert!(!flags.contains(&ValidityFlag::Throttled), "{flags:?}");
    assert!(!flags.contains(&ValidityFlag::AboveLimit), "{flags:?}");
}

#[test]
fn busy_windows_are_within_a_third_of_a_percent_below_the_limit() {
    let (busy, flags) = busy_protocol("sim-ours", Precision::F32, square(4096));
    eprintln!(
        "busy windows, our f32 4096³ under the limit: error {:+.3}%, average {:.1} W",
        100.0 * busy.error(),
        busy.average_w
    );
    assert!(
        busy.error().abs() < 0.003,
        "error {:+.3}%",
        100.0 * busy.error()
    );
    assert!(busy.average_w < 690.0, "{} W", busy.average_w);
    assert!(!flags.contains(&ValidityFlag::PowerLimited), "{flags:?}");
}

#[test]
fn gapped_windows_overstate_energy_and_read_above_the_limit() {
    let old = gapped_protocol(Precision::Bf16, square(8192));
    eprintln!(
        "gapped windows, bf16 8192³ at the 700 W limit: error {:+.3}%, average {:.1} W",
        100.0 * old.error(),
        old.average_w
    );
    assert!(old.error() > 0.01, "error {:+.3}%", 100.0 * old.error());
    assert!(old.average_w > 700.0 * 1.01, "{} W", old.average_w);
}

#[test]
fn warm_up_waits_for_the_die_to_settle_from_cold() {
    let mut dev = SimDevice::open("sim-h100", 0, 5).unwrap();
    let truth = dev.truth();
    let w = square(8192);
    let cold = truth.temperature_c();
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &w, 1)
        .unwrap();
    let cfg = ProtocolConfig::default();
    let mut ctx = MeasureContext {
        meter: &mut dev.meter,
        clock: dev.clock.as_ref(),
        config: &cfg,
        idle: None,
        cap_requested: false,
        stop: None,
    };
    let m = measure(k.as_mut(), w.flop().unwrap(), &mut ctx).unwrap();
    let t = &m.telemetry;
    eprintln!(
        "from {cold:.1} °C: warm-up {:.1} s, settled {:?}, {:?} → {:?} °C",
        m.warmup_s, m.warmup_settled, t.temperature_start_c, t.temperature_end_c
    );
    assert_eq!(m.warmup_settled, Some(true));
    assert!(
        m.warmup_s > 5.0 && m.warmup_s < cfg.warmup_max_s,
        "{}",
        m.warmup_s
    );
    let (start, end) = (t.temperature_start_c.unwrap(), t.temperature_end_c.unwrap());
    assert!(start > cold + 15.0, "{cold} → {start}");
    assert!(
        (end - start).abs() <= 1.0,
        "drift during the windows: {start} → {end}"
    );
    assert!(!m.flags.contains(&ValidityFlag::Unsettled));
}
