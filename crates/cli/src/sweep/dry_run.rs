//! `sweep --dry-run` and `model --dry-run`: the plan a run would measure, point by
//! point, with what would be skipped and why, its estimate and where its records
//! would go — after the same checks a run makes before it changes anything (caps
//! against the device's limits, clocks against its supported clocks, the output
//! path), and then nothing: no measurement, no power or clock change, no file.

use super::resume::points_done;
use super::setup::default_out;
use super::single::describe_plan;
use crate::args::SweepArgs;
use crate::error::CliError;
use crate::results::read_results_warn;
use joulebench_analysis::table::{Table, TableFormat};
use joulebench_core::backend::Support;
use joulebench_core::clocks::clock_key;
use joulebench_core::plan::{PlanEstimate, PlanPoint, SweepConfig};
use joulebench_core::record::{point_key, repeat_key};
use joulebench_core::PowerCap;
use joulebench_device::OpenDevice;
use std::collections::HashSet;

/// Print the plan of this sweep on `dev`; nothing else happens.
pub fn show(
    args: &SweepArgs,
    dev: &mut OpenDevice,
    cfg: &SweepConfig,
    points: &[PlanPoint],
    estimate: &PlanEstimate,
) -> Result<(), CliError> {
    let device = dev.backend.device().clone();
    let backend = dev.backend.name().to_string();
    // the refusals a run would meet before changing anything, read-only
    let limits = joulebench_core::sweep::check_caps(points, dev.power_mut())?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&backend, &device.name));
    let done: HashSet<String> = if args.resume && out.exists() {
        let file = read_results_warn(&out)?;
        points_done(
            &file,
            &out,
            &device,
            &backend,
            cfg,
            super::setup::repeat_of(args, cfg)?,
            args.allow_config_mismatch,
        )?
    } else {
        HashSet::new()
    };

    println!(
        "Dry run: nothing is measured, no power limit or clock is changed, no file is written."
    );
    println!("device: {} ({backend} backend)", device.name);
    for n in &dev.notes {
        println!("  {n}");
    }
    let repeats: Vec<Option<u32>> = match super::setup::repeat_of(args, cfg)? {
        0 | 1 => vec![None],
        n => (1..=n).map(Some).collect(),
    };
    let mut t = Table::new(
        "Plan",
        &[
            "#",
            "workload",
            "kernel",
            "precision",
            "batch",
            "power cap",
            "clocks",
            "would be",
        ],
    );
    let (mut measured, mut already) = (0usize, 0usize);
    for (i, p) in points.iter().enumerate() {
        let base = point_key(
            &device,
            &backend,
            &p.kernel,
            p.precision,
            &p.workload,
            &p.cap,
        ) + &clock_key(p.sm_clock_mhz, p.mem_clock_mhz);
        let in_file = repeats
            .iter()
            .filter(|&&r| done.contains(&repeat_key(base.clone(), r)))
            .count();
        let to_run = repeats.len() - in_file;
        let what = match dev.backend.support(&p.kernel, p.precision, &p.workload) {
            Support::Unsupported(why) => format!("skipped (unsupported: {why})"),
            Support::Supported if to_run == 0 => "already in the results file".into(),
            Support::Supported => {
                measured += to_run;
                match (to_run, in_file) {
                    (1, 0) => "measured".into(),
                    (n, 0) => format!("measured ×{n}"),
                    (n, k) => format!("measured ×{n} ({k} already in the results file)"),
                }
            }
        };
        already += in_file;
        let cap = match (&limits, p.cap) {
            (_, PowerCap::Watts(w)) => format!("{w:.0} W"),
            (Some(l), PowerCap::Default) => format!("default ({:.0} W)", l.current_w),
            (Some(l), c) => format!("{c} ({:.0} W)", c.resolve_w(l)),
            (None, c) => c.to_string(),
        };
        let clocks = match (p.sm_clock_mhz, p.mem_clock_mhz) {
            (None, None) => "default".to_string(),
            (Some(sm), None) => format!("SM {sm} MHz"),
            (None, Some(mem)) => format!("mem {mem} MHz"),
            (Some(sm), Some(mem)) => format!("SM {sm} MHz, mem {mem} MHz"),
        };
        t.push(vec![
            (i + 1).to_string(),
            p.group.clone(),
            p.kernel.clone(),
            p.precision.to_string(),
            p.batch_size.to_string(),
            cap,
            clocks,
            what,
        ]);
    }
    t.drop_uninformative_columns(&["batch", "power cap", "clocks"]);
    println!("plan: {}", describe_plan(estimate, device.simulated));
    if already > 0 {
        println!("  --resume: {already} run(s) already in the results file would be skipped; {measured} would be measured");
    }
    println!(
        "results: {} ({})",
        out.display(),
        if !out.exists() {
            "a new file"
        } else if args.resume {
            "continued with --resume"
        } else {
            "exists"
        }
    );
    let changes_caps = points.iter().any(|p| !p.cap.is_default());
    let changes_clocks = points
        .iter()
        .any(|p| p.sm_clock_mhz.is_some() || p.mem_clock_mhz.is_some());
    if changes_caps || changes_clocks {
        let what = match (changes_caps, changes_clocks) {
            (true, true) => "power limit and clocks",
            (true, false) => "power limit",
            _ => "clocks",
        };
        let needs = if dev.power_needs_permission() {
            let mut flags = Vec::new();
            if changes_caps && !args.allow_power_changes {
                flags.push("--allow-power-changes");
            }
            if changes_clocks && !args.allow_clock_changes {
                flags.push("--allow-clock-changes");
            }
            match flags.as_slice() {
                [] => String::new(),
                f => format!("; the run needs {}", f.join(" and ")),
            }
        } else {
            String::new()
        };
        println!(
            "changes: the run would set the device's {what} point by point, and restore the originals on exit{needs}"
        );
    }
    println!();
    print!("{}", t.render(TableFormat::Table));
    Ok(())
}
