//! The settings a model sweep compares — phase, precision, micro-batch, power cap,
//! SM clock and the kernel of each op — and the points that measure them: every
//! distinct op shape once per kernel, precision, cap and clock, whatever number of
//! layers and settings share it.
//!
//! By default the plan is quick: the baseline (the vendor libraries' kernels, bf16,
//! the cap as found, micro-batch 1) and the few settings most likely to matter —
//! FP8 where a matmul kernel runs it, our fused attention, the largest of micro-batch
//! 2, 4 and 8 whose memory fits the card. `all` plans every combination. Either way,
//! an op whose kernel cannot run its shape here (an unfused attention backward whose
//! score matrices outgrow the card) takes a kernel of the same op that can, and the
//! plan says so.

use crate::config::{ModelConfig, ModelError};
use crate::inference::{phase_ops, InferenceOptions, Phase};
use crate::layout::Layout;
use crate::memory::{training_memory, MemoryEstimate, MemoryOptions};
use crate::step::{distinct_workloads, StepOp};
use joulebench_core::backend::{Backend, KernelInfo, Support};
use joulebench_core::device::DeviceInfo;
use joulebench_core::plan::{check_kernels_known, PlanPoint, UnknownKernel};
use joulebench_core::power::PowerCap;
use joulebench_core::precision::Precision;
use joulebench_core::workload::Op;
use serde::{Deserialize, Serialize};

/// The kernel of each op of a step.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KernelChoice {
    pub matmul: String,
    pub attention: String,
    /// Where the backend has no backward kernel, the forward kernel's name: its points
    /// are recorded as skipped with the backend's reason. Empty for inference, which
    /// has no backward pass.
    pub attention_backward: String,
    /// Every kernel of the choice is a vendor library's (the default baseline).
    pub vendor: bool,
}

impl KernelChoice {
    pub fn kernel_for(&self, op: Op) -> &str {
        match op {
            Op::Matmul => &self.matmul,
            Op::Attention => &self.attention,
            Op::AttentionBackward => &self.attention_backward,
        }
    }

    fn kernel_mut(&mut self, op: Op) -> &mut String {
        match op {
            Op::Matmul => &mut self.matmul,
            Op::Attention => &mut self.attention,
            Op::AttentionBackward => &mut self.attention_backward,
        }
    }

    /// "cublas + cuda-flash / cublas-unfused-bwd": matmul + attention / its backward.
    pub fn label(&self) -> String {
        if self.attention_backward.is_empty() {
            format!("{} + {}", self.matmul, self.attention)
        } else {
            format!(
                "{} + {} / {}",
                self.matmul, self.attention, self.attention_backward
            )
        }
    }
}

/// The precision attention runs at in a step whose matmuls run at `matmul`: the
/// same, except FP8, where training recipes (Transformer Engine's among them) keep
/// attention in bf16.
pub fn attention_precision(matmul: Precision) -> Precision {
    match matmul {
        Precision::Fp8E4m3 => Precision::Bf16,
        p => p,
    }
}

/// One setting of a training step, a prefill or a decode step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSetting {
    #[serde(default)]
    pub phase: Phase,
    /// The matmuls' precision.
    pub precision: Precision,
    pub attention_precision: Precision,
    /// Sequences per step; tokens per step = micro_batch × seq_len in training.
    pub micro_batch: u64,
    pub cap: PowerCap,
    /// The locked SM clock; `None`: the default clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<u32>,
    pub kernels: KernelChoice,
}

impl StepSetting {
    pub fn precision_for(&self, op: Op) -> Precision {
        match op {
            Op::Matmul => self.precision,
            Op::Attention | Op::AttentionBackward => self.attention_precision,
        }
    }

    /// "bf16", or "fp8-e4m3 (attention bf16)".
    pub fn precision_label(&self) -> String {
        if self.attention_precision == self.precision {
            self.precision.to_string()
        } else {
            format!(
                "{} (attention {})",
                self.precision, self.attention_precision
            )
        }
    }

    /// "default" or "1200 MHz".
    pub fn clock_label(&self) -> String {
        match self.sm_clock_mhz {
            Some(mhz) => format!("{mhz} MHz"),
            None => "default".into(),
        }
    }
}

/// What the axes come from: the flags (empty: the defaults above).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanOptions {
    /// Empty: quick, bf16 and FP8 where the kernels run them; all, every precision a
    /// matmul kernel runs whose attention precision an attention kernel runs too.
    pub precisions: Vec<Precision>,
    /// Training micro-batches. Empty: quick, 1 and the largest of 2, 4, 8 that fits;
    /// all, 1, 2 and 4.
    pub micro_batches: Vec<u64>,
    /// Empty: the default limit only.
    pub caps: Vec<PowerCap>,
    /// Locked SM clocks (resolved against the GPU); empty: the default clocks only.
    pub sm_clocks: Vec<Option<u32>>,
    /// Kernel names. An op none of them runs keeps every kernel it has. Empty: quick,
    /// the vendor libraries' kernels and our fused attention; all, every kernel.
    pub kernels: Vec<String>,
    /// Every combination of every axis instead of the quick plan.
    pub all: bool,
    pub layout: Layout,
    pub memory: MemoryOptions,
    /// Plan prefill and decode instead of a training step.
    pub inference: Option<InferenceOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    UnknownKernel(#[from] UnknownKernel),
    #[error("backend {backend} has no {op} kernel, so no step can be composed on it")]
    NoKernel { backend: String, op: Op },
    #[error("no micro-batch given")]
    NoMicroBatch,
}

/// A model sweep on one device: the settings and the points that measure them.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelPlan {
    pub model: ModelConfig,
    pub device: DeviceInfo,
    pub backend: String,
    pub layout: Layout,
    pub memory_options: MemoryOptions,
    pub settings: Vec<StepSetting>,
    /// What the planner chose and why: kernels taken where another does not fit,
    /// the micro-batches of a quick plan.
    pub notes: Vec<String>,
    /// The setting savings are measured against: the vendor libraries' kernels (where
    /// they fit), bf16, the default cap and clocks, the smallest micro-batch.
    pub baseline: Option<StepSetting>,
    pub inference: Option<InferenceOptions>,
    /// The card's dense peak TFLOP/s per precision, for MFU; empty where unknown
    /// (the caller fills it in: the plan knows kernels, not cards).
    pub peak_tflops: Vec<(Precision, f64)>,
    /// Kernel name → whether it is a vendor library's.
    vendor: Vec<(String, bool)>,
}

/// The micro-batches a quick plan tries beside 1, largest first.
const QUICK_MICRO_BATCHES: [u64; 3] = [8, 4, 2];

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

/// The first vendor kernel, else the first kernel.
fn preferred<'a>(kernels: &[&'a KernelInfo]) -> Option<&'a KernelInfo> {
    kernels
        .iter()
        .copied()
        .find(|k| k.vendor)
        .or(kernels.first().copied())
}

impl ModelPlan {
    pub fn new(
        model: &ModelConfig,
        backend: &dyn Backend,
        opts: &PlanOptions,
    ) -> Result<ModelPlan, PlanError> {
        model.validate()?;
        opts.layout.validate(model)?;
        if let Some(inf) = &opts.inference {
            inf.validate(model)?;
        }
        check_kernels_known(&opts.kernels, backend)?;
        let mut notes = Vec::new();
        let kernels = backend.kernels();
        let of_op = |op: Op| -> Vec<&KernelInfo> {
            let all: Vec<&KernelInfo> = kernels.iter().filter(|k| k.op == op).collect();
            let named: Vec<&KernelInfo> = all
                .iter()
                .copied()
                .filter(|k| opts.kernels.contains(&k.name))
                .collect();
            if named.is_empty() {
                all
            } else {
                named
            }
        };
        let no_kernel = |op| PlanError::NoKernel {
            backend: backend.name().into(),
            op,
        };
        let matmul = of_op(Op::Matmul);
        let attention = of_op(Op::Attention);
        if matmul.is_empty() {
            return Err(no_kernel(Op::Matmul));
        }
        if attention.is_empty() {
            return Err(no_kernel(Op::Attention));
        }
        let backward = of_op(Op::AttentionBackward);
        let quick = !opts.all;

        let precisions = if opts.precisions.is_empty() {
            let runs =
                |ks: &[&KernelInfo], p: Precision| ks.iter().any(|k| k.precisions.contains(&p));
            let whole: Vec<Precision> = Precision::ALL
                .into_iter()
                .filter(|&p| runs(&matmul, p) && runs(&attention, attention_precision(p)))
                .collect();
            let every = if whole.is_empty() {
                Precision::ALL
                    .into_iter()
                    .filter(|&p| runs(&matmul, p))
                    .collect()
            } else {
                whole
            };
            let likely: Vec<Precision> = every
                .iter()
                .copied()
                .filter(|p| matches!(p, Precision::Bf16 | Precision::Fp8E4m3))
                .collect();
            if quick && !likely.is_empty() {
                likely
            } else if quick {
                every.into_iter().take(1).collect()
            } else {
                every
            }
        } else {
            opts.precisions.clone()
        };
        let caps = if opts.caps.is_empty() {
            vec![PowerCap::Default]
        } else {
            opts.caps.clone()
        };
        let clocks = if opts.sm_clocks.is_empty() {
            vec![None]
        } else {
            opts.sm_clocks.clone()
        };

        // (phase, batch) pairs
        let steps: Vec<(Phase, u64)> = match &opts.inference {
            Some(inf) => {
                let mut v = vec![(
                    Phase::Prefill {
                        prompt_len: inf.prompt_len,
                    },
                    1,
                )];
                for kv_len in inf.kv_lens() {
                    for &b in &inf.batches {
                        v.push((Phase::Decode { kv_len }, b));
                    }
                }
                v
            }
            None => {
                let mbs = if !opts.micro_batches.is_empty() {
                    opts.micro_batches.clone()
                } else if quick {
                    let (mbs, why) =
                        quick_micro_batches(model, &opts.layout, &opts.memory, backend);
                    notes.push(why);
                    mbs
                } else {
                    vec![1, 2, 4]
                };
                mbs.into_iter().map(|mb| (Phase::Train, mb)).collect()
            }
        };
        if steps.is_empty() {
            return Err(PlanError::NoMicroBatch);
        }
        let mut ops_of: Vec<((Phase, u64), Vec<StepOp>)> = Vec::new();
        for &(phase, batch) in &steps {
            ops_of.push((
                (phase, batch),
                phase_ops(model, phase, batch, &opts.layout)?,
            ));
        }

        let inference = opts.inference.is_some();
        let mut choices = Vec::new();
        if quick && opts.kernels.is_empty() {
            // the vendor libraries' choice, and our fused attention beside it
            let m = preferred(&matmul).ok_or_else(|| no_kernel(Op::Matmul))?;
            let a = preferred(&attention).ok_or_else(|| no_kernel(Op::Attention))?;
            let b = preferred(&backward).unwrap_or(a);
            choices.push((m, a, b));
            let ours_a = attention.iter().copied().find(|k| !k.vendor);
            let ours_b = backward.iter().copied().find(|k| !k.vendor);
            if let Some(oa) = ours_a {
                let ob = if inference { b } else { ours_b.unwrap_or(b) };
                if (oa.name != a.name) || (ob.name != b.name) {
                    choices.push((m, oa, ob));
                }
            }
        } else {
            for m in &matmul {
                for a in &attention {
                    let backwards: Vec<&KernelInfo> = if backward.is_empty() {
                        vec![a]
                    } else {
                        backward.clone()
                    };
                    for b in backwards {
                        choices.push((m, a, b));
                    }
                }
            }
        }
        let mut kernel_choices: Vec<KernelChoice> = Vec::new();
        for (m, a, b) in choices {
            let c = KernelChoice {
                matmul: m.name.clone(),
                attention: a.name.clone(),
                attention_backward: if inference {
                    String::new()
                } else {
                    b.name.clone()
                },
                vendor: m.vendor && a.vendor && (inference || b.vendor),
            };
            if !kernel_choices.contains(&c) {
                kernel_choices.push(c);
            }
        }

        let mut settings: Vec<StepSetting> = Vec::new();
        for cap in &caps {
            for &sm_clock_mhz in &clocks {
                for ((phase, batch), ops) in &ops_of {
                    for &precision in &precisions {
                        for choice in &kernel_choices {
                            let mut s = StepSetting {
                                phase: *phase,
                                precision,
                                attention_precision: attention_precision(precision),
                                micro_batch: *batch,
                                cap: *cap,
                                sm_clock_mhz,
                                kernels: choice.clone(),
                            };
                            fit_kernels(&mut s, ops, backend, &of_op, &mut notes);
                            if !settings.contains(&s) {
                                settings.push(s);
                            }
                        }
                    }
                }
            }
        }

        let baseline = {
            let precision = if precisions.contains(&Precision::Bf16) {
                Some(Precision::Bf16)
            } else {
                precisions.first().copied()
            };
            let smallest = steps
                .iter()
                .filter(|(p, _)| !p.is_inference())
                .map(|(_, b)| *b)
                .min();
            // the vendor libraries' choice (else the first), as planned before kernels
            // were fitted: a kernel that did not fit was replaced in the baseline too
            let vendor = kernel_choices
                .iter()
                .find(|c| c.vendor)
                .or(kernel_choices.first());
            let candidates: Vec<&StepSetting> = settings
                .iter()
                .filter(|s| {
                    Some(s.precision) == precision
                        && Some(s.micro_batch) == smallest
                        && s.cap == PowerCap::Default
                        && s.sm_clock_mhz.is_none()
                })
                .collect();
            vendor.and_then(|v| {
                let exact = candidates.iter().find(|s| &s.kernels == v);
                let fitted = candidates
                    .iter()
                    .find(|s| s.kernels.matmul == v.matmul && s.kernels.attention == v.attention);
                exact.or(fitted).map(|s| (*s).clone())
            })
        };

        Ok(ModelPlan {
            model: model.clone(),
            device: backend.device().clone(),
            backend: backend.name().into(),
            layout: opts.layout,
            memory_options: opts.memory,
            settings,
            notes,
            baseline,
            inference: opts.inference.clone(),
            peak_tflops: Vec::new(),
            vendor: kernels.iter().map(|k| (k.name.clone(), k.vendor)).collect(),
        })
    }

    /// One GPU's training memory at `micro_batch` in this plan's layout.
    pub fn training_memory(&self, micro_batch: u64) -> MemoryEstimate {
        training_memory(&self.model, &self.layout, micro_batch, &self.memory_options)
    }

    /// The card's dense peak at `precision`, TFLOP/s.
    pub fn peak_tflops(&self, precision: Precision) -> Option<f64> {
        self.peak_tflops
            .iter()
            .find(|(p, _)| *p == precision)
            .map(|(_, t)| *t)
    }

    /// The ops of one setting on one GPU.
    pub fn ops(&self, s: &StepSetting) -> Result<Vec<StepOp>, ModelError> {
        phase_ops(&self.model, s.phase, s.micro_batch, &self.layout)
    }

    /// Every point the settings need, each once, power cap by power cap and clock by
    /// clock.
    pub fn points(&self) -> Vec<PlanPoint> {
        let mut points: Vec<PlanPoint> = Vec::new();
        for s in &self.settings {
            // validated in `new`
            let Ok(ops) = self.ops(s) else {
                continue;
            };
            for workload in distinct_workloads(&ops) {
                let op = workload.op();
                let kernel = s.kernels.kernel_for(op);
                let point = PlanPoint {
                    kernel: kernel.to_string(),
                    vendor: self.vendor.iter().any(|(k, v)| k == kernel && *v),
                    precision: s.precision_for(op),
                    workload,
                    group: workload.shape_label(),
                    batch_size: s.micro_batch,
                    cap: s.cap,
                    sm_clock_mhz: s.sm_clock_mhz,
                    mem_clock_mhz: None,
                    inputs: Default::default(),
                };
                let seen = points.iter().any(|p| {
                    p.kernel == point.kernel
                        && p.precision == point.precision
                        && p.workload == point.workload
                        && p.cap == point.cap
                        && p.sm_clock_mhz == point.sm_clock_mhz
                });
                if !seen {
                    points.push(point);
                }
            }
        }
        points
    }
}

/// Give each op of `s` a kernel that can run every shape it has here: the chosen one,
/// else the first kernel of that op that can (vendor libraries first), with a note.
/// An op no kernel can run keeps its kernel: its points are recorded as skipped with
/// the backend's reason, and the setting has no per-token figure.
fn fit_kernels<'k>(
    s: &mut StepSetting,
    ops: &[StepOp],
    backend: &dyn Backend,
    of_op: &dyn Fn(Op) -> Vec<&'k KernelInfo>,
    notes: &mut Vec<String>,
) {
    let workloads = distinct_workloads(ops);
    for op in [Op::Matmul, Op::Attention, Op::AttentionBackward] {
        let mine: Vec<_> = workloads.iter().filter(|w| w.op() == op).collect();
        if mine.is_empty() {
            continue;
        }
        let precision = s.precision_for(op);
        // a kernel that does not run the precision at all gives way, without a note,
        // to the first of the op's kernels that does, of the same kind where one is
        // (cuBLAS's FP8 matmuls are cuBLASLt's)
        let runs = |k: &KernelInfo| k.precisions.contains(&precision);
        let kernels = of_op(op);
        if let Some(current) = kernels.iter().find(|k| k.name == s.kernels.kernel_for(op)) {
            if !runs(current) {
                let same_kind = kernels
                    .iter()
                    .find(|k| runs(k) && k.vendor == current.vendor);
                if let Some(k) = same_kind.or_else(|| kernels.iter().find(|k| runs(k))) {
                    *s.kernels.kernel_mut(op) = k.name.clone();
                    s.kernels.vendor = s.kernels.vendor && k.vendor;
                }
            }
        }
        let why_not = |kernel: &str| {
            mine.iter()
                .find_map(|w| match backend.support(kernel, precision, w) {
                    Support::Supported => None,
                    Support::Unsupported(why) => Some(format!("{why} ({w})")),
                })
        };
        let current = s.kernels.kernel_for(op).to_string();
        let Some(why) = why_not(&current) else {
            continue;
        };
        let mut candidates = of_op(op);
        candidates.sort_by_key(|k| !k.vendor);
        let Some(instead) = candidates
            .into_iter()
            .find(|k| k.name != current && why_not(&k.name).is_none())
        else {
            continue;
        };
        let note = format!(
            "{} {} {}: {current} cannot run here — {why}; {} instead",
            match op {
                Op::AttentionBackward => "attention backward",
                Op::Attention => "attention",
                Op::Matmul => "matmuls",
            },
            match s.phase {
                Phase::Train => "at micro-batch",
                Phase::Prefill { .. } => "in the prefill of batch",
                Phase::Decode { .. } => "in decode at batch",
            },
            s.micro_batch,
            instead.name
        );
        if !notes.contains(&note) {
            notes.push(note);
        }
        *s.kernels.kernel_mut(op) = instead.name.clone();
        s.kernels.vendor = s.kernels.vendor && instead.vendor;
    }
}

/// Micro-batch 1 and the largest of 2, 4 and 8 whose training memory fits the card in
/// this layout (with full recomputation if it must), and why.
fn quick_micro_batches(
    model: &ModelConfig,
    layout: &Layout,
    memory: &MemoryOptions,
    backend: &dyn Backend,
) -> (Vec<u64>, String) {
    let Some(card) = backend.device().memory_bytes.filter(|&b| b > 0) else {
        return (
            vec![1, 2],
            "micro-batches 1 and 2: the card's memory is unknown, so none larger is tried".into(),
        );
    };
    let one = training_memory(model, layout, 1, memory);
    if !one.fits(card).1 {
        return (
            vec![1, 2],
            format!(
                "micro-batches 1 and 2: on {layout} the model does not fit this card's {} even at \
                 micro-batch 1 with full recomputation ({} per GPU, estimated; see the memory table)",
                gib(card as f64),
                gib(one.total_bytes(true))
            ),
        );
    }
    for mb in QUICK_MICRO_BATCHES {
        let e = training_memory(model, layout, mb, memory);
        let (plain, recompute) = e.fits(card);
        if plain || recompute {
            return (
                vec![1, mb],
                format!(
                    "micro-batches 1 and {mb}: {mb} is the largest of 2, 4 and 8 whose training memory \
                     fits this card's {} on {layout} ({} per GPU{}, estimated)",
                    gib(card as f64),
                    gib(e.total_bytes(!plain)),
                    if plain { "" } else { " with full recomputation" }
                ),
            );
        }
    }
    (
        vec![1],
        format!(
            "micro-batch 1 only: 2 does not fit this card's {} on {layout} (estimated)",
            gib(card as f64)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::backend::{BackendError, PreparedKernel};
    use joulebench_core::workload::Workload;

    /// A backend that lists kernels; `fits` decides which shapes a kernel runs.
    struct Listing {
        kernels: Vec<KernelInfo>,
        device: DeviceInfo,
        fits: fn(&str, &Workload) -> Result<(), String>,
    }

    impl Backend for Listing {
        fn name(&self) -> &str {
            "listing"
        }
        fn device(&self) -> &DeviceInfo {
            &self.device
        }
        fn kernels(&self) -> Vec<KernelInfo> {
            self.kernels.clone()
        }
        fn support(&self, kernel: &str, _: Precision, w: &Workload) -> Support {
            match (self.fits)(kernel, w) {
                Ok(()) => Support::Supported,
                Err(why) => Support::Unsupported(why),
            }
        }
        fn prepare(
            &mut self,
            _: &str,
            _: Precision,
            _: &Workload,
            _: u64,
        ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
            Err(BackendError::Unavailable("lists only".into()))
        }
    }

    fn kernel(name: &str, op: Op, precisions: &[Precision], vendor: bool) -> KernelInfo {
        KernelInfo {
            name: name.into(),
            op,
            precisions: precisions.to_vec(),
            vendor,
            description: String::new(),
        }
    }

    fn device(memory_bytes: Option<u64>) -> DeviceInfo {
        DeviceInfo {
            name: "test".into(),
            uuid: None,
            pci_bus_id: None,
            architecture: None,
            compute_capability: None,
            driver: None,
            memory_bytes,
            adapter: None,
            cpu_emulation: false,
            simulated: true,
        }
    }

    fn sim_like() -> Listing {
        use Precision::*;
        Listing {
            kernels: vec![
                kernel("mm-ours", Op::Matmul, &[F32, Bf16, Fp8E4m3], false),
                kernel("mm-vendor", Op::Matmul, &[F32, Bf16, Fp8E4m3], true),
                kernel("attn", Op::Attention, &[Bf16], false),
                kernel("attn-bwd", Op::AttentionBackward, &[Bf16], false),
            ],
            device: device(None),
            fits: |_, _| Ok(()),
        }
    }

    /// The kernels of a CUDA GPU with FP8, whose unfused backward does not fit beyond
    /// one sequence of 8192 tokens.
    pub(crate) fn cuda_like(memory_bytes: u64) -> impl Backend {
        use Precision::*;
        Listing {
            kernels: vec![
                kernel("cublas", Op::Matmul, &[F32, Tf32, F16, Bf16], true),
                kernel("cublaslt-fp8", Op::Matmul, &[Fp8E4m3], true),
                kernel("cuda-mma", Op::Matmul, &[F16, Bf16], false),
                kernel("cuda-flash", Op::Attention, &[F16, Bf16], false),
                kernel("cublas-unfused", Op::Attention, &[F16, Bf16], true),
                kernel(
                    "cublas-unfused-bwd",
                    Op::AttentionBackward,
                    &[F16, Bf16],
                    true,
                ),
                kernel("cuda-flash-bwd", Op::AttentionBackward, &[F16, Bf16], false),
            ],
            device: DeviceInfo {
                name: "NVIDIA H100 80GB HBM3".into(),
                simulated: false,
                ..device(Some(memory_bytes))
            },
            fits: |kernel, w| match (kernel, w) {
                ("cublas-unfused-bwd", Workload::AttentionBackward(s)) if s.batch > 1 => {
                    Err("needs 103 GiB".into())
                }
                _ => Ok(()),
            },
        }
    }

    fn gpt2() -> ModelConfig {
        ModelConfig::preset("gpt2").unwrap()
    }

    fn all(opts: PlanOptions) -> PlanOptions {
        PlanOptions { all: true, ..opts }
    }

    #[test]
    fn settings_are_the_product_of_the_axes_and_shapes_are_measured_once() {
        let opts = all(PlanOptions {
            micro_batches: vec![1, 2],
            caps: vec![PowerCap::Default, PowerCap::PercentOfDefault(80.0)],
            ..Default::default()
        });
        let plan = ModelPlan::new(&gpt2(), &sim_like(), &opts).unwrap();
        // f32 is left out by default: no attention kernel runs it; fp8 runs
        // attention at bf16
        let precisions: std::collections::BTreeSet<Precision> =
            plan.settings.iter().map(|s| s.precision).collect();
        assert_eq!(
            precisions.into_iter().collect::<Vec<_>>(),
            [Precision::Bf16, Precision::Fp8E4m3]
        );
        // 2 caps × 2 micro-batches × 2 precisions × 2 matmul kernels
        assert_eq!(plan.settings.len(), 16);
        let points = plan.points();
        // per cap and micro-batch: 12 distinct GEMM shapes (of 15) × 2 kernels × 2
        // precisions, attention forward and backward at bf16 once
        assert_eq!(points.len(), 2 * 2 * (12 * 2 * 2 + 2));
        assert!(points
            .iter()
            .filter(|p| p.workload.op() != Op::Matmul)
            .all(|p| p.precision == Precision::Bf16));
        // the cap changes once
        assert_eq!(
            points.windows(2).filter(|w| w[0].cap != w[1].cap).count(),
            1
        );
        assert!(points.iter().any(|p| p.kernel == "mm-vendor" && p.vendor));
    }

    #[test]
    fn clocks_are_an_axis_of_their_own_and_of_every_point() {
        let opts = all(PlanOptions {
            micro_batches: vec![1],
            precisions: vec![Precision::Bf16],
            kernels: vec!["mm-vendor".into()],
            sm_clocks: vec![None, Some(1200)],
            ..Default::default()
        });
        let plan = ModelPlan::new(&gpt2(), &sim_like(), &opts).unwrap();
        assert_eq!(plan.settings.len(), 2);
        assert_eq!(plan.settings[1].clock_label(), "1200 MHz");
        let points = plan.points();
        assert_eq!(points.len(), 2 * (12 + 2));
        assert_eq!(
            points
                .iter()
                .filter(|p| p.sm_clock_mhz == Some(1200))
                .count(),
            12 + 2
        );
    }

    #[test]
    fn every_combination_still_measures_the_vendor_baseline() {
        let opts = all(PlanOptions {
            micro_batches: vec![1, 2],
            ..Default::default()
        });
        let gpu = cuda_like(80 << 30);
        let plan = ModelPlan::new(&ModelConfig::preset("llama3-8b").unwrap(), &gpu, &opts).unwrap();
        let b = plan.baseline.unwrap();
        assert_eq!(
            (b.precision, b.micro_batch, b.kernels.label().as_str()),
            (
                Precision::Bf16,
                1,
                "cublas + cublas-unfused / cublas-unfused-bwd"
            )
        );
    }

    #[test]
    fn a_backend_without_a_backward_kernel_plans_it_on_the_forward_kernel() {
        let mut b = sim_like();
        b.kernels.retain(|k| k.op != Op::AttentionBackward);
        let opts = PlanOptions {
            micro_batches: vec![1],
            precisions: vec![Precision::Bf16],
            kernels: vec!["mm-vendor".into()],
            ..Default::default()
        };
        let plan = ModelPlan::new(&gpt2(), &b, &opts).unwrap();
        assert_eq!(plan.settings.len(), 1);
        let k = &plan.settings[0].kernels;
        assert_eq!(
            (k.matmul.as_str(), k.attention_backward.as_str()),
            ("mm-vendor", "attn")
        );
        assert!(plan
            .points()
            .iter()
            .any(|p| p.workload.op() == Op::AttentionBackward && p.kernel == "attn"));
    }

    #[test]
    fn unknown_kernels_and_impossible_layouts_are_refused() {
        let opts = PlanOptions {
            micro_batches: vec![1],
            kernels: vec!["cublas".into()],
            ..Default::default()
        };
        let e = ModelPlan::new(&gpt2(), &sim_like(), &opts).unwrap_err();
        assert!(e.to_string().contains("unknown kernel 'cublas'"), "{e}");
        let opts = PlanOptions {
            layout: Layout {
                tensor_parallel: 5,
                ..Layout::single()
            },
            ..Default::default()
        };
        let e = ModelPlan::new(&gpt2(), &sim_like(), &opts).unwrap_err();
        assert!(
            e.to_string().contains("must divide the 12 attention heads"),
            "{e}"
        );
    }

    #[test]
    fn the_quick_plan_measures_the_baseline_fp8_our_attention_and_a_larger_micro_batch() {
        let llama = ModelConfig::preset("llama3-8b").unwrap();
        // a card large enough for micro-batch 8 at TP 8 with recomputation
        let gpu = cuda_like(141 << 30);
        let opts = PlanOptions {
            layout: Layout {
                tensor_parallel: 8,
                ..Layout::single()
            },
            ..Default::default()
        };
        let plan = ModelPlan::new(&llama, &gpu, &opts).unwrap();
        let mbs: std::collections::BTreeSet<u64> =
            plan.settings.iter().map(|s| s.micro_batch).collect();
        assert_eq!(
            mbs.into_iter().collect::<Vec<_>>(),
            [1, 8],
            "{:?}",
            plan.notes
        );
        assert!(
            plan.notes[0].starts_with("micro-batches 1 and 8"),
            "{:?}",
            plan.notes
        );
        // bf16 and fp8 × vendor and fused attention × 2 micro-batches
        assert_eq!(plan.settings.len(), 8);
        let base = plan.baseline.clone().unwrap();
        assert_eq!(
            (
                base.precision,
                base.micro_batch,
                base.cap,
                base.sm_clock_mhz
            ),
            (Precision::Bf16, 1, PowerCap::Default, None)
        );
        assert_eq!(
            base.kernels.label(),
            "cublas + cublas-unfused / cublas-unfused-bwd"
        );
        assert!(base.kernels.vendor);
        // at micro-batch 8 the unfused backward does not fit: the vendor choice takes
        // our fused backward, and the plan says so
        let big_vendor = plan
            .settings
            .iter()
            .find(|s| s.micro_batch == 8 && s.kernels.attention == "cublas-unfused")
            .unwrap();
        assert_eq!(big_vendor.kernels.attention_backward, "cuda-flash-bwd");
        assert!(!big_vendor.kernels.vendor);
        assert!(
            plan.notes.iter().any(|n| n.starts_with(
                "attention backward at micro-batch 8: cublas-unfused-bwd cannot run here — needs 103 GiB"
            ) && n.ends_with("cuda-flash-bwd instead")),
            "{:?}",
            plan.notes
        );
        // fp8 matmuls on cuBLASLt (cuBLAS has none), attention at bf16
        let fp8: Vec<&StepSetting> = plan
            .settings
            .iter()
            .filter(|s| s.precision == Precision::Fp8E4m3)
            .collect();
        assert_eq!(fp8.len(), 4);
        assert!(fp8.iter().all(
            |s| s.kernels.matmul == "cublaslt-fp8" && s.attention_precision == Precision::Bf16
        ));
        assert!(fp8.iter().any(|s| s.kernels.vendor));
        assert!(
            !plan.notes.iter().any(|n| n.contains("cublaslt")),
            "{:?}",
            plan.notes
        );
        // no cuda-mma: the quick plan's matmuls are the vendor's
        assert!(plan.points().iter().all(|p| p.kernel != "cuda-mma"));
    }

    #[test]
    fn a_default_llama3_8b_plan_fits_ten_minutes_of_an_h100_by_its_own_estimate() {
        use joulebench_core::plan::{PlanEstimate, Preset, SweepConfig};
        let llama = ModelConfig::preset("llama3-8b").unwrap();
        let gpu = cuda_like(80 << 30);
        let plan = ModelPlan::new(&llama, &gpu, &PlanOptions::default()).unwrap();
        let points = plan.points();
        // the protocol `joulebench model` measures with unless told otherwise, and
        // NVML's 100 ms energy counter
        let protocol = SweepConfig::preset(Preset::Quick, &gpu).protocol;
        let e = PlanEstimate::of(&points, &gpu, &protocol, 0.1, 1);
        eprintln!("{e:?}");
        // micro-batch 1: 14 GEMM shapes at bf16 and at fp8, attention forward and
        // backward each with two kernels; micro-batch 2: the same, the unfused
        // backward replaced by the fused one
        assert_eq!(e.points, 32 + 31, "{points:#?}");
        assert!(e.typical_s < 600.0, "{e:?}");
        assert!(e.bound_s < 600.0, "{e:?}");
    }

    #[test]
    fn the_quick_plan_of_a_model_too_big_for_the_card_says_so_and_still_measures() {
        let llama = ModelConfig::preset("llama3-8b").unwrap();
        let plan = ModelPlan::new(&llama, &cuda_like(80 << 30), &PlanOptions::default()).unwrap();
        assert!(
            plan.notes[0].contains("does not fit this card's 80.0 GiB even at micro-batch 1"),
            "{:?}",
            plan.notes
        );
        assert!(plan.baseline.is_some());
        let mbs: std::collections::BTreeSet<u64> =
            plan.settings.iter().map(|s| s.micro_batch).collect();
        assert_eq!(mbs.into_iter().collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn inference_plans_prefill_and_decode_without_a_backward_pass() {
        let llama = ModelConfig::preset("llama3-8b").unwrap();
        let opts = PlanOptions {
            inference: Some(InferenceOptions {
                prompt_len: 1024,
                output_len: 256,
                batches: vec![1, 64],
                kv_lens: vec![],
            }),
            precisions: vec![Precision::Bf16],
            ..Default::default()
        };
        let plan = ModelPlan::new(&llama, &cuda_like(80 << 30), &opts).unwrap();
        let phases: std::collections::BTreeSet<(Phase, u64)> = plan
            .settings
            .iter()
            .map(|s| (s.phase, s.micro_batch))
            .collect();
        assert_eq!(
            phases.into_iter().collect::<Vec<_>>(),
            [
                (Phase::Prefill { prompt_len: 1024 }, 1),
                (Phase::Decode { kv_len: 1152 }, 1),
                (Phase::Decode { kv_len: 1152 }, 64)
            ]
        );
        assert!(plan
            .points()
            .iter()
            .all(|p| p.workload.op() != Op::AttentionBackward));
        assert!(plan
            .settings
            .iter()
            .all(|s| s.kernels.attention_backward.is_empty()));
        // vendor and fused attention
        assert_eq!(plan.settings.len(), 3 * 2);
    }
}
