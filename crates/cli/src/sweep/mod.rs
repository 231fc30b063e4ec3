//! `joulebench sweep`: the flags checked before anything opens, then one device
//! (`single`) or every GPU of a node, one worker process each (`fleet`, whose
//! workers are single sweeps talking the `worker` protocol). `setup` holds what
//! both share; nothing here imports back up. `model` measures a training step's
//! ops through `single::run_with`.

mod clocks;
mod dry_run;
mod fleet;
mod resume;
mod setup;
mod single;
mod worker;

pub(crate) use setup::parse_overrides;
pub(crate) use setup::{host_name, own_command_line};
pub(crate) use single::run_with;

use crate::args::SweepArgs;
use crate::error::{usage, CliError};
use crate::paths::{check_output, Existing};
use crate::results::{print_recommendation, read_results_warn};
use joulebench_analysis::device_setting::Mix;
use joulebench_analysis::recommend::{BaselineSpec, Objective, RecommendOptions};
use joulebench_analysis::table::TableFormat;
use std::path::Path;

pub fn run(args: &SweepArgs) -> Result<(), CliError> {
    let ov = setup::parse_overrides(args)?;
    if args.resume && args.out.is_none() {
        return Err(usage(
            "--resume needs --out FILE: the results file to continue",
        ));
    }
    if let Some(out) = &args.out {
        check_results_path(out, args.resume)?;
        let inputs: Vec<_> = args.config.iter().cloned().collect();
        crate::paths::refuse_input_as_output(out, &inputs, "--out")?;
    }
    if let Some(devices) = &args.devices {
        return fleet::run(args, devices, &ov);
    }
    let result = single::run(args, &ov);
    if args.progress_lines && !args.dry_run {
        // a worker of a --devices sweep: its parent reports and recommends
        let result = result.map(|r| r.unwrap_or_default());
        worker::report_end(&result);
        return result.map(|_| ());
    }
    match result? {
        Some((_, out)) => recommend_from(&out, ov.max_slowdown, &ov.baseline),
        None => Ok(()),
    }
}

/// A results file is continued only with --resume, never overwritten.
pub(crate) fn check_results_path(out: &Path, resume: bool) -> Result<(), CliError> {
    let existing = if resume {
        Existing::Continue
    } else {
        Existing::Refuse {
            hint: "pass --resume to continue it (points already there are skipped), or choose another --out",
        }
    };
    check_output(out, "--out", existing)
}

/// The closing recommendation table of a sweep, from its results file.
fn recommend_from(out: &Path, max_slowdown: f64, baseline: &BaselineSpec) -> Result<(), CliError> {
    if !out.exists() {
        return Ok(());
    }
    let records: Vec<_> = read_results_warn(out)?
        .lines
        .into_iter()
        .map(|l| l.record)
        .collect();
    crate::out::line("")?;
    print_recommendation(
        &records,
        Objective::WithinSlowdown { max_slowdown },
        TableFormat::Table,
        &RecommendOptions {
            baseline: baseline.clone(),
            ..RecommendOptions::default()
        },
        &Mix::equal(),
    )?;
    crate::out::line(&format!(
        "Again from the file: joulebench recommend {}",
        out.display()
    ))
}
