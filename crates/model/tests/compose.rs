//! A small model's step measured on the simulated device through the sweep runner
//! and composed: the per-token figures are the records' medians times the runs a
//! step makes, and an op the device cannot run leaves the step without a figure.

use joulebench_core::protocol::ProtocolConfig;
use joulebench_core::record::{point_key, Record, RecordError, RecordSink};
use joulebench_core::sweep::{run_sweep, tool_info, DeviceSession, SilentObserver, SweepOptions};
use joulebench_core::{Op, PowerCap, Precision};
use joulebench_energy::sim::SimDevice;
use joulebench_model::compose::compose;
use joulebench_model::plan::{ModelPlan, PlanOptions};
use joulebench_model::step::{step_ops, Category, Pass};
use joulebench_model::ModelConfig;
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

struct Keep(Vec<Record>);

impl RecordSink for Keep {
    fn write(&mut self, record: &Record) -> Result<(), RecordError> {
        self.0.push(record.clone());
        Ok(())
    }
}

fn measure(opts: &PlanOptions) -> (ModelPlan, Vec<Record>) {
    let mut dev = SimDevice::open("sim-h100", 0, 3).unwrap();
    let model = ModelConfig::preset("tiny").unwrap();
    let plan = ModelPlan::new(&model, &dev.backend, opts).unwrap();
    let points = plan.points();
    let protocol = ProtocolConfig {
        idle_baseline_s: 0.0,
        warmup_s: 0.2,
        warmup_max_s: 0.2,
        min_window_s: 0.25,
        min_windows: 2,
        max_windows: 3,
        target_rel_spread: 0.05,
        point_budget_s: 5.0,
        ..ProtocolConfig::default()
    };
    let sweep = SweepOptions {
        protocol,
        seed: 1,
        command: "test".into(),
        tool: tool_info(),
        host: "test".into(),
        cap_settle_s: 0.0,
        repeat: 1,
    };
    let mut sink = Keep(Vec::new());
    let mut session = DeviceSession {
        backend: &mut dev.backend,
        meter: &mut dev.meter,
        power: Some(&mut dev.power),
        clock: dev.clock.as_ref(),
        clocks: None,
    };
    run_sweep(
        &mut session,
        &points,
        &sweep,
        &HashSet::new(),
        &mut sink,
        &mut SilentObserver,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(sink.0.len(), points.len(), "one record per point");
    (plan, sink.0)
}

#[test]
fn a_step_is_the_sum_of_its_measured_ops() {
    let opts = PlanOptions {
        precisions: vec![Precision::Bf16],
        micro_batches: vec![1, 4],
        caps: vec![PowerCap::Default],
        kernels: vec![
            "sim-vendor".into(),
            "sim-fused".into(),
            "sim-fused-bwd".into(),
        ],
    };
    let (plan, records) = measure(&opts);
    // attention backward was verified against the reference and measured
    assert!(records
        .iter()
        .any(|r| r.workload.op() == Op::AttentionBackward
            && r.verification.as_ref().is_some_and(|v| v.passed)
            && r.has_energy()));
    let figures = compose(&plan, &records);
    assert_eq!(figures.len(), 2);
    for f in &figures {
        assert!(f.missing.is_empty() && f.is_complete(), "{f:?}");
        assert!(f.simulated);
        // by hand: every op's record, times the runs a step makes
        let ops = step_ops(&plan.model, f.setting.micro_batch).unwrap();
        let (mut joules, mut seconds) = (0.0, 0.0);
        for op in &ops {
            let key = point_key(
                &plan.device,
                "sim",
                f.setting.kernels.kernel_for(op.workload.op()),
                Precision::Bf16,
                &op.workload,
                &PowerCap::Default,
            );
            let r = records.iter().find(|r| r.point_key() == key).unwrap();
            let s = &r.measurement.as_ref().unwrap().summary;
            joules += op.count as f64 * s.joules_per_op.as_ref().unwrap().median;
            seconds += op.count as f64 * s.seconds_per_op.median;
        }
        let tokens = (f.setting.micro_batch * plan.model.seq_len) as f64;
        let jpt = f.joules_per_token().unwrap();
        assert!(
            (jpt - joules / tokens).abs() <= 1e-12 * jpt,
            "{jpt} vs {joules}"
        );
        let tps = f.tokens_per_second().unwrap();
        assert!((tps - tokens / seconds).abs() <= 1e-9 * tps);
        assert!((f.average_w().unwrap() - joules / seconds).abs() < 1e-6);
        // the shares add up to the step, and backward costs more than forward
        let total: f64 = Category::ALL
            .iter()
            .map(|&c| f.energy_share(c).unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        let (fwd, bwd) = (
            f.pass_share(Pass::Forward).unwrap(),
            f.pass_share(Pass::Backward).unwrap(),
        );
        assert!((fwd + bwd - 1.0).abs() < 1e-9 && bwd > fwd, "{fwd} {bwd}");
    }
    // four times the tokens per step: more tokens per second on small shapes
    let tps = |mb| {
        figures
            .iter()
            .find(|f| f.setting.micro_batch == mb)
            .and_then(|f| f.tokens_per_second())
            .unwrap()
    };
    assert!(tps(4) > tps(1));
}

#[test]
fn an_op_the_device_cannot_run_leaves_the_step_without_a_figure() {
    let opts = PlanOptions {
        // the simulated attention kernels run f16 and bf16 only
        precisions: vec![Precision::F32],
        micro_batches: vec![1],
        caps: vec![PowerCap::Default],
        kernels: vec![
            "sim-vendor".into(),
            "sim-fused".into(),
            "sim-fused-bwd".into(),
        ],
    };
    let (plan, records) = measure(&opts);
    let figures = compose(&plan, &records);
    let f = &figures[0];
    assert_eq!(f.joules_per_token(), None);
    assert_eq!(f.tokens_per_second(), None);
    let ops: Vec<&str> = f.missing.iter().map(|m| m.op.as_str()).collect();
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert!(ops[0].starts_with("attention forward") && ops[1].starts_with("attention backward"));
    for m in &f.missing {
        assert!(
            m.reason.starts_with("skipped: ") && m.reason.contains("f16 and bf16 only"),
            "{m:?}"
        );
    }
    // the ops that ran are still accounted for
    assert!(f.shares.iter().any(|s| s.category == Category::Mlp));
    assert!(f.shares.iter().all(|s| s.category != Category::Attention));
}
