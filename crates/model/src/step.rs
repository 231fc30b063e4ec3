//! One training step of a model as the operations joulebench measures: for every
//! linear layer the forward GEMM and the two backward GEMMs (input gradient and
//! weight gradient, each with its own shape), attention forward and backward, and
//! the LM head — with how many of each a step runs, so FLOP and measured costs add up.
//!
//! The step covers the matmuls and the attention core, where nearly all of a
//! transformer's FLOP are; elementwise work (norms, activations, residuals, the
//! loss), the embedding lookup, the optimizer and communication are not in it.
//! Under tensor parallelism the ops are one GPU's share (Megatron-LM's split).

use crate::config::{ModelConfig, ModelError};
use crate::layout::Layout;
use joulebench_core::workload::{AttentionShape, MatmulShape, Op, Workload};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an op's cost is counted in a breakdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Q, K, V and output projections of attention.
    Projections,
    /// The attention core: softmax(Q·Kᵀ)·V and its backward.
    Attention,
    /// The MLP's up (and gate) and down projections.
    Mlp,
    /// The LM head: hidden state to vocabulary logits.
    Head,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Mlp,
        Category::Attention,
        Category::Projections,
        Category::Head,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Projections => "projections",
            Category::Attention => "attention",
            Category::Mlp => "MLP",
            Category::Head => "head",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pass {
    Forward,
    Backward,
}

/// What a GEMM computes for its linear layer, Y = X·W with X tokens×in, W in×out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Y = X·W: tokens×in · in×out.
    Forward,
    /// dX = dY·Wᵀ: tokens×out · out×in.
    InputGradient,
    /// dW = Xᵀ·dY: in×tokens · tokens×out.
    WeightGradient,
    AttentionForward,
    AttentionBackward,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Forward => "forward",
            Role::InputGradient => "input gradient",
            Role::WeightGradient => "weight gradient",
            Role::AttentionForward => "forward",
            Role::AttentionBackward => "backward",
        }
    }

    pub fn pass(self) -> Pass {
        match self {
            Role::Forward | Role::AttentionForward => Pass::Forward,
            _ => Pass::Backward,
        }
    }
}

/// One operation of a step, run `count` times per step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOp {
    /// The layer it belongs to: "attn-qkv", "attn-out", "mlp-gate-up" (gated) or
    /// "mlp-up", "mlp-down", "lm-head", or "attention" for the core.
    pub layer: &'static str,
    pub role: Role,
    pub category: Category,
    pub workload: Workload,
    /// Times per step: the number of transformer blocks, 1 for the LM head.
    pub count: u64,
}

impl StepOp {
    pub fn pass(&self) -> Pass {
        self.role.pass()
    }

    /// FLOP of all `count` runs.
    pub fn flop(&self) -> u128 {
        self.workload.flop().unwrap_or(0) as u128 * self.count as u128
    }
}

impl fmt::Display for StepOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.layer, self.role.name(), self.workload)
    }
}

/// A linear layer: `in_features` → `out_features`, `count` per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear {
    pub name: &'static str,
    pub in_features: u64,
    pub out_features: u64,
    pub category: Category,
    pub count: u64,
}

/// The model's linear layers, Megatron-style: Q, K and V as one fused projection,
/// and gate and up as one when the MLP is gated (the same FLOP as separate ones).
pub fn linears(m: &ModelConfig) -> Vec<Linear> {
    linears_on(m, &Layout::single())
}

/// One tensor-parallel GPU's linear layers (Megatron-LM): the QKV and gate/up
/// projections split by output columns (whole heads), the output and down projections
/// by input rows, the LM head by vocabulary; every layer's, whatever the stage.
pub fn linears_on(m: &ModelConfig, layout: &Layout) -> Vec<Linear> {
    let tp = layout.tensor_parallel.max(1);
    let (h, d, l) = (m.hidden_size, m.head_dim(), m.layers);
    let q_width = m.attention_heads / tp * d;
    let mut out = vec![
        Linear {
            name: "attn-qkv",
            in_features: h,
            out_features: q_width + 2 * layout.kv_heads_per_gpu(m) * d,
            category: Category::Projections,
            count: l,
        },
        Linear {
            name: "attn-out",
            in_features: q_width,
            out_features: h,
            category: Category::Projections,
            count: l,
        },
    ];
    let mlp = m.mlp_size / tp;
    let (up_name, up_width) = if m.gated_mlp {
        ("mlp-gate-up", 2 * mlp)
    } else {
        ("mlp-up", mlp)
    };
    out.push(Linear {
        name: up_name,
        in_features: h,
        out_features: up_width,
        category: Category::Mlp,
        count: l,
    });
    out.push(Linear {
        name: "mlp-down",
        in_features: mlp,
        out_features: h,
        category: Category::Mlp,
        count: l,
    });
    out.push(Linear {
        name: "lm-head",
        in_features: h,
        out_features: m.vocab_size.div_ceil(tp),
        category: Category::Head,
        count: 1,
    });
    out
}

/// N of the 6·N rule: the weights every token is multiplied by (every linear layer
/// and the LM head; not the embedding table, which is looked up, not multiplied).
pub fn matmul_parameters(m: &ModelConfig) -> u128 {
    linears(m)
        .iter()
        .map(|l| l.in_features as u128 * l.out_features as u128 * l.count as u128)
        .sum()
}

/// The ops of one training step over `micro_batch` sequences of `seq_len` tokens.
pub fn step_ops(m: &ModelConfig, micro_batch: u64) -> Result<Vec<StepOp>, ModelError> {
    step_ops_on(m, micro_batch, &Layout::single())
}

/// One tensor-parallel GPU's ops of a training step, over every layer (a pipeline
/// stage runs its own run of them; see [`Layout::layers_per_stage`]).
pub fn step_ops_on(
    m: &ModelConfig,
    micro_batch: u64,
    layout: &Layout,
) -> Result<Vec<StepOp>, ModelError> {
    m.validate()?;
    layout.validate(m)?;
    if micro_batch == 0 {
        return Err(ModelError::ZeroMicroBatch);
    }
    let tokens = micro_batch.saturating_mul(m.seq_len);
    let gemm = |m: u64, n: u64, k: u64| Workload::Matmul(MatmulShape { batch: 1, m, n, k });
    let mut ops = Vec::new();
    for l in linears_on(m, layout) {
        let (i, o) = (l.in_features, l.out_features);
        for (role, workload) in [
            (Role::Forward, gemm(tokens, o, i)),
            (Role::InputGradient, gemm(tokens, i, o)),
            (Role::WeightGradient, gemm(i, o, tokens)),
        ] {
            ops.push(StepOp {
                layer: l.name,
                role,
                category: l.category,
                workload,
                count: l.count,
            });
        }
    }
    // Grouped-query attention runs as attention with K and V repeated for every
    // query head: the same FLOP, a little more K/V traffic than a GQA kernel has.
    let s = AttentionShape {
        batch: micro_batch,
        heads: m.attention_heads / layout.tensor_parallel.max(1),
        seq_q: m.seq_len,
        seq_kv: m.seq_len,
        head_dim: m.head_dim(),
        causal: true,
    };
    for (role, workload) in [
        (Role::AttentionForward, Workload::Attention(s)),
        (Role::AttentionBackward, Workload::AttentionBackward(s)),
    ] {
        ops.push(StepOp {
            layer: "attention",
            role,
            category: Category::Attention,
            workload,
            count: m.layers,
        });
    }
    validate_ops(m, micro_batch, &ops)?;
    Ok(ops)
}

pub(crate) fn validate_ops(
    m: &ModelConfig,
    micro_batch: u64,
    ops: &[StepOp],
) -> Result<(), ModelError> {
    for op in ops {
        op.workload.validate().map_err(|source| ModelError::Shape {
            model: m.name.clone(),
            micro_batch,
            source,
        })?;
    }
    Ok(())
}

/// Every distinct workload of a step, first occurrence first: what is measured
/// (layers share shapes, and some GEMMs of a layer share one, e.g. a square
/// projection's forward and input gradient).
pub fn distinct_workloads(ops: &[StepOp]) -> Vec<Workload> {
    let mut out: Vec<Workload> = Vec::new();
    for op in ops {
        if !out.contains(&op.workload) {
            out.push(op.workload);
        }
    }
    out
}

/// FLOP of a step, and of its matmuls only.
pub fn step_flop(ops: &[StepOp]) -> (u128, u128) {
    let all = ops.iter().map(StepOp::flop).sum();
    let matmul = ops
        .iter()
        .filter(|o| o.workload.op() == Op::Matmul)
        .map(StepOp::flop)
        .sum();
    (all, matmul)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset(name: &str) -> ModelConfig {
        ModelConfig::preset(name).unwrap()
    }

    #[test]
    fn matmul_flop_per_step_is_six_n_per_token() {
        for name in crate::config::PRESETS {
            let m = preset(name);
            for micro_batch in [1, 3] {
                let ops = step_ops(&m, micro_batch).unwrap();
                let tokens = (micro_batch * m.seq_len) as u128;
                let (_, matmul) = step_flop(&ops);
                assert_eq!(matmul, 6 * matmul_parameters(&m) * tokens, "{name}");
            }
        }
    }

    #[test]
    fn parameters_are_the_published_counts_less_the_embedding() {
        // per layer 4096·6144 + 4096·4096 + 4096·28672 + 14336·4096 = 218,103,808;
        // ×32 layers + the head 4096·128256 = 525,336,576 (8.03 B with the embedding)
        assert_eq!(matmul_parameters(&preset("llama3-8b")), 7_504_658_432);
        // per layer 768·2304 + 768·768 + 768·3072 + 3072·768 = 7,077,888; ×12 layers
        // + the head 768·50257 = 38,597,376 (124 M with the embeddings and biases)
        assert_eq!(matmul_parameters(&preset("gpt2")), 123_532_032);
    }

    #[test]
    fn gpt2_shapes_counted_by_hand() {
        let ops = step_ops(&preset("gpt2"), 2).unwrap();
        let mm = |m, n, k| Workload::Matmul(MatmulShape { batch: 1, m, n, k });
        let find = |layer: &str, role: Role| {
            let op = ops
                .iter()
                .find(|o| o.layer == layer && o.role == role)
                .unwrap_or_else(|| panic!("{layer} {role:?}"));
            (op.workload, op.count, op.category)
        };
        // 2 sequences of 1024 tokens = 2048 rows
        let t = 2048;
        use Category::*;
        use Role::*;
        assert_eq!(
            find("attn-qkv", Forward),
            (mm(t, 2304, 768), 12, Projections)
        );
        assert_eq!(
            find("attn-qkv", InputGradient),
            (mm(t, 768, 2304), 12, Projections)
        );
        assert_eq!(
            find("attn-qkv", WeightGradient),
            (mm(768, 2304, t), 12, Projections)
        );
        assert_eq!(
            find("attn-out", Forward),
            (mm(t, 768, 768), 12, Projections)
        );
        assert_eq!(
            find("attn-out", WeightGradient),
            (mm(768, 768, t), 12, Projections)
        );
        assert_eq!(find("mlp-up", Forward), (mm(t, 3072, 768), 12, Mlp));
        assert_eq!(find("mlp-up", InputGradient), (mm(t, 768, 3072), 12, Mlp));
        assert_eq!(find("mlp-down", Forward), (mm(t, 768, 3072), 12, Mlp));
        assert_eq!(
            find("mlp-down", WeightGradient),
            (mm(3072, 768, t), 12, Mlp)
        );
        assert_eq!(find("lm-head", Forward), (mm(t, 50257, 768), 1, Head));
        assert_eq!(find("lm-head", InputGradient), (mm(t, 768, 50257), 1, Head));
        assert_eq!(
            find("lm-head", WeightGradient),
            (mm(768, 50257, t), 1, Head)
        );
        let attn = AttentionShape {
            batch: 2,
            heads: 12,
            seq_q: 1024,
            seq_kv: 1024,
            head_dim: 64,
            causal: true,
        };
        assert_eq!(
            find("attention", AttentionForward),
            (Workload::Attention(attn), 12, Attention)
        );
        assert_eq!(
            find("attention", AttentionBackward),
            (Workload::AttentionBackward(attn), 12, Attention)
        );
        assert_eq!(ops.len(), 5 * 3 + 2);
        // one shape each: mlp-up's input gradient and mlp-down's forward, mlp-up's
        // forward and mlp-down's input gradient, attn-out's forward and input gradient
        assert_eq!(distinct_workloads(&ops).len(), ops.len() - 3);

        // attention: 4·d per visible pair forward, 10·d backward; 1024·1025/2 pairs
        // per (sequence, head), 2 sequences × 12 heads × 12 layers
        let pairs = 1024 * 1025 / 2;
        let (all, matmul) = step_flop(&ops);
        assert_eq!(all - matmul, (4 + 10) * 64 * pairs * 2 * 12 * 12);
    }

    #[test]
    fn gated_mlp_and_grouped_query_attention_set_the_widths() {
        let ops = step_ops(&preset("llama3-8b"), 1).unwrap();
        let fwd = |layer: &str| {
            ops.iter()
                .find(|o| o.layer == layer && o.role == Role::Forward)
                .map(|o| o.workload)
                .unwrap()
        };
        let mm = |m, n, k| Workload::Matmul(MatmulShape { batch: 1, m, n, k });
        // Q 32·128 + K and V 8·128 each
        assert_eq!(fwd("attn-qkv"), mm(8192, 6144, 4096));
        // gate and up together
        assert_eq!(fwd("mlp-gate-up"), mm(8192, 2 * 14336, 4096));
        assert_eq!(fwd("mlp-down"), mm(8192, 4096, 14336));
        assert!(ops.iter().all(|o| o.layer != "mlp-up"));
    }

    #[test]
    fn tensor_parallelism_splits_columns_rows_heads_and_the_vocabulary() {
        let m = preset("llama3-70b");
        let tp8 = Layout {
            tensor_parallel: 8,
            ..Layout::single()
        };
        let ops = step_ops_on(&m, 1, &tp8).unwrap();
        let fwd = |layer: &str| {
            ops.iter()
                .find(|o| o.layer == layer && o.role == Role::Forward)
                .map(|o| o.workload)
                .unwrap()
        };
        let mm = |m, n, k| Workload::Matmul(MatmulShape { batch: 1, m, n, k });
        // 64 query heads and 8 KV heads of 128 over 8 GPUs: 8 + 2·1 heads each
        assert_eq!(fwd("attn-qkv"), mm(8192, 1280, 8192));
        assert_eq!(fwd("attn-out"), mm(8192, 8192, 1024));
        assert_eq!(fwd("mlp-gate-up"), mm(8192, 2 * 3584, 8192));
        assert_eq!(fwd("mlp-down"), mm(8192, 8192, 3584));
        assert_eq!(fwd("lm-head"), mm(8192, 16_032, 8192));
        let attn = ops.iter().find(|o| o.layer == "attention").unwrap();
        assert_eq!(attn.workload.attention_shape().unwrap().heads, 8);
        // the group's matmuls are the model's: 6·N per token, split eight ways
        let (_, matmul) = step_flop(&ops);
        assert_eq!(8 * matmul, 6 * matmul_parameters(&m) * 8192);
        let (all_one, _) = step_flop(&step_ops(&m, 1).unwrap());
        assert_eq!(8 * step_flop(&ops).0, all_one);
    }

    #[test]
    fn shapes_too_large_for_a_gpu_are_refused_with_the_micro_batch() {
        let err = step_ops(&preset("llama3-70b"), 1 << 20).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("llama3-70b at micro-batch 1048576") && text.contains("exceeds"),
            "{text}"
        );
        assert!(matches!(
            step_ops(&preset("gpt2"), 0),
            Err(ModelError::ZeroMicroBatch)
        ));
    }
}
