//! The simulated device's physics and each of its imperfections, one test each:
//! what the model promises, checked in virtual time.

use super::*;
use joulebench_core::inputs::InputDistribution;
use joulebench_core::meter::EnergyMeter;
use joulebench_core::precision::Precision;
use joulebench_core::workload::{AttentionShape, MatmulShape, Workload};
use joulebench_core::{Backend, Clock, PreparedKernel};
use std::time::Duration;

fn square(n: u64) -> Workload {
    Workload::Matmul(MatmulShape {
        batch: 1,
        m: n,
        n,
        k: n,
    })
}

fn vendor() -> &'static SimKernel {
    kernel("sim-vendor").unwrap()
}

/// `name` with every imperfection off but `imperfections`' own.
fn with(name: &str, imperfections: Imperfections) -> SimProfile {
    profile(name).unwrap().with_imperfections(imperfections)
}

fn run_for(k: &mut dyn PreparedKernel, seconds: f64) {
    let mut t = 0.0;
    while t < seconds {
        t += k.run(20).unwrap().wall_s;
    }
}

#[test]
fn lower_cap_means_lower_power_and_longer_time() {
    let p = profile("sim-h200").unwrap();
    let mut last: Option<OperatingPoint> = None;
    for cap in [700.0, 600.0, 500.0, 400.0, 300.0] {
        let op = p.operating_point(vendor(), Precision::Bf16, &square(8192), cap);
        assert!(op.power_w <= cap + 1e-6, "cap {cap}: {op:?}");
        if let Some(prev) = last {
            assert!(op.power_w < prev.power_w, "power must fall with the cap");
            assert!(
                op.seconds_per_op > prev.seconds_per_op,
                "time must grow as the cap falls"
            );
        }
        last = Some(op);
    }
}

#[test]
fn heavy_tensor_core_work_sits_at_the_default_limit_at_the_h200s_clock() {
    // the H200 ran bf16 and fp8 GEMMs at 1290–1500 MHz under its 700 W limit
    let p = profile("sim-h200").unwrap();
    for precision in [Precision::Bf16, Precision::Fp8E4m3] {
        for n in [4096, 8192] {
            let op = p.operating_point(vendor(), precision, &square(n), 700.0);
            let mhz = op.clock_fraction * p.max_sm_clock_mhz as f64;
            assert!(op.power_limited, "{precision}: {op:?}");
            assert!(
                (1290.0..=1500.0).contains(&mhz),
                "{precision}: {mhz:.0} MHz"
            );
        }
    }
    // f32 SIMT work stays under the limit at full clock
    let f32 = p.operating_point(vendor(), Precision::F32, &square(8192), 700.0);
    assert!(!f32.power_limited && f32.clock_fraction == 1.0, "{f32:?}");
}

#[test]
fn moderate_cap_saves_energy_on_compute_bound_work() {
    let p = profile("sim-h200").unwrap();
    let e = |o: OperatingPoint| o.power_w * o.seconds_per_op;
    let full = p.operating_point(vendor(), Precision::Bf16, &square(8192), 700.0);
    // the default limit already holds the clock near 70%: a further 20% saves less
    let capped = p.operating_point(vendor(), Precision::Bf16, &square(8192), 560.0);
    assert!(e(capped) < 0.96 * e(full), "{} vs {}", e(capped), e(full));
    assert!(capped.seconds_per_op > 1.1 * full.seconds_per_op);
}

#[test]
fn attention_backward_costs_more_than_its_forward_and_unfused_costs_memory() {
    let p = profile("sim-h200").unwrap();
    let s = AttentionShape {
        batch: 1,
        heads: 32,
        seq_q: 4096,
        seq_kv: 4096,
        head_dim: 128,
        causal: true,
    };
    let at =
        |k: &str, w: Workload| p.operating_point(kernel(k).unwrap(), Precision::Bf16, &w, 700.0);
    let fwd = at("sim-fused", Workload::Attention(s));
    let bwd = at("sim-fused-bwd", Workload::AttentionBackward(s));
    // 2.5× the FLOP at a lower efficiency: more than 2.5× the time
    assert!(
        bwd.seconds_per_op > 2.5 * fwd.seconds_per_op,
        "{bwd:?} vs {fwd:?}"
    );
    // the unfused backward moves 10 score-sized matrices: memory time of its own
    let unfused = at("sim-unfused-bwd", Workload::AttentionBackward(s));
    assert!(unfused.memory_utilisation > 0.3, "{unfused:?}");
    assert!(bwd.memory_utilisation < 0.2, "{bwd:?}");
    assert!(unfused.seconds_per_op > bwd.seconds_per_op);
}

#[test]
fn memory_bound_work_barely_notices_the_cap() {
    let p = profile("sim-h200").unwrap();
    let w = Workload::Matmul(MatmulShape {
        batch: 64,
        m: 1,
        n: 8192,
        k: 8192,
    });
    let full = p.operating_point(vendor(), Precision::F16, &w, 700.0);
    let capped = p.operating_point(vendor(), Precision::F16, &w, 400.0);
    assert!(full.memory_utilisation > 0.9);
    assert!((capped.seconds_per_op / full.seconds_per_op) < 1.02);
}

#[test]
fn energy_per_flop_has_its_minimum_below_the_maximum_clock() {
    let p = profile("sim-h200").unwrap();
    let energy = |phi: f64| {
        let op = p.settled_point(
            vendor(),
            Precision::Bf16,
            &square(8192),
            10_000.0,
            (phi, phi),
        );
        op.power_w * op.seconds_per_op
    };
    let clocks: Vec<f64> = (5..=20).map(|i| i as f64 / 20.0).collect();
    let (best, _) = clocks
        .iter()
        .map(|&c| (c, energy(c)))
        .fold((1.0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
    assert!(
        best > p.v_knee_fraction && best < 0.9,
        "minimum at φ = {best}"
    );
    assert!(energy(best) < 0.85 * energy(1.0));
}

#[test]
fn zeros_draw_less_power_and_at_the_limit_run_faster() {
    let p = profile("sim-h200").unwrap();
    let job = |inputs| Job {
        kernel: *vendor(),
        precision: Precision::Bf16,
        workload: square(8192),
        inputs,
    };
    let range = (p.min_clock_fraction(), 1.0);
    let normal = p.settled_job(&job(InputDistribution::Normal), 700.0, range);
    let zeros = p.settled_job(&job(InputDistribution::Zeros), 700.0, range);
    let sparse = p.settled_job(
        &job(InputDistribution::Sparse { zero_percent: 50 }),
        700.0,
        range,
    );
    // at the limit the power is the limit's; zeros buy clock, and so speed
    assert!(
        zeros.seconds_per_op < 0.8 * normal.seconds_per_op,
        "{zeros:?}"
    );
    assert!(sparse.seconds_per_op < normal.seconds_per_op);
    assert!(sparse.seconds_per_op > zeros.seconds_per_op);
    // at one clock, zeros draw far less
    let (n, z) = (
        p.at(&job(InputDistribution::Normal), 0.7, 50.0),
        p.at(&job(InputDistribution::Zeros), 0.7, 50.0),
    );
    assert!(
        z.power_w < 0.7 * n.power_w,
        "{} vs {} W",
        z.power_w,
        n.power_w
    );
    assert_eq!(
        p.at(&job(InputDistribution::Uniform), 0.7, 50.0).power_w,
        n.power_w
    );
}

#[test]
fn an_ideal_counter_updates_every_period_in_whole_millijoules() {
    let mut dev = SimDevice::open_profile(with("sim-h100", Imperfections::IDEAL), 0, 1);
    dev.clock.sleep(Duration::from_millis(50));
    assert_eq!(dev.meter.energy_j().unwrap(), 0.0, "no update yet");
    dev.clock.sleep(Duration::from_millis(60));
    let e = dev.meter.energy_j().unwrap();
    assert!(
        (e - 12.0).abs() < 1e-3,
        "one 100 ms update at 120 W idle: {e}"
    );
    assert_eq!((e * 1000.0).fract(), 0.0);
    let ups = dev.meter.take_updates().unwrap();
    assert_eq!(ups.len(), 1);
    assert!((ups[0].time_s - 0.1).abs() < 1e-9);
}

#[test]
fn an_aligned_sensor_sees_only_the_end_of_each_period() {
    // idle for the first 70 ms of a period, work for the last 30: the sensor's
    // 25 ms window sees only the work, and the counter books it for all 100 ms
    let mut dev = SimDevice::open_profile(with("sim-h100", Imperfections::IDEAL), 0, 1);
    let truth = dev.truth();
    dev.clock.sleep(Duration::from_millis(170));
    dev.meter.take_updates().unwrap();
    let e0 = truth.snapshot().energy_j;
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &square(2048), 1)
        .unwrap();
    while dev.clock.now_s() < 0.1995 {
        k.run(1).unwrap();
    }
    drop(k);
    let true_j = truth.snapshot().energy_j - e0 + 0.07 * 120.0;
    dev.clock
        .sleep(Duration::from_secs_f64(0.2001 - dev.clock.now_s()));
    let ups = dev.meter.take_updates().unwrap();
    assert_eq!(ups.len(), 1, "{ups:?}");
    let counted = ups[0].joules - 12.0;
    assert!(
        counted > 1.8 * true_j,
        "counted {counted} J of a true {true_j} J"
    );
}

#[test]
fn the_polling_thread_stamps_updates_late_and_later_behind_telemetry() {
    // without jitter every update falls on a telemetry query (100 ms is two 50 ms
    // telemetry periods): each is seen when the query returns, 3 ms late
    let queried = Imperfections {
        poll_interval_s: 0.001,
        telemetry_call_s: 0.003,
        ..Imperfections::IDEAL
    };
    let mut dev = SimDevice::open_profile(with("sim-h200", queried), 0, 1);
    dev.clock.sleep(Duration::from_secs_f64(2.01));
    let ups = dev.meter.take_updates().unwrap();
    assert_eq!(ups.len(), 20);
    for (i, u) in ups.iter().enumerate() {
        let late = u.time_s - 0.1 * (i + 1) as f64;
        assert!((late - 0.003).abs() < 1e-9, "update {i}: {late}");
    }
    // polled alone: up to a millisecond late, never early
    let polled = Imperfections {
        poll_interval_s: 0.001,
        ..Imperfections::IDEAL
    };
    let mut dev = SimDevice::open_profile(with("sim-h200", polled), 0, 1);
    dev.clock.sleep(Duration::from_secs_f64(2.01));
    let lates: Vec<f64> = dev
        .meter
        .take_updates()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, u)| u.time_s - 0.1 * (i + 1) as f64)
        .collect();
    assert!(lates.iter().all(|l| (0.0..=0.001).contains(l)), "{lates:?}");
    assert!(lates.iter().any(|l| *l > 0.0005), "{lates:?}");
    // an update not yet seen by the poller is not handed out
    let mut dev = SimDevice::open_profile(with("sim-h200", queried), 0, 1);
    dev.clock.sleep(Duration::from_secs_f64(0.1015));
    assert!(dev.meter.take_updates().unwrap().is_empty());
    dev.clock.sleep(Duration::from_secs_f64(0.002));
    assert_eq!(dev.meter.take_updates().unwrap().len(), 1);
}

#[test]
fn the_update_period_jitters_around_its_nominal_value() {
    let jitter = Imperfections {
        period_jitter_s: 0.0005,
        ..Imperfections::IDEAL
    };
    let mut dev = SimDevice::open_profile(with("sim-h200", jitter), 0, 4);
    dev.clock.sleep(Duration::from_secs(60));
    let ups = dev.meter.take_updates().unwrap();
    let periods: Vec<f64> = ups.windows(2).map(|w| w[1].time_s - w[0].time_s).collect();
    let n = periods.len() as f64;
    let mean = periods.iter().sum::<f64>() / n;
    let sd = (periods.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!((mean - 0.1).abs() < 2e-4, "{mean}");
    assert!(sd > 0.0003 && sd < 0.0007, "{sd}");
}

#[test]
fn the_limiter_steps_the_clock_in_bins_and_oscillates_around_the_limit() {
    let mut dev = SimDevice::open("sim-h200", 0, 2).unwrap();
    let truth = dev.truth();
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &square(8192), 1)
        .unwrap();
    run_for(k.as_mut(), 20.0);
    dev.meter.take_telemetry().unwrap();
    truth.start_trace();
    let t0 = dev.clock.now_s();
    run_for(k.as_mut(), 2.0);
    let t1 = dev.clock.now_s();
    let clocks: Vec<u32> = dev
        .meter
        .take_telemetry()
        .unwrap()
        .iter()
        .filter_map(|s| s.telemetry.sm_clock_mhz)
        .collect();
    assert!(clocks.iter().all(|c| (c - 345) % 15 == 0), "{clocks:?}");
    let (lo, hi) = (clocks.iter().min().unwrap(), clocks.iter().max().unwrap());
    assert!(hi > lo && hi - lo <= 45, "{lo}–{hi} MHz");
    // on average the board sits at the limit, whatever the bins
    let span = truth.between(t0, t1).unwrap();
    let watts = span.energy_j / span.seconds;
    assert!((watts - 700.0).abs() < 3.0, "{watts} W");
    // and the pace within a block is uneven: iterations per 2 ms differ by bin
    let rates: Vec<f64> = (0..200)
        .filter_map(|i| {
            let a = t0 + 0.005 * i as f64;
            truth
                .between(a, a + 0.002)
                .map(|s| s.iterations / s.busy_seconds)
        })
        .filter(|r| r.is_finite() && *r > 0.0)
        .collect();
    let (slow, fast) = rates
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), r| (a.min(*r), b.max(*r)));
    assert!(fast / slow > 1.01, "pace {slow}–{fast} iterations/s");
}

#[test]
fn hosts_leave_gaps_between_blocks_as_their_backends_do() {
    for (gaps, n) in [(HostGaps::CUDA, 10u64), (HostGaps::WGPU, 10)] {
        let imp = Imperfections {
            host_gaps: gaps,
            ..Imperfections::REALISTIC
        };
        let mut dev = SimDevice::open_profile(with("sim-h200", imp), 0, 1);
        let mut k = dev
            .backend
            .prepare("sim-vendor", Precision::Bf16, &square(1024), 1)
            .unwrap();
        let t = k.run(n).unwrap();
        let gap = t.wall_s - t.device_s.unwrap();
        assert!((gap - gaps.after_block_s(n)).abs() < 1e-12, "{gap}");
    }
    assert!(HostGaps::WGPU.after_block_s(10) > 10.0 * HostGaps::CUDA.after_block_s(10));
}

#[test]
fn a_boards_gain_error_passes_into_every_reading() {
    let energy_ratio = |index: usize| {
        let mut dev = SimDevice::open("sim-h200", index, 9).unwrap();
        let truth = dev.truth();
        let mut k = dev
            .backend
            .prepare("sim-vendor", Precision::Bf16, &square(4096), 1)
            .unwrap();
        run_for(k.as_mut(), 5.0);
        dev.meter.take_updates().unwrap();
        truth.start_trace();
        run_for(k.as_mut(), 20.0);
        let ups = dev.meter.take_updates().unwrap();
        let (a, b) = (ups[0], ups[ups.len() - 1]);
        let span = truth.between(a.time_s, b.time_s).unwrap();
        ((b.joules - a.joules) / span.energy_j, truth.counter_gain())
    };
    let (first, gain0) = energy_ratio(0);
    assert_eq!(gain0, 1.025);
    assert!((first - 1.025).abs() < 0.005, "{first}");
    let (second, gain1) = energy_ratio(1);
    assert!(gain1 != gain0 && (gain1 - 1.025).abs() <= 0.02, "{gain1}");
    assert!((second - gain1).abs() < 0.005, "{second}");
}

#[test]
fn unfused_attention_runs_its_gemm_and_softmax_phases_in_turn() {
    let s = AttentionShape {
        batch: 1,
        heads: 16,
        seq_q: 16384,
        seq_kv: 16384,
        head_dim: 128,
        causal: false,
    };
    let swing = |kernel_phases: bool| {
        let imp = Imperfections {
            kernel_phases,
            ..Imperfections::IDEAL
        };
        let mut dev = SimDevice::open_profile(with("sim-h200", imp), 0, 1);
        let truth = dev.truth();
        let mut k = dev
            .backend
            .prepare("sim-unfused", Precision::Bf16, &Workload::Attention(s), 1)
            .unwrap();
        k.run(3).unwrap();
        truth.start_trace();
        let t0 = dev.clock.now_s();
        k.run(3).unwrap();
        let watts: Vec<f64> = (0..200)
            .filter_map(|i| {
                let a = t0 + 0.0005 * i as f64;
                truth.between(a, a + 0.0005).map(|s| s.average_w())
            })
            .collect();
        let lo = watts.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = watts.iter().cloned().fold(0.0, f64::max);
        hi - lo
    };
    assert!(swing(false) < 5.0, "{}", swing(false));
    assert!(swing(true) > 200.0, "{}", swing(true));
}

#[test]
fn power_falls_back_to_idle_over_hundreds_of_milliseconds() {
    let mut dev = SimDevice::open("sim-h100", 0, 1).unwrap();
    let truth = dev.truth();
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &square(8192), 1)
        .unwrap();
    k.run(500).unwrap();
    drop(k);
    let busy = truth.power_w();
    assert!(busy > 650.0, "{busy}");
    dev.clock.sleep(Duration::from_millis(20));
    let after_20ms = truth.power_w();
    dev.clock.sleep(Duration::from_millis(180));
    let after_200ms = truth.power_w();
    dev.clock.sleep(Duration::from_millis(2800));
    let after_3s = truth.power_w();
    assert!(after_20ms > 400.0, "{after_20ms}");
    assert!(after_200ms > 150.0 && after_200ms < 300.0, "{after_200ms}");
    assert!(after_3s < 120.5, "{after_3s}");
}

#[test]
fn temperature_follows_power_and_leakage_costs_clock_at_the_limit() {
    let mut dev = SimDevice::open("sim-h200", 0, 1).unwrap();
    let truth = dev.truth();
    let cold = truth.temperature_c();
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &square(8192), 1)
        .unwrap();
    let seconds = |k: &mut Box<dyn PreparedKernel + '_>, n| k.run(n).unwrap().wall_s / n as f64;
    let first = seconds(&mut k, 200);
    let mut t = 0.0;
    while t < 10.0 {
        t += k.run(1000).unwrap().wall_s;
    }
    let after_10s = truth.temperature_c();
    while t < 300.0 {
        t += k.run(5000).unwrap().wall_s;
    }
    let hot = truth.temperature_c();
    let last = seconds(&mut k, 200);
    assert!(
        cold < 37.0 && after_10s > cold + 12.0 && hot > after_10s + 5.0,
        "{cold} {after_10s} {hot}"
    );
    assert!((hot - 61.5).abs() < 2.0, "steady at 700 W: {hot}");
    // hotter die, more leakage, less power left for switching: slower at the limit
    assert!(last > first * 1.01, "{first} → {last} s per op");
}
