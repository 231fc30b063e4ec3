//! `joulebench sweep`: build the sweep (preset or TOML, then flag overrides), open
//! the device, check every cap and the output file before anything runs, measure
//! with a progress bar, and end with the recommendation table.

use crate::args::{parse_fraction, parse_list, PresetChoice, SweepArgs};
use crate::error::{runtime, usage, CliError};
use crate::open::{open, OpenDevice, OpenOptions};
use crate::progress::Progress;
use crate::results::print_recommendation;
use joulebench_analysis::recommend::Objective;
use joulebench_analysis::table::TableFormat;
use joulebench_core::plan::{Preset, SweepConfig};
use joulebench_core::record::{existing_keys, read_records, JsonlWriter};
use joulebench_core::sweep::{
    run_sweep, tool_info, DeviceSession, SweepError, SweepObserver, SweepOptions,
};
use joulebench_core::{Op, PowerCap, Precision};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Everything from the flags that can be checked before a device is opened.
struct Overrides {
    ops: Option<Vec<Op>>,
    precisions: Option<Vec<Precision>>,
    kernels: Option<Vec<String>>,
    batch_sizes: Option<Vec<u64>>,
    power_caps: Option<Vec<PowerCap>>,
    target_spread: Option<f64>,
    max_slowdown: f64,
}

fn parse_overrides(args: &SweepArgs) -> Result<Overrides, CliError> {
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
    let target_spread = args
        .protocol
        .target_spread
        .as_deref()
        .map(|s| parse_fraction(s, "--target-spread"))
        .transpose()
        .map_err(usage)?;
    let max_slowdown = parse_fraction(&args.max_slowdown, "--max-slowdown").map_err(usage)?;
    Ok(Overrides {
        ops,
        precisions,
        kernels,
        batch_sizes,
        power_caps,
        target_spread,
        max_slowdown,
    })
}

fn build_config(
    args: &SweepArgs,
    ov: &Overrides,
    dev: &OpenDevice,
) -> Result<SweepConfig, CliError> {
    let mut cfg = match &args.config {
        Some(path) => SweepConfig::from_toml_file(path).map_err(usage)?,
        None => {
            let preset = match args.preset.unwrap_or(PresetChoice::Quick) {
                PresetChoice::Quick => Preset::Quick,
                PresetChoice::Standard => Preset::Standard,
            };
            SweepConfig::preset(preset, dev.backend.device())
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
    }
    if let Some(b) = &ov.batch_sizes {
        cfg.batch_sizes = b.clone();
    }
    if let Some(c) = &ov.power_caps {
        cfg.power_caps = c.clone();
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
        point_budget_s
    );
    if let Some(t) = ov.target_spread {
        proto.target_rel_spread = t;
    }
    if let Some(r) = &p.stop_rule {
        proto.stop_rule = r.parse().map_err(usage)?;
    }
    proto.validate().map_err(usage)?;
    Ok(cfg)
}

fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_string()
}

pub(crate) fn default_out(backend: &str, device: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', 'T'], "-")
        .trim_end_matches('Z')
        .to_string();
    PathBuf::from("results").join(format!("{backend}-{}-{stamp}.jsonl", slug(device)))
}

/// The command line as typed, for records and reports.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "\"'$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// The most repeats of a point a sweep accepts.
const MAX_REPEAT: u32 = 100;

pub fn run(args: &SweepArgs) -> Result<(), CliError> {
    let ov = parse_overrides(args)?;
    if args.repeat == 0 || args.repeat > MAX_REPEAT {
        return Err(usage(format!(
            "--repeat {} must be between 1 and {MAX_REPEAT}",
            args.repeat
        )));
    }
    if args.resume && args.out.is_none() {
        return Err(usage(
            "--resume needs --out FILE: the results file to continue",
        ));
    }
    if let Some(out) = &args.out {
        check_out_path(out, args.resume)?;
    }
    if let Some(devices) = &args.devices {
        return crate::fleet::run(args, devices, ov.max_slowdown);
    }
    let seed = args.seed.unwrap_or(42);
    let meter: Option<joulebench_energy::nvml::MeterMode> = match args.meter.trim() {
        "none" | "off" => None,
        m => Some(
            m.parse()
                .map_err(|e: String| usage(format!("--meter: {e}, none")))?,
        ),
    };
    if args.sample_interval_ms == 0 {
        return Err(usage("--sample-interval-ms must be ≥ 1"));
    }
    let mut dev = open(&OpenOptions {
        backend: args.backend,
        sim_profile: crate::fleet::single_profile(&args.sim_profile).map_err(usage)?,
        sim_index: args.sim_index,
        adapter: args.adapter.clone(),
        cuda_device: args.cuda_device,
        meter,
        sample_interval: std::time::Duration::from_millis(args.sample_interval_ms),
        cold_l2: args.cold_l2,
        seed,
    })?;
    let cfg = build_config(args, &ov, &dev)?;
    let points = cfg.plan(dev.backend.as_ref()).map_err(usage)?;
    let device = dev.backend.device().clone();

    let wants_caps = points.iter().any(|p| !p.cap.is_default());
    if wants_caps {
        if dev.power_needs_permission() && !args.allow_power_changes {
            return Err(usage(
                "changing a GPU's power limit needs --allow-power-changes (the original limit is restored on exit)",
            ));
        }
        dev.arm_power_guard(args.allow_power_changes)?;
    }
    joulebench_core::sweep::check_caps(&points, dev.power_mut()).map_err(usage)?;

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(dev.backend.name(), &device.name));
    let done = if args.resume {
        existing_keys(&out).map_err(usage)?
    } else {
        Default::default()
    };
    let existed = out.exists();
    let mut writer = JsonlWriter::append(&out).map_err(usage)?;

    for n in &dev.notes {
        eprintln!("{n}");
    }
    eprintln!(
        "sweep: {} points on {} ({} backend) → {}",
        points.len(),
        device.name,
        dev.backend.name(),
        out.display()
    );
    if args.progress_lines {
        crate::fleet::announce(&device, dev.backend.name(), &out);
    }

    let (stop, stop_signal) = stop_on_signals();
    if args.progress_lines {
        crate::fleet::stop_when_stdin_closes(Arc::clone(&stop), Arc::clone(&stop_signal));
    }

    let opts = SweepOptions {
        protocol: cfg.protocol.clone(),
        seed: cfg.seed,
        command: command_line(),
        tool: tool_info(),
        host: host_name(),
        cap_settle_s: if device.simulated { 0.0 } else { 2.0 },
        repeat: args.repeat,
    };
    let mut progress = Progress::new();
    let mut lines = crate::fleet::ProgressLines;
    let observer: &mut dyn SweepObserver = if args.progress_lines {
        &mut lines
    } else {
        &mut progress
    };
    let result = {
        let power: Option<&mut dyn joulebench_core::PowerControl> =
            match (&mut dev.guard, &mut dev.power) {
                (Some(g), _) => Some(g),
                (None, Some(p)) => Some(p.as_mut()),
                _ => None,
            };
        let mut session = DeviceSession {
            backend: dev.backend.as_mut(),
            meter: dev.meter.as_mut(),
            power,
            clock: dev.clock.as_ref(),
        };
        run_sweep(
            &mut session,
            &points,
            &opts,
            &done,
            &mut writer,
            observer,
            &stop,
        )
    };
    progress.finish();
    drop(writer);
    let restored = dev.guard.take().map(|g| g.finish());
    match restored {
        Some(Ok(Some(r))) => eprintln!("power limit of {} restored to {:.0} W", r.device, r.restored_w),
        Some(Err(e)) => {
            return Err(runtime(format!(
                "could not restore the power limit: {e}; run `joulebench power restore` (finished points are in {})",
                out.display()
            )))
        }
        _ => {}
    }
    if !existed
        && std::fs::metadata(&out)
            .map(|m| m.len() == 0)
            .unwrap_or(false)
    {
        let _ = std::fs::remove_file(&out);
    }

    let outcome = match result {
        Ok(o) => o,
        Err(SweepError::Interrupted) => {
            return Err(crate::error::interrupted(
                &out,
                stop_signal.load(Ordering::SeqCst) as i32,
            ))
        }
        Err(SweepError::Power(e)) => return Err(usage(e)),
        Err(SweepError::Record(e)) => return Err(usage(e)),
        Err(e) => {
            return Err(runtime(format!(
                "{e}; finished points are in {}",
                out.display()
            )))
        }
    };
    eprintln!(
        "done: {} measured, {} invalid, {} skipped, {} failed{} → {}",
        outcome.measured,
        outcome.invalid,
        outcome.skipped,
        outcome.failed,
        if outcome.resumed > 0 {
            format!(", {} already there", outcome.resumed)
        } else {
            String::new()
        },
        out.display()
    );
    if args.progress_lines {
        return Ok(()); // the parent of a --devices sweep recommends from the merged file
    }
    let records = read_records(&out).map_err(usage)?;
    println!();
    print_recommendation(
        &records,
        Objective::WithinSlowdown {
            max_slowdown: ov.max_slowdown,
        },
        TableFormat::Table,
    );
    println!(
        "Again from the file: joulebench recommend {}",
        out.display()
    );
    Ok(())
}

/// SIGINT and SIGTERM set the stop flag (and the signal's number) so the sweep ends
/// after its point; a second signal ends the process at once.
pub(crate) fn stop_on_signals() -> (Arc<AtomicBool>, Arc<AtomicUsize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stop_signal = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&stop));
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
        let _ = signal_hook::flag::register_usize(sig, Arc::clone(&stop_signal), sig as usize);
    }
    (stop, stop_signal)
}

/// Refuse an existing file without --resume, and a path that cannot be written,
/// before anything is measured.
pub(crate) fn check_out_path(out: &Path, resume: bool) -> Result<(), CliError> {
    if out.is_dir() {
        return Err(usage(format!(
            "--out {} is a directory; give a file path",
            out.display()
        )));
    }
    if out.exists() && !resume {
        return Err(usage(format!(
            "results file {} already exists: pass --resume to continue it (points already there are skipped), or choose another --out",
            out.display()
        )));
    }
    Ok(())
}
