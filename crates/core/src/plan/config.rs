//! A sweep's config (docs/ARCHITECTURE.md §1.2): the axes — ops and their shapes,
//! kernels, precisions, batch sizes, power caps, clocks, inputs — the seed and the
//! protocol's settings, as a TOML file or a preset gives them.

use super::error::PlanError;
use crate::clocks::ClockSpec;
use crate::inputs::InputDistribution;
use crate::power::PowerCap;
use crate::precision::Precision;
use crate::protocol::ProtocolConfig;
use crate::workload::Op;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// An explicit matmul shape; `batch` independent products (not on the batch axis).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatmulSpec {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    #[serde(default = "one")]
    pub batch: u64,
}

/// A transformer linear layer: tokens = batch size × seq rows through an
/// in_features → out_features weight. The batch axis sets the token count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearSpec {
    pub in_features: u64,
    pub out_features: u64,
    pub seq: u64,
    /// A label for tables, e.g. "mlp-up".
    #[serde(default)]
    pub name: Option<String>,
}

/// Attention forward; the batch axis sets its batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionSpec {
    pub heads: u64,
    pub seq_q: u64,
    /// Defaults to seq_q.
    #[serde(default)]
    pub seq_kv: Option<u64>,
    pub head_dim: u64,
    #[serde(default)]
    pub causal: bool,
}

fn one() -> u64 {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepConfig {
    /// Ops to measure of the shapes below ("matmul" covers [[matmul]] and [[linear]],
    /// "attention" and "attention-backward" the [[attention]] shapes). Empty: matmul
    /// and attention forward, for every op that has shapes.
    pub ops: Vec<Op>,
    /// Empty: every precision the kernels support.
    pub precisions: Vec<Precision>,
    /// Empty: every kernel the backend has.
    pub kernels: Vec<String>,
    /// Precisions per kernel, for the kernels named here (`[kernel_precisions]`,
    /// `cublas = ["f32", "bf16"]`): instead of every kernel × every precision, each
    /// named kernel runs only its own list.
    pub kernel_precisions: BTreeMap<String, Vec<Precision>>,
    /// Empty: [1]. Applies to linear layers (tokens = batch × seq) and attention.
    pub batch_sizes: Vec<u64>,
    /// Empty: ["default"].
    pub power_caps: Vec<PowerCap>,
    /// Locked SM clocks (MHz, "default", or "min:max:step"); empty: the default
    /// clocks only. Resolved against the GPU's supported clocks before planning.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sm_clocks: Vec<ClockSpec>,
    /// Locked memory clocks, as `sm_clocks`, where the GPU offers more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mem_clocks: Vec<ClockSpec>,
    /// How the inputs are drawn (`normal`, `uniform`, `zeros`, `sparse[:P%]`);
    /// empty: `normal`, what training tensors look like. Points on other inputs are
    /// compared only with each other (their group says which inputs they had).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputDistribution>,
    pub seed: u64,
    pub matmul: Vec<MatmulSpec>,
    pub linear: Vec<LinearSpec>,
    pub attention: Vec<AttentionSpec>,
    pub protocol: ProtocolConfig,
    /// How many times to measure every point, in an order shuffled with the seed
    /// (`--repeat` overrides it), so that the spread between runs — what varies
    /// from one visit to the next: the die's temperature, the clock at the limit —
    /// is measured beside the spread within one. Absent: once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            ops: Vec::new(),
            precisions: Vec::new(),
            kernels: Vec::new(),
            kernel_precisions: BTreeMap::new(),
            batch_sizes: Vec::new(),
            power_caps: Vec::new(),
            sm_clocks: Vec::new(),
            mem_clocks: Vec::new(),
            inputs: Vec::new(),
            seed: 42,
            matmul: Vec::new(),
            linear: Vec::new(),
            attention: Vec::new(),
            protocol: ProtocolConfig::default(),
            repeat: None,
        }
    }
}

impl SweepConfig {
    pub fn from_toml_file(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml_str(&text).map_err(|message| PlanError::Config {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Remove repeated values from every axis (a list that names a precision, a
    /// batch size, a cap or a shape twice would measure it twice), keeping the
    /// first; one note per axis that had any.
    pub fn dedup_axes(&mut self) -> Vec<String> {
        fn dedup<T: PartialEq>(v: &mut Vec<T>) {
            let mut kept: Vec<T> = Vec::with_capacity(v.len());
            for x in v.drain(..) {
                if !kept.contains(&x) {
                    kept.push(x);
                }
            }
            *v = kept;
        }
        let mut notes = Vec::new();
        let mut note = |name: &str, before: usize, after: usize| {
            if before > after {
                notes.push(format!(
                    "{name}: {} repeated value{} removed (each is measured once)",
                    before - after,
                    if before - after == 1 { "" } else { "s" }
                ));
            }
        };
        macro_rules! axis {
            ($($field:ident),*) => {$(
                let before = self.$field.len();
                dedup(&mut self.$field);
                note(stringify!($field), before, self.$field.len());
            )*};
        }
        axis!(
            ops,
            precisions,
            kernels,
            batch_sizes,
            power_caps,
            sm_clocks,
            mem_clocks,
            inputs,
            matmul,
            linear,
            attention
        );
        notes
    }
}
