//! Configs parsed, expanded and estimated.

use super::*;
use crate::backend::{Backend, KernelInfo, Support};
use crate::inputs::InputDistribution;
use crate::power::PowerCap;
use crate::precision::Precision;
use crate::workload::{MatmulShape, Op, Workload};

#[test]
fn parses_a_full_config() {
    let cfg = SweepConfig::from_toml_str(
        r#"
        precisions = ["f32", "bf16"]
        batch_sizes = [1, 8]
        power_caps = ["default", "80%", "300W"]
        [[matmul]]
        m = 64
        n = 64
        k = 64
        [[linear]]
        in_features = 128
        out_features = 256
        seq = 16
        [[attention]]
        heads = 2
        seq_q = 32
        head_dim = 64
        causal = true
        [protocol]
        min_windows = 4
        "#,
    )
    .unwrap();
    assert_eq!(cfg.protocol.min_windows, 4);
    assert_eq!(cfg.power_caps.len(), 3);
    let w = cfg.workloads().unwrap();
    // 1 matmul + 2 linear batch sizes + 2 attention batch sizes
    assert_eq!(w.len(), 5);
    assert_eq!(
        w[2].workload,
        Workload::Matmul(MatmulShape {
            batch: 1,
            m: 128,
            n: 256,
            k: 128
        })
    );
    assert_eq!(w[2].batch_size, 8);
    assert_eq!(w[1].group, w[2].group);
}

#[test]
fn the_inputs_axis_multiplies_the_points_and_names_their_group() {
    let mut cfg = SweepConfig::from_toml_str(
        r#"
        inputs = ["normal", "zeros", "sparse:90%"]
        [[matmul]]
        m = 64
        n = 64
        k = 64
        "#,
    )
    .unwrap();
    assert_eq!(
        cfg.inputs,
        vec![
            InputDistribution::Normal,
            InputDistribution::Zeros,
            InputDistribution::Sparse { zero_percent: 90 }
        ]
    );
    assert!(SweepConfig::from_toml_str("inputs = [\"gaussian\"]").is_err());
    cfg.inputs.push(InputDistribution::Zeros);
    assert_eq!(cfg.dedup_axes().len(), 1);
    let w = cfg.workloads().unwrap();
    assert_eq!(
        group_with_inputs(&w[0].group, InputDistribution::Normal),
        w[0].group
    );
    assert_eq!(
        group_with_inputs(&w[0].group, InputDistribution::Zeros),
        format!("{}, zeros inputs", w[0].group)
    );
}

#[test]
fn ops_filter_the_shapes() {
    let mut cfg = SweepConfig::from_toml_str(
        "ops = [\"attention\"]\n[[matmul]]\nm = 8\nn = 8\nk = 8\n[[attention]]\nheads = 1\nseq_q = 8\nhead_dim = 64\n",
    )
    .unwrap();
    let w = cfg.workloads().unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].workload.op(), Op::Attention);
    cfg.ops = vec![Op::Attention, Op::AttentionBackward];
    let w = cfg.workloads().unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(w[1].workload.op(), Op::AttentionBackward);
    assert_eq!(
        w[0].workload.attention_shape(),
        w[1].workload.attention_shape()
    );
    cfg.attention.clear();
    assert!(matches!(cfg.workloads(), Err(PlanError::Invalid(_))));
}

#[test]
fn kernel_precisions_replace_the_cross_product_for_the_kernels_they_name() {
    let cfg = SweepConfig::from_toml_str(
        "precisions = [\"f32\"]\n[kernel_precisions]\nk1 = [\"bf16\", \"fp8-e4m3\"]\n[[matmul]]\nm = 8\nn = 8\nk = 8\n",
    )
    .unwrap();
    assert_eq!(
        cfg.kernel_precisions.get("k1"),
        Some(&vec![Precision::Bf16, Precision::Fp8E4m3])
    );
}

/// A backend with the CUDA backend's kernels, for planning only.
struct CudaLike(crate::device::DeviceInfo);

impl Backend for CudaLike {
    fn name(&self) -> &str {
        "cuda"
    }
    fn device(&self) -> &crate::device::DeviceInfo {
        &self.0
    }
    fn kernels(&self) -> Vec<KernelInfo> {
        use Precision::*;
        let k = |name: &str, op, precisions: &[Precision], vendor| KernelInfo {
            name: name.into(),
            op,
            precisions: precisions.to_vec(),
            vendor,
            description: String::new(),
        };
        vec![
            k("cuda-simt", Op::Matmul, &[F32], false),
            k("cuda-mma", Op::Matmul, &[F16, Bf16], false),
            k("cublas", Op::Matmul, &[F32, Tf32, F16, Bf16], true),
            k("cublaslt-fp8", Op::Matmul, &[Fp8E4m3], true),
            k("cuda-flash", Op::Attention, &[F16, Bf16], false),
            k("cublas-unfused", Op::Attention, &[F16, Bf16], true),
        ]
    }
    fn support(&self, kernel: &str, precision: Precision, w: &Workload) -> Support {
        match self.kernels().iter().find(|k| k.name == kernel) {
            Some(k) if k.op == w.op() && k.precisions.contains(&precision) => Support::Supported,
            _ => Support::Unsupported("no".into()),
        }
    }
    fn prepare(
        &mut self,
        _: &str,
        _: Precision,
        _: &Workload,
        _: u64,
    ) -> Result<Box<dyn crate::backend::PreparedKernel + '_>, crate::backend::BackendError> {
        Err(crate::backend::BackendError::Unavailable(
            "planning only".into(),
        ))
    }
}

#[test]
fn the_reference_preset_repeats_every_point_and_the_quick_one_does_not() {
    let gpu = CudaLike(crate::device::DeviceInfo {
        name: "an H200".into(),
        ..Default::default()
    });
    assert_eq!(
        SweepConfig::preset(Preset::Standard, &gpu).repeat,
        Some(STANDARD_REPEAT)
    );
    assert_eq!(SweepConfig::preset(Preset::Quick, &gpu).repeat, None);
    let toml = "repeat = 5\n[[matmul]]\nm = 8\nn = 8\nk = 8\n";
    assert_eq!(SweepConfig::from_toml_str(toml).unwrap().repeat, Some(5));
}

#[test]
fn the_quick_preset_fits_ninety_seconds_on_a_gpu_by_its_own_estimate() {
    let gpu = CudaLike(crate::device::DeviceInfo {
        name: "an H200".into(),
        ..Default::default()
    });
    let cfg = SweepConfig::preset(Preset::Quick, &gpu);
    let points = cfg.plan(&gpu).unwrap();
    let e = PlanEstimate::of(&points, &gpu, &cfg.protocol, 0.1, 1);
    // cuBLAS f32, tf32, bf16; cuBLASLt fp8; ours bf16 and f32; fused and unfused attention
    assert_eq!((e.points, e.runnable, e.skipped), (8, 8, 0), "{points:#?}");
    assert!(e.bound_s <= 90.0, "{e:?}");
    assert!(e.typical_s < e.bound_s && e.typical_s > 20.0, "{e:?}");
    let kernels: Vec<(&str, Precision)> = points
        .iter()
        .map(|p| (p.kernel.as_str(), p.precision))
        .collect();
    assert!(kernels.contains(&("cublaslt-fp8", Precision::Fp8E4m3)));
    assert!(kernels.contains(&("cuda-mma", Precision::Bf16)));
    assert!(
        !kernels.contains(&("cublas", Precision::F16)),
        "bf16 stands for f16"
    );
}

#[test]
fn repeated_axis_values_are_measured_once_with_a_note() {
    let mut cfg = SweepConfig::from_toml_str(
        "precisions = [\"bf16\", \"bf16\", \"f32\"]\nbatch_sizes = [1, 1, 1]\npower_caps = [\"80%\", \"default\", \"80%\"]\n\
         [[matmul]]\nm = 8\nn = 8\nk = 8\n[[matmul]]\nm = 8\nn = 8\nk = 8\n",
    )
    .unwrap();
    let notes = cfg.dedup_axes();
    assert_eq!(cfg.precisions, [Precision::Bf16, Precision::F32]);
    assert_eq!(cfg.batch_sizes, [1]);
    assert_eq!(
        cfg.power_caps,
        [PowerCap::PercentOfDefault(80.0), PowerCap::Default]
    );
    assert_eq!(cfg.matmul.len(), 1);
    assert_eq!(notes.len(), 4, "{notes:?}");
    assert!(
        notes[0].starts_with("precisions: 1 repeated value removed"),
        "{notes:?}"
    );
    assert!(cfg.dedup_axes().is_empty());
}

#[test]
fn rejects_unknown_keys_and_bad_shapes() {
    assert!(SweepConfig::from_toml_str("precisons = [\"f32\"]").is_err());
    assert!(SweepConfig::from_toml_str("precisions = [\"f64\"]").is_err());
    let cfg = SweepConfig::from_toml_str("[[matmul]]\nm = 0\nn = 4\nk = 4").unwrap();
    assert!(matches!(cfg.workloads(), Err(PlanError::Shape(_))));
}
