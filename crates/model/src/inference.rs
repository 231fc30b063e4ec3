//! Serving a model as the ops joulebench measures. Prefill runs a prompt through every
//! layer (GEMMs of one row per prompt token, causal attention over the prompt) and
//! the LM head for its last token; decode makes one new token per sequence: GEMMs of
//! one row per sequence, and attention of that token's query against the KV cache.
//! Decode reads every weight and the whole cache for little arithmetic, which is why
//! its levers differ from training's.

use crate::config::{ModelConfig, ModelError};
use crate::layout::Layout;
use crate::step::{linears_on, validate_ops, Category, Role, StepOp};
use joulebench_core::workload::{AttentionShape, MatmulShape, Workload};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What one op list stands for: a training step, a prompt's prefill, or one decode
/// step at a cache length.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Train,
    Prefill {
        prompt_len: u64,
    },
    Decode {
        kv_len: u64,
    },
}

impl Phase {
    /// Tokens one step of `batch` sequences handles: trained, read from prompts, or
    /// generated.
    pub fn tokens_per_step(&self, m: &ModelConfig, batch: u64) -> u64 {
        match self {
            Phase::Train => batch * m.seq_len,
            Phase::Prefill { prompt_len } => batch * prompt_len,
            Phase::Decode { .. } => batch,
        }
    }

    pub fn is_inference(&self) -> bool {
        !matches!(self, Phase::Train)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Train => f.write_str("training step"),
            Phase::Prefill { prompt_len } => write!(f, "prefill of {prompt_len} tokens"),
            Phase::Decode { kv_len } => write!(f, "decode at {kv_len} cached tokens"),
        }
    }
}

/// The serving scenario: prompt and output lengths, the decode batches compared, and
/// the cache lengths decode is measured at.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InferenceOptions {
    pub prompt_len: u64,
    pub output_len: u64,
    pub batches: Vec<u64>,
    /// Empty: the mean cache length of a request, prompt + (output + 1) / 2.
    pub kv_lens: Vec<u64>,
}

impl InferenceOptions {
    /// The cache length at which one decode step costs what a request's average step
    /// does, when the cost is linear in the cache length (as attention's is, and the
    /// GEMMs' does not depend on it): steps see prompt + 1 … prompt + output tokens.
    pub fn mean_kv_len(&self) -> u64 {
        self.prompt_len + self.output_len.div_ceil(2)
    }

    pub fn kv_lens(&self) -> Vec<u64> {
        if self.kv_lens.is_empty() {
            vec![self.mean_kv_len()]
        } else {
            self.kv_lens.clone()
        }
    }

    pub fn validate(&self, m: &ModelConfig) -> Result<(), ModelError> {
        let bad = |why: String| ModelError::Inference {
            model: m.name.clone(),
            why,
        };
        if self.prompt_len == 0 || self.output_len == 0 {
            return Err(bad(
                "prompt and output lengths must be at least 1 token".into()
            ));
        }
        if self.batches.is_empty() || self.batches.contains(&0) {
            return Err(bad("decode batches must be whole numbers ≥ 1".into()));
        }
        for &l in &self.kv_lens() {
            if l == 0 {
                return Err(bad("a KV-cache length must be at least 1 token".into()));
            }
        }
        Ok(())
    }
}

fn gemm(m: u64, n: u64, k: u64) -> Workload {
    Workload::Matmul(MatmulShape { batch: 1, m, n, k })
}

/// The forward GEMMs of every linear layer over `rows` rows, and the LM head over
/// `head_rows`.
fn forward_linears(m: &ModelConfig, layout: &Layout, rows: u64, head_rows: u64) -> Vec<StepOp> {
    linears_on(m, layout)
        .into_iter()
        .map(|l| StepOp {
            layer: l.name,
            role: Role::Forward,
            category: l.category,
            workload: gemm(
                if l.category == Category::Head {
                    head_rows
                } else {
                    rows
                },
                l.out_features,
                l.in_features,
            ),
            count: l.count,
        })
        .collect()
}

/// One GPU's ops of the prefill of `batch` prompts of `prompt_len` tokens: every
/// layer's forward GEMMs over all prompt tokens, causal attention over the prompt
/// (K and V repeated per query head, as in training), the LM head for each prompt's
/// last token.
pub fn prefill_ops(
    m: &ModelConfig,
    batch: u64,
    prompt_len: u64,
    layout: &Layout,
) -> Result<Vec<StepOp>, ModelError> {
    m.validate()?;
    layout.validate(m)?;
    if batch == 0 {
        return Err(ModelError::ZeroMicroBatch);
    }
    let mut ops = forward_linears(m, layout, batch.saturating_mul(prompt_len), batch);
    ops.push(StepOp {
        layer: "attention",
        role: Role::AttentionForward,
        category: Category::Attention,
        workload: Workload::Attention(AttentionShape {
            batch,
            heads: m.attention_heads / layout.tensor_parallel.max(1),
            seq_q: prompt_len,
            seq_kv: prompt_len,
            head_dim: m.head_dim(),
            causal: true,
        }),
        count: m.layers,
    });
    validate_ops(m, batch, &ops)?;
    Ok(ops)
}

/// One GPU's ops of one decode step of `batch` sequences with `kv_len` tokens cached:
/// GEMMs of one row per sequence, the LM head included, and attention of the new
/// token against the cache. The query heads that share a KV head are the rows of one
/// attention against that head's cache (as FlashAttention's decoding path runs
/// grouped-query attention), so each cached K and V is read once, as a serving
/// kernel reads it.
pub fn decode_ops(
    m: &ModelConfig,
    batch: u64,
    kv_len: u64,
    layout: &Layout,
) -> Result<Vec<StepOp>, ModelError> {
    m.validate()?;
    layout.validate(m)?;
    if batch == 0 {
        return Err(ModelError::ZeroMicroBatch);
    }
    let mut ops = forward_linears(m, layout, batch, batch);
    let kv_heads = layout.kv_heads_per_gpu(m);
    let q_heads = m.attention_heads / layout.tensor_parallel.max(1);
    ops.push(StepOp {
        layer: "attention",
        role: Role::AttentionForward,
        category: Category::Attention,
        workload: Workload::Attention(AttentionShape {
            batch,
            heads: kv_heads,
            seq_q: q_heads / kv_heads,
            seq_kv: kv_len,
            head_dim: m.head_dim(),
            causal: false,
        }),
        count: m.layers,
    });
    validate_ops(m, batch, &ops)?;
    Ok(ops)
}

/// The ops of `phase` for `batch` sequences on one GPU of `layout`.
pub fn phase_ops(
    m: &ModelConfig,
    phase: Phase,
    batch: u64,
    layout: &Layout,
) -> Result<Vec<StepOp>, ModelError> {
    match phase {
        Phase::Train => crate::step::step_ops_on(m, batch, layout),
        Phase::Prefill { prompt_len } => prefill_ops(m, batch, prompt_len, layout),
        Phase::Decode { kv_len } => decode_ops(m, batch, kv_len, layout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{matmul_parameters, step_flop};

    fn llama() -> ModelConfig {
        ModelConfig::preset("llama3-8b").unwrap()
    }

    #[test]
    fn decode_is_one_row_per_sequence_and_reads_each_cached_head_once() {
        let ops = decode_ops(&llama(), 64, 1152, &Layout::single()).unwrap();
        let find = |layer: &str| ops.iter().find(|o| o.layer == layer).unwrap().workload;
        assert_eq!(find("attn-qkv"), gemm(64, 6144, 4096));
        assert_eq!(find("mlp-down"), gemm(64, 4096, 14336));
        assert_eq!(find("lm-head"), gemm(64, 128_256, 4096));
        // 32 query heads over 8 KV heads: 4 query rows against each head's cache
        let Workload::Attention(a) = find("attention") else {
            panic!()
        };
        assert_eq!((a.batch, a.heads, a.seq_q, a.seq_kv), (64, 8, 4, 1152));
        assert!(!a.causal);
        // 2·N FLOP per generated token for the GEMMs, 4·d per cached token per head
        let (all, matmul) = step_flop(&ops);
        assert_eq!(matmul, 2 * matmul_parameters(&llama()) * 64);
        assert_eq!(all - matmul, 4 * 128 * 1152 * 32 * 32 * 64);
        // the cache is read once per KV head: K and V of 8 heads, not 32
        let bytes = Workload::Attention(a).min_bytes(joulebench_core::Precision::Bf16);
        let cache = 2 * 64 * 8 * 1152 * 128 * 2;
        assert!(bytes >= cache && bytes < cache + cache / 50, "{bytes}");
    }

    #[test]
    fn prefill_runs_every_prompt_token_and_the_head_for_the_last() {
        let ops = prefill_ops(&llama(), 2, 1024, &Layout::single()).unwrap();
        let find = |layer: &str| ops.iter().find(|o| o.layer == layer).unwrap().workload;
        assert_eq!(find("attn-qkv"), gemm(2048, 6144, 4096));
        assert_eq!(find("lm-head"), gemm(2, 128_256, 4096));
        let Workload::Attention(a) = find("attention") else {
            panic!()
        };
        assert_eq!(
            (a.batch, a.heads, a.seq_q, a.seq_kv, a.causal),
            (2, 32, 1024, 1024, true)
        );
        assert!(ops
            .iter()
            .all(|o| o.role.pass() == crate::step::Pass::Forward));
    }

    #[test]
    fn tensor_parallel_decode_splits_heads_and_keeps_a_replicated_kv_head() {
        let m = ModelConfig::preset("llama3-70b").unwrap();
        let tp8 = Layout {
            tensor_parallel: 8,
            ..Layout::single()
        };
        let ops = decode_ops(&m, 16, 4096, &tp8).unwrap();
        let Workload::Attention(a) = ops.last().unwrap().workload else {
            panic!()
        };
        // 64 query heads / 8 GPUs over 8 KV heads / 8: one KV head with 8 query rows
        assert_eq!((a.heads, a.seq_q), (1, 8));
        assert_eq!(ops[0].workload, gemm(16, 1024 + 2 * 128, 8192));
    }

    #[test]
    fn options_name_the_mean_cache_length_and_refuse_empty_ones() {
        let o = InferenceOptions {
            prompt_len: 1024,
            output_len: 256,
            batches: vec![1, 64],
            kv_lens: vec![],
        };
        assert_eq!(o.kv_lens(), vec![1152]);
        o.validate(&llama()).unwrap();
        let e = InferenceOptions {
            output_len: 0,
            ..o.clone()
        }
        .validate(&llama())
        .unwrap_err();
        assert!(e.to_string().contains("at least 1 token"), "{e}");
        assert_eq!(
            Phase::Decode { kv_len: 9 }.tokens_per_step(&llama(), 64),
            64
        );
    }
}
