//! The simulated device's kernels: what each computes and moves (the same on every
//! profile), and how fast and how hungry each runs on a part (a profile's fits,
//! from a card's records where joulebench has them).

use joulebench_core::precision::Precision;
use joulebench_core::workload::{Op, Workload};

/// One of the simulated device's kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimKernel {
    pub name: &'static str,
    pub op: Op,
    pub vendor: bool,
    /// Writes and re-reads the score matrix (the unfused attention baseline): its
    /// GEMM phase and its memory phase run one after the other, and it computes the
    /// masked half of a causal score matrix too.
    pub unfused: bool,
    pub description: &'static str,
}

pub const KERNELS: &[SimKernel] = &[
    SimKernel {
        name: "sim-ours",
        op: Op::Matmul,
        vendor: false,
        unfused: false,
        description: "a model of our own tiled matmul",
    },
    SimKernel {
        name: "sim-vendor",
        op: Op::Matmul,
        vendor: true,
        unfused: false,
        description: "a model of a vendor BLAS matmul",
    },
    SimKernel {
        name: "sim-fused",
        op: Op::Attention,
        vendor: false,
        unfused: false,
        description: "a model of our fused FlashAttention-style kernel",
    },
    SimKernel {
        name: "sim-unfused",
        op: Op::Attention,
        vendor: true,
        unfused: true,
        description: "a model of attention from vendor GEMMs and a softmax pass over a materialised score matrix",
    },
    SimKernel {
        name: "sim-fused-bwd",
        op: Op::AttentionBackward,
        vendor: false,
        unfused: false,
        description: "a model of a fused FlashAttention-2-style backward that recomputes the scores",
    },
    SimKernel {
        name: "sim-unfused-bwd",
        op: Op::AttentionBackward,
        vendor: true,
        unfused: true,
        description: "a model of attention backward from vendor GEMMs and a softmax-backward pass over materialised score matrices",
    },
];

pub fn kernel(name: &str) -> Option<&'static SimKernel> {
    KERNELS.iter().find(|k| k.name == name)
}

/// How one kernel runs on one part. `efficiency` is the fraction of the part's peak
/// (at the clock it runs at) that a large op reaches; `activity` scales the part's
/// switching power (1: a bf16 tensor-core GEMM at full activity).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelFit {
    pub kernel: &'static str,
    /// `Some`: the fit of this precision, `activity` absolute. `None`: the kernel at
    /// any precision without an entry of its own, `activity` multiplied by
    /// [`precision_activity`].
    pub precision: Option<Precision>,
    pub efficiency: f64,
    pub activity: f64,
}

/// Switching activity of a precision's arithmetic relative to f16/bf16 tensor cores,
/// for fits that do not name a precision.
pub fn precision_activity(p: Precision) -> f64 {
    match p {
        Precision::F32 => 0.38,
        Precision::Tf32 => 0.61,
        Precision::F16 | Precision::Bf16 => 1.0,
        Precision::Fp8E4m3 => 1.07,
    }
}

/// `(efficiency, activity)` of `kernel` at `precision` among `fits`.
pub fn fit_of(fits: &[KernelFit], kernel: &str, precision: Precision) -> Option<(f64, f64)> {
    let exact = fits
        .iter()
        .find(|f| f.kernel == kernel && f.precision == Some(precision));
    if let Some(f) = exact {
        return Some((f.efficiency, f.activity));
    }
    fits.iter()
        .find(|f| f.kernel == kernel && f.precision.is_none())
        .map(|f| (f.efficiency, f.activity * precision_activity(precision)))
}

/// Kernel fits of a part joulebench has no records of: a vendor GEMM at 85% of the
/// peak, ours at 70%, fused attention at 55% (45% backward), the unfused baselines'
/// GEMMs at 75%; activity grows with efficiency.
pub const GENERIC_FITS: &[KernelFit] = &[
    generic("sim-ours", 0.70),
    generic("sim-vendor", 0.85),
    generic("sim-fused", 0.55),
    generic("sim-unfused", 0.75),
    generic("sim-fused-bwd", 0.45),
    generic("sim-unfused-bwd", 0.75),
];

const fn generic(kernel: &'static str, efficiency: f64) -> KernelFit {
    KernelFit {
        kernel,
        precision: None,
        efficiency,
        activity: 0.35 + 0.65 * efficiency,
    }
}

/// Bytes a kernel moves: the minimum, plus what the unfused baselines move through
/// score-sized matrices. Forward: the scores written and read, then the
/// probabilities written and read (4 passes). Backward: S written and read, P
/// written and read twice (dV, softmax backward), dP written and read, dS written
/// and read twice (dQ, dK): 10 passes.
pub fn kernel_bytes(k: &SimKernel, precision: Precision, w: &Workload) -> f64 {
    let mut bytes = w.min_bytes(precision) as f64;
    let passes = match w {
        Workload::Matmul(_) => 0.0,
        Workload::Attention(_) => 4.0,
        Workload::AttentionBackward(_) => 10.0,
    };
    if let (true, Some(s)) = (k.unfused, w.attention_shape()) {
        let scores = (s.batch * s.heads * s.seq_q * s.seq_kv) as f64;
        bytes += passes * scores * precision.output_bytes() as f64;
    }
    bytes
}

/// FLOP a kernel performs for `w`: what `w` counts, except that the unfused
/// baselines compute the masked half of a causal score matrix as well.
pub fn kernel_flop(k: &SimKernel, w: &Workload) -> f64 {
    let flop = w.flop().unwrap_or(0) as f64;
    match w.attention_shape() {
        Some(s) if k.unfused && s.causal && s.visible_pairs() > 0 => {
            flop * (s.seq_q * s.seq_kv) as f64 / s.visible_pairs() as f64
        }
        _ => flop,
    }
}
