//! Measured ops composed into a training step (or a prefill, or a decode step). For
//! each setting, every op is looked up among the records (same device, backend,
//! kernel, precision, shape, power cap and clock); its median time and energy per
//! run, times the runs a step makes, add up to the step's. An op without a
//! measurement is listed with the reason its record gives, and the step then has no
//! per-token figure: a missing op is never filled in.
//!
//! Under a parallel layout the ops are one GPU's: the energy of a model copy is that
//! of its tensor-parallel GPUs (each runs the same ops) over all its layers, and its
//! time per step is the busiest pipeline stage's, the steady state of a pipeline
//! with many micro-batches. Communication, pipeline bubbles and the idle draw of a
//! waiting stage are not measured, and not in the figures.

use crate::inference::phase_ops;
use crate::layout::Layout;
use crate::plan::{ModelPlan, StepSetting};
use crate::step::{step_flop, Category, Pass, StepOp};
use joulebench_core::clocks::clock_key;
use joulebench_core::precision::Precision;
use joulebench_core::protocol::ValidityFlag;
use joulebench_core::record::{point_key, PointStatus, Record};
use joulebench_core::stats::median;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};

/// An op of the step that has no measurement, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MissingOp {
    /// e.g. "attention backward (attention-backward h2 q64 kv64 d64 causal b1)".
    pub op: String,
    pub kernel: String,
    pub precision: Precision,
    /// From the record: "skipped: …", "invalid: …", "failed: …"; or "not measured".
    pub reason: String,
}

/// The cost of one part of the step (a category in one pass), measured ops only.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Share {
    pub category: Category,
    pub pass: Pass,
    pub seconds_per_step: f64,
    /// None if an op of this part was measured without energy.
    pub joules_per_step: Option<f64>,
}

/// One setting of a step, composed from its ops' records.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepFigures {
    pub model: String,
    pub device: String,
    pub backend: String,
    pub simulated: bool,
    pub setting: StepSetting,
    /// GPUs of one model copy (tensor × pipeline parallel) the figures are for.
    pub gpus: u64,
    /// Tokens one step of one model copy handles (trained, prefilled or generated).
    pub tokens_per_step: u64,
    /// The model's FLOP per step (unsharded: what MFU counts).
    pub flop_per_step: f64,
    /// None while an op has no time. Under pipeline parallelism, the busiest stage's.
    pub seconds_per_step: Option<f64>,
    /// None while an op has no energy (not measured, or no energy meter). Every GPU of
    /// the model copy.
    pub joules_per_step: Option<f64>,
    /// Model FLOP per second over the copy's GPUs' dense peak at the matmuls'
    /// precision; None where the card's peak is unknown.
    pub mfu: Option<f64>,
    pub shares: Vec<Share>,
    pub missing: Vec<MissingOp>,
    /// Ops measured for time without an energy figure (no meter on this device).
    pub ops_without_energy: usize,
    /// Caution flags any op's record carries (`high-spread`, `cpu-emulation`, …).
    pub flags: Vec<String>,
    /// Some op ran at the GPU's power limit: information, not a caution.
    pub power_limited: bool,
    pub cap_w: Option<f64>,
    pub default_limit_w: Option<f64>,
    /// Indices (into the records given to [`compose`]) of the records used.
    pub records: Vec<usize>,
}

impl StepFigures {
    pub fn joules_per_token(&self) -> Option<f64> {
        self.joules_per_step
            .map(|j| j / self.tokens_per_step as f64)
    }

    pub fn tokens_per_second(&self) -> Option<f64> {
        self.seconds_per_step
            .map(|s| self.tokens_per_step as f64 / s)
    }

    pub fn seconds_per_token(&self) -> Option<f64> {
        self.seconds_per_step
            .map(|s| s / self.tokens_per_step as f64)
    }

    /// The step's energy over its time, per GPU of the model copy.
    pub fn average_w(&self) -> Option<f64> {
        Some(self.joules_per_step? / self.seconds_per_step? / self.gpus.max(1) as f64)
    }

    pub fn flop_per_token(&self) -> f64 {
        self.flop_per_step / self.tokens_per_step.max(1) as f64
    }

    /// Every op measured, with energy.
    pub fn is_complete(&self) -> bool {
        self.joules_per_step.is_some() && self.seconds_per_step.is_some()
    }

    /// Fraction of the step's energy spent in `category` (both passes).
    pub fn energy_share(&self, category: Category) -> Option<f64> {
        self.share_where(|s| s.category == category)
    }

    /// Fraction of the step's energy spent in `pass` (every category).
    pub fn pass_share(&self, pass: Pass) -> Option<f64> {
        self.share_where(|s| s.pass == pass)
    }

    fn share_where(&self, keep: impl Fn(&Share) -> bool) -> Option<f64> {
        let total = self.joules_per_step?;
        let part: f64 = self
            .shares
            .iter()
            .filter(|s| keep(s))
            .map(|s| s.joules_per_step.unwrap_or(0.0))
            .sum();
        (total > 0.0).then(|| part / total)
    }
}

fn status_name(s: PointStatus) -> &'static str {
    match s {
        PointStatus::Measured => "measured",
        PointStatus::Invalid => "invalid",
        PointStatus::Skipped => "skipped",
        PointStatus::Failed => "failed",
    }
}

fn op_label(op: &StepOp) -> String {
    match op.layer {
        "attention" => format!("attention {} ({})", op.role.name(), op.workload),
        layer => format!("{layer} {} ({})", op.role.name(), op.workload),
    }
}

/// The setting key ([`Record::setting_key`]) of `op`'s record under `setting`: how
/// an op finds its measurement.
fn op_key(plan: &ModelPlan, setting: &StepSetting, op: &StepOp) -> String {
    let kernel = setting.kernels.kernel_for(op.workload.op());
    let precision = setting.precision_for(op.workload.op());
    point_key(
        &plan.device,
        &plan.backend,
        kernel,
        precision,
        &op.workload,
        &setting.cap,
    ) + &clock_key(setting.sm_clock_mhz, None)
}

/// Every setting key [`compose`] looks records up by: a reader that cannot hold a
/// results file's records keeps those with these keys, and composes from them.
pub fn looked_up_keys(plan: &ModelPlan) -> HashSet<String> {
    let mut keys = HashSet::new();
    for setting in &plan.settings {
        if let Ok(ops) = plan.ops(setting) {
            keys.extend(ops.iter().map(|op| op_key(plan, setting, op)));
        }
    }
    keys
}

/// Every setting of `plan` composed from `records` (a results file's, in order).
pub fn compose(plan: &ModelPlan, records: &[Record]) -> Vec<StepFigures> {
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        by_key.entry(r.setting_key()).or_default().push(i);
    }
    plan.settings
        .iter()
        .filter_map(|setting| {
            let ops = plan.ops(setting).ok()?;
            Some(compose_one(plan, setting, &ops, records, &by_key))
        })
        .collect()
}

fn compose_one(
    plan: &ModelPlan,
    setting: &StepSetting,
    ops: &[StepOp],
    records: &[Record],
    by_key: &HashMap<String, Vec<usize>>,
) -> StepFigures {
    let mut seconds = Some(0.0);
    let mut joules = Some(0.0);
    let mut shares: Vec<Share> = Vec::new();
    let mut missing: Vec<MissingOp> = Vec::new();
    let mut flags: BTreeSet<String> = BTreeSet::new();
    let mut used: BTreeSet<usize> = BTreeSet::new();
    let (mut power_limited, mut cap_w, mut default_limit_w) = (false, None, None);
    let mut ops_without_energy = 0;
    // per-step time of the head ops and of one layer's ops, for the pipeline
    let (mut head_s, mut layers_s) = (0.0, 0.0);
    for op in ops {
        let kernel = setting.kernels.kernel_for(op.workload.op());
        let precision = setting.precision_for(op.workload.op());
        let key = op_key(plan, setting, op);
        let found: Vec<usize> = by_key.get(&key).cloned().unwrap_or_default();
        let measured: Vec<usize> = found
            .iter()
            .copied()
            .filter(|&i| records[i].status == PointStatus::Measured)
            .collect();
        if measured.is_empty() {
            let reason = match found.first().map(|&i| &records[i]) {
                Some(r) => format!(
                    "{}: {}",
                    status_name(r.status),
                    r.reason.as_deref().unwrap_or("no reason recorded")
                ),
                None => "not measured".into(),
            };
            let label = op_label(op);
            if !missing.iter().any(|m| m.op == label) {
                missing.push(MissingOp {
                    op: label,
                    kernel: kernel.to_string(),
                    precision,
                    reason,
                });
            }
            seconds = None;
            joules = None;
            continue;
        }
        // the median over repeats of each run's median
        let of = |f: &dyn Fn(&Record) -> Option<f64>| -> Option<f64> {
            let v: Vec<f64> = measured.iter().filter_map(|&i| f(&records[i])).collect();
            (!v.is_empty()).then(|| median(&v))
        };
        let op_s = of(&|r| Some(r.measurement.as_ref()?.summary.seconds_per_op.median));
        let op_j = of(&|r| {
            Some(
                r.measurement
                    .as_ref()?
                    .summary
                    .joules_per_op
                    .as_ref()?
                    .median,
            )
        });
        for &i in &measured {
            let r = &records[i];
            used.insert(i);
            flags.extend(
                r.flags
                    .iter()
                    .filter(|f| f.is_caution())
                    .map(|f| f.name().to_string()),
            );
            power_limited |= r.flags.contains(&ValidityFlag::PowerLimited);
            cap_w = cap_w.or(r.power_cap.requested_w.or(r.power_cap.enforced_w));
            default_limit_w = default_limit_w.or(r.power_cap.default_w);
        }
        let n = op.count as f64;
        let Some(op_s) = op_s else {
            seconds = None;
            joules = None;
            continue;
        };
        if op_j.is_none() {
            ops_without_energy += 1;
        }
        if op.category == Category::Head {
            head_s += n * op_s;
        } else {
            layers_s += n * op_s;
        }
        // every tensor-parallel GPU runs the op
        let n = n * plan.layout.tensor_parallel.max(1) as f64;
        seconds = seconds.map(|s| s + n * op_s);
        joules = joules.and_then(|j| Some(j + n * op_j?));
        let at = match shares
            .iter()
            .position(|s| s.category == op.category && s.pass == op.pass())
        {
            Some(i) => i,
            None => {
                shares.push(Share {
                    category: op.category,
                    pass: op.pass(),
                    seconds_per_step: 0.0,
                    joules_per_step: Some(0.0),
                });
                shares.len() - 1
            }
        };
        let part = &mut shares[at];
        part.seconds_per_step += n * op_s;
        part.joules_per_step = part.joules_per_step.and_then(|j| Some(j + n * op_j?));
    }
    shares.sort_by_key(|s| (s.category, s.pass));
    let seconds =
        seconds.map(|_| pipeline_seconds(&plan.layout, plan.model.layers, layers_s, head_s));
    let tokens_per_step = setting
        .phase
        .tokens_per_step(&plan.model, setting.micro_batch);
    let flop_per_step = phase_ops(
        &plan.model,
        setting.phase,
        setting.micro_batch,
        &Layout::single(),
    )
    .map(|ops| step_flop(&ops).0 as f64)
    .unwrap_or(0.0);
    let gpus = plan.layout.model_parallel_gpus();
    let mfu = match (seconds, plan.peak_tflops(setting.precision)) {
        (Some(t), Some(peak)) if t > 0.0 => Some(flop_per_step / t / (gpus as f64 * peak * 1e12)),
        _ => None,
    };
    StepFigures {
        model: plan.model.name.clone(),
        device: plan.device.name.clone(),
        backend: plan.backend.clone(),
        simulated: plan.device.simulated,
        setting: setting.clone(),
        gpus,
        tokens_per_step,
        flop_per_step,
        seconds_per_step: seconds,
        joules_per_step: joules,
        mfu,
        shares,
        missing,
        ops_without_energy,
        flags: flags.into_iter().collect(),
        power_limited,
        cap_w,
        default_limit_w,
        records: used.into_iter().collect(),
    }
}

/// The pipeline's time per micro-batch: its busiest stage's. The first stages take one
/// layer more when the layers do not divide; the last also runs the LM head.
/// `layers_s` is every layer's time on one GPU, `head_s` the head's.
pub fn pipeline_seconds(layout: &Layout, layers: u64, layers_s: f64, head_s: f64) -> f64 {
    let pp = layout.pipeline_parallel.max(1).min(layers.max(1));
    let per_layer = layers_s / layers.max(1) as f64;
    let (base, rest) = (layers / pp, layers % pp);
    let first = (base + u64::from(rest > 0)) as f64 * per_layer;
    let last = base as f64 * per_layer + head_s;
    first.max(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_runs_at_its_busiest_stage() {
        let pp = |n| Layout {
            pipeline_parallel: n,
            ..Layout::single()
        };
        // one stage: everything
        assert_eq!(pipeline_seconds(&pp(1), 80, 80.0, 5.0), 85.0);
        // 80 layers on 3 stages: 27, 27, 26 + the head
        assert_eq!(pipeline_seconds(&pp(3), 80, 80.0, 5.0), 31.0);
        assert_eq!(pipeline_seconds(&pp(3), 80, 80.0, 0.5), 27.0);
    }
}
