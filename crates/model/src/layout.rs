//! How a model is spread over GPUs, Megatron-style: tensor parallelism splits every
//! GEMM and the attention heads across a group of GPUs, pipeline parallelism gives
//! each group a run of layers, data parallelism copies the whole and splits the
//! batch. Only the first two change what one GPU computes; data parallelism changes
//! its memory (when optimizer state is sharded) and the job's throughput.

use crate::config::{ModelConfig, ModelError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// GPUs per tensor-parallel group, pipeline stages and data-parallel copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Layout {
    pub tensor_parallel: u64,
    pub pipeline_parallel: u64,
    pub data_parallel: u64,
}

impl Default for Layout {
    fn default() -> Self {
        Layout::single()
    }
}

impl Layout {
    /// One GPU holds and computes the whole model.
    pub fn single() -> Layout {
        Layout {
            tensor_parallel: 1,
            pipeline_parallel: 1,
            data_parallel: 1,
        }
    }

    pub fn gpus(&self) -> u64 {
        self.tensor_parallel * self.pipeline_parallel * self.data_parallel
    }

    /// GPUs that hold one copy of the model: tensor × pipeline.
    pub fn model_parallel_gpus(&self) -> u64 {
        self.tensor_parallel * self.pipeline_parallel
    }

    pub fn is_single(&self) -> bool {
        self.gpus() == 1
    }

    /// Layers of the busiest pipeline stage (the first ones take the remainder).
    pub fn layers_per_stage(&self, m: &ModelConfig) -> u64 {
        m.layers.div_ceil(self.pipeline_parallel.max(1))
    }

    /// Key/value heads one tensor-parallel GPU computes: its share, or one replicated
    /// head when the group is larger than the model has KV heads (as Megatron-LM does).
    pub fn kv_heads_per_gpu(&self, m: &ModelConfig) -> u64 {
        (m.kv_heads() / self.tensor_parallel).max(1)
    }

    /// Refuse a layout the model cannot be split into, naming the dimension.
    pub fn validate(&self, m: &ModelConfig) -> Result<(), ModelError> {
        let bad = |why: String| ModelError::Layout {
            model: m.name.clone(),
            layout: self.to_string(),
            why,
        };
        for (name, v) in [
            ("--tensor-parallel", self.tensor_parallel),
            ("--pipeline-parallel", self.pipeline_parallel),
            ("--data-parallel", self.data_parallel),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} is 0; it must be at least 1")));
            }
            if v > 1 << 16 {
                return Err(bad(format!("{name} {v} is more GPUs than any job has")));
            }
        }
        let tp = self.tensor_parallel;
        if m.attention_heads % tp != 0 {
            return Err(bad(format!(
                "tensor parallelism {tp} must divide the {} attention heads",
                m.attention_heads
            )));
        }
        let kv = m.kv_heads();
        if kv % tp != 0 && tp % kv != 0 {
            return Err(bad(format!(
                "tensor parallelism {tp} must divide the {kv} key/value heads, or be a multiple of them"
            )));
        }
        if m.mlp_size % tp != 0 {
            return Err(bad(format!(
                "tensor parallelism {tp} must divide the MLP size {}",
                m.mlp_size
            )));
        }
        if self.pipeline_parallel > m.layers {
            return Err(bad(format!(
                "{} pipeline stages for {} layers leaves a stage without one",
                self.pipeline_parallel, m.layers
            )));
        }
        Ok(())
    }

    /// The tensor-parallel sizes worth trying for `m`, smallest first: powers of two
    /// within one 8-GPU node, as tensor parallelism's all-reduces need NVLink.
    pub fn tensor_parallel_choices(m: &ModelConfig) -> Vec<u64> {
        [1, 2, 4, 8]
            .into_iter()
            .filter(|&tp| {
                Layout {
                    tensor_parallel: tp,
                    ..Layout::single()
                }
                .validate(m)
                .is_ok()
            })
            .collect()
    }
}

impl fmt::Display for Layout {
    /// "1 GPU", or "TP 8 × PP 2 × DP 4 (64 GPUs)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            return f.write_str("1 GPU");
        }
        let mut parts = Vec::new();
        for (name, v) in [
            ("TP", self.tensor_parallel),
            ("PP", self.pipeline_parallel),
            ("DP", self.data_parallel),
        ] {
            if v > 1 {
                parts.push(format!("{name} {v}"));
            }
        }
        write!(f, "{} ({} GPUs)", parts.join(" × "), self.gpus())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(tp: u64, pp: u64, dp: u64) -> Layout {
        Layout {
            tensor_parallel: tp,
            pipeline_parallel: pp,
            data_parallel: dp,
        }
    }

    #[test]
    fn layouts_are_described_and_checked_against_the_model() {
        let llama = ModelConfig::preset("llama3-70b").unwrap();
        assert_eq!(layout(1, 1, 1).to_string(), "1 GPU");
        assert_eq!(layout(8, 2, 1).to_string(), "TP 8 × PP 2 (16 GPUs)");
        assert_eq!(layout(8, 4, 2).layers_per_stage(&llama), 20);
        assert_eq!(layout(1, 3, 1).layers_per_stage(&llama), 27);
        layout(8, 80, 4).validate(&llama).unwrap();
        // 8 KV heads over 16 GPUs: half a head each is no split; Megatron-LM
        // replicates them instead, one per GPU
        layout(16, 1, 1).validate(&llama).unwrap();
        assert_eq!(layout(16, 1, 1).kv_heads_per_gpu(&llama), 1);
        assert_eq!(layout(4, 1, 1).kv_heads_per_gpu(&llama), 2);
        let e = layout(3, 1, 1).validate(&llama).unwrap_err().to_string();
        assert!(e.contains("tensor parallelism 3 must divide the 64"), "{e}");
        let mut gqa = llama.clone();
        gqa.attention_heads = 12;
        gqa.kv_heads = Some(4);
        let e = layout(6, 1, 1).validate(&gqa).unwrap_err().to_string();
        assert!(e.contains("must divide the 4 key/value heads"), "{e}");
        let gpt2 = ModelConfig::preset("gpt2").unwrap();
        let e = layout(8, 1, 1).validate(&gpt2).unwrap_err().to_string();
        assert!(e.contains("must divide the 12 attention heads"), "{e}");
        let e = layout(1, 13, 1).validate(&gpt2).unwrap_err().to_string();
        assert!(e.contains("13 pipeline stages for 12 layers"), "{e}");
        assert!(layout(0, 1, 1).validate(&gpt2).is_err());
        assert_eq!(Layout::tensor_parallel_choices(&gpt2), [1, 2, 4]);
        assert_eq!(Layout::tensor_parallel_choices(&llama), [1, 2, 4, 8]);
    }
}
