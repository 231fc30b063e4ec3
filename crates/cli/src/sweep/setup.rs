//! What a single-device sweep and a sweep of every GPU of a node share: the flags
//! checked before anything opens, the sweep config built from a preset or a TOML
//! file and the flags, where results go by default, the command line and host
//! recorded, and how signals stop a sweep.

use crate::args::{parse_fraction, parse_list, PresetChoice, SweepArgs, DEFAULT_MAX_SLOWDOWN};
use crate::error::{usage, CliError};
use joulebench_core::plan::{Preset, SweepConfig};
use joulebench_core::{Backend, ClockSpec, InputDistribution, Op, PowerCap, Precision};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

/// The most repeats of a point a sweep accepts.
pub const MAX_REPEAT: u32 = 100;

/// Everything from the flags that can be checked before a device is opened.
pub struct Overrides {
    pub ops: Option<Vec<Op>>,
    pub precisions: Option<Vec<Precision>>,
    pub kernels: Option<Vec<String>>,
    pub batch_sizes: Option<Vec<u64>>,
    pub power_caps: Option<Vec<PowerCap>>,
    pub sm_clocks: Option<Vec<ClockSpec>>,
    pub mem_clocks: Option<Vec<ClockSpec>>,
    pub inputs: Option<Vec<InputDistribution>>,
    pub target_spread: Option<f64>,
    pub max_slowdown: f64,
    pub baseline: joulebench_analysis::recommend::BaselineSpec,
}

/// How many times each point is measured: `--repeat`, else the config's (the
/// standard preset's), else once.
pub fn repeat_of(args: &SweepArgs, cfg: &SweepConfig) -> Result<u32, CliError> {
    let n = args.repeat.or(cfg.repeat).unwrap_or(1);
    if n == 0 || n > MAX_REPEAT {
        return Err(usage(format!(
            "repeat = {n} must be between 1 and {MAX_REPEAT}"
        )));
    }
    Ok(n)
}

pub fn parse_overrides(args: &SweepArgs) -> Result<Overrides, CliError> {
    if let Some(n) = args.repeat.filter(|&n| n == 0 || n > MAX_REPEAT) {
        return Err(usage(format!(
            "--repeat {n} must be between 1 and {MAX_REPEAT}"
        )));
    }
    let ops = args
        .ops
        .as_deref()
        .map(|s| parse_list(s, "op", |o| o.parse::<Op>()))
        .transpose()
        .map_err(usage)?;
    let precisions = args
        .precisions
        .as_deref()
        .map(|s| {
            parse_list(s, "precision", |p| {
                p.parse::<Precision>().map_err(|e| e.to_string())
            })
        })
        .transpose()
        .map_err(usage)?;
    let kernels = args
        .kernels
        .as_deref()
        .map(|s| parse_list(s, "kernel", |k| Ok(k.to_string())))
        .transpose()
        .map_err(usage)?;
    let batch_sizes = args
        .batch_sizes
        .as_deref()
        .map(|s| {
            parse_list(s, "batch size", |b| match b.parse::<u64>() {
                Ok(0) | Err(_) => Err(format!("batch size '{b}' must be a whole number ≥ 1")),
                Ok(v) => Ok(v),
            })
        })
        .transpose()
        .map_err(usage)?;
    let power_caps = args
        .power_caps
        .as_deref()
        .map(PowerCap::parse_list)
        .transpose()
        .map_err(usage)?;
    let clocks = |list: &Option<String>, flag: &str| {
        list.as_deref()
            .map(|s| ClockSpec::parse_list(s).map_err(|e| usage(format!("{flag}: {e}"))))
            .transpose()
    };
    let sm_clocks = clocks(&args.sm_clocks, "--sm-clocks")?;
    let mem_clocks = clocks(&args.mem_clocks, "--mem-clocks")?;
    let inputs = args
        .inputs
        .as_deref()
        .map(|s| {
            let list = InputDistribution::parse_list(s).map_err(|e| format!("--inputs: {e}"))?;
            if list.is_empty() {
                return Err("--inputs needs at least one distribution".to_string());
            }
            Ok(list)
        })
        .transpose()
        .map_err(usage)?;
    let target_spread = args
        .protocol
        .target_spread
        .as_deref()
        .map(|s| parse_fraction(s, "--target-spread"))
        .transpose()
        .map_err(usage)?;
    let max_slowdown = parse_fraction(
        args.max_slowdown.as_deref().unwrap_or(DEFAULT_MAX_SLOWDOWN),
        "--max-slowdown",
    )
    .map_err(usage)?;
    let baseline = crate::results::baseline_spec(args.baseline.as_deref())?;
    Ok(Overrides {
        ops,
        precisions,
        kernels,
        batch_sizes,
        power_caps,
        sm_clocks,
        mem_clocks,
        inputs,
        target_spread,
        max_slowdown,
        baseline,
    })
}

/// The sweep config for `backend`: the preset or `--config`, then every flag.
pub fn build_config(
    args: &SweepArgs,
    ov: &Overrides,
    backend: &dyn Backend,
) -> Result<SweepConfig, CliError> {
    let mut cfg = match &args.config {
        Some(path) => SweepConfig::from_toml_file(path)?,
        None => {
            let preset = match args.preset.unwrap_or(PresetChoice::Quick) {
                PresetChoice::Quick => Preset::Quick,
                PresetChoice::Standard => Preset::Standard,
            };
            SweepConfig::preset(preset, backend)
        }
    };
    if let Some(o) = &ov.ops {
        cfg.ops = o.clone();
    }
    if let Some(p) = &ov.precisions {
        cfg.precisions = p.clone();
    }
    if let Some(k) = &ov.kernels {
        cfg.kernels = k.clone();
        // named kernels keep their own precision lists only where the preset had one
        cfg.kernel_precisions.retain(|name, _| k.contains(name));
    }
    if ov.precisions.is_some() {
        // --precisions narrows every kernel, the preset's own lists included
        let keep = ov.precisions.clone().unwrap_or_default();
        for list in cfg.kernel_precisions.values_mut() {
            list.retain(|p| keep.contains(p));
        }
        let emptied: Vec<String> = cfg
            .kernel_precisions
            .iter()
            .filter(|(_, list)| list.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        cfg.kernels.retain(|k| !emptied.contains(k));
        cfg.kernel_precisions.retain(|_, list| !list.is_empty());
    }
    if let Some(b) = &ov.batch_sizes {
        cfg.batch_sizes = b.clone();
    }
    if let Some(c) = &ov.power_caps {
        cfg.power_caps = c.clone();
    }
    if let Some(c) = &ov.sm_clocks {
        cfg.sm_clocks = c.clone();
    }
    if let Some(c) = &ov.mem_clocks {
        cfg.mem_clocks = c.clone();
    }
    if let Some(i) = &ov.inputs {
        cfg.inputs = i.clone();
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    let p = &args.protocol;
    let proto = &mut cfg.protocol;
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = p.$field { proto.$field = v; } )* };
    }
    set!(
        idle_baseline_s,
        warmup_s,
        warmup_max_s,
        settle_temp_c_per_s,
        settle_power_per_s,
        settle_window_s,
        min_window_s,
        min_counter_updates,
        phase_shift,
        min_windows,
        max_windows,
        point_budget_s,
        drop_throttled
    );
    if let Some(t) = ov.target_spread {
        proto.target_rel_spread = t;
    }
    if let Some(r) = &p.stop_rule {
        proto.stop_rule = r.parse().map_err(usage)?;
    }
    proto.validate().map_err(usage)?;
    for note in cfg.dedup_axes() {
        eprintln!("note: {note}");
    }
    Ok(cfg)
}

/// `results/<backend>-<device>-<time>.jsonl`.
pub fn default_out(backend: &str, device: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', 'T'], "-")
        .trim_end_matches('Z')
        .to_string();
    let stem = format!(
        "{backend}-{}-{stamp}",
        joulebench_analysis::chart::slug(device)
    );
    PathBuf::from("results").join(format!(
        "{}.jsonl",
        joulebench_analysis::chart::short_file_stem(&stem)
    ))
}

/// Set by a `--devices` sweep for its workers: the command line the user typed, which
/// their records keep instead of the worker's own (pinned to a device, with flags of
/// the parent-worker protocol no user types).
pub const USER_COMMAND_ENV: &str = "JOULEBENCH_USER_COMMAND";

/// The command line as the user typed it, for records and reports: a worker of a
/// `--devices` sweep records its parent's.
pub fn command_line() -> String {
    let worker = std::env::args().any(|a| a == "--progress-lines");
    if let (true, Ok(typed)) = (worker, std::env::var(USER_COMMAND_ENV)) {
        if !typed.trim().is_empty() {
            return typed;
        }
    }
    joulebench_device::process_command_line()
}

/// The first SIGINT, SIGTERM or SIGHUP sets the stop flag (and the signal's
/// number) so the sweep ends after its point; a second ends the process at once —
/// except while a GPU's limit or clocks are changed or being restored: then the
/// guard's signal thread restores first, waits for a restore in progress on a
/// second signal, and gives up only on a third, saying what is left.
pub fn stop_on_signals() -> (Arc<AtomicBool>, Arc<AtomicUsize>) {
    match joulebench_energy::guard::stop_on_signals() {
        Ok(s) => (s.stop, s.signal),
        Err(e) => {
            // no handler: signals end the process as they would without joulebench
            eprintln!("warning: {e}");
            (
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicUsize::new(0)),
            )
        }
    }
}
