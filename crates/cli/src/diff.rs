//! `joulebench diff OLD NEW`: two runs point by point, regressions first, for a
//! person after a driver update and for CI (`--fail-on-regression 2%` exits 1).

use crate::args::{parse_fraction, DiffArgs};
use crate::error::{runtime, usage, CliError};
use crate::results::read_sources;
use joulebench_analysis::diff::{diff, diff_table};
use joulebench_analysis::merge::check_not_mixed;
use joulebench_analysis::table::TableFormat;

pub fn run(args: &DiffArgs) -> Result<(), CliError> {
    let fmt: TableFormat = args.format.parse().map_err(usage)?;
    let threshold = args
        .fail_on_regression
        .as_deref()
        .map(|s| parse_fraction(s, "--fail-on-regression"))
        .transpose()
        .map_err(usage)?;
    // each run on its own: a record in both files is the same point in two runs, not
    // one measurement read twice
    let mut sources = read_sources(std::slice::from_ref(&args.old))?;
    sources.extend(read_sources(std::slice::from_ref(&args.new))?);
    if !args.allow_mixed {
        check_not_mixed(&sources).map_err(|e| {
            usage(format!(
                "refusing to diff simulated and real records: {e}. Pass --allow-mixed to diff them anyway."
            ))
        })?;
    }
    let new = sources.pop().map(|s| s.records).unwrap_or_default();
    let old = sources.pop().map(|s| s.records).unwrap_or_default();
    let d = diff(&old, &new);
    if d.points.is_empty() {
        eprintln!(
            "warning: no point with an energy figure is in both files ({} only in one): nothing to compare",
            d.unmatched.len()
        );
    }
    let table = diff_table(
        &d,
        &args.old.display().to_string(),
        &args.new.display().to_string(),
    );
    crate::out::print(&table.render(fmt))?;
    if let Some(t) = threshold {
        let failed = d.regressions_beyond(t);
        if !failed.is_empty() {
            let worst = failed
                .iter()
                .map(|p| format!("{} ({:+.1}%)", p.label(), p.regression() * 100.0))
                .take(3)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(runtime(format!(
                "{} point(s) regressed by more than {:.1}% beyond their noise: {worst}",
                failed.len(),
                t * 100.0
            )));
        }
        eprintln!(
            "no significant regression beyond {:.1}% ({} points compared)",
            t * 100.0,
            d.points.len()
        );
    }
    Ok(())
}
