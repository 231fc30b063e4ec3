//! From advice to a run and back (docs/ARCHITECTURE.md §7): which `[[device]]`
//! entry of a settings file a GPU runs under, what `joulebench model` predicted for
//! the program beside what `joulebench run` measured, and the tables that show a
//! run — at the end of `run` and in `report`.

use crate::format::{opt, pct, sig};
use crate::settings_file::{DeviceEntry, ModelSetting, SettingsFile};
use crate::table::Table;
use joulebench_core::run_record::{Prediction, RunRecord, RunScope};
use joulebench_core::{DeviceInfo, PowerCap, ValidityFlag};

/// The settings a settings file gives one GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceAdvice {
    pub power_cap: PowerCap,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    /// The entry's device model (what the prediction is looked up by).
    pub device_model: String,
    /// "settings.toml: [[device]] NVIDIA H100 80GB HBM3 (this board)".
    pub source: String,
    /// Whether the entry names this very board (its UUID), or only its model.
    pub same_board: bool,
}

fn same_id(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// The `[[device]]` entry of `file` for `gpu`: the one that lists its UUID, else the
/// one of its device model. An entry from the simulated device applies only to a
/// fake device of a test build: simulated advice is not advice for a real GPU.
pub fn advice_for(
    file: &SettingsFile,
    path: &str,
    gpu: &DeviceInfo,
    fake: bool,
) -> Result<DeviceAdvice, String> {
    let by_board = gpu.uuid.as_deref().and_then(|u| {
        file.devices
            .iter()
            .find(|d| d.uuids.iter().any(|x| same_id(x, u)))
    });
    let by_model = || {
        file.devices
            .iter()
            .find(|d| same_id(&d.device_model, &gpu.name))
    };
    let (entry, same_board): (&DeviceEntry, bool) = match (by_board, by_model()) {
        (Some(e), _) => (e, true),
        (None, Some(e)) => (e, false),
        (None, None) => {
            let names: Vec<&str> = file
                .devices
                .iter()
                .map(|d| d.device_model.as_str())
                .collect();
            return Err(format!(
                "{path} has no [[device]] entry for {} ({}): its entries are for {}",
                gpu.name,
                gpu.uuid.as_deref().unwrap_or("no UUID"),
                if names.is_empty() {
                    "no device".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
    };
    if entry.simulated && !fake {
        return Err(format!(
            "{path}: the entry for {} comes from the simulated device; it is not advice for a \
             real GPU ({}); measure this GPU with `joulebench model` or `sweep` first",
            entry.device_model, gpu.name
        ));
    }
    let power_cap: PowerCap = entry
        .power_cap
        .parse()
        .map_err(|e| format!("{path}: [[device]] {}: {e}", entry.device_model))?;
    Ok(DeviceAdvice {
        power_cap,
        sm_clock_mhz: entry.sm_clock_mhz,
        mem_clock_mhz: entry.mem_clock_mhz,
        device_model: entry.device_model.clone(),
        source: format!(
            "{path}: [[device]] {}{}",
            entry.device_model,
            if same_board {
                " (this board)"
            } else {
                " (same model)"
            }
        ),
        same_board,
    })
}

/// What a training step's prediction (GEMMs and attention measured back to back)
/// does not hold, which a real program's energy does.
pub const LEFT_OUT: &[&str] = &[
    "norms, activation functions, the loss and the embedding lookup",
    "the optimizer step",
    "communication (tensor- and pipeline-parallel transfers, the gradient all-reduce) and pipeline bubbles",
    "idle gaps between kernels and steps (data loading, logging, checkpoints, the host's launch overhead)",
];

/// The GPUs of one model copy, from a layout as `model` writes it ("1 GPU",
/// "TP 8 × PP 2 (16 GPUs)").
fn layout_gpus(layout: &str) -> Option<u64> {
    if layout.trim() == "1 GPU" {
        return Some(1);
    }
    let inner = layout.rsplit_once('(')?.1;
    inner.split_whitespace().next()?.parse().ok()
}

/// The `[[model.<name>]]` entry a run is compared with: `model` when given, else the
/// file's only model; of the device model the GPUs ran under. `Ok(None)`: the file
/// holds no model entries (a `recommend --emit` file predicts no program).
pub fn model_entry<'a>(
    file: &'a SettingsFile,
    path: &str,
    model: Option<&str>,
    device_model: &str,
) -> Result<Option<(&'a str, &'a ModelSetting)>, String> {
    if file.models.is_empty() {
        return Ok(None);
    }
    let name = match model {
        Some(m) => file
            .models
            .keys()
            .find(|k| k.as_str() == m)
            .ok_or_else(|| {
                format!(
                    "{path} has no [[model.{m}]]; it has {}",
                    file.models.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?,
        None if file.models.len() == 1 => file.models.keys().next().expect("one model"),
        None => {
            return Err(format!(
            "{path} has settings for the models {}: name the one this program trains with --model",
            file.models.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
        }
    };
    let entries = &file.models[name];
    let entry = entries
        .iter()
        .find(|e| same_id(&e.device_model, device_model))
        .ok_or_else(|| {
            format!(
                "{path}: [[model.{name}]] has no entry for {device_model} (it has {})",
                entries
                    .iter()
                    .map(|e| e.device_model.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    Ok(Some((name.as_str(), entry)))
}

/// What the program ran under, per GPU, as the prediction is checked against it.
#[derive(Clone, Debug, PartialEq)]
pub struct AppliedSetting {
    pub power_cap: PowerCap,
    pub sm_clock_mhz: Option<u32>,
}

/// The prediction of `entry` beside the run's measured figures (`run` is the run
/// scope's record): joules per token over the steady state where the program marked
/// one, else over the whole run, every GPU's energy together; tokens per second per
/// model copy.
pub fn prediction(
    run: &RunRecord,
    model: &str,
    entry: &ModelSetting,
    source: &str,
    applied: &[AppliedSetting],
) -> Prediction {
    let mut notes = Vec::new();
    let (measured_over, joules, tokens, seconds) = match &run.steady {
        Some(s) => (
            format!("the steady state (phases {})", s.phases.join(", ")),
            s.joules,
            s.tokens,
            s.seconds,
        ),
        None => (
            "the whole run (no steady-state phase marked: warm-up included)".to_string(),
            run.joules,
            run.tokens,
            run.seconds,
        ),
    };
    if tokens.is_none() {
        notes.push(
            "no tokens were counted: give --tokens N or --tokens-pattern, or write `tokens N` to \
             the phase FIFO"
                .into(),
        );
    }
    let measured_j = match (joules, tokens) {
        (Some(j), Some(t)) if t > 0 => Some(j / t as f64),
        _ => None,
    };
    let per_copy = layout_gpus(&entry.layout).unwrap_or(1) as f64;
    let measured_gpus = run.gpus.len().max(1) as f64;
    if run.gpus.len() as f64 != per_copy {
        notes.push(format!(
            "{} GPU(s) measured; the prediction's layout ({}) has {per_copy}: tokens per second \
             are per model copy, the GPUs measured taken as data-parallel copies",
            run.gpus.len(),
            if entry.layout.is_empty() {
                "1 GPU"
            } else {
                &entry.layout
            }
        ));
    }
    let measured_tps = match tokens {
        Some(t) if seconds > 0.0 => Some(t as f64 / seconds * per_copy / measured_gpus),
        _ => None,
    };
    let predicted_cap: Option<PowerCap> = entry.power_cap.parse().ok();
    for a in applied {
        if Some(a.power_cap) != predicted_cap || a.sm_clock_mhz != entry.sm_clock_mhz {
            notes.push(format!(
                "the program ran at cap {}{} but the prediction is for cap {}{}",
                a.power_cap,
                a.sm_clock_mhz
                    .map(|m| format!(", SM clock {m} MHz"))
                    .unwrap_or_default(),
                entry.power_cap,
                entry
                    .sm_clock_mhz
                    .map(|m| format!(", SM clock {m} MHz"))
                    .unwrap_or_default()
            ));
            break;
        }
    }
    notes.push(format!(
        "the prediction is for {} matmuls (attention {}), micro-batch {} ({} tokens a step), \
         kernels {}: the program should train the same way",
        entry.precision,
        entry.attention_precision,
        entry.micro_batch,
        entry.tokens_per_step,
        entry.kernels.label()
    ));
    if entry.simulated {
        notes.push("the prediction comes from the simulated device, not a measurement".into());
    }
    if run.simulated {
        notes.push("the measurement comes from a fake device of a test build, not a GPU".into());
    }
    let mut left_out: Vec<String> = LEFT_OUT.iter().map(|s| s.to_string()).collect();
    if !entry.coverage.is_empty() {
        left_out.push(format!("(the prediction's own words: {})", entry.coverage));
    }
    Prediction {
        model: model.to_string(),
        source: source.to_string(),
        device_model: entry.device_model.clone(),
        layout: entry.layout.clone(),
        simulated: entry.simulated,
        predicted_joules_per_token: entry.energy_j_per_token,
        predicted_tokens_per_second: entry.tokens_per_second,
        measured_joules_per_token: measured_j,
        measured_tokens_per_second: measured_tps,
        energy_difference_fraction: measured_j.map(|m| m / entry.energy_j_per_token - 1.0),
        throughput_difference_fraction: measured_tps.map(|m| m / entry.tokens_per_second - 1.0),
        measured_over,
        left_out,
        notes,
    }
}

fn flags(f: &[ValidityFlag]) -> String {
    f.iter().map(|x| x.name()).collect::<Vec<_>>().join(", ")
}

fn joules_cell(j: Option<f64>) -> String {
    opt(j, 4)
}

/// mJ per token, the unit `model` prints.
fn mj_per_token(j: Option<f64>) -> String {
    opt(j.map(|x| x * 1e3), 4)
}

/// The tables of one run: its GPUs, its phases, and the prediction beside it.
/// `records` are the run's (the run record and its GPU records, any order).
pub fn run_tables(records: &[&RunRecord]) -> Vec<Table> {
    let Some(run) = records.iter().find(|r| r.scope == RunScope::Run) else {
        return Vec::new();
    };
    let gpus: Vec<&&RunRecord> = records
        .iter()
        .filter(|r| r.scope == RunScope::Gpu)
        .collect();
    let mut tables = Vec::new();

    let mut t = Table::new(
        format!(
            "Run of `{}`: {}, {} s",
            run.program.argv.join(" "),
            run.program.describe_exit(),
            sig(run.seconds, 4)
        ),
        &[
            "",
            "settings",
            "energy (J)",
            "avg power (W)",
            "peak power (W)",
            "energy (mJ/token)",
            "SM clock (MHz, mean)",
            "throttle reasons (share of readings)",
            "flags",
        ],
    );
    if run.simulated {
        t.notes.push(
            "FAKE DEVICE: measured on a test build's fake GPU, whose counter advances at its set \
             power whatever the program does; not a GPU's measurement."
                .into(),
        );
    }
    t.notes.push(format!(
        "run {} on {}; `{}`",
        run.run_id, run.host, run.command
    ));
    if let Some(tokens) = run.tokens {
        t.notes.push(format!("{tokens} tokens in the run."));
    }
    for g in &gpus {
        let s = g.settings.as_ref();
        let setting = s
            .map(|s| {
                let mut parts = vec![match s.power_cap_w {
                    Some(w) if matches!(s.power_cap, PowerCap::Watts(_)) => format!("cap {w:.0} W"),
                    Some(w) => format!("cap {} ({:.0} W)", s.power_cap, w),
                    None => format!(
                        "limit as found{}",
                        s.found_limit_w
                            .map(|w| format!(" ({w:.0} W)"))
                            .unwrap_or_default()
                    ),
                }];
                if let Some(m) = s.sm_clock_mhz {
                    parts.push(format!("SM {m} MHz"));
                }
                if let Some(m) = s.mem_clock_mhz {
                    parts.push(format!("mem {m} MHz"));
                }
                match s.restored {
                    Some(true) => parts.push("restored".into()),
                    Some(false) => parts.push("NOT RESTORED".into()),
                    None => {}
                }
                parts.join(", ")
            })
            .unwrap_or_default();
        let tel = g.telemetry.as_ref();
        let reasons = tel
            .map(|t| {
                t.throttle_reasons
                    .iter()
                    .map(|r| format!("{} {:.0}%", r.reason, r.share * 100.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        t.push(vec![
            g.label(),
            setting,
            joules_cell(g.joules),
            opt(g.average_w, 4),
            opt(g.peak_w, 4),
            mj_per_token(g.joules_per_token),
            opt(tel.and_then(|t| t.sm_clock_mhz).map(|r| r.mean), 4),
            reasons,
            flags(&g.flags),
        ]);
    }
    if gpus.len() != 1 {
        t.push(vec![
            "all GPUs".into(),
            String::new(),
            joules_cell(run.joules),
            opt(run.average_w, 4),
            String::new(),
            mj_per_token(run.joules_per_token),
            String::new(),
            String::new(),
            flags(&run.flags),
        ]);
    }
    if let Some(h) = run.host_joules {
        let domains = run
            .host_meter
            .as_ref()
            .map(|m| m.domains.join(" + "))
            .unwrap_or_default();
        t.push(vec![
            format!("host CPU+DRAM (RAPL: {domains})"),
            String::new(),
            joules_cell(Some(h)),
            opt(Some(h / run.seconds), 4),
            String::new(),
            mj_per_token(run.tokens.filter(|t| *t > 0).map(|t| h / t as f64)),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    t.notes.extend(run.notes.iter().cloned());
    for g in &gpus {
        for n in &g.notes {
            t.notes.push(format!("{}: {n}", g.label()));
        }
    }
    t.notes.extend(run.program.signals.iter().cloned());
    tables.push(t);

    if !run.phases.is_empty() {
        let mut p = Table::new(
            "Phases (every GPU's energy together; each phase all its spans together)",
            &[
                "phase",
                "spans",
                "time (s)",
                "GPU energy (J)",
                "host energy (J)",
                "tokens",
                "energy (mJ/token)",
                "throughput (tokens/s)",
                "counts as",
                "flags",
            ],
        );
        for ph in &run.phases {
            p.push(vec![
                ph.name.clone(),
                ph.occurrences.to_string(),
                sig(ph.seconds, 4),
                joules_cell(ph.joules),
                joules_cell(ph.host_joules),
                ph.tokens
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "–".into()),
                mj_per_token(ph.joules_per_token),
                opt(ph.tokens_per_second, 4),
                if ph.warmup { "warm-up" } else { "steady" }.into(),
                flags(&ph.flags),
            ]);
        }
        if let Some(s) = &run.steady {
            p.push(vec![
                "steady state".into(),
                String::new(),
                sig(s.seconds, 4),
                joules_cell(s.joules),
                String::new(),
                s.tokens
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "–".into()),
                mj_per_token(s.joules_per_token),
                opt(s.tokens_per_second, 4),
                String::new(),
                String::new(),
            ]);
        }
        tables.push(p);
    }

    if let Some(pr) = &run.prediction {
        let mut c = Table::new(
            format!(
                "Predicted by `joulebench model` ({}, {}) against measured",
                pr.model, pr.device_model
            ),
            &["", "predicted", "measured", "difference"],
        );
        c.push(vec![
            "energy (mJ/token)".into(),
            sig(pr.predicted_joules_per_token * 1e3, 4),
            mj_per_token(pr.measured_joules_per_token),
            pr.energy_difference_fraction
                .map(pct)
                .unwrap_or_else(|| "–".into()),
        ]);
        c.push(vec![
            "throughput (tokens/s, one model copy)".into(),
            sig(pr.predicted_tokens_per_second, 4),
            opt(pr.measured_tokens_per_second, 4),
            pr.throughput_difference_fraction
                .map(pct)
                .unwrap_or_else(|| "–".into()),
        ]);
        c.notes.push(format!(
            "Measured over {}: every GPU board's energy, everything the program did.",
            pr.measured_over
        ));
        c.notes.push(format!(
            "The prediction ({}) covers the GEMMs and attention of a training step, run back to \
             back with the GPU 100% busy; it leaves out: {}.",
            pr.source,
            pr.left_out
                .iter()
                .filter(|s| !s.starts_with('('))
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
        c.notes.extend(pr.notes.iter().cloned());
        tables.push(c);
    }
    tables
}

/// Run records grouped by run, in the order their runs first appear.
pub fn group_runs(records: &[RunRecord]) -> Vec<Vec<&RunRecord>> {
    let mut groups: Vec<Vec<&RunRecord>> = Vec::new();
    for r in records {
        match groups.iter_mut().find(|g| g[0].run_id == r.run_id) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings_file::{DeviceVendor, SETTINGS_FORMAT, SETTINGS_VERSION};
    use joulebench_core::run_record::{SteadyState, RUN_RECORD_KIND, RUN_RECORD_SCHEMA};
    use joulebench_core::Precision;
    use joulebench_model::plan::KernelChoice;

    fn device(model: &str, uuid: &str, simulated: bool, cap: &str) -> DeviceEntry {
        DeviceEntry {
            device_model: model.into(),
            simulated,
            vendor: DeviceVendor::Nvidia,
            uuids: vec![uuid.into()],
            pci_bus_ids: Vec::new(),
            power_cap: cap.into(),
            power_cap_w: None,
            default_power_limit_w: None,
            sm_clock_mhz: Some(1410),
            mem_clock_mhz: None,
            mix: String::new(),
            energy_saved_fraction: None,
            slowdown_fraction: None,
            uncertainty_fraction: None,
            notes: Vec::new(),
        }
    }

    fn model_setting(model: &str) -> ModelSetting {
        ModelSetting {
            device_model: model.into(),
            simulated: false,
            backend: "cuda".into(),
            precision: Precision::Bf16,
            attention_precision: Precision::Bf16,
            micro_batch: 1,
            tokens_per_step: 4096,
            power_cap: "80%".into(),
            power_cap_w: Some(560.0),
            sm_clock_mhz: Some(1410),
            layout: "1 GPU".into(),
            default_power_limit_w: Some(700.0),
            energy_j_per_token: 0.05,
            uncertainty_fraction: Some(0.01),
            tokens_per_second: 10_000.0,
            flop_per_token: 1e10,
            mfu: None,
            average_power_w: Some(500.0),
            energy_saved_fraction: None,
            slowdown_fraction: None,
            baseline: None,
            flags: Vec::new(),
            notes: Vec::new(),
            coverage: String::new(),
            source: "r.jsonl".into(),
            attribution: Vec::new(),
            kernels: KernelChoice {
                matmul: "cublas".into(),
                attention: "cuda-flash".into(),
                attention_backward: "cuda-flash-bwd".into(),
                vendor: false,
            },
        }
    }

    fn file() -> SettingsFile {
        let mut f = SettingsFile {
            format: SETTINGS_FORMAT.into(),
            version: SETTINGS_VERSION,
            generated_by: "t".into(),
            objective: "o".into(),
            baseline: String::new(),
            noise_floor_fraction: None,
            simulated: true,
            devices: vec![
                device("GPU A", "GPU-aaaa", false, "80%"),
                device("sim-h200 (simulated)", "SIM-0", true, "60%"),
            ],
            settings: Vec::new(),
            models: Default::default(),
        };
        f.models.insert("gpt2".into(), vec![model_setting("GPU A")]);
        f
    }

    fn gpu(name: &str, uuid: &str) -> DeviceInfo {
        DeviceInfo {
            name: name.into(),
            uuid: Some(uuid.into()),
            ..DeviceInfo::default()
        }
    }

    #[test]
    fn a_gpu_takes_its_boards_entry_else_its_models_and_never_simulated_advice() {
        let f = file();
        let a = advice_for(&f, "s.toml", &gpu("GPU A", "GPU-AAAA"), false).unwrap();
        assert!(a.same_board && a.source.contains("this board"));
        assert_eq!(a.power_cap, PowerCap::PercentOfDefault(80.0));
        assert_eq!(a.sm_clock_mhz, Some(1410));
        let b = advice_for(&f, "s.toml", &gpu("gpu a", "GPU-other"), false).unwrap();
        assert!(!b.same_board && b.source.contains("same model"));
        let e = advice_for(&f, "s.toml", &gpu("GPU B", "GPU-b"), false).unwrap_err();
        assert!(
            e.contains("no [[device]] entry for GPU B") && e.contains("GPU A"),
            "{e}"
        );
        let e = advice_for(&f, "s.toml", &gpu("sim-h200 (simulated)", "SIM-0"), false).unwrap_err();
        assert!(e.contains("simulated device"), "{e}");
        // a fake device of a test build may stand in for it
        let fake = advice_for(&f, "s.toml", &gpu("x", "SIM-0"), true).unwrap();
        assert_eq!(fake.power_cap, PowerCap::PercentOfDefault(60.0));
    }

    fn run_record(joules: f64, tokens: u64, seconds: f64) -> RunRecord {
        RunRecord {
            schema: RUN_RECORD_SCHEMA,
            kind: RUN_RECORD_KIND.into(),
            scope: RunScope::Run,
            run_id: "r".into(),
            tool: joulebench_core::sweep::tool_info(),
            host: "h".into(),
            unix_time_s: 0.0,
            command: "joulebench run".into(),
            program: Default::default(),
            simulated: false,
            device: None,
            gpus: vec!["GPU A [GPU-aaaa]".into()],
            meter: None,
            meter_update_period_s: None,
            host_meter: None,
            settings: None,
            seconds: seconds + 5.0,
            joules: Some(joules * 2.0),
            average_w: Some(joules * 2.0 / (seconds + 5.0)),
            peak_w: None,
            host_joules: None,
            telemetry: None,
            tokens: Some(tokens),
            joules_per_token: Some(joules * 2.0 / tokens as f64),
            phases: Vec::new(),
            steady: Some(SteadyState {
                phases: vec!["train".into()],
                seconds,
                joules: Some(joules),
                tokens: Some(tokens),
                joules_per_token: Some(joules / tokens as f64),
                tokens_per_second: Some(tokens as f64 / seconds),
            }),
            prediction: None,
            flags: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn the_steady_state_is_set_beside_the_prediction_with_its_difference() {
        let f = file();
        let (name, entry) = model_entry(&f, "s.toml", None, "GPU A").unwrap().unwrap();
        // 600 J over 10 000 tokens in 2 s: 60 mJ/token (+20%), 5000 tokens/s (−50%)
        let run = run_record(600.0, 10_000, 2.0);
        let applied = [AppliedSetting {
            power_cap: PowerCap::PercentOfDefault(80.0),
            sm_clock_mhz: Some(1410),
        }];
        let p = prediction(&run, name, entry, "s.toml", &applied);
        assert!((p.measured_joules_per_token.unwrap() - 0.06).abs() < 1e-12);
        assert!((p.energy_difference_fraction.unwrap() - 0.2).abs() < 1e-9);
        assert!((p.throughput_difference_fraction.unwrap() + 0.5).abs() < 1e-9);
        assert!(p.measured_over.contains("steady state (phases train)"));
        assert!(p.left_out.iter().any(|l| l.contains("optimizer")));
        assert!(
            !p.notes.iter().any(|n| n.contains("ran at cap")),
            "{:?}",
            p.notes
        );
        // another cap than predicted is said
        let other = [AppliedSetting {
            power_cap: PowerCap::Default,
            sm_clock_mhz: None,
        }];
        let p = prediction(&run, name, entry, "s.toml", &other);
        assert!(
            p.notes.iter().any(|n| n.contains("ran at cap default")),
            "{:?}",
            p.notes
        );
        // and the record that holds it passes the reader's checks
        let mut with = run.clone();
        with.prediction = Some(p);
        with.check_numbers().unwrap();
        let tables = run_tables(&[&with]);
        let text = tables[tables.len() - 1].render(crate::TableFormat::Markdown);
        let row = text
            .lines()
            .find(|l| l.starts_with("| energy (mJ/token)"))
            .unwrap_or_default();
        assert!(
            row.contains("50.00") && row.contains("60.00") && row.contains("+20.0%"),
            "{text}"
        );
    }

    #[test]
    fn several_models_need_a_name_and_layouts_give_their_gpus() {
        let mut f = file();
        f.models
            .insert("llama".into(), vec![model_setting("GPU A")]);
        let e = model_entry(&f, "s.toml", None, "GPU A").unwrap_err();
        assert!(e.contains("--model"), "{e}");
        assert!(model_entry(&f, "s.toml", Some("llama"), "GPU A")
            .unwrap()
            .is_some());
        assert!(model_entry(&f, "s.toml", Some("llama"), "GPU Z").is_err());
        assert_eq!(layout_gpus("1 GPU"), Some(1));
        assert_eq!(layout_gpus("TP 8 × PP 2 (16 GPUs)"), Some(16));
        f.models.clear();
        assert_eq!(model_entry(&f, "s.toml", None, "GPU A").unwrap(), None);
    }
}
