//! `joulebench run [--settings FILE] -- CMD ARGS…`: parse the flags, open the GPUs'
//! meters and arm their guards, hand everything to `joulebench_energy::run`, then
//! write the records, set the prediction beside them and print. The program's
//! status becomes joulebench's; its output is not touched, so joulebench's own
//! lines go to stderr.

use crate::args::RunArgs;
use crate::error::{io, runtime, usage, CliError, ErrorKind};
use crate::paths::{check_output, refuse_input_as_output, shown, Existing};
use joulebench_analysis::run_report::{
    advice_for, model_entry, prediction, run_tables, AppliedSetting, DeviceAdvice,
};
use joulebench_analysis::settings_file::SettingsFile;
use joulebench_analysis::table::TableFormat;
use joulebench_core::record::{read_results_file, JsonlWriter};
use joulebench_core::run_record::{RunRecord, RunScope};
use joulebench_core::{DeviceInfo, PowerCap};
use joulebench_device::gpus::{list_gpus, open_gpu, GpuEntry};
use joulebench_energy::nvml::MeterMode;
use joulebench_energy::run::{
    GpuSetting, OutputPatterns, Permissions, ProgramRun, ProgramSpec, RecordContext, RunError,
    RunGpu,
};
use regex::bytes::Regex;
use std::path::{Path, PathBuf};
use std::time::Duration;

impl From<RunError> for CliError {
    fn from(e: RunError) -> Self {
        let kind = if e.is_refusal() {
            ErrorKind::Usage
        } else {
            ErrorKind::Failure
        };
        CliError::new(kind, e)
    }
}

fn pattern(flag: &str, p: &Option<String>) -> Result<Option<Regex>, CliError> {
    p.as_deref()
        .map(|s| {
            Regex::new(s)
                .map_err(|e| usage(format!("{flag} '{s}' is not a regular expression: {e}")))
        })
        .transpose()
}

/// `--devices`: "all", or indices, UUIDs and PCI bus ids, comma-separated.
fn select(found: Vec<GpuEntry>, spec: Option<&str>) -> Result<Vec<GpuEntry>, CliError> {
    let spec = spec.map(str::trim).unwrap_or("all");
    if spec.eq_ignore_ascii_case("all") {
        return Ok(found);
    }
    let norm = |s: &str| {
        joulebench_energy::identity::normalize_pci_bus_id(s)
            .unwrap_or_else(|| s.to_ascii_lowercase())
    };
    let mut out: Vec<GpuEntry> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let hit = match item.parse::<usize>() {
            Ok(i) => found.get(i),
            Err(_) => found.iter().find(|g| {
                g.device
                    .uuid
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(item))
                    || g.device
                        .pci_bus_id
                        .as_deref()
                        .is_some_and(|p| norm(p) == norm(item))
            }),
        };
        let Some(g) = hit else {
            let listed: Vec<String> = found
                .iter()
                .enumerate()
                .map(|(i, g)| format!("{i}: {}", g.device.key()))
                .collect();
            return Err(usage(format!(
                "--devices '{item}' is no GPU found here; found: {}",
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join("; ")
                }
            )));
        };
        if !out.iter().any(|o| o.device.key() == g.device.key()) {
            out.push(g.clone());
        }
    }
    Ok(out)
}

/// The setting of one GPU: its settings-file entry, with `--power-cap` and
/// `--sm-clocks` over it.
fn setting_for(
    args: &RunArgs,
    file: Option<(&SettingsFile, &str)>,
    gpu: &DeviceInfo,
    fake: bool,
) -> Result<(GpuSetting, Option<DeviceAdvice>), CliError> {
    let mut setting = GpuSetting::none();
    let mut advice = None;
    let mut from = Vec::new();
    if let Some((f, path)) = file {
        let a = advice_for(f, path, gpu, fake)
            .map_err(|e| usage(format!("{e}; --devices chooses the GPUs to run on")))?;
        setting.power_cap = a.power_cap;
        setting.sm_clock_mhz = a.sm_clock_mhz;
        setting.mem_clock_mhz = a.mem_clock_mhz;
        from.push(a.source.clone());
        advice = Some(a);
    }
    if let Some(cap) = &args.power_cap {
        setting.power_cap = cap
            .parse::<PowerCap>()
            .map_err(|e| usage(format!("--power-cap: {e}")))?;
        from.push("the cap from --power-cap".into());
    }
    if let Some(c) = &args.sm_clocks {
        setting.sm_clock_mhz = match c.trim() {
            "default" => None,
            v => Some(v.parse::<u32>().map_err(|_| {
                usage(format!(
                    "--sm-clocks '{v}' is not a clock in MHz, nor \"default\""
                ))
            })?),
        };
        from.push("the SM clock from --sm-clocks".into());
    }
    if !from.is_empty() {
        setting.source = from.join("; ");
    }
    Ok((setting, advice))
}

/// `results/run-<time>.jsonl`.
fn default_out() -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', 'T'], "-")
        .trim_end_matches('Z')
        .to_string();
    PathBuf::from("results").join(format!("run-{stamp}.jsonl"))
}

/// The results file the records are appended to, held from before anything changes
/// to the end: a file that is not a results file is refused, an incomplete last
/// record cut off after a copy is kept.
fn open_out(out: &Path) -> Result<JsonlWriter, CliError> {
    check_output(out, "--out", Existing::Continue)?;
    let existed = out.exists();
    let file = if existed {
        Some(read_results_file(out)?)
    } else {
        None
    };
    let mut writer = JsonlWriter::append_exclusive(out)?;
    if let Some(tail) = file.and_then(|f| f.tail) {
        let copy = writer.cut_partial_tail(&tail)?;
        eprintln!(
            "note: {} ended in an incomplete record ({} bytes); cut off, a copy is in {}",
            shown(out),
            tail.bytes,
            shown(&copy)
        );
    }
    if existed {
        eprintln!(
            "note: the records of this run are appended to {}",
            shown(out)
        );
    }
    Ok(writer)
}

fn meter_mode(s: &str) -> Result<Option<MeterMode>, CliError> {
    match s.trim() {
        "none" | "off" => Ok(None),
        other => other.parse().map(Some).map_err(usage),
    }
}

/// What `run` has checked before it opens a meter or changes anything.
struct Prepared {
    fmt: TableFormat,
    meter: Option<MeterMode>,
    spec: ProgramSpec,
    /// The settings file and its path as given.
    settings: Option<(SettingsFile, String)>,
    /// Each GPU, its setting, and the settings-file entry it came from.
    gpus: Vec<(GpuEntry, GpuSetting, Option<DeviceAdvice>)>,
    out: PathBuf,
}

pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let prepared = prepare(args)?;
    let out = prepared.out.clone();
    let existed = out.exists();
    let writer = open_out(&out)?;
    let result = measure(args, prepared, writer);
    // a run refused before it started leaves no empty results file behind
    if result.is_err() && !existed && std::fs::metadata(&out).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(&out);
    }
    result
}

/// Flags, the settings file and each GPU's setting, checked; nothing opened yet.
fn prepare(args: &RunArgs) -> Result<Prepared, CliError> {
    let fmt: TableFormat = args.format.parse().map_err(usage)?;
    let patterns = OutputPatterns {
        phase: pattern("--phase-pattern", &args.phase_pattern)?,
        tokens: pattern("--tokens-pattern", &args.tokens_pattern)?,
    };
    let meter = meter_mode(&args.meter)?;
    let steady_phases = args.steady_phases.as_deref().map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    });
    let settings = match &args.settings {
        Some(p) => Some((
            SettingsFile::read(p).map_err(|e| match e {
                joulebench_analysis::settings_file::SettingsError::Read { .. } => io(e),
                _ => usage(e),
            })?,
            p.display().to_string(),
        )),
        None => None,
    };
    let out = args.out.clone().unwrap_or_else(default_out);
    if let Some(p) = &args.settings {
        refuse_input_as_output(&out, std::slice::from_ref(p), "--out")?;
    }
    let (found, missing) = list_gpus();
    let chosen = select(found, args.devices.as_deref())?;
    if chosen.is_empty() {
        eprintln!(
            "note: no GPU found ({}): the run measures time{}",
            missing.join("; "),
            if meter.is_some() {
                " and the host's energy where RAPL is readable"
            } else {
                ""
            }
        );
        if args.settings.is_some() || args.power_cap.is_some() || args.sm_clocks.is_some() {
            return Err(usage(
                "settings were asked for, but no GPU was found to apply them to; nothing was run",
            ));
        }
    }
    let file = settings.as_ref().map(|(f, p)| (f, p.as_str()));
    let mut gpus = Vec::new();
    for entry in chosen {
        let (setting, advice) = setting_for(args, file, &entry.device, entry.fake)?;
        gpus.push((entry, setting, advice));
    }
    Ok(Prepared {
        fmt,
        meter,
        spec: ProgramSpec {
            argv: args.program.clone(),
            patterns,
            tokens: args.tokens,
            steady_phases,
        },
        settings,
        gpus,
        out,
    })
}

/// The host's RAPL meter, where it can be read.
fn host_meter() -> Option<(
    Box<dyn joulebench_core::EnergyMeter>,
    joulebench_core::HostMeterInfo,
)> {
    let fs = joulebench_energy::sysfs::Sysfs::from_env();
    match joulebench_energy::rapl::RaplMeter::open(&fs) {
        Ok(m) => {
            let info = m.info();
            eprintln!("host energy: RAPL ({})", m.describe());
            Some((Box::new(m), info))
        }
        Err(e) => {
            eprintln!("note: no host energy: {e}");
            None
        }
    }
}

/// Open the meters, arm the guards, run the program, write the records, print.
fn measure(args: &RunArgs, p: Prepared, mut writer: JsonlWriter) -> Result<(), CliError> {
    let perms = Permissions {
        power: args.allow_power_changes,
        clocks: args.allow_clock_changes,
    };
    let interval = Duration::from_millis(args.sample_interval_ms.max(1));
    let mut gpus = Vec::new();
    let mut advice = Vec::new();
    for (entry, setting, a) in p.gpus {
        let mut g = open_gpu(&entry, p.meter, interval)?;
        for n in &g.notes {
            eprintln!("{}: {n}", entry.device.name);
        }
        if setting.changes_power() || setting.changes_clocks() {
            g.arm_guard(perms.power, perms.clocks)?;
        }
        advice.push((a, setting.clone()));
        gpus.push(RunGpu {
            device: g.device,
            simulated: g.fake,
            meter: g.meter,
            guard: g.guard,
            power: g.power,
            clocks: g.clocks,
            setting,
        });
    }
    let host = p.meter.and_then(|_| host_meter());
    let mut run = ProgramRun::new(gpus, host, p.spec, perms);
    for line in run.check()? {
        eprintln!("run: {line}");
    }
    let outcome = run.run()?;

    let ctx = RecordContext {
        command: joulebench_device::process_command_line(),
        host: joulebench_device::host_name(),
    };
    let mut records = outcome.records(&ctx);
    let mut prediction_error = None;
    let device_model = advice
        .iter()
        .find_map(|(a, _)| a.as_ref().map(|a| a.device_model.clone()));
    if let (Some((f, path)), Some(dm)) = (&p.settings, device_model) {
        match model_entry(f, path, args.model.as_deref(), &dm) {
            Ok(Some((name, entry))) => {
                let applied: Vec<AppliedSetting> = advice
                    .iter()
                    .map(|(_, s)| AppliedSetting {
                        power_cap: s.power_cap,
                        sm_clock_mhz: s.sm_clock_mhz,
                    })
                    .collect();
                if let Some(r) = records.iter_mut().find(|r| r.scope == RunScope::Run) {
                    r.prediction = Some(prediction(r, name, entry, path, &applied));
                }
            }
            Ok(None) => {}
            Err(e) => prediction_error = Some(e),
        }
    }
    let written: Result<(), CliError> = records
        .iter()
        .try_for_each(|r| writer.write_run(r).map_err(CliError::from));
    drop(writer);

    let refs: Vec<&RunRecord> = records.iter().collect();
    let text: Vec<String> = run_tables(&refs).iter().map(|t| t.render(p.fmt)).collect();
    eprintln!("\n{}", text.join("\n"));
    if let Some(e) = prediction_error {
        eprintln!("note: no prediction beside the measurement: {e}");
    }
    for r in &outcome.restores {
        eprintln!("{}", r.describe());
    }
    written.map_err(|e| e.context("cannot write the run's records"))?;
    eprintln!("records: {}", shown(&p.out));
    if !outcome.restore_errors.is_empty() {
        return Err(runtime(format!(
            "could not restore everything after the run ({}): {}",
            match outcome.program_status() {
                Some(c) => format!("the program's status was {c}"),
                None => "the program's status is unknown".into(),
            },
            outcome.restore_errors.join("; ")
        )));
    }
    match outcome.program_status() {
        Some(0) => {}
        Some(code) => return Err(CliError::new(ErrorKind::ProgramExit { code }, "")),
        None => return Err(runtime("the program's exit status is unknown")),
    }
    if !outcome.meter_failures.is_empty() {
        return Err(runtime(format!(
            "the program succeeded, but the measurement is incomplete: {}",
            outcome.meter_failures.join("; ")
        )));
    }
    Ok(())
}
