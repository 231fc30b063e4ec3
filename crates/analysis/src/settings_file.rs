//! The settings file `joulebench recommend --emit` writes: one power cap and one
//! clock per device model for its mix of workloads, and each workload's setting
//! under them, in TOML or JSON, for a training launcher to read before it starts
//! (set the power cap and clocks, pick precision, micro-batch and kernel). Keys are
//! framework-neutral (precision, batch, cap in W, SM clock in MHz); docs/settings-file.md maps
//! them to common launchers' flags, and `crate::launcher` writes the script that
//! applies the device part.
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
//! | `baseline` | string | what energy saved and slowdown are measured against |
//! | `noise_floor_fraction` | float, optional | the least uncertainty a figure without repeats was given (see docs/recommend.md, "Significance") |
//! | `simulated` | bool | true if any setting comes from the simulated device |
//! | `device` | array of tables | one per device model: its one power cap and clock, below |
//! | `setting` | array of tables | one per device model and workload, below (absent when a file has only `model` entries) |
//! | `model` | table of arrays of tables, optional | per model name (`[[model.llama3-8b]]`), one per device model: the chosen setting of a whole training step, below (`joulebench model --emit`) |
//!
//! Each `[[device]]` (a GPU has one power limit and one clock, whatever it runs):
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `device_model` | string | the device name as its driver reports it |
//! | `simulated` | bool | from joulebench's model device, not a measurement |
//! | `vendor` | string | `"nvidia"`, `"amd"` or `"other"`: which tool applies it |
//! | `uuids`, `pci_bus_ids` | arrays of strings | the boards the records were measured on |
//! | `power_cap` | string | `"default"`, `"80%"` or `"300W"` |
//! | `power_cap_w`, `default_power_limit_w` | float, optional | the cap and the board's default limit, W |
//! | `sm_clock_mhz`, `mem_clock_mhz` | integer, optional | clocks to lock; absent: the default clocks |
//! | `mix` | string | the workloads' time shares the cap and clock were chosen for |
//! | `energy_saved_fraction`, `slowdown_fraction` | float, optional | the mix at this cap and clock against the mix at the baseline's cap and clocks |
//! | `uncertainty_fraction` | float, optional | the combined uncertainty of that saving |
//! | `notes` | array of strings | why (levers put back, locks that do not bind, workloads that alone would choose otherwise) |
//!
//! Each `[[setting]]` (a workload at its device's cap and clock):
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `device_model` | string | as in `[[device]]`; boards of one model are pooled |
//! | `simulated` | bool | from joulebench's model device, not a measurement |
//! | `workload` | string | the shape without its batch, e.g. `"matmul 4096x4096x4096"` |
//! | `backend`, `kernel` | string | what ran it, e.g. `"cuda"`, `"cublas"` |
//! | `coverage` | string, optional | `"ours only"`: no vendor kernel was measured at this precision |
//! | `precision` | string | `f32`, `tf32`, `f16`, `bf16` or `fp8-e4m3` |
//! | `batch_size` | integer | the batch axis (token multiple of a linear layer, attention batch) |
//! | `power_cap`, `power_cap_w`, `default_power_limit_w` | | the device's, as in `[[device]]` |
//! | `sm_clock_mhz`, `mem_clock_mhz` | integer, optional | the device's clocks (`nvidia-smi -lgc N,N`, `-lmc N,N`) |
//! | `energy_pj_per_flop` | float | picojoules per FLOP at this setting (median) |
//! | `uncertainty_fraction` | float | its relative uncertainty |
//! | `throughput_tflops` | float | TFLOP/s at this setting |
//! | `average_power_w` | float, optional | average board power while it ran |
//! | `energy_saved_fraction` | float, optional | 1 − E/E_baseline against the baseline measured for this workload (`baseline_setting`: the file's `baseline` resolved), all levers together; absent if that was not measured |
//! | `slowdown_fraction` | float, optional | T/T_baseline − 1 against the same baseline |
//! | `baseline_setting` | string, optional | the baseline as measured for this workload, e.g. `"cublas bf16"` |
//! | `baseline_energy_pj_per_flop`, `baseline_throughput_tflops` | float, optional | its figures |
//! | `flags` | array of strings | cautions and known biases of the records behind it (`high-spread`, `unsettled`, `above-limit`, `cap-not-default`, `gapped` for schema-1 windows, `meter-check` for check-mode records, …) |
//! | `meter_agreement_pct` | float, optional | check mode: how the two meters agreed |
//! | `source` | string | the results file the setting came from |
//! | `attribution` | array of tables | per lever that differs from the baseline: `lever` (`precision`, `kernel`, `batch`, `power_cap`, `sm_clock`), `from`, `to`, and what it alone saves: `energy_saved_fraction`, `slowdown_fraction`, `uncertainty_fraction`, `beats_noise`, `against` (the setting that differs in that lever alone); `not_binding_ran_at_mhz` where the device's lock does not bind for this workload |
//! | `shape` | table | the full shape, `op` (`matmul` or `attention`) and its dimensions, batch included |
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
//! | `uncertainty_fraction` | float, optional | its relative uncertainty |
//! | `tokens_per_second` | float | tokens per second of the step |
//! | `average_power_w` | float, optional | the step's energy over its time |
//! | `energy_saved_fraction`, `slowdown_fraction` | float, optional | per token, against `baseline` |
//! | `baseline` | string, optional | the baseline setting, as named (`joulebench model --baseline`) |
//! | `flags`, `source`, `attribution` | | as in `[[setting]]` (levers `precision`, `kernel`, `batch` for the micro-batch, `power_cap`) |
//! | `kernels` | table | `matmul`, `attention`, `attention_backward`: the kernel of each op; `vendor`: all of them vendor libraries' |
//!
//! Figures are rounded to 4 significant digits (fractions to 4 decimals).

use crate::attribution::{Against, Attribution};
use crate::device_setting::{device_settings, DeviceSetting, Mix};
use crate::digest::SettingsDigest;
use crate::recommend::{BaselineSpec, Objective, Recommendation};
use crate::recommend_table::describe_baseline;
use joulebench_core::meter::MeterSource;
use joulebench_core::record::Record;
use joulebench_core::{DeviceInfo, Precision, Workload};
use joulebench_model::plan::KernelChoice;
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
    /// What energy saved and slowdown are against (absent in files of older joulebench,
    /// and where each entry names its own, as `[[model.<name>]]` do).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub baseline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_floor_fraction: Option<f64>,
    pub simulated: bool,
    /// One power cap and clock per device model.
    #[serde(rename = "device", default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceEntry>,
    #[serde(rename = "setting", default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<ChosenSetting>,
    /// The chosen training-step setting per model name, one per device model.
    #[serde(rename = "model", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, Vec<ModelSetting>>,
}

/// Which command-line tool sets a device's power limit and clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceVendor {
    Nvidia,
    Amd,
    Other,
}

/// One device model's power cap and clocks (`[[device]]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceEntry {
    pub device_model: String,
    pub simulated: bool,
    pub vendor: DeviceVendor,
    #[serde(default)]
    pub uuids: Vec<String>,
    #[serde(default)]
    pub pci_bus_ids: Vec<String>,
    pub power_cap: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_cap_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_power_limit_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_clock_mhz: Option<u32>,
    #[serde(default)]
    pub mix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_saved_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowdown_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_fraction: Option<f64>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One lever's own figure (`attribution` of a setting).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeverFigure {
    /// `precision`, `kernel`, `batch`, `power_cap` or `sm_clock`.
    pub lever: String,
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_saved_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowdown_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beats_noise: Option<bool>,
    /// The setting it was measured against; absent where none was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<String>,
    /// A clock lock that does not bind for this workload: the clock it ran at, MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_binding_ran_at_mhz: Option<f64>,
}

/// The attribution of a setting as the file writes it; `label(j)` names setting `j`.
pub fn lever_figures(a: &Attribution, label: &dyn Fn(usize) -> String) -> Vec<LeverFigure> {
    a.levers
        .iter()
        .map(|e| LeverFigure {
            lever: e.lever.key().into(),
            from: e.from.clone(),
            to: e.to.clone(),
            energy_saved_fraction: e.energy_saved.map(round_fraction),
            slowdown_fraction: e.slowdown.map(round_fraction),
            uncertainty_fraction: e.uncertainty.map(round_fraction),
            beats_noise: e.significant(),
            against: e.against.map(|j| match e.how {
                Against::BaselineWith => {
                    format!("the baseline with this lever changed: {}", label(j))
                }
                _ => label(j),
            }),
            not_binding_ran_at_mhz: e.unbound_clock_mhz.map(|m| m.round()),
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChosenSetting {
    pub device_model: String,
    pub simulated: bool,
    pub workload: String,
    pub backend: String,
    pub kernel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_fraction: Option<f64>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_agreement_pct: Option<f64>,
    pub source: String,
    /// Tables last: TOML writes them after plain keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attribution: Vec<LeverFigure>,
    pub shape: Workload,
}

/// The chosen step setting of one model on one device model, as a launcher reads it
/// (`[[model.<name>]]` in a `joulebench-settings` file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSetting {
    pub device_model: String,
    pub simulated: bool,
    pub backend: String,
    /// The matmuls' precision.
    pub precision: Precision,
    pub attention_precision: Precision,
    /// Sequences per step.
    pub micro_batch: u64,
    pub tokens_per_step: u64,
    pub power_cap: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_cap_w: Option<f64>,
    /// The locked SM clock; absent: the default clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<u32>,
    /// How the model is spread: "1 GPU", "TP 8 × PP 2 (16 GPUs)".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub layout: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_power_limit_w: Option<f64>,
    pub energy_j_per_token: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_fraction: Option<f64>,
    pub tokens_per_second: f64,
    /// The model's FLOP per token (forward and backward).
    #[serde(default)]
    pub flop_per_token: f64,
    /// Model FLOP per second over the dense peak at the matmuls' precision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_power_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_saved_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowdown_fraction: Option<f64>,
    /// The baseline the two fractions are measured against, as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// What the figures cover and leave out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub coverage: String,
    pub source: String,
    /// Tables last: TOML writes them after plain keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attribution: Vec<LeverFigure>,
    pub kernels: KernelChoice,
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

/// Which tool sets a device's limits, by what its records say.
pub fn vendor_of(records: &[&Record]) -> DeviceVendor {
    vendor_from(
        records
            .iter()
            .map(|r| (r.device.name.as_str(), r.meter.source)),
    )
}

/// [`vendor_of`] from each record's (device name, meter).
fn vendor_from<'a>(seen: impl Iterator<Item = (&'a str, MeterSource)> + Clone) -> DeviceVendor {
    let named = |name: &str, prefix: &str| name.to_ascii_uppercase().starts_with(prefix);
    if seen.clone().any(|(name, meter)| {
        matches!(meter, MeterSource::NvmlCounter | MeterSource::NvmlSampled)
            || named(name, "NVIDIA")
    }) {
        DeviceVendor::Nvidia
    } else if seen.clone().any(|(name, meter)| {
        matches!(
            meter,
            MeterSource::AmdsmiCounter | MeterSource::HwmonSampled
        ) || named(name, "AMD")
    }) {
        DeviceVendor::Amd
    } else {
        DeviceVendor::Other
    }
}

/// A `[[device]]` entry for `device_model`, its boards read from `records`.
pub fn device_entry(device_model: &str, records: &[&Record]) -> DeviceEntry {
    device_entry_from(
        device_model,
        records
            .iter()
            .map(|r| (&r.device, r.meter.source, r.simulated)),
    )
}

/// [`device_entry`] from each record's (device, meter, whether simulated).
fn device_entry_from<'a>(
    device_model: &str,
    seen: impl Iterator<Item = (&'a DeviceInfo, MeterSource, bool)> + Clone,
) -> DeviceEntry {
    let mut uuids: Vec<String> = seen
        .clone()
        .filter_map(|(d, _, _)| d.uuid.clone())
        .collect();
    uuids.sort();
    uuids.dedup();
    let mut pci: Vec<String> = seen
        .clone()
        .filter_map(|(d, _, _)| d.pci_bus_id.clone())
        .collect();
    pci.sort();
    pci.dedup();
    DeviceEntry {
        device_model: device_model.to_string(),
        simulated: seen.clone().any(|(_, _, sim)| sim),
        vendor: vendor_from(seen.map(|(d, meter, _)| (d.name.as_str(), meter))),
        uuids,
        pci_bus_ids: pci,
        power_cap: "default".into(),
        power_cap_w: None,
        default_power_limit_w: None,
        sm_clock_mhz: None,
        mem_clock_mhz: None,
        mix: String::new(),
        energy_saved_fraction: None,
        slowdown_fraction: None,
        uncertainty_fraction: None,
        notes: Vec::new(),
    }
}

/// What a settings entry says of the record a setting's figures start from.
struct Origin {
    simulated: bool,
    backend: String,
    shape: Workload,
    source: String,
}

impl SettingsFile {
    /// An empty file: the header fields only.
    pub fn new(objective: String, baseline: String) -> SettingsFile {
        SettingsFile {
            format: SETTINGS_FORMAT.into(),
            version: SETTINGS_VERSION,
            generated_by: format!("joulebench {}", env!("CARGO_PKG_VERSION")),
            objective,
            baseline,
            noise_floor_fraction: None,
            simulated: false,
            devices: Vec::new(),
            settings: Vec::new(),
            models: BTreeMap::new(),
        }
    }

    /// One device entry per device model with equal time shares for its workloads.
    /// `recs` should come from `recommend_with(records, objective, GroupBy::Model,
    /// baseline)`; `sources[i]` names the file of `records[i]`.
    pub fn from_recommendations(
        recs: &[Recommendation],
        records: &[Record],
        sources: &[String],
        objective: Objective,
        baseline: &BaselineSpec,
    ) -> SettingsFile {
        let devices = device_settings(recs, &Mix::equal(), objective);
        SettingsFile::from_devices(&devices, recs, records, sources, objective, baseline)
    }

    /// One `[[device]]` per device setting and one `[[setting]]` per workload under it.
    pub fn from_devices(
        devices: &[DeviceSetting],
        recs: &[Recommendation],
        records: &[Record],
        sources: &[String],
        objective: Objective,
        baseline: &BaselineSpec,
    ) -> SettingsFile {
        SettingsFile::build(
            devices,
            recs,
            &|name: &str| {
                let of_device: Vec<&Record> =
                    records.iter().filter(|r| r.device.name == name).collect();
                device_entry(name, &of_device)
            },
            &|i: usize| {
                let r = records.get(i)?;
                Some(Origin {
                    simulated: r.simulated,
                    backend: r.backend.clone(),
                    shape: r.workload,
                    source: sources.get(i).cloned().unwrap_or_default(),
                })
            },
            objective,
            baseline,
        )
    }

    /// [`SettingsFile::from_devices`] of the records a digest took in;
    /// `sources[i]` names the file the digest was told was source `i`.
    pub fn from_digest(
        devices: &[DeviceSetting],
        recs: &[Recommendation],
        digest: &SettingsDigest,
        sources: &[String],
        objective: Objective,
        baseline: &BaselineSpec,
    ) -> SettingsFile {
        let heads = digest.heads_by_index();
        SettingsFile::build(
            devices,
            recs,
            &|name: &str| {
                let seen = digest.devices.seen.iter().filter(|d| d.info.name == name);
                device_entry_from(
                    name,
                    seen.flat_map(|d| d.meters.iter().map(move |&m| (&d.info, m, d.simulated))),
                )
            },
            &|i: usize| {
                let h = heads.get(&u32::try_from(i).ok()?)?;
                Some(Origin {
                    simulated: h.simulated,
                    backend: digest.string(h.backend).to_string(),
                    shape: digest.workload(h.workload)?,
                    source: sources.get(h.source as usize).cloned().unwrap_or_default(),
                })
            },
            objective,
            baseline,
        )
    }

    fn build(
        devices: &[DeviceSetting],
        recs: &[Recommendation],
        device_entry_of: &dyn Fn(&str) -> DeviceEntry,
        origin_of: &dyn Fn(usize) -> Option<Origin>,
        objective: Objective,
        baseline: &BaselineSpec,
    ) -> SettingsFile {
        let mut file = SettingsFile::new(objective.describe(), describe_baseline(baseline));
        for d in devices {
            let mut entry = device_entry_of(&d.device);
            entry.simulated = d.simulated;
            entry.power_cap = d.power_cap.clone();
            entry.power_cap_w = d.power_cap_w.map(|w| round_sig(w, 4));
            entry.default_power_limit_w = d.default_limit_w.map(|w| round_sig(w, 4));
            entry.sm_clock_mhz = d.sm_clock_mhz;
            entry.mem_clock_mhz = d.mem_clock_mhz;
            entry.mix = d.mix.clone();
            entry.energy_saved_fraction = d.energy_saved.map(round_fraction);
            entry.slowdown_fraction = d.slowdown.map(round_fraction);
            entry.uncertainty_fraction = d.uncertainty.map(round_fraction);
            entry.notes = d.reverted.iter().map(|r| r.note()).collect();
            entry.notes.extend(d.notes.iter().cloned());
            file.devices.push(entry);
            for e in &d.entries {
                let r = &recs[e.rec];
                let c = &r.settings[e.setting];
                let Some(record) = origin_of(c.record) else {
                    continue;
                };
                let label = |j: usize| {
                    let s = &r.settings[j];
                    format!("{}, cap {}, clock {}", s.label(), s.cap, s.clock_label())
                };
                let base = r.baseline();
                file.settings.push(ChosenSetting {
                    device_model: d.device.clone(),
                    simulated: record.simulated,
                    workload: r.workload.clone(),
                    backend: record.backend.clone(),
                    kernel: c.kernel.clone(),
                    coverage: r.is_ours_only(e.setting).then(|| "ours only".to_string()),
                    precision: c.precision,
                    batch_size: c.batch_size,
                    power_cap: d.power_cap.clone(),
                    power_cap_w: d.power_cap_w.map(|w| round_sig(w, 4)),
                    default_power_limit_w: d.default_limit_w.map(|w| round_sig(w, 4)),
                    sm_clock_mhz: d.sm_clock_mhz,
                    mem_clock_mhz: d.mem_clock_mhz,
                    energy_pj_per_flop: round_sig(c.picojoules_per_flop(), 4),
                    uncertainty_fraction: Some(round_fraction(c.uncertainty.energy)),
                    throughput_tflops: round_sig(c.tflops, 4),
                    average_power_w: c.average_w.map(|w| round_sig(w, 4)),
                    energy_saved_fraction: base.and(e.attribution.energy_saved).map(round_fraction),
                    slowdown_fraction: base.and(e.attribution.slowdown).map(round_fraction),
                    baseline_setting: base.map(|b| b.label()),
                    baseline_energy_pj_per_flop: base
                        .map(|b| round_sig(b.picojoules_per_flop(), 4)),
                    baseline_throughput_tflops: base.map(|b| round_sig(b.tflops, 4)),
                    flags: c.flags.clone(),
                    meter_agreement_pct: c.meter_agreement_pct.map(|a| round_sig(a, 4)),
                    source: record.source.clone(),
                    attribution: lever_figures(&e.attribution, &label),
                    shape: record.shape,
                });
            }
        }
        file.simulated =
            file.devices.iter().any(|d| d.simulated) || file.settings.iter().any(|s| s.simulated);
        file
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
                         # and device model; [[device]]: each GPU's one power cap and clock.\n"
                    )
                } else {
                    format!(
                        "# joulebench settings (format {SETTINGS_FORMAT}, version {SETTINGS_VERSION}): one power cap\n\
                         # and clock per device model ([[device]]) for its mix of workloads, and each\n\
                         # workload's precision, batch size and kernel under them ([[setting]]).\n"
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
