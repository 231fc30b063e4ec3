//! The settings a model sweep compares — precision, micro-batch, power cap and the
//! kernel of each op — and the points that measure them: every distinct op shape
//! once per kernel, precision and cap, whatever number of layers and settings share
//! it. Composing the step is free once its ops are measured, so every combination
//! of op kernels is a setting of its own.

use crate::config::{ModelConfig, ModelError};
use crate::step::{distinct_workloads, step_ops};
use joulebench_core::backend::{Backend, KernelInfo};
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
    /// are recorded as skipped with the backend's reason.
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

    /// "cublas + cuda-flash / cublas-unfused-bwd": matmul + attention / its backward.
    pub fn label(&self) -> String {
        format!(
            "{} + {} / {}",
            self.matmul, self.attention, self.attention_backward
        )
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

/// One setting of a training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSetting {
    /// The matmuls' precision.
    pub precision: Precision,
    pub attention_precision: Precision,
    /// Sequences per step; tokens per step = micro_batch × seq_len.
    pub micro_batch: u64,
    pub cap: PowerCap,
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
}

/// What the axes come from: the flags (empty: the defaults below).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanOptions {
    /// Empty: every precision a matmul kernel runs whose attention precision an
    /// attention kernel runs too.
    pub precisions: Vec<Precision>,
    pub micro_batches: Vec<u64>,
    /// Empty: the default limit only.
    pub caps: Vec<PowerCap>,
    /// Kernel names. An op none of them runs keeps every kernel it has. Empty: all.
    pub kernels: Vec<String>,
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
    pub settings: Vec<StepSetting>,
    /// Kernel name → whether it is a vendor library's.
    vendor: Vec<(String, bool)>,
}

impl ModelPlan {
    pub fn new(
        model: &ModelConfig,
        backend: &dyn Backend,
        opts: &PlanOptions,
    ) -> Result<ModelPlan, PlanError> {
        model.validate()?;
        if opts.micro_batches.is_empty() {
            return Err(PlanError::NoMicroBatch);
        }
        for &mb in &opts.micro_batches {
            step_ops(model, mb)?;
        }
        check_kernels_known(&opts.kernels, backend)?;
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

        let precisions = if opts.precisions.is_empty() {
            let runs =
                |ks: &[&KernelInfo], p: Precision| ks.iter().any(|k| k.precisions.contains(&p));
            let whole: Vec<Precision> = Precision::ALL
                .into_iter()
                .filter(|&p| runs(&matmul, p) && runs(&attention, attention_precision(p)))
                .collect();
            if whole.is_empty() {
                Precision::ALL
                    .into_iter()
                    .filter(|&p| runs(&matmul, p))
                    .collect()
            } else {
                whole
            }
        } else {
            opts.precisions.clone()
        };
        let caps = if opts.caps.is_empty() {
            vec![PowerCap::Default]
        } else {
            opts.caps.clone()
        };
        let mut choices = Vec::new();
        for m in &matmul {
            for a in &attention {
                let backwards: Vec<&KernelInfo> = if backward.is_empty() {
                    vec![a]
                } else {
                    backward.clone()
                };
                for b in backwards {
                    choices.push(KernelChoice {
                        matmul: m.name.clone(),
                        attention: a.name.clone(),
                        attention_backward: b.name.clone(),
                        vendor: m.vendor && a.vendor && b.vendor,
                    });
                }
            }
        }
        let mut settings = Vec::new();
        for cap in &caps {
            for &micro_batch in &opts.micro_batches {
                for &precision in &precisions {
                    for kernels in &choices {
                        settings.push(StepSetting {
                            precision,
                            attention_precision: attention_precision(precision),
                            micro_batch,
                            cap: *cap,
                            kernels: kernels.clone(),
                        });
                    }
                }
            }
        }
        Ok(ModelPlan {
            model: model.clone(),
            device: backend.device().clone(),
            backend: backend.name().into(),
            settings,
            vendor: kernels.iter().map(|k| (k.name.clone(), k.vendor)).collect(),
        })
    }

    /// Every point the settings need, each once, power cap by power cap.
    pub fn points(&self) -> Vec<PlanPoint> {
        let mut points: Vec<PlanPoint> = Vec::new();
        for s in &self.settings {
            // validated in `new`
            let Ok(ops) = step_ops(&self.model, s.micro_batch) else {
                continue;
            };
            for workload in distinct_workloads(&ops) {
                let op = workload.op();
                let point = PlanPoint {
                    kernel: s.kernels.kernel_for(op).to_string(),
                    vendor: self
                        .vendor
                        .iter()
                        .any(|(k, v)| k == s.kernels.kernel_for(op) && *v),
                    precision: s.precision_for(op),
                    workload,
                    group: workload.shape_label(),
                    batch_size: s.micro_batch,
                    cap: s.cap,
                    // a training step runs at the default clocks, on normal inputs
                    sm_clock_mhz: None,
                    mem_clock_mhz: None,
                    inputs: Default::default(),
                };
                let seen = points.iter().any(|p| {
                    p.kernel == point.kernel
                        && p.precision == point.precision
                        && p.workload == point.workload
                        && p.cap == point.cap
                });
                if !seen {
                    points.push(point);
                }
            }
        }
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::backend::{BackendError, PreparedKernel, Support};
    use joulebench_core::workload::Workload;

    /// A backend that only lists kernels.
    struct Listing(Vec<KernelInfo>, DeviceInfo);

    impl Backend for Listing {
        fn name(&self) -> &str {
            "listing"
        }
        fn device(&self) -> &DeviceInfo {
            &self.1
        }
        fn kernels(&self) -> Vec<KernelInfo> {
            self.0.clone()
        }
        fn support(&self, _: &str, _: Precision, _: &Workload) -> Support {
            Support::Supported
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

    fn device() -> DeviceInfo {
        DeviceInfo {
            name: "test".into(),
            uuid: None,
            pci_bus_id: None,
            architecture: None,
            compute_capability: None,
            driver: None,
            memory_bytes: None,
            adapter: None,
            cpu_emulation: false,
            simulated: true,
        }
    }

    fn sim_like() -> Listing {
        use Precision::*;
        Listing(
            vec![
                kernel("mm-ours", Op::Matmul, &[F32, Bf16, Fp8E4m3], false),
                kernel("mm-vendor", Op::Matmul, &[F32, Bf16, Fp8E4m3], true),
                kernel("attn", Op::Attention, &[Bf16], false),
                kernel("attn-bwd", Op::AttentionBackward, &[Bf16], false),
            ],
            device(),
        )
    }

    fn gpt2() -> ModelConfig {
        ModelConfig::preset("gpt2").unwrap()
    }

    #[test]
    fn settings_are_the_product_of_the_axes_and_shapes_are_measured_once() {
        let opts = PlanOptions {
            micro_batches: vec![1, 2],
            caps: vec![PowerCap::Default, PowerCap::PercentOfDefault(80.0)],
            ..Default::default()
        };
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
    fn a_backend_without_a_backward_kernel_plans_it_on_the_forward_kernel() {
        let mut b = sim_like();
        b.0.retain(|k| k.op != Op::AttentionBackward);
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
    fn unknown_kernels_and_empty_axes_are_refused() {
        let opts = PlanOptions {
            micro_batches: vec![1],
            kernels: vec!["cublas".into()],
            ..Default::default()
        };
        let e = ModelPlan::new(&gpt2(), &sim_like(), &opts).unwrap_err();
        assert!(e.to_string().contains("unknown kernel 'cublas'"), "{e}");
        let e = ModelPlan::new(&gpt2(), &sim_like(), &PlanOptions::default()).unwrap_err();
        assert!(matches!(e, PlanError::NoMicroBatch));
    }
}
