//! `sweep --dry-run` and `model --dry-run`: the plan a run would measure, point by
//! point, with what would be skipped and why, its estimate and where its records
//! would go — after the same checks a run makes before it changes anything (caps
//! against the device's limits, clocks against its supported clocks, the output
//! path), and then nothing: no measurement, no power or clock change, no file.

use super::resume::resume;
use super::single::describe_plan;
use crate::args::SweepArgs;
use crate::error::CliError;
use crate::results::read_results_warn;
use joulebench_analysis::table::{Table, TableFormat};
use joulebench_core::backend::Support;
use joulebench_core::PowerCap;
use joulebench_device::{Change, OpenDevice, PlannedSweep};
use std::path::Path;

/// Print the plan of this sweep on `dev`, to be written to `out`; nothing else happens.
pub fn show(
    args: &SweepArgs,
    dev: &OpenDevice,
    planned: &mut PlannedSweep,
    out: &Path,
) -> Result<(), CliError> {
    let device = planned.device().clone();
    let backend = planned.backend().to_string();
    if args.resume && out.exists() {
        let file = read_results_warn(out)?;
        resume(planned, &file, out, args.allow_config_mismatch)?;
    }
    for note in planned.notes() {
        eprintln!("note: {note}");
    }
    for warning in planned.warnings() {
        eprintln!("warning: {warning}");
    }

    crate::out::line(
        "Dry run: nothing is measured, no power limit or clock is changed, no file is written.",
    )?;
    crate::out::line(&format!("device: {} ({backend} backend)", device.name))?;
    for n in &dev.notes {
        crate::out::line(&format!("  {n}"))?;
    }
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
    let limits = planned.limits().copied();
    for (i, run) in planned.runs(dev.backend.as_ref()).into_iter().enumerate() {
        let p = run.point;
        let to_run = run.runs - run.in_file;
        let what = match run.support {
            Support::Unsupported(why) => format!("skipped (unsupported: {why})"),
            Support::Supported if to_run == 0 => "already in the results file".into(),
            Support::Supported => {
                measured += to_run;
                match (to_run, run.in_file) {
                    (1, 0) => "measured".into(),
                    (n, 0) => format!("measured ×{n}"),
                    (n, k) => format!("measured ×{n} ({k} already in the results file)"),
                }
            }
        };
        already += run.in_file;
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
    crate::out::line(&format!(
        "plan: {}",
        describe_plan(planned.estimate(), device.simulated)
    ))?;
    if already > 0 {
        crate::out::line(&format!("  --resume: {already} run(s) already in the results file would be skipped; {measured} would be measured"))?;
    }
    crate::out::line(&format!(
        "results: {} ({})",
        out.display(),
        if !out.exists() {
            "a new file"
        } else if args.resume {
            "continued with --resume"
        } else {
            "exists"
        }
    ))?;
    let changes = planned.changes();
    if !changes.is_empty() {
        let what = match changes.as_slice() {
            [Change::PowerLimit, Change::Clocks] => "power limit and clocks",
            [Change::PowerLimit] => "power limit",
            _ => "clocks",
        };
        let needs = match planned.not_allowed(dev).as_slice() {
            [] => String::new(),
            missing => format!(
                "; the run needs {}",
                missing
                    .iter()
                    .map(|c| c.flag())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        };
        crate::out::line(&format!(
            "changes: the run would set the device's {what} point by point, and restore the originals on exit{needs}"
        ))?;
    }
    crate::out::line("")?;
    crate::out::print(&t.render(TableFormat::Table))?;
    Ok(())
}
