//! A small model's step measured on the simulated device through the sweep runner
//! and composed: the per-token figures are the records' medians times the runs a
//! step makes (times the GPUs of a tensor-parallel group), an op the device cannot
//! run leaves the step without a figure, and decode behaves as memory-bound work
//! does: far below the power limit, where a cap does not bind and a lower clock saves.

use joulebench_core::protocol::ProtocolConfig;
use joulebench_core::record::{point_key, Record, RecordError, RecordSink};
use joulebench_core::sweep::{run_sweep, tool_info, DeviceSession, SilentObserver, SweepOptions};
use joulebench_core::{Op, PowerCap, Precision};
use joulebench_energy::sim::SimDevice;
use joulebench_model::compose::compose;
use joulebench_model::inference::{InferenceOptions, Phase};
use joulebench_model::plan::{ModelPlan, PlanOptions};
use joulebench_model::step::{step_ops, Category, Pass};
use joulebench_model::{Layout, ModelConfig};
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
    measure_model("tiny", opts)
}

fn measure_model(name: &str, opts: &PlanOptions) -> (ModelPlan, Vec<Record>) {
    let mut dev = SimDevice::open("sim-h100", 0, 3).unwrap();
    let model = ModelConfig::preset(name).unwrap();
    let mut plan = ModelPlan::new(&model, &dev.backend, opts).unwrap();
    plan.peak_tflops = joulebench_model::peak::published_dense_peaks("sim-h100");
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
        clocks: Some(&mut dev.clocks),
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
        ..Default::default()
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
        ..Default::default()
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

#[test]
fn a_tensor_parallel_step_is_one_gpus_share_times_the_group() {
    let opts = |tp| PlanOptions {
        precisions: vec![Precision::Bf16],
        micro_batches: vec![2],
        kernels: vec![
            "sim-vendor".into(),
            "sim-fused".into(),
            "sim-fused-bwd".into(),
        ],
        layout: Layout {
            tensor_parallel: tp,
            ..Layout::single()
        },
        ..Default::default()
    };
    let (plan, records) = measure(&opts(2));
    let f = &compose(&plan, &records)[0];
    assert!(f.is_complete(), "{f:?}");
    assert_eq!(f.gpus, 2);
    // every op's record, as one GPU runs it, times the two GPUs of the group
    let ops = plan.ops(&f.setting).unwrap();
    let mut joules = 0.0;
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
    }
    let jps = f.joules_per_step.unwrap();
    assert!(
        (jps - 2.0 * joules).abs() <= 1e-9 * jps,
        "{jps} vs 2 × {joules}"
    );
    // the model's FLOP per token do not depend on how it is split
    let (one, one_records) = measure(&opts(1));
    let g = &compose(&one, &one_records)[0];
    assert_eq!(f.flop_per_token(), g.flop_per_token());
    // MFU: model FLOP per second over the group's peak
    let mfu = f.mfu.unwrap();
    let peak = plan.peak_tflops(Precision::Bf16).unwrap() * 1e12;
    let by_hand = f.flop_per_step / f.seconds_per_step.unwrap() / (2.0 * peak);
    assert!(
        (mfu - by_hand).abs() < 1e-12 && mfu > 0.0 && mfu < 1.0,
        "{mfu}"
    );
}

#[test]
fn decode_draws_far_below_the_limit_where_a_lower_clock_saves_and_a_cap_does_not_bind() {
    let opts = PlanOptions {
        precisions: vec![Precision::Bf16],
        caps: vec![
            PowerCap::Default,
            PowerCap::PercentOfDefault(60.0),
            PowerCap::PercentOfDefault(75.0),
        ],
        sm_clocks: vec![None, Some(1200)],
        kernels: vec!["sim-vendor".into(), "sim-fused".into()],
        inference: Some(InferenceOptions {
            prompt_len: 1024,
            output_len: 256,
            batches: vec![1, 16],
            kv_lens: vec![],
        }),
        ..Default::default()
    };
    let (plan, records) = measure_model("llama3-8b", &opts);
    let figures = compose(&plan, &records);
    let find = |phase: &dyn Fn(&Phase) -> bool, batch: u64, cap: PowerCap, clock: Option<u32>| {
        let f = figures
            .iter()
            .find(|f| {
                phase(&f.setting.phase)
                    && f.setting.micro_batch == batch
                    && f.setting.cap == cap
                    && f.setting.sm_clock_mhz == clock
            })
            .unwrap_or_else(|| panic!("no setting"));
        assert!(f.is_complete(), "{f:?}");
        f
    };
    let decode = |p: &Phase| matches!(p, Phase::Decode { .. });
    let capped = PowerCap::PercentOfDefault(60.0);
    // a cap well above decode's draw (525 W): its ops stay under it
    let above = PowerCap::PercentOfDefault(75.0);
    // (batch, limit on the draw as a share of 700 W, least saving of the lower clock)
    // (at one sequence decode waits on memory nearly all the time: the clock's share of
    // its power, and so what a lower clock saves, is small)
    for (batch, draw_share, clock_saving) in [(1, 0.5, 0.01), (16, 0.6, 0.08)] {
        let base = find(&decode, batch, PowerCap::Default, None);
        let cap = find(&decode, batch, above, None);
        let slow = find(&decode, batch, PowerCap::Default, Some(1200));
        // GEMMs of one row per sequence read every weight for 2 FLOP each
        let w = base.average_w().unwrap();
        assert!(w < draw_share * 700.0, "batch {batch}: {w} W of 700 W");
        assert!(!base.power_limited && !cap.power_limited, "batch {batch}");
        let e0 = base.joules_per_token().unwrap();
        let (e_cap, e_clock) = (
            cap.joules_per_token().unwrap(),
            slow.joules_per_token().unwrap(),
        );
        // a cap above the draw changes nothing beyond the noise: the combined
        // uncertainty of two figures at the 1% floor (the die's temperature differs
        // between the two points, and leakage with it)
        assert!(
            (e_cap / e0 - 1.0).abs() < 0.01 * 2f64.sqrt(),
            "batch {batch}: {e0} vs {e_cap}"
        );
        // a lower clock lowers the voltage: less energy in the same time
        assert!(
            e_clock < (1.0 - clock_saving) * e0,
            "batch {batch}: {e0} vs {e_clock}"
        );
        let (t0, t) = (
            base.seconds_per_token().unwrap(),
            slow.seconds_per_token().unwrap(),
        );
        assert!(t < 1.02 * t0, "batch {batch}: {t0} vs {t}");
    }
    // prefill is compute-bound: it runs at the limit, and the cap binds
    let prefill = |p: &Phase| matches!(p, Phase::Prefill { .. });
    let p0 = find(&prefill, 1, PowerCap::Default, None);
    let p_cap = find(&prefill, 1, capped, None);
    assert!(p0.power_limited && p_cap.power_limited);
    assert!(p_cap.seconds_per_token().unwrap() > 1.2 * p0.seconds_per_token().unwrap());
}
