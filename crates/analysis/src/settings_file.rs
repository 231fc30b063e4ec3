//! The settings file `joulebench recommend --emit` writes: the chosen setting per
//! device model and workload, in TOML or JSON, for a training launcher to read
//! before it starts (set the power cap, pick precision, micro-batch and kernel).
//!
//! # Format `joulebench-settings`, version 1
//!
//! Top level:
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `format` | string | always `"joulebench-settings"` |
//! | `version` | integer | `1`; bumped when a field changes meaning or is removed (new fields may be added within a version, so readers should ignore keys they do not know) |
//! | `generated_by` | string | the joulebench that wrote it, e.g. `"joulebench 0.1.0"` |
//! | `objective` | string | how the setting was chosen, e.g. `"least energy within 10% of the fastest"` |
//! | `baseline` | string | what energy saved and slowdown are measured against, e.g. `"cublas bf16 at the default power limit"` |
//! | `simulated` | bool | true if any setting comes from the simulated device |
//! | `setting` | array of tables | one per device model and workload, below (absent when a file has only `model` entries) |
//! | `model` | table of arrays of tables, optional | per model name (`[[model.llama3-8b]]`), one per device model: the chosen setting of a whole training step, below (`joulebench model --emit`) |
//!
//! Each `[[setting]]`:
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `device_model` | string | the device name as its driver reports it (`"NVIDIA H100 80GB HBM3"`); boards of one model are pooled |
//! | `simulated` | bool | from joulebench's model device, not a measurement |
//! | `workload` | string | the shape without its batch, e.g. `"matmul 4096x4096x4096"` |
//! | `backend`, `kernel` | string | what ran it, e.g. `"cuda"`, `"cublas"` |
//! | `precision` | string | `f32`, `tf32`, `f16`, `bf16` or `fp8-e4m3` |
//! | `batch_size` | integer | the batch axis (token multiple of a linear layer, attention batch) |
//! | `power_cap` | string | as swept: `"default"`, `"80%"` (of the default limit) or `"300W"` |
//! | `power_cap_w` | float, optional | the cap in watts |
//! | `default_power_limit_w` | float, optional | the board's default limit in watts |
//! | `sm_clock_mhz` | integer, optional | the SM clock to lock (`nvidia-smi -lgc N,N`); absent: leave the clocks at their default |
//! | `mem_clock_mhz` | integer, optional | the memory clock to lock (`nvidia-smi -lmc N,N`); absent: the default |
//! | `energy_pj_per_flop` | float | picojoules per FLOP of the chosen setting (median) |
//! | `throughput_tflops` | float | TFLOP/s of the chosen setting |
//! | `average_power_w` | float, optional | average board power while it ran |
//! | `energy_saved_fraction` | float, optional | 1 − E/E_baseline against the file's `baseline`; absent if that was not measured |
//! | `slowdown_fraction` | float, optional | T/T_baseline − 1 against the same baseline |
//! | `baseline_setting` | string, optional | the baseline as measured for this workload, e.g. `"cublas bf16"` |
//! | `baseline_energy_pj_per_flop` | float, optional | its picojoules per FLOP |
//! | `baseline_throughput_tflops` | float, optional | its TFLOP/s |
//! | `flags` | array of strings | validity flags of the chosen point (`high-spread`, `throttled`, …) |
//! | `source` | string | the results file the chosen point came from |
//! | `shape` | table | the chosen point's full shape, `op` (`matmul` or `attention`) and its dimensions, batch included |
//!
//! Each `[[model.<name>]]` (written by `joulebench model --emit`):
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `device_model`, `simulated`, `backend` | | as in `[[setting]]` |
//! | `precision` | string | the matmuls' precision |
//! | `attention_precision` | string | attention's (bf16 when the matmuls run FP8) |
//! | `micro_batch` | integer | sequences per step |
//! | `tokens_per_step` | integer | micro_batch × sequence length |
//! | `power_cap`, `power_cap_w`, `default_power_limit_w` | | as in `[[setting]]` |
//! | `energy_j_per_token` | float | joules per token of the step (GEMMs and attention, forward and backward) |
//! | `tokens_per_second` | float | tokens per second of the step |
//! | `average_power_w` | float, optional | the step's energy over its time |
//! | `energy_saved_fraction`, `slowdown_fraction` | float, optional | per token, against `baseline` |
//! | `baseline` | string, optional | the baseline setting, as named (`joulebench model --baseline`) |
//! | `flags`, `source` | | as in `[[setting]]` |
//! | `kernels` | table | `matmul`, `attention`, `attention_backward`: the kernel of each op; `vendor`: all of them vendor libraries' |
//!
//! Figures are rounded to 4 significant digits (fractions to 4 decimals).

use crate::recommend::{BaselineSpec, Objective, Recommendation};
use crate::step::ModelSetting;
use joulebench_core::record::Record;
use joulebench_core::{Precision, Workload};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SETTINGS_FORMAT: &str = "joulebench-settings";
pub const SETTINGS_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingsFile {
    pub format: String,
    pub version: u32,
    pub generated_by: String,
    pub objective: String,
    /// What energy saved and slowdown are against (absent in files of older joulebench).
    #[serde(default)]
    pub baseline: String,
    pub simulated: bool,
    #[serde(rename = "setting", default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<ChosenSetting>,
    /// The chosen training-step setting per model name, one per device model.
    #[serde(rename = "model", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, Vec<ModelSetting>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChosenSetting {
    pub device_model: String,
    pub simulated: bool,
    pub workload: String,
    pub backend: String,
    pub kernel: String,
    pub precision: Precision,
    pub batch_size: u64,
    pub power_cap: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_cap_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_power_limit_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_clock_mhz: Option<u32>,
    pub energy_pj_per_flop: f64,
    pub throughput_tflops: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_power_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_saved_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowdown_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_setting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_energy_pj_per_flop: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_throughput_tflops: Option<f64>,
    #[serde(default)]
    pub flags: Vec<String>,
    pub source: String,
    /// Last: TOML writes tables after plain keys.
    pub shape: Workload,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingsFormat {
    Toml,
    Json,
}

impl std::str::FromStr for SettingsFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "toml" => Ok(SettingsFormat::Toml),
            "json" => Ok(SettingsFormat::Json),
            other => Err(format!(
                "unknown settings format '{other}': expected toml or json"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a joulebench settings file: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: format '{found}' is not '{SETTINGS_FORMAT}'")]
    Format { path: PathBuf, found: String },
    #[error("{path}: settings version {found}; this joulebench reads version {SETTINGS_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write the settings as {format}: {message}")]
    Serialize {
        format: &'static str,
        message: String,
    },
}

/// Round to `digits` significant digits through decimal text, so the value a file
/// shows is exactly the value a reader parses back.
pub(crate) fn round_sig(x: f64, digits: usize) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    format!("{:.*e}", digits.saturating_sub(1), x)
        .parse()
        .unwrap_or(x)
}

pub(crate) fn round_fraction(x: f64) -> f64 {
    format!("{x:.4}").parse().unwrap_or(x)
}

impl SettingsFile {
    /// One entry per recommendation. `recs` should come from
    /// `recommend_with(records, objective, GroupBy::Model, baseline)`; `sources[i]`
    /// names the file of `records[i]`.
    pub fn from_recommendations(
        recs: &[Recommendation],
        records: &[Record],
        sources: &[String],
        objective: Objective,
        baseline: &BaselineSpec,
    ) -> SettingsFile {
        let settings: Vec<ChosenSetting> = recs
            .iter()
            .filter_map(|r| {
                let c = r.chosen();
                let record = records.get(c.record)?;
                Some(ChosenSetting {
                    device_model: record.device.name.clone(),
                    simulated: record.simulated,
                    workload: r.workload.clone(),
                    backend: record.backend.clone(),
                    kernel: c.kernel.clone(),
                    precision: c.precision,
                    batch_size: c.batch_size,
                    power_cap: c.cap.clone(),
                    power_cap_w: c.cap_w.map(|w| round_sig(w, 4)),
                    default_power_limit_w: c.default_limit_w.map(|w| round_sig(w, 4)),
                    sm_clock_mhz: c.sm_clock_mhz,
                    mem_clock_mhz: c.mem_clock_mhz,
                    energy_pj_per_flop: round_sig(c.picojoules_per_flop(), 4),
                    throughput_tflops: round_sig(c.tflops, 4),
                    average_power_w: c.average_w.map(|w| round_sig(w, 4)),
                    energy_saved_fraction: r.energy_saved().map(round_fraction),
                    slowdown_fraction: r.slowdown().map(round_fraction),
                    baseline_setting: r.baseline().map(|b| b.label()),
                    baseline_energy_pj_per_flop: r
                        .baseline()
                        .map(|b| round_sig(b.picojoules_per_flop(), 4)),
                    baseline_throughput_tflops: r.baseline().map(|b| round_sig(b.tflops, 4)),
                    flags: c.flags.clone(),
                    source: sources.get(c.record).cloned().unwrap_or_default(),
                    shape: record.workload,
                })
            })
            .collect();
        SettingsFile {
            format: SETTINGS_FORMAT.into(),
            version: SETTINGS_VERSION,
            generated_by: format!("joulebench {}", env!("CARGO_PKG_VERSION")),
            objective: objective.describe(),
            baseline: baseline.describe(),
            simulated: settings.iter().any(|s| s.simulated),
            settings,
            models: BTreeMap::new(),
        }
    }

    pub fn to_string(&self, format: SettingsFormat) -> Result<String, SettingsError> {
        match format {
            SettingsFormat::Toml => {
                let body = toml::to_string_pretty(self).map_err(|e| SettingsError::Serialize {
                    format: "TOML",
                    message: e.to_string(),
                })?;
                let mut head = if self.settings.is_empty() && !self.models.is_empty() {
                    format!(
                        "# joulebench settings (format {SETTINGS_FORMAT}, version {SETTINGS_VERSION}): the chosen\n\
                         # precision, micro-batch, power cap and kernels of a training step, per model\n\
                         # and device model.\n"
                    )
                } else {
                    format!(
                        "# joulebench settings (format {SETTINGS_FORMAT}, version {SETTINGS_VERSION}): the chosen\n\
                         # power cap, precision, batch size and kernel per device model and workload.\n"
                    )
                };
                if self.simulated {
                    head.push_str("# SIMULATED: some settings come from joulebench's model device, not a measurement.\n");
                }
                Ok(format!("{head}\n{body}"))
            }
            SettingsFormat::Json => serde_json::to_string_pretty(self)
                .map(|s| s + "\n")
                .map_err(|e| SettingsError::Serialize {
                    format: "JSON",
                    message: e.to_string(),
                }),
        }
    }

    /// Parse and check the format name and version; `path` only names errors.
    pub fn parse(
        text: &str,
        format: SettingsFormat,
        path: &Path,
    ) -> Result<SettingsFile, SettingsError> {
        let parse_err = |message: String| SettingsError::Parse {
            path: path.into(),
            message,
        };
        // Check the version before the fields, so a newer file says so rather than
        // failing on a field it renamed.
        let head: serde_json::Value = match format {
            SettingsFormat::Toml => {
                let v: toml::Value = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
                serde_json::to_value(v).map_err(|e| parse_err(e.to_string()))?
            }
            SettingsFormat::Json => {
                serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?
            }
        };
        let found = head.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if found != SETTINGS_FORMAT {
            return Err(SettingsError::Format {
                path: path.into(),
                found: found.into(),
            });
        }
        match head.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == SETTINGS_VERSION as u64 => {}
            Some(v) => {
                return Err(SettingsError::Version {
                    path: path.into(),
                    found: v.min(u32::MAX as u64) as u32,
                })
            }
            None => return Err(parse_err("no integer \"version\"".into())),
        }
        match format {
            SettingsFormat::Toml => toml::from_str(text).map_err(|e| parse_err(e.to_string())),
            SettingsFormat::Json => {
                serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))
            }
        }
    }

    /// Read a settings file, TOML unless its name ends in `.json`.
    pub fn read(path: &Path) -> Result<SettingsFile, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.into(),
            source,
        })?;
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => SettingsFormat::Json,
            _ => SettingsFormat::Toml,
        };
        SettingsFile::parse(&text, format, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::{recommend_by, GroupBy};
    use crate::testutil::rec;
    use joulebench_core::AttentionShape;

    fn file() -> SettingsFile {
        let mut records = vec![
            rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0),
            rec("GPU A", false, Precision::Bf16, "80%", 560.0, 0.9),
            rec("GPU A", false, Precision::Bf16, "60%", 400.0, 0.8),
            // a second board of the same model on another machine: pooled with the first
            rec("GPU A", false, Precision::F16, "default", 610.0, 0.95),
            rec(
                "sim-x (simulated)",
                true,
                Precision::F32,
                "default",
                50.0,
                10.0,
            ),
        ];
        records[3].device.uuid = Some("GPU-other-board".into());
        records[4].workload = Workload::Attention(AttentionShape {
            batch: 2,
            heads: 8,
            seq_q: 128,
            seq_kv: 128,
            head_dim: 64,
            causal: true,
        });
        records[4].group = "attention h8 q128 kv128 d64 causal".into();
        let sources: Vec<String> = (0..records.len())
            .map(|i| format!("results/{i}.jsonl"))
            .collect();
        let objective = Objective::WithinSlowdown { max_slowdown: 0.10 };
        let recs = recommend_by(&records, objective, GroupBy::Model);
        SettingsFile::from_recommendations(
            &recs,
            &records,
            &sources,
            objective,
            &BaselineSpec::default(),
        )
    }

    #[test]
    fn one_setting_per_model_and_workload_with_known_figures() {
        let f = file();
        assert_eq!(f.settings.len(), 2);
        assert!(f.simulated);
        let a = &f.settings[0];
        // within 10% of the fastest (610 TFLOP/s): 80% cap (560) is 8.9% slower and
        // the cheapest of those in reach
        assert_eq!(
            (a.device_model.as_str(), a.power_cap.as_str()),
            ("GPU A", "80%")
        );
        assert_eq!(a.power_cap_w, Some(560.0));
        assert_eq!(a.energy_pj_per_flop, 0.9);
        assert_eq!(a.energy_saved_fraction, Some(0.1));
        assert_eq!(a.slowdown_fraction, Some(0.0714)); // 600/560 − 1
        assert_eq!(a.source, "results/1.jsonl");
        assert!(!a.simulated);
        assert!(f.settings[1].simulated);
    }

    #[test]
    fn toml_and_json_round_trip() {
        let f = file();
        for format in [SettingsFormat::Toml, SettingsFormat::Json] {
            let text = f.to_string(format).unwrap();
            let back = SettingsFile::parse(&text, format, Path::new("x")).unwrap();
            assert_eq!(back, f, "{format:?}:\n{text}");
        }
        let toml = f.to_string(SettingsFormat::Toml).unwrap();
        assert!(
            toml.contains("[[setting]]") && toml.contains("# SIMULATED"),
            "{toml}"
        );
    }

    #[test]
    fn other_versions_and_formats_are_refused() {
        let json = file().to_string(SettingsFormat::Json).unwrap();
        let newer = json.replacen("\"version\": 1", "\"version\": 2", 1);
        let e = SettingsFile::parse(&newer, SettingsFormat::Json, Path::new("s.json")).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        let other = json.replacen(SETTINGS_FORMAT, "something-else", 1);
        let e = SettingsFile::parse(&other, SettingsFormat::Json, Path::new("s.json")).unwrap_err();
        assert!(e.to_string().contains("something-else"), "{e}");
    }
}
