//! `joulebench compare`: devices ranked per workload and precision by energy per
//! FLOP, for hardware selection; optionally priced in money and CO₂e, and drawn.
//! Simulated and real devices are not ranked together unless asked, and then marked.

use crate::args::{CapCompareChoice, CompareArgs};
use crate::cost::cost_inputs;
use crate::error::{runtime, usage, CliError};
use crate::results::{keeps, precision_filter, read_sources};
use joulebench_analysis::chart::PlotError;
use joulebench_analysis::compare::{compare_digest, comparison_table, CapChoice};
use joulebench_analysis::digest::SettingsDigest;
use joulebench_analysis::merge::MixedCheck;
use joulebench_analysis::plots::compare_plots;
use joulebench_analysis::table::TableFormat;

pub fn run(args: &CompareArgs) -> Result<(), CliError> {
    let fmt: TableFormat = args.format.parse().map_err(usage)?;
    let costs = cost_inputs(&args.cost)?;
    let cap = match args.cap {
        CapCompareChoice::Default => CapChoice::Default,
        CapCompareChoice::Any => CapChoice::Any,
    };
    let filter = precision_filter(args.precisions.as_deref());
    // read_sources hands each record over once
    let mut digest = SettingsDigest::of_deduplicated_reads();
    let mut mixed = MixedCheck::default();
    let sources = read_sources(&args.files, true, |r| -> Result<(), CliError> {
        mixed.push(r.record, r.file, r.index);
        if keeps(&filter, r.record) {
            digest.push(r.record, r.file);
        }
        Ok(())
    })?;
    if !args.allow_mixed {
        let paths: Vec<_> = sources.iter().map(|s| s.path.clone()).collect();
        mixed.result(&paths).map_err(|e| {
            usage(format!(
                "refusing to rank simulated and real devices together: {e}. Pass --allow-mixed to compare them \
                 anyway; every simulated row is then marked SIMULATED."
            ))
        })?;
    }
    filter?;
    digest.shrink_to_fit();
    let rankings = compare_digest(&digest, cap);
    if rankings.is_empty() {
        crate::out::line(&format!(
            "No comparison: no measured point with an energy figure{}.",
            if cap == CapChoice::Default {
                " at the default power limit (try --cap any)"
            } else {
                ""
            }
        ))?;
        return Ok(());
    }
    let table = comparison_table(&rankings, cap, &costs);
    crate::out::stream(|w| Ok(table.write_to(fmt, w)?))?;
    if let Some(dir) = &args.plots {
        let files = compare_plots(&rankings, cap, dir).map_err(|e| match e {
            PlotError::Dir { .. } => usage(e),
            _ => runtime(e),
        })?;
        eprintln!(
            "{} plots written to {} (each as SVG and PNG)",
            files.len(),
            dir.display()
        );
    }
    Ok(())
}
