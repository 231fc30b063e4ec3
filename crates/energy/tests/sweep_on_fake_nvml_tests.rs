//! Core's sweep runner with the NVML counter meter and the guarded NVML power control
//! on the fake device, and a backend whose kernel only sleeps: caps are set and read
//! back per point, the original limit returns at the end, and a GPU lost mid-sweep
//! stops the sweep with every finished record kept.

mod common;

use common::{fake, fake_info, guard_on, limit_w};
use joulebench_core::backend::{
    Backend, BackendError, KernelInfo, PreparedKernel, RunTiming, Support,
};
use joulebench_core::plan::PlanPoint;
use joulebench_core::record::{PointStatus, Record, RecordError, RecordSink};
use joulebench_core::reference::{reference_output, CheckInputs};
use joulebench_core::sweep::{
    run_sweep, tool_info, DeviceSession, SweepError, SweepObserver, SweepOptions,
};
use joulebench_core::{
    DeviceInfo, MatmulShape, Op, PowerCap, Precision, ProtocolConfig, SystemClock, Workload,
};
use joulebench_energy::guard::state_file_for;
use joulebench_energy::nvml::{CounterMeter, FakeDevice, FakeState, PeriodProbe};
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct SleepBackend {
    device: DeviceInfo,
}

struct SleepKernel {
    workload: Workload,
}

impl Backend for SleepBackend {
    fn name(&self) -> &str {
        "sleep"
    }
    fn device(&self) -> &DeviceInfo {
        &self.device
    }
    fn kernels(&self) -> Vec<KernelInfo> {
        vec![KernelInfo {
            name: "sleep".into(),
            op: Op::Matmul,
            precisions: vec![Precision::F32],
            vendor: false,
            description: "computes on the CPU for checks, sleeps for runs".into(),
        }]
    }
    fn support(&self, _: &str, _: Precision, _: &Workload) -> Support {
        Support::Supported
    }
    fn prepare(
        &mut self,
        _: &str,
        _: Precision,
        workload: &Workload,
        _: u64,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        Ok(Box::new(SleepKernel {
            workload: *workload,
        }))
    }
}

impl PreparedKernel for SleepKernel {
    fn run_for_check(&mut self, inputs: &CheckInputs) -> Result<Vec<f32>, BackendError> {
        Ok(reference_output(&self.workload, inputs)
            .into_iter()
            .map(|x| x as f32)
            .collect())
    }
    fn run(&mut self, iterations: u64) -> Result<RunTiming, BackendError> {
        let t = Instant::now();
        std::thread::sleep(Duration::from_micros(200) * iterations as u32);
        Ok(RunTiming {
            wall_s: t.elapsed().as_secs_f64(),
            device_s: None,
        })
    }
}

#[derive(Default)]
struct Records(Vec<Record>);

impl RecordSink for Records {
    fn write(&mut self, record: &Record) -> Result<(), RecordError> {
        self.0.push(record.clone());
        Ok(())
    }
}

/// Marks the fake lost once `after` points have finished.
struct LoseGpuAfter {
    fake: Arc<FakeDevice>,
    after: usize,
    finished: usize,
}

impl SweepObserver for LoseGpuAfter {
    fn point_finished(&mut self, _: &Record) {
        self.finished += 1;
        if self.finished == self.after {
            self.fake.update(|s| s.lost = true).unwrap();
        }
    }
}

fn points(caps: &[&str]) -> Vec<PlanPoint> {
    caps.iter()
        .map(|c| PlanPoint {
            kernel: "sleep".into(),
            vendor: false,
            precision: Precision::F32,
            workload: Workload::Matmul(MatmulShape {
                batch: 1,
                m: 8,
                n: 8,
                k: 8,
            }),
            group: "matmul 8x8x8".into(),
            batch_size: 1,
            cap: c.parse::<PowerCap>().unwrap(),
            sm_clock_mhz: None,
            mem_clock_mhz: None,
            inputs: Default::default(),
        })
        .collect()
}

fn options() -> SweepOptions {
    SweepOptions {
        protocol: ProtocolConfig {
            idle_baseline_s: 0.1,
            warmup_s: 0.02,
            warmup_max_s: 0.5,
            settle_window_s: 0.25,
            min_window_s: 0.06,
            min_counter_updates: 4,
            target_rel_spread: 0.5,
            min_windows: 2,
            max_windows: 3,
            point_budget_s: 2.0,
            ..Default::default()
        },
        seed: 7,
        command: "test".into(),
        tool: tool_info(),
        host: "test-host".into(),
        cap_settle_s: 0.0,
        repeat: 1,
    }
}

fn fast_fake() -> Arc<FakeDevice> {
    fake(FakeState {
        counter_period_ms: 5,
        ..Default::default()
    })
}

fn probe() -> PeriodProbe {
    PeriodProbe {
        max_wait: Duration::from_secs(1),
        ..Default::default()
    }
}

#[test]
fn a_capped_sweep_sets_each_cap_and_restores_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let f = fast_fake();
    let mut backend = SleepBackend {
        device: fake_info(&f),
    };
    let mut meter = CounterMeter::with_probe(f.clone(), &probe()).unwrap();
    let mut guard = guard_on(&f, dir.path(), true);
    let clock = SystemClock;
    let mut records = Records::default();
    let outcome = {
        let mut session = DeviceSession {
            backend: &mut backend,
            meter: &mut meter,
            power: Some(&mut guard),
            clocks: None,
            clock: &clock,
        };
        run_sweep(
            &mut session,
            &points(&["300", "50%", "default"]),
            &options(),
            &HashSet::new(),
            &mut records,
            &mut joulebench_core::sweep::SilentObserver,
            &AtomicBool::new(false),
        )
        .unwrap()
    };
    assert_eq!(
        outcome.measured,
        3,
        "{:?}",
        records.0.iter().map(|r| &r.reason).collect::<Vec<_>>()
    );
    let enforced: Vec<Option<f64>> = records.0.iter().map(|r| r.power_cap.enforced_w).collect();
    assert_eq!(enforced, [Some(300.0), Some(350.0), Some(700.0)]);
    for r in &records.0 {
        let m = r.measurement.as_ref().unwrap();
        assert!(m.windows.iter().all(|w| w.joules.is_some_and(|j| j > 0.0)));
        assert_eq!(r.status, PointStatus::Measured);
    }
    // The runner restored "default" itself; the guard owes nothing more but runs anyway.
    assert_eq!(limit_w(&f), 700.0);
    guard.finish().unwrap();
    assert!(!state_file_for(dir.path(), &fake_info(&f)).exists());
    assert_eq!(
        f.state().unwrap().limit_history_mw,
        [300_000, 350_000, 700_000]
    );
}

#[test]
fn a_gpu_lost_mid_sweep_stops_it_and_keeps_the_finished_records() {
    let dir = tempfile::tempdir().unwrap();
    let f = fast_fake();
    let state_path = state_file_for(dir.path(), &fake_info(&f));
    let mut backend = SleepBackend {
        device: fake_info(&f),
    };
    let mut meter = CounterMeter::with_probe(f.clone(), &probe()).unwrap();
    let mut guard = guard_on(&f, dir.path(), true);
    let clock = SystemClock;
    let mut records = Records::default();
    let mut observer = LoseGpuAfter {
        fake: f.clone(),
        after: 1,
        finished: 0,
    };
    let result = {
        let mut session = DeviceSession {
            backend: &mut backend,
            meter: &mut meter,
            power: Some(&mut guard),
            clocks: None,
            clock: &clock,
        };
        run_sweep(
            &mut session,
            &points(&["300", "300", "250"]),
            &options(),
            &HashSet::new(),
            &mut records,
            &mut observer,
            &AtomicBool::new(false),
        )
    };
    match result {
        Err(SweepError::Meter(e)) => assert!(e.to_string().contains("lost"), "{e}"),
        Err(SweepError::Power(e)) => assert!(e.to_string().contains("lost"), "{e}"),
        other => panic!("expected the sweep to stop on the lost GPU, got {other:?}"),
    }
    assert_eq!(records.0.len(), 1);
    assert_eq!(records.0[0].status, PointStatus::Measured);
    // The restore is owed to a device that is gone: the state file stays for later.
    assert!(guard.finish().is_err());
    assert!(state_path.exists());
}
