//! What a transformer is for joulebench: the dimensions that decide the shapes of its
//! matmuls and attention calls, from a TOML file or a preset of a public
//! architecture, checked so that an impossible model is refused with the dimension
//! that makes it so.

use joulebench_core::workload::{WorkloadError, MAX_DIM};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A decoder-only transformer (causal attention), as a training step sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// What settings files and tables call it, e.g. "llama3-8b".
    pub name: String,
    /// The residual stream's width (d_model).
    pub hidden_size: u64,
    /// Transformer blocks.
    pub layers: u64,
    /// Query heads.
    pub attention_heads: u64,
    /// Key/value heads (grouped-query attention); default: one per query head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<u64>,
    /// Width of one head; default: hidden_size / attention_heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<u64>,
    /// The MLP's inner width (intermediate size).
    pub mlp_size: u64,
    /// A gated MLP (SwiGLU, as Llama): gate and up projections, then down. Without
    /// it (GELU, as GPT-2): up, then down.
    #[serde(default)]
    pub gated_mlp: bool,
    pub vocab_size: u64,
    /// Tokens per sequence.
    pub seq_len: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("unknown model preset '{name}': known presets are {known}")]
    UnknownPreset { name: String, known: String },
    #[error("model name '{0}' must be 1 to 64 letters, digits, '-', '_' or '.'")]
    Name(String),
    #[error("model {model}: {field} is 0; it must be at least 1")]
    Zero { model: String, field: &'static str },
    #[error("model {model}: {field} = {value} exceeds the largest accepted dimension {max}")]
    TooLarge {
        model: String,
        field: &'static str,
        value: u64,
        max: u64,
    },
    #[error("model {model}: hidden_size {hidden_size} is not a multiple of attention_heads {heads}; give head_dim")]
    HeadDim {
        model: String,
        hidden_size: u64,
        heads: u64,
    },
    #[error("model {model}: kv_heads {kv_heads} must divide attention_heads {heads} (each key/value head serves a whole number of query heads)")]
    KvHeads {
        model: String,
        heads: u64,
        kv_heads: u64,
    },
    #[error("model {model} on {layout}: {why}")]
    Layout {
        model: String,
        layout: String,
        why: String,
    },
    #[error("model {model} inference: {why}")]
    Inference { model: String, why: String },
    #[error("micro-batch 0: a step needs at least one sequence")]
    ZeroMicroBatch,
    #[error("model {model} at micro-batch {micro_batch}: {source}")]
    Shape {
        model: String,
        micro_batch: u64,
        source: WorkloadError,
    },
}

/// The built-in models, by name.
pub const PRESETS: &[&str] = &["llama3-8b", "llama3-70b", "gpt2", "tiny"];

impl ModelConfig {
    /// A public architecture's dimensions (from its published config), or `tiny`: a
    /// two-layer model small enough for a CPU emulation.
    pub fn preset(name: &str) -> Result<ModelConfig, ModelError> {
        let llama = |name: &str, hidden_size, layers, attention_heads, mlp_size| ModelConfig {
            name: name.into(),
            hidden_size,
            layers,
            attention_heads,
            kv_heads: Some(8),
            head_dim: Some(128),
            mlp_size,
            gated_mlp: true,
            vocab_size: 128_256,
            seq_len: 8192,
        };
        let config = match name {
            // Meta Llama 3: grouped-query attention with 8 KV heads, SwiGLU, 8k context
            "llama3-8b" => llama(name, 4096, 32, 32, 14_336),
            "llama3-70b" => llama(name, 8192, 80, 64, 28_672),
            // GPT-2 small (124M): 12 heads of 64, GELU MLP 4×, 1k context
            "gpt2" => ModelConfig {
                name: name.into(),
                hidden_size: 768,
                layers: 12,
                attention_heads: 12,
                kv_heads: None,
                head_dim: None,
                mlp_size: 3072,
                gated_mlp: false,
                vocab_size: 50_257,
                seq_len: 1024,
            },
            "tiny" => ModelConfig {
                name: name.into(),
                hidden_size: 128,
                layers: 2,
                attention_heads: 2,
                kv_heads: None,
                head_dim: None,
                mlp_size: 512,
                gated_mlp: false,
                vocab_size: 1000,
                seq_len: 64,
            },
            _ => {
                return Err(ModelError::UnknownPreset {
                    name: name.into(),
                    known: PRESETS.join(", "),
                })
            }
        };
        Ok(config)
    }

    pub fn from_toml_file(path: &Path) -> Result<ModelConfig, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            path: path.into(),
            source,
        })?;
        let config: ModelConfig = toml::from_str(&text).map_err(|e| ModelError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn kv_heads(&self) -> u64 {
        self.kv_heads.unwrap_or(self.attention_heads)
    }

    pub fn head_dim(&self) -> u64 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.attention_heads.max(1))
    }

    /// Refuse a model no transformer can have, naming the dimension.
    pub fn validate(&self) -> Result<(), ModelError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(ok_char) {
            return Err(ModelError::Name(self.name.clone()));
        }
        let model = || self.name.clone();
        let mut dims = vec![
            ("hidden_size", self.hidden_size),
            ("layers", self.layers),
            ("attention_heads", self.attention_heads),
            ("mlp_size", self.mlp_size),
            ("vocab_size", self.vocab_size),
            ("seq_len", self.seq_len),
        ];
        dims.extend(self.kv_heads.map(|v| ("kv_heads", v)));
        dims.extend(self.head_dim.map(|v| ("head_dim", v)));
        for (field, value) in dims {
            if value == 0 {
                return Err(ModelError::Zero {
                    model: model(),
                    field,
                });
            }
            if value > MAX_DIM {
                return Err(ModelError::TooLarge {
                    model: model(),
                    field,
                    value,
                    max: MAX_DIM,
                });
            }
        }
        if self.head_dim.is_none() && self.hidden_size % self.attention_heads != 0 {
            return Err(ModelError::HeadDim {
                model: model(),
                hidden_size: self.hidden_size,
                heads: self.attention_heads,
            });
        }
        let kv = self.kv_heads();
        if kv > self.attention_heads || self.attention_heads % kv != 0 {
            return Err(ModelError::KvHeads {
                model: model(),
                heads: self.attention_heads,
                kv_heads: kv,
            });
        }
        Ok(())
    }

    /// One line for tables and reports.
    pub fn describe(&self) -> String {
        let kv = if self.kv_heads() != self.attention_heads {
            format!(" ({} KV)", self.kv_heads())
        } else {
            String::new()
        };
        format!(
            "{}: {} layers, hidden {}, {} heads{kv} of {}, MLP {}{}, vocabulary {}, sequence {}",
            self.name,
            self.layers,
            self.hidden_size,
            self.attention_heads,
            self.head_dim(),
            self.mlp_size,
            if self.gated_mlp { " gated" } else { "" },
            self.vocab_size,
            self.seq_len
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_named_as_listed() {
        for name in PRESETS {
            let m = ModelConfig::preset(name).unwrap();
            assert_eq!(&m.name, name);
            m.validate().unwrap();
        }
        let llama = ModelConfig::preset("llama3-8b").unwrap();
        assert_eq!((llama.kv_heads(), llama.head_dim()), (8, 128));
        let gpt2 = ModelConfig::preset("gpt2").unwrap();
        assert_eq!((gpt2.kv_heads(), gpt2.head_dim()), (12, 64));
        assert!(matches!(
            ModelConfig::preset("llama9"),
            Err(ModelError::UnknownPreset { .. })
        ));
    }

    #[test]
    fn a_toml_file_round_trips_and_unknown_keys_are_refused() {
        let gpt2 = ModelConfig::preset("gpt2").unwrap();
        let text = toml::to_string(&gpt2).unwrap();
        assert_eq!(toml::from_str::<ModelConfig>(&text).unwrap(), gpt2);
        let typo = text.replace("mlp_size", "mlp_sise");
        assert!(toml::from_str::<ModelConfig>(&typo).is_err());
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/model.toml");
        let m = ModelConfig::from_toml_file(&path).unwrap();
        assert_eq!(m.name, "gpt2-medium");
        // per layer 1024·3072 + 1024·1024 + 1024·4096 + 4096·1024, × 24, + the head
        assert_eq!(
            crate::step::matmul_parameters(&m),
            24 * 12_582_912 + 1024 * 50_257
        );
    }

    #[test]
    fn impossible_dimensions_are_named() {
        let base = ModelConfig::preset("gpt2").unwrap();
        let err = |f: &dyn Fn(&mut ModelConfig)| {
            let mut m = base.clone();
            f(&mut m);
            m.validate().unwrap_err().to_string()
        };
        assert!(err(&|m| m.layers = 0).contains("layers is 0"));
        assert!(err(&|m| m.kv_heads = Some(0)).contains("kv_heads is 0"));
        assert!(err(&|m| m.seq_len = MAX_DIM + 1).contains("seq_len = 16777217 exceeds"));
        let e = err(&|m| m.attention_heads = 7);
        assert!(e.contains("not a multiple of attention_heads 7"), "{e}");
        // with an explicit head_dim the width need not divide
        let mut m = base.clone();
        m.attention_heads = 7;
        m.head_dim = Some(64);
        m.kv_heads = Some(7);
        m.validate().unwrap();
        let e = err(&|m| m.kv_heads = Some(5));
        assert!(
            e.contains("kv_heads 5 must divide attention_heads 12"),
            "{e}"
        );
        assert!(err(&|m| m.kv_heads = Some(24)).contains("must divide"));
        assert!(err(&|m| m.name = "my model".into()).contains("letters, digits"));
    }
}
