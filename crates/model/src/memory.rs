//! Whether a layout fits the card: an estimate of one GPU's memory in training —
//! weights, gradients and optimizer states (mixed-precision Adam, as the ZeRO paper
//! counts them: 2 + 2 + 12 bytes per parameter, split across data-parallel copies by
//! the ZeRO stage), and the activations a step keeps for its backward pass, with and
//! without full recomputation (per layer, Korthikanti et al. 2022, "Reducing
//! Activation Recomputation in Large Transformer Models", with this model's own
//! widths) — and in serving: weights and the KV cache. An estimate, not a
//! measurement: every table that shows it says so.

use crate::config::ModelConfig;
use crate::layout::Layout;
use crate::step::linears_on;
use serde::Serialize;

/// Of a card's memory, what a training or serving process can fill: the CUDA
/// context, library workspaces and the allocator's fragmentation take the rest (an
/// allowance, not a measurement).
pub const USABLE_FRACTION: f64 = 0.9;

/// Bytes per parameter of mixed-precision Adam (ZeRO, Rajbhandari et al. 2020):
/// bf16 weights, bf16 gradients, and fp32 master weights, momentum and variance.
pub const WEIGHT_BYTES: f64 = 2.0;
pub const GRADIENT_BYTES: f64 = 2.0;
pub const OPTIMIZER_BYTES: f64 = 12.0;

/// What the estimate assumes beyond the layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemoryOptions {
    /// ZeRO stage across the data-parallel copies: 0 nothing sharded, 1 optimizer
    /// states (Megatron-LM's distributed optimizer), 2 also gradients, 3 also weights.
    pub zero_stage: u8,
}

/// One GPU's memory in a training step, bytes, for the busiest pipeline stage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MemoryEstimate {
    pub layout: Layout,
    pub micro_batch: u64,
    pub parameters: f64,
    pub weights_bytes: f64,
    pub gradients_bytes: f64,
    pub optimizer_bytes: f64,
    /// Kept for the backward pass, every layer's (1F1B: the first stage holds as many
    /// micro-batches as there are stages), plus the f32 logits of the loss.
    pub activations_bytes: f64,
    /// With full recomputation: each layer's input kept, one layer's activations
    /// rebuilt at a time.
    pub activations_recomputed_bytes: f64,
}

impl MemoryEstimate {
    pub fn states_bytes(&self) -> f64 {
        self.weights_bytes + self.gradients_bytes + self.optimizer_bytes
    }

    pub fn total_bytes(&self, recompute: bool) -> f64 {
        self.states_bytes()
            + if recompute {
                self.activations_recomputed_bytes
            } else {
                self.activations_bytes
            }
    }

    /// Fits `card_bytes` (times [`USABLE_FRACTION`]) without and with recomputation.
    pub fn fits(&self, card_bytes: u64) -> (bool, bool) {
        let usable = card_bytes as f64 * USABLE_FRACTION;
        (
            self.total_bytes(false) <= usable,
            self.total_bytes(true) <= usable,
        )
    }
}

/// Weights of one layer on one tensor-parallel GPU, and of the embedding table or LM
/// head (the same size: vocabulary × hidden, split by vocabulary).
fn parameters_per_gpu(m: &ModelConfig, layout: &Layout) -> (f64, f64) {
    let linears = linears_on(m, layout);
    let layer: f64 = linears
        .iter()
        .filter(|l| l.name != "lm-head")
        .map(|l| l.in_features as f64 * l.out_features as f64)
        .sum();
    let vocab = m.vocab_size.div_ceil(layout.tensor_parallel.max(1)) as f64 * m.hidden_size as f64;
    (layer, vocab)
}

/// Bytes one token keeps per layer on one GPU, bf16 (f32 for the attention's
/// log-sum-exp), with tensor and sequence parallelism splitting every tensor: the
/// inputs of both norms and of the QKV and MLP-up projections, Q, K and V, the
/// attention output, the MLP's up (and gate) output and the down projection's input.
/// Attention keeps no score matrix (both of joulebench's backward kernels recompute
/// it); no dropout.
pub fn activation_bytes_per_token_layer(m: &ModelConfig, layout: &Layout) -> f64 {
    let tp = layout.tensor_parallel.max(1) as f64;
    let h = m.hidden_size as f64 / tp;
    let d = m.head_dim() as f64;
    let q = (m.attention_heads / layout.tensor_parallel.max(1)) as f64 * d;
    let kv = layout.kv_heads_per_gpu(m) as f64 * d;
    let mlp = m.mlp_size as f64 / tp;
    let up = if m.gated_mlp { 2.0 * mlp } else { mlp };
    2.0 * (4.0 * h + q + 2.0 * kv + q + up + mlp) + 4.0 * (m.attention_heads as f64 / tp)
}

/// One GPU's training memory for `layout` at `micro_batch`.
pub fn training_memory(
    m: &ModelConfig,
    layout: &Layout,
    micro_batch: u64,
    opts: &MemoryOptions,
) -> MemoryEstimate {
    let (layer, vocab) = parameters_per_gpu(m, layout);
    let stage_layers = layout.layers_per_stage(m) as f64;
    let pp = layout.pipeline_parallel.max(1);
    // the first stage holds the embedding, the last the head; one stage both
    let parameters = stage_layers * layer + if pp == 1 { 2.0 * vocab } else { vocab };
    let dp = layout.data_parallel.max(1) as f64;
    let shard = |from_stage: u8| {
        if opts.zero_stage >= from_stage {
            dp
        } else {
            1.0
        }
    };
    let tokens = micro_batch as f64 * m.seq_len as f64;
    let per_layer = activation_bytes_per_token_layer(m, layout);
    let logits = tokens * m.vocab_size.div_ceil(layout.tensor_parallel.max(1)) as f64 * 4.0;
    // 1F1B: the first stage keeps `pp` micro-batches in flight for its layers; the
    // last keeps one, and the logits
    let in_flight = stage_layers * pp as f64;
    let kept = |bytes_per_token_layer: f64| {
        let first = tokens * bytes_per_token_layer * in_flight;
        let last = tokens * bytes_per_token_layer * stage_layers + logits;
        if pp == 1 {
            last
        } else {
            first.max(last)
        }
    };
    let layer_input = 2.0 * m.hidden_size as f64 / layout.tensor_parallel.max(1) as f64;
    MemoryEstimate {
        layout: *layout,
        micro_batch,
        parameters,
        weights_bytes: parameters * WEIGHT_BYTES / shard(3),
        gradients_bytes: parameters * GRADIENT_BYTES / shard(2),
        optimizer_bytes: parameters * OPTIMIZER_BYTES / shard(1),
        activations_bytes: kept(per_layer),
        // one layer rebuilt at a time, on top of every layer's input
        activations_recomputed_bytes: kept(layer_input) + tokens * per_layer,
    }
}

/// The layout with the fewest GPUs per model copy (tensor × pipeline) whose
/// training memory fits `card_bytes` at `micro_batch`, keeping `data_parallel` and
/// the ZeRO stage: without recomputation, and with it.
pub fn smallest_training_layouts(
    m: &ModelConfig,
    micro_batch: u64,
    data_parallel: u64,
    opts: &MemoryOptions,
    card_bytes: u64,
) -> (Option<Layout>, Option<Layout>) {
    let mut candidates: Vec<Layout> = Vec::new();
    for pp in 1..=m.layers.min(128) {
        for &tp in &Layout::tensor_parallel_choices(m) {
            candidates.push(Layout {
                tensor_parallel: tp,
                pipeline_parallel: pp,
                data_parallel,
            });
        }
    }
    // fewest GPUs; among equals, tensor parallelism first (it also splits activations)
    candidates.sort_by_key(|l| (l.model_parallel_gpus(), l.pipeline_parallel));
    let first = |recompute: bool| {
        candidates.iter().copied().find(|l| {
            let e = training_memory(m, l, micro_batch, opts);
            let (plain, with) = e.fits(card_bytes);
            if recompute {
                with
            } else {
                plain
            }
        })
    };
    (first(false), first(true))
}

/// One GPU's memory when serving: weights (the matmuls' precision, `weight_bytes`
/// each) and the KV cache of `batch` sequences of `kv_len` tokens in bf16.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ServingMemory {
    pub layout: Layout,
    pub weights_bytes: f64,
    pub kv_cache_bytes: f64,
}

impl ServingMemory {
    pub fn total_bytes(&self) -> f64 {
        self.weights_bytes + self.kv_cache_bytes
    }

    pub fn fits(&self, card_bytes: u64) -> bool {
        self.total_bytes() <= card_bytes as f64 * USABLE_FRACTION
    }
}

pub fn serving_memory(
    m: &ModelConfig,
    layout: &Layout,
    batch: u64,
    kv_len: u64,
    weight_bytes: f64,
) -> ServingMemory {
    let (layer, vocab) = parameters_per_gpu(m, layout);
    let stage_layers = layout.layers_per_stage(m) as f64;
    let pp = layout.pipeline_parallel.max(1);
    let parameters = stage_layers * layer + if pp == 1 { 2.0 * vocab } else { vocab };
    let kv_per_token_layer = 2.0 * layout.kv_heads_per_gpu(m) as f64 * m.head_dim() as f64 * 2.0;
    ServingMemory {
        layout: *layout,
        weights_bytes: parameters * weight_bytes,
        kv_cache_bytes: kv_per_token_layer * stage_layers * batch as f64 * kv_len as f64,
    }
}

/// The layout with the fewest GPUs that serves `batch` sequences of `kv_len`.
pub fn smallest_serving_layout(
    m: &ModelConfig,
    batch: u64,
    kv_len: u64,
    weight_bytes: f64,
    card_bytes: u64,
) -> Option<Layout> {
    let mut candidates: Vec<Layout> = Vec::new();
    for pp in 1..=m.layers.min(128) {
        for &tp in &Layout::tensor_parallel_choices(m) {
            candidates.push(Layout {
                tensor_parallel: tp,
                pipeline_parallel: pp,
                data_parallel: 1,
            });
        }
    }
    candidates.sort_by_key(|l| (l.model_parallel_gpus(), l.pipeline_parallel));
    candidates
        .into_iter()
        .find(|l| serving_memory(m, l, batch, kv_len, weight_bytes).fits(card_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: f64 = (1u64 << 30) as f64;
    const CARD_80_GIB: u64 = 80 << 30;

    fn layout(tp: u64, pp: u64, dp: u64) -> Layout {
        Layout {
            tensor_parallel: tp,
            pipeline_parallel: pp,
            data_parallel: dp,
        }
    }

    #[test]
    fn states_are_sixteen_bytes_a_parameter_split_as_the_layout_and_zero_say() {
        let m = ModelConfig::preset("llama3-8b").unwrap();
        let one = training_memory(&m, &Layout::single(), 1, &MemoryOptions::default());
        // 7.50 B matmul weights and the 0.53 B embedding: 8.03 B, Llama 3 8B's count
        let n = crate::step::matmul_parameters(&m) as f64 + 128_256.0 * 4096.0;
        assert_eq!(one.parameters, n);
        assert_eq!(one.states_bytes(), 16.0 * n);
        // 128 GB of states alone: no 80 GiB card holds it
        assert_eq!(one.fits(CARD_80_GIB), (false, false));
        let tp8 = training_memory(&m, &layout(8, 1, 1), 1, &MemoryOptions::default());
        assert_eq!(tp8.parameters, n / 8.0);
        // ZeRO-1 over 8 copies: the optimizer's 12 bytes split eight ways
        let z1 = training_memory(&m, &layout(1, 1, 8), 1, &MemoryOptions { zero_stage: 1 });
        assert_eq!(z1.states_bytes(), n * (2.0 + 2.0 + 12.0 / 8.0));
        let z3 = training_memory(&m, &layout(1, 1, 8), 1, &MemoryOptions { zero_stage: 3 });
        assert_eq!(z3.states_bytes(), n * 2.0);
    }

    #[test]
    fn activations_follow_the_model_widths_and_recomputation_keeps_layer_inputs() {
        let m = ModelConfig::preset("llama3-8b").unwrap();
        // 2·(4·4096 + 4096 + 2·1024 + 4096 + 2·14336 + 14336) + 4·32 bytes
        assert_eq!(
            activation_bytes_per_token_layer(&m, &Layout::single()),
            139_392.0
        );
        let e = training_memory(&m, &Layout::single(), 1, &MemoryOptions::default());
        let tokens = 8192.0;
        let logits = tokens * 128_256.0 * 4.0;
        assert_eq!(e.activations_bytes, tokens * 139_392.0 * 32.0 + logits);
        assert_eq!(
            e.activations_recomputed_bytes,
            tokens * 8192.0 * 32.0 + logits + tokens * 139_392.0
        );
        // pipeline stages do not shrink what the first stage keeps (1F1B)
        let pp4 = training_memory(&m, &layout(1, 4, 1), 1, &MemoryOptions::default());
        assert_eq!(pp4.activations_bytes, tokens * 139_392.0 * 32.0);
    }

    #[test]
    fn llama3_70b_needs_many_80_gib_gpus_and_says_how_many() {
        let m = ModelConfig::preset("llama3-70b").unwrap();
        let one = training_memory(&m, &Layout::single(), 1, &MemoryOptions::default());
        assert!(one.total_bytes(true) > 1000.0 * GIB, "{one:?}");
        let (plain, recompute) =
            smallest_training_layouts(&m, 1, 1, &MemoryOptions::default(), CARD_80_GIB);
        // 1.13 TB of states: 141 GB per GPU at TP 8, so a pipeline of 3 (2 with
        // recomputation, which frees the activations)
        assert_eq!(plain, Some(layout(8, 3, 1)));
        assert_eq!(recompute, Some(layout(8, 2, 1)));
        let e = training_memory(&m, &layout(8, 3, 1), 1, &MemoryOptions::default());
        assert_eq!(e.fits(CARD_80_GIB), (true, true));
        // serving: 141 GB of bf16 weights take two GPUs; fp8 weights fit one
        let serve = smallest_serving_layout(&m, 1, 2048, 2.0, CARD_80_GIB);
        assert_eq!(serve, Some(layout(2, 1, 1)));
        assert_eq!(
            smallest_serving_layout(&m, 1, 2048, 1.0, CARD_80_GIB),
            Some(Layout::single())
        );
    }
}
