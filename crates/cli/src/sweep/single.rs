//! A sweep on one device: open it, plan, check every cap and the output file
//! before anything runs, measure with a progress bar (or progress lines for a
//! `--devices` parent), restore the power limit, and say where the records are.

use super::fleet::single_profile;
use super::resume::{open_results, points_done};
use super::setup::{
    build_config, command_line, default_out, host_name, repeat_of, stop_on_signals, Overrides,
};
use super::worker::{announce, stop_when_parent_asks, ProgressLines};
use crate::args::SweepArgs;
use crate::error::{interrupted, runtime, usage, CliError};
use crate::progress::Progress;
use joulebench_core::plan::{PlanEstimate, PlanPoint, SweepConfig};
use joulebench_core::sweep::{
    run_sweep, tool_info, DeviceSession, SweepError, SweepObserver, SweepOptions, SweepOutcome,
};
use joulebench_core::Backend;
use joulebench_device::{open, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Measure the sweep; its outcome and the results file (`None` for `--dry-run`,
/// which measures nothing).
pub fn run(args: &SweepArgs, ov: &Overrides) -> Result<Option<(SweepOutcome, PathBuf)>, CliError> {
    run_with(args, ov, |cfg, backend| Ok(cfg.plan(backend)?))
}

/// [`run`], with the points planned by `plan` from the sweep config (preset or file,
/// then the flags) and the opened backend: how `model` measures a step's ops.
pub fn run_with(
    args: &SweepArgs,
    ov: &Overrides,
    plan: impl FnOnce(&SweepConfig, &dyn Backend) -> Result<Vec<PlanPoint>, CliError>,
) -> Result<Option<(SweepOutcome, PathBuf)>, CliError> {
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
        backend: args.backend.into(),
        sim_profile: single_profile(&args.sim_profile).map_err(usage)?,
        sim_index: args.sim_index,
        adapter: args.adapter.clone(),
        cuda_device: args.cuda_device,
        meter,
        sample_interval: std::time::Duration::from_millis(args.sample_interval_ms),
        cold_l2: args.cold_l2,
        seed,
    })?;
    let device = dev.backend.device().clone();
    let mut cfg = build_config(args, ov, dev.backend.as_ref())?;
    super::clocks::resolve(&mut cfg, &mut dev, &device.name)?;
    let points = plan(&cfg, dev.backend.as_ref())?;
    let repeat = repeat_of(args, &cfg)?;
    let period = match dev.meter.source() {
        joulebench_core::MeterSource::None => 0.0,
        _ => dev.meter.update_period_s(),
    };
    let estimate = PlanEstimate::of(&points, dev.backend.as_ref(), &cfg.protocol, period, repeat);
    if args.dry_run {
        super::dry_run::show(args, &mut dev, &cfg, &points, &estimate)?;
        return Ok(None);
    }

    let wants_caps = points.iter().any(|p| !p.cap.is_default());
    let wants_clocks = points
        .iter()
        .any(|p| p.sm_clock_mhz.is_some() || p.mem_clock_mhz.is_some());
    if wants_caps && dev.power_needs_permission() && !args.allow_power_changes {
        return Err(usage(
            "changing a GPU's power limit needs --allow-power-changes (the original limit is restored on exit)",
        ));
    }
    if wants_clocks && dev.power_needs_permission() && !args.allow_clock_changes {
        return Err(usage(
            "locking a GPU's clocks needs --allow-clock-changes (the default clocks are restored on exit)",
        ));
    }
    if wants_caps || wants_clocks {
        dev.arm_guard(args.allow_power_changes, args.allow_clock_changes)?;
    }
    let limits = joulebench_core::sweep::check_caps(&points, dev.power_mut())?;
    if let Some(l) =
        limits.filter(|l| !joulebench_core::sweep::same_limit_w(l.current_w, l.default_w))
    {
        eprintln!(
            "warning: the power limit of {} is {:.0} W, not its default {:.0} W (a killed sweep \
             or another tool left it changed? see `joulebench power status`); points at the cap \
             \"default\" run at {:.0} W and are flagged cap-not-default, never used as the \
             default-limit baseline",
            device.name, l.current_w, l.default_w, l.current_w
        );
    }

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(dev.backend.name(), &device.name));
    let existed = out.exists();
    // held until the sweep ends: no other joulebench appends to this file meanwhile
    let (mut writer, existing) = open_results(&out, args.resume)?;
    let done = if args.resume {
        points_done(
            &existing,
            &out,
            &device,
            dev.backend.name(),
            &cfg,
            repeat,
            args.allow_config_mismatch,
        )?
    } else {
        Default::default()
    };

    for n in &dev.notes {
        eprintln!("{n}");
    }
    eprintln!(
        "sweep: {} on {} ({} backend) → {}",
        describe_plan(&estimate, device.simulated),
        device.name,
        dev.backend.name(),
        out.display()
    );
    if args.progress_lines {
        announce(&device, dev.backend.name(), &out);
    }

    let (stop, stop_signal) = stop_on_signals();
    if args.progress_lines {
        stop_when_parent_asks(Arc::clone(&stop), Arc::clone(&stop_signal));
    }

    let opts = SweepOptions {
        protocol: cfg.protocol.clone(),
        seed: cfg.seed,
        command: command_line(),
        tool: tool_info(),
        host: host_name(),
        cap_settle_s: if device.simulated { 0.0 } else { 2.0 },
        repeat,
    };
    let per_point = if estimate.runnable > 0 {
        (estimate.typical_s - cfg.protocol.idle_baseline_s) / estimate.runnable as f64
    } else {
        0.0
    };
    let mut progress = Progress::new(estimate.runnable, per_point, !device.simulated);
    let mut lines = ProgressLines;
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
        let clocks: Option<&mut dyn joulebench_core::ClockControl> = match &mut dev.clocks {
            Some(c) => Some(c.as_mut()),
            None => None,
        };
        let mut session = DeviceSession {
            backend: dev.backend.as_mut(),
            meter: dev.meter.as_mut(),
            power,
            clocks,
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
    let kept = format!("finished points are in {}", out.display());
    let restored = dev.guard.take().map(|g| g.finish());
    match restored {
        Some(Ok(Some(r))) => eprintln!(
            "power limit of {} restored to {:.0} W{}",
            r.device,
            r.restored_w,
            r.clocks_note()
        ),
        Some(Err(e)) => {
            return Err(runtime(format!(
                "could not restore the power limit or clocks: {e}; run `joulebench power restore`"
            ))
            .hint(&kept))
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
