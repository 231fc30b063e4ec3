//! A sweep on one device: the flags made into an opened device and a library
//! `Sweep`, which plans, checks, arms the guard, runs and restores; here only what
//! is printed — the plan, progress (a bar, or progress lines for a `--devices`
//! parent), where the records are — and the results file opened and resumed.

use super::fleet::single_profile;
use super::resume::{open_results, resume};
use super::setup::{
    build_config, command_line, default_out, repeat_of, stop_on_signals, Overrides,
};
use super::worker::{announce, stop_when_parent_asks, ProgressLines};
use crate::args::SweepArgs;
use crate::error::{interrupted, runtime, usage, CliError};
use crate::progress::Progress;
use joulebench_core::plan::PlanEstimate;
use joulebench_core::sweep::{SweepError, SweepObserver, SweepOutcome};
use joulebench_device::{open, OpenDevice, OpenOptions, PlannedSweep, Sweep};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Measure the sweep; its outcome and the results file (`None` for `--dry-run`,
/// which measures nothing).
pub fn run(args: &SweepArgs, ov: &Overrides) -> Result<Option<(SweepOutcome, PathBuf)>, CliError> {
    run_with(args, ov, |sweep, dev| Ok(sweep.plan(dev)?))
}

/// [`run`], with the sweep (its config from the preset or file, then the flags)
/// planned on the opened device by `plan`: how `model` measures a step's ops.
pub fn run_with(
    args: &SweepArgs,
    ov: &Overrides,
    plan: impl FnOnce(Sweep, &mut OpenDevice) -> Result<PlannedSweep, CliError>,
) -> Result<Option<(SweepOutcome, PathBuf)>, CliError> {
    let mut dev = open(&open_options(args)?)?;
    let config = build_config(args, ov, dev.backend.as_ref())?;
    let repeat = repeat_of(args, &config)?;
    let sweep = Sweep::new(config)
        .repeat(repeat)
        .allow_power_changes(args.allow_power_changes)
        .allow_clock_changes(args.allow_clock_changes)
        .command(command_line());
    let mut planned = plan(sweep, &mut dev)?;
    let (device, backend) = (planned.device().clone(), planned.backend().to_string());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&backend, &device.name));
    if args.dry_run {
        super::dry_run::show(args, &dev, &mut planned, &out)?;
        return Ok(None);
    }
    planned.arm(&mut dev)?;
    for note in planned.notes() {
        eprintln!("note: {note}");
    }
    for warning in planned.warnings() {
        eprintln!("warning: {warning}");
    }

    let existed = out.exists();
    // held until the sweep ends: no other joulebench appends to this file meanwhile
    let (mut writer, existing) = open_results(&out, args.resume)?;
    if args.resume {
        resume(&mut planned, &existing, &out, args.allow_config_mismatch)?;
    }
    for n in &dev.notes {
        eprintln!("{n}");
    }
    eprintln!(
        "sweep: {} on {} ({backend} backend) → {}",
        describe_plan(planned.estimate(), device.simulated),
        device.name,
        out.display()
    );
    if args.progress_lines {
        announce(&device, &backend, &out);
    }

    let (stop, stop_signal) = stop_on_signals();
    if args.progress_lines {
        stop_when_parent_asks(Arc::clone(&stop), Arc::clone(&stop_signal));
    }
    let mut progress = Progress::new(
        planned.estimate().runnable,
        planned.typical_point_s(),
        !device.simulated,
    );
    let mut lines = ProgressLines;
    let observer: &mut dyn SweepObserver = if args.progress_lines {
        &mut lines
    } else {
        &mut progress
    };
    let run = planned.run(&mut dev, &mut writer, observer, &stop)?;
    progress.finish();
    drop(writer);
    let kept = format!("finished points are in {}", out.display());
    match run.restored {
        Ok(Some(r)) => eprintln!("{}", r.describe()),
        Ok(None) => {}
        Err(e) => return Err(runtime(e).hint(&kept)),
    }
    if !existed
        && std::fs::metadata(&out)
            .map(|m| m.len() == 0)
            .unwrap_or(false)
    {
        let _ = std::fs::remove_file(&out);
    }

    let outcome = match run.outcome {
        Ok(o) => o,
        Err(SweepError::Interrupted) => {
            return Err(interrupted(&out, stop_signal.load(Ordering::SeqCst) as i32))
        }
        // every failure after the first record was written says where they are
        Err(e) => return Err(CliError::from(e).hint(&kept)),
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
    Ok(Some((outcome, out)))
}

/// The device the flags name.
fn open_options(args: &SweepArgs) -> Result<OpenOptions, CliError> {
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
    Ok(OpenOptions {
        backend: args.backend,
        sim_profile: single_profile(&args.sim_profile).map_err(usage)?,
        sim_index: args.sim_index,
        adapter: args.adapter.clone(),
        cuda_device: args.cuda_device,
        meter,
        sample_interval: std::time::Duration::from_millis(args.sample_interval_ms),
        cold_l2: args.cold_l2,
        seed: args.seed.unwrap_or(42),
    })
}

/// "24 points (16 measured, 8 skipped as unsupported), about 2m 10s (at most 3m
/// 40s) of device time".
pub fn describe_plan(e: &PlanEstimate, simulated: bool) -> String {
    let d = |s: f64| humantime::format_duration(std::time::Duration::from_secs(s.round() as u64));
    let skipped = if e.skipped > 0 {
        format!(", {} skipped as unsupported", e.skipped)
    } else {
        String::new()
    };
    format!(
        "{} points ({} measured{skipped}), about {} (at most {}) of device time{}",
        e.points,
        e.runnable,
        d(e.typical_s),
        d(e.bound_s),
        if simulated {
            ", in the simulated device's virtual time"
        } else {
            ""
        }
    )
}
