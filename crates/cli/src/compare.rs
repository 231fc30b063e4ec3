//! `joulebench compare`: devices ranked per workload and precision by energy per
//! FLOP, for hardware selection; optionally priced in money and CO₂e, and drawn.
//! Simulated and real devices are not ranked together unless asked, and then marked.

use crate::args::{parse_list, CapCompareChoice, CompareArgs};
use crate::error::{runtime, usage, CliError};
use crate::results::read_sources;
use joulebench_analysis::chart::PlotError;
use joulebench_analysis::compare::{compare, comparison_table, CapChoice, CostInputs};
use joulebench_analysis::merge::check_not_mixed;
use joulebench_analysis::plots::compare_plots;
use joulebench_analysis::table::TableFormat;
use joulebench_core::Precision;

fn non_negative(v: Option<f64>, flag: &str) -> Result<Option<f64>, CliError> {
    match v {
        Some(x) if !(x.is_finite() && x >= 0.0) => {
            Err(usage(format!("{flag} {x} must be a number ≥ 0")))
        }
        _ => Ok(v),
    }
}

pub fn run(args: &CompareArgs) -> Result<(), CliError> {
    let fmt: TableFormat = args.format.parse().map_err(usage)?;
    let costs = CostInputs {
        price_per_kwh: non_negative(args.price_per_kwh, "--price-per-kwh")?,
        grid_gco2e_per_kwh: non_negative(args.grid_gco2_per_kwh, "--grid-gco2-per-kwh")?,
    };
    let cap = match args.cap {
        CapCompareChoice::Default => CapChoice::Default,
        CapCompareChoice::Any => CapChoice::Any,
    };
    let sources = read_sources(&args.files)?;
    if !args.allow_mixed {
        check_not_mixed(&sources).map_err(|e| {
            usage(format!(
                "refusing to rank simulated and real devices together: {e}. Pass --allow-mixed to compare them \
                 anyway; every simulated row is then marked SIMULATED."
            ))
        })?;
    }
    let mut records: Vec<_> = sources.into_iter().flat_map(|s| s.records).collect();
    if let Some(list) = &args.precisions {
        let keep = parse_list(list, "precision", |p| {
            p.parse::<Precision>().map_err(|e| e.to_string())
        })
        .map_err(usage)?;
        records.retain(|r| keep.contains(&r.precision));
    }
    let rankings = compare(&records, cap);
    if rankings.is_empty() {
        return crate::paths::println_stdout(&format!(
            "No comparison: no measured point with an energy figure{}.",
            if cap == CapChoice::Default {
                " at the default power limit (try --cap any)"
            } else {
                ""
            }
        ));
    }
    let table = comparison_table(&rankings, cap, costs, args.currency.as_deref());
    crate::paths::print_stdout(&table.render(fmt))?;
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
