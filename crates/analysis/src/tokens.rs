//! Energy per token in a report: records written by `joulebench model` are op records
//! of one training step, so the report composes the step again from them — the
//! model from the command that wrote them (its `--preset`) or from the one the user
//! names, the settings from the kernels, precisions, micro-batches and caps the
//! records hold.

use joulebench_core::backend::{Backend, BackendError, KernelInfo, PreparedKernel, Support};
use joulebench_core::record::Record;
use joulebench_core::{DeviceInfo, Precision, Workload};
use joulebench_model::compose::{compose, StepFigures};
use joulebench_model::config::ModelConfig;
use joulebench_model::plan::{ModelPlan, PlanOptions};
use std::collections::{BTreeMap, HashSet};

/// Which model a `joulebench model` command measured: its `--preset`, or its
/// `--config` file. `None` for any other command.
pub fn model_of_command(command: &str) -> Option<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let sub = words.iter().position(|w| *w == "model")?;
    let rest = &words[sub + 1..];
    for (i, w) in rest.iter().enumerate() {
        for flag in ["--preset", "--config"] {
            if *w == flag {
                return rest.get(i + 1).map(|v| v.trim_matches('\'').to_string());
            }
            if let Some(v) = w.strip_prefix(&format!("{flag}=")) {
                return Some(v.trim_matches('\'').to_string());
            }
        }
    }
    None
}

/// A preset name, else a model TOML file.
pub fn load_model(name_or_file: &str) -> Result<ModelConfig, String> {
    match ModelConfig::preset(name_or_file) {
        Ok(m) => Ok(m),
        Err(preset_error) => {
            let path = std::path::Path::new(name_or_file);
            if path.exists() {
                ModelConfig::from_toml_file(path).map_err(|e| e.to_string())
            } else {
                Err(preset_error.to_string())
            }
        }
    }
}

/// A backend that only lists the kernels records name: what a plan needs to know
/// of a backend to lay out the settings the records measured.
struct RecordedKernels {
    name: String,
    device: DeviceInfo,
    kernels: Vec<KernelInfo>,
}

impl Backend for RecordedKernels {
    fn name(&self) -> &str {
        &self.name
    }
    fn device(&self) -> &DeviceInfo {
        &self.device
    }
    fn kernels(&self) -> Vec<KernelInfo> {
        self.kernels.clone()
    }
    fn support(&self, _: &str, _: Precision, _: &Workload) -> Support {
        Support::Supported
    }
    fn prepare(
        &mut self,
        _: &str,
        _: Precision,
        _: &Workload,
        _: u64,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        Err(BackendError::Unavailable(
            "a report composes recorded points; it runs nothing".into(),
        ))
    }
}

/// Per-token figures of every model run among `records`: records whose command is a
/// `joulebench model` command, grouped by model, device and backend. `model`
/// overrides the model each command names. Also a note per group that could not be
/// composed (a model file no longer there, say).
pub fn step_figures(records: &[Record], model: Option<&str>) -> (Vec<StepFigures>, Vec<String>) {
    let (plans, notes) = step_plans(records, model);
    let figures = plans.iter().flat_map(|p| compose(p, records)).collect();
    (figures, notes)
}

/// The records per-token figures are composed from, picked from records read one
/// at a time: those a `joulebench model` command wrote (the plans come from them),
/// then, in a second read, also every record a plan's composition looks up.
/// Composing from these gives what composing from all the records gives.
#[derive(Clone, Debug, Default)]
pub struct StepRecords {
    pub records: Vec<Record>,
}

impl StepRecords {
    /// Whether the first read keeps `r`: a `joulebench model` command wrote it.
    pub fn from_model_command(r: &Record) -> bool {
        model_of_command(&r.command).is_some()
    }

    /// Keep `r` (without its windows, which no per-token figure reads).
    pub fn push(&mut self, mut r: Record) {
        if let Some(m) = r.measurement.as_mut() {
            m.windows = Vec::new();
        }
        self.records.push(r);
    }

    /// After the first read: the setting keys the second must keep beside the
    /// model commands' records; `None` where no step is composed (no second read).
    pub fn looked_up(&self, model: Option<&str>) -> Option<HashSet<String>> {
        let (plans, _) = step_plans(&self.records, model);
        (!plans.is_empty()).then(|| {
            plans
                .iter()
                .flat_map(joulebench_model::compose::looked_up_keys)
                .collect()
        })
    }
}

/// The plan of each model run among `records` (see [`step_figures`]), and a note
/// per run that has none.
fn step_plans(records: &[Record], model: Option<&str>) -> (Vec<ModelPlan>, Vec<String>) {
    // (model name or file, device key, backend) → records
    let mut groups: BTreeMap<(String, String, String), Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let Some(named) = model_of_command(&r.command) else {
            continue;
        };
        // prefill and decode ops are not a training step
        if r.command.split_whitespace().any(|w| w == "--inference") {
            continue;
        }
        let m = model.map(str::to_string).unwrap_or(named);
        groups
            .entry((m, r.device.key(), r.backend.clone()))
            .or_default()
            .push(i);
    }
    let mut plans = Vec::new();
    let mut notes = Vec::new();
    for ((name, _, backend), idx) in groups {
        let config = match load_model(&name) {
            Ok(c) => c,
            Err(e) => {
                notes.push(format!(
                    "energy per token of model '{name}' not composed: {e} (name it with --model NAME or --model FILE.toml)"
                ));
                continue;
            }
        };
        let rs: Vec<&Record> = idx.iter().map(|&i| &records[i]).collect();
        let mut kernels: Vec<KernelInfo> = Vec::new();
        let (mut precisions, mut micro_batches, mut caps, mut names) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut sm_clocks: Vec<Option<u32>> = Vec::new();
        for r in &rs {
            let op = r.workload.op();
            match kernels
                .iter_mut()
                .find(|k| k.name == r.kernel && k.op == op)
            {
                Some(k) if !k.precisions.contains(&r.precision) => k.precisions.push(r.precision),
                Some(_) => {}
                None => kernels.push(KernelInfo {
                    name: r.kernel.clone(),
                    op,
                    precisions: vec![r.precision],
                    vendor: r.vendor_kernel,
                    description: String::new(),
                }),
            }
            if op == joulebench_core::Op::Matmul && !precisions.contains(&r.precision) {
                precisions.push(r.precision);
            }
            if !micro_batches.contains(&r.batch_size) {
                micro_batches.push(r.batch_size);
            }
            if !caps.contains(&r.power_cap.requested) {
                caps.push(r.power_cap.requested);
            }
            if !sm_clocks.contains(&r.clocks.sm_requested_mhz) {
                sm_clocks.push(r.clocks.sm_requested_mhz);
            }
            if !names.contains(&r.kernel) {
                names.push(r.kernel.clone());
            }
        }
        precisions.sort();
        micro_batches.sort_unstable();
        let listing = RecordedKernels {
            name: backend,
            device: rs[0].device.clone(),
            kernels,
        };
        let plan = ModelPlan::new(
            &config,
            &listing,
            &PlanOptions {
                precisions,
                micro_batches,
                caps,
                // the default clocks alone are the plan's default
                sm_clocks: if sm_clocks == [None] {
                    Vec::new()
                } else {
                    sm_clocks
                },
                kernels: names,
                // every combination of what the records hold; compose keeps the measured
                all: true,
                ..PlanOptions::default()
            },
        );
        match plan {
            Ok(plan) => plans.push(plan),
            Err(e) => notes.push(format!(
                "energy per token of model '{name}' not composed: {e}"
            )),
        }
    }
    (plans, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_comes_from_the_command_that_measured_it() {
        assert_eq!(
            model_of_command(
                "./target/release/joulebench model --backend sim --preset llama3-8b --out x"
            ),
            Some("llama3-8b".into())
        );
        assert_eq!(
            model_of_command("joulebench model --config=my.toml"),
            Some("my.toml".into())
        );
        assert_eq!(model_of_command("joulebench sweep --preset quick"), None);
    }

    #[test]
    fn a_report_composes_the_same_step_as_the_model_command_did() {
        // the committed simulated llama3-8b run, and the settings file `model --emit`
        // wrote from it: the report finds the model in the records' command
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let records =
            joulebench_core::record::read_records(&root.join("results/sim/model-llama3-8b.jsonl"))
                .unwrap();
        let (figures, notes) = step_figures(&records, None);
        assert!(notes.is_empty(), "{notes:?}");
        let recs = crate::step::recommend_steps(
            &figures,
            &records,
            crate::recommend::Objective::WithinSlowdown { max_slowdown: 0.1 },
            &crate::step::Baseline::default(),
            crate::significance::NoiseFloor::default(),
        );
        assert_eq!(recs.len(), 1);
        let chosen = recs[0].chosen();
        let settings =
            std::fs::read_to_string(root.join("results/sim/model-llama3-8b.toml")).unwrap();
        let value: toml::Value = toml::from_str(&settings).unwrap();
        let entry = &value["model"]["llama3-8b"][0];
        let emitted = entry["energy_j_per_token"].as_float().unwrap();
        let j = chosen.joules_per_token().unwrap();
        assert!((j - emitted).abs() / emitted < 1e-3, "{j} vs {emitted}");
        assert_eq!(
            chosen.setting.precision.to_string(),
            entry["precision"].as_str().unwrap()
        );
        // a model that is not there is said, not guessed
        let (none, notes) = step_figures(&records, Some("no-such-model"));
        assert!(
            none.is_empty() && notes[0].contains("no-such-model"),
            "{notes:?}"
        );
    }
}
