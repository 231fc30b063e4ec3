//! Energy windows on the simulated device, whose model gives the exact joules per
//! iteration to compare with, and on meters that cannot measure.

use joulebench_core::meter::NoMeter;
use joulebench_core::{Backend, BackendError, MatmulShape, Precision, RunTiming, Workload};
use joulebench_criterion::{BenchError, EnergyBench, WindowConfig};
use joulebench_energy::sim::{self, SimDevice};

fn shape(n: u64) -> Workload {
    Workload::Matmul(MatmulShape {
        batch: 1,
        m: n,
        n,
        k: n,
    })
}

/// The model's joules and seconds per iteration of sim-vendor bf16 on sim-h100.
fn model(w: &Workload) -> (f64, f64) {
    let p = sim::profile("sim-h100").unwrap();
    let k = sim::KERNELS
        .iter()
        .find(|k| k.name == "sim-vendor")
        .unwrap();
    let op = p.operating_point(k, Precision::Bf16, w, p.default_cap_w);
    (op.power_w * op.seconds_per_op, op.seconds_per_op)
}

#[test]
fn windows_are_long_busy_and_match_the_model() {
    let mut dev = SimDevice::open("sim-h100", 0, 3).unwrap();
    let mut bench = EnergyBench::new(
        Box::new(dev.meter),
        dev.clock.clone(),
        WindowConfig::default(),
    );
    let w = shape(2048);
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &w, 1)
        .unwrap();
    let mut run = |n: u64| k.run(n);
    let cal = bench.calibrate(&mut run).unwrap();
    assert!(cal.device_timer);
    assert!(cal.block_iterations as f64 * cal.seconds_per_iteration >= 0.01);

    let (j_model, s_model) = model(&w);
    assert_eq!(bench.window_target_s(), 1.0);
    let window = bench.window(1, &cal, &mut run).unwrap();
    assert!(
        window.counter_updates.is_some() && !bench.is_short(&window),
        "{window:?}"
    );
    assert!(
        window.seconds >= 1.0 - 1e-9 && window.seconds < 1.15,
        "{window:?}"
    );
    assert!(window.iterations * s_model > 0.95, "{window:?}");
    let jpi = window.joules_per_op(None).unwrap();
    let rel = (jpi - j_model).abs() / j_model;
    // the model settles hotter than this fresh device: a few % of leakage apart
    assert!(rel < 0.03, "J/iter {jpi} vs model {j_model}: {rel}");

    // criterion's iterations are scaled from the window's energy per iteration
    let one = bench.joules(1, &cal, &mut run).unwrap();
    assert!((one - j_model).abs() / j_model < 0.03);
    let many = bench.joules(1_000_000, &cal, &mut run).unwrap();
    assert!((many / 1e6 - j_model).abs() / j_model < 0.03);
    let last = bench.last_window().unwrap();
    assert!(last.iterations >= 1e6, "{last:?}");
    assert_eq!(bench.short_windows(), 0);

    let t = bench.device_time(1000, &cal, &mut run).unwrap();
    assert!((t.as_secs_f64() / 1000.0 - s_model).abs() / s_model < 0.02);
}

#[test]
fn smoke_test_windows_are_short_and_every_window_is_judged_by_its_config() {
    let mut dev = SimDevice::open("sim-h100", 0, 3).unwrap();
    let mut bench = EnergyBench::new(
        Box::new(dev.meter),
        dev.clock.clone(),
        WindowConfig::smoke_test(),
    );
    let w = shape(1024);
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &w, 1)
        .unwrap();
    let mut run = |n: u64| k.run(n);
    let cal = bench.calibrate(&mut run).unwrap();
    let window = bench.window(1, &cal, &mut run).unwrap();
    assert!(window.seconds < 0.15, "{window:?}");
    // short against the default rule, not against the smoke test's own
    assert!(window.seconds < joulebench_criterion::min_trustworthy_window_s(0.1));
    assert!(!bench.is_short(&window), "{window:?}");

    // a config that asks for 2 s windows flags a 1.5 s one
    let dev = SimDevice::open("sim-h100", 0, 3).unwrap();
    let mut cfg = WindowConfig::default();
    cfg.protocol.min_window_s = 2.0;
    let bench = EnergyBench::new(Box::new(dev.meter), dev.clock.clone(), cfg);
    let w = joulebench_core::Window {
        iterations: 10.0,
        seconds: 1.5,
        ..Default::default()
    };
    assert!(bench.is_short(&w));
    assert_eq!(bench.window_target_s(), 2.0);
}

#[test]
fn a_missing_meter_is_an_error_not_a_panic() {
    let dev = SimDevice::open("sim-h100", 0, 3).unwrap();
    let meter = NoMeter {
        reason: "a CPU emulation has no energy meter".into(),
    };
    let mut bench = EnergyBench::new(Box::new(meter), dev.clock.clone(), WindowConfig::default());
    let err = bench.check_meter().unwrap_err();
    assert!(err.to_string().contains("no energy meter"), "{err}");
    let mut run = |_n: u64| -> Result<RunTiming, BackendError> {
        Ok(RunTiming {
            wall_s: 1e-3,
            device_s: None,
        })
    };
    let cal = bench.calibrate(&mut run).unwrap();
    assert!(!cal.device_timer);
    assert!(matches!(
        bench.joules(1, &cal, &mut run),
        Err(BenchError::Meter(_))
    ));
}

#[test]
fn a_failing_workload_is_an_error_not_a_panic() {
    let dev = SimDevice::open("sim-h100", 0, 3).unwrap();
    let mut bench = EnergyBench::new(
        Box::new(dev.meter),
        dev.clock.clone(),
        WindowConfig::default(),
    );
    let mut run =
        |_n: u64| -> Result<RunTiming, BackendError> { Err(BackendError::Device("lost".into())) };
    match bench.calibrate(&mut run) {
        Err(BenchError::Workload(BackendError::Device(m))) => assert_eq!(m, "lost"),
        other => panic!("expected the workload's error, got {other:?}"),
    }
}

#[test]
fn virtual_time_is_paced_in_real_time() {
    let mut dev = SimDevice::open("sim-h100", 0, 3).unwrap();
    let cfg = WindowConfig {
        virtual_pacing: Some(0.02),
        ..WindowConfig::default()
    };
    let mut bench = EnergyBench::new(Box::new(dev.meter), dev.clock.clone(), cfg);
    let w = shape(4096);
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &w, 1)
        .unwrap();
    let mut run = |n: u64| k.run(n);
    let cal = bench.calibrate(&mut run).unwrap();
    let start = std::time::Instant::now();
    bench.joules(1, &cal, &mut run).unwrap();
    let window_s = bench.last_window().unwrap().seconds;
    // at least 0.02 real seconds per virtual second of the window
    assert!(
        start.elapsed().as_secs_f64() >= 0.02 * window_s,
        "{:?}",
        start.elapsed()
    );
}

/// A meter whose counter freezes after `after` updates: windows past that point
/// cannot be measured.
struct Freezing {
    inner: joulebench_energy::sim::SimMeter,
    after: usize,
    seen: usize,
}

impl joulebench_core::EnergyMeter for Freezing {
    fn source(&self) -> joulebench_core::MeterSource {
        self.inner.source()
    }
    fn energy_j(&mut self) -> Result<f64, joulebench_core::MeterError> {
        self.inner.energy_j()
    }
    fn update_period_s(&self) -> f64 {
        self.inner.update_period_s()
    }
    fn take_updates(
        &mut self,
    ) -> Result<Vec<joulebench_core::CounterUpdate>, joulebench_core::MeterError> {
        let ups = self.inner.take_updates()?;
        let keep = self.after.saturating_sub(self.seen).min(ups.len());
        self.seen += ups.len();
        Ok(ups.into_iter().take(keep).collect())
    }
}

#[test]
fn a_window_whose_energy_cannot_be_measured_is_an_error_never_zero_joules() {
    let mut dev = SimDevice::open("sim-h100", 0, 3).unwrap();
    let meter = Freezing {
        inner: dev.meter,
        after: 400,
        seen: 0,
    };
    let mut bench = EnergyBench::new(Box::new(meter), dev.clock.clone(), WindowConfig::default());
    let w = shape(4096);
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &w, 1)
        .unwrap();
    let mut run = |n: u64| k.run(n);
    let cal = bench.calibrate(&mut run).unwrap();
    let mut results = Vec::new();
    for _ in 0..40 {
        results.push(bench.joules(1000, &cal, &mut run));
        if results.last().unwrap().is_err() {
            break;
        }
    }
    let err = results.pop().unwrap().unwrap_err();
    assert!(matches!(err, BenchError::UntrustedMeter(_)), "{err}");
    assert!(err.to_string().contains("did not update"), "{err}");
    // every sample before the counter froze was a measurement
    assert!(!results.is_empty());
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|j| *j > 0.0)));
}

#[test]
fn calibration_warms_up_as_a_sweep_does() {
    let mut dev = SimDevice::open("sim-h200", 0, 3).unwrap();
    let truth = dev.truth();
    let mut bench = EnergyBench::new(
        Box::new(dev.meter),
        dev.clock.clone(),
        WindowConfig::default(),
    );
    let w = shape(8192);
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &w, 1)
        .unwrap();
    let mut run = |n: u64| k.run(n);
    let cal = bench.calibrate(&mut run).unwrap();
    let warm = bench.warmup().unwrap();
    let protocol = joulebench_core::ProtocolConfig::default();
    assert_eq!(warm.settled, Some(true));
    assert!(warm.seconds >= protocol.settle_window_s, "{warm:?}");
    assert!(truth.snapshot().busy_seconds >= 0.99 * warm.seconds);
    // blocks of the sweep's length: about 0.38 of the counter's period
    let block_s = cal.block_iterations as f64 * cal.seconds_per_iteration;
    assert!((0.038..0.06).contains(&block_s), "{block_s}");
}
