//! `joulebench diff OLD NEW`: two runs point by point, regressions first, for a
//! person after a driver update and for CI (`--fail-on-regression 2%` exits 1).

use crate::args::{parse_fraction, DiffArgs};
use crate::error::{runtime, usage, CliError};
use crate::results::read_sources;
use joulebench_analysis::diff::{
    diff_rows, diff_sides, diff_table_head, DiffDigest, DiffSide, DIFF_DROPPABLE,
};
use joulebench_analysis::merge::MixedCheck;
use joulebench_analysis::table::TableFormat;
use joulebench_analysis::table_stream::{ColumnWidths, UninformativeColumns};
use std::path::PathBuf;

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
    let mut mixed = MixedCheck::default();
    let mut paths = Vec::new();
    // each run summarised once read: one run's records' figures are held at a time
    let mut read_run = |i: usize, path: &PathBuf| -> Result<DiffSide, CliError> {
        let mut digest = DiffDigest::default();
        let sources = read_sources(
            std::slice::from_ref(path),
            true,
            |r| -> Result<(), CliError> {
                mixed.push(r.record, i, r.index);
                digest.push(r.record);
                Ok(())
            },
        )?;
        paths.extend(sources.into_iter().map(|s| s.path));
        Ok(digest.summarise())
    };
    let old = read_run(0, &args.old)?;
    let new = read_run(1, &args.new)?;
    if !args.allow_mixed {
        mixed.result(&paths).map_err(|e| {
            usage(format!(
                "refusing to diff simulated and real records: {e}. Pass --allow-mixed to diff them anyway."
            ))
        })?;
    }
    let d = diff_sides(old, new);
    if d.points.is_empty() {
        eprintln!(
            "warning: no point with an energy figure is in both files ({} only in one): nothing to compare",
            d.unmatched.len()
        );
    }
    // a row per point: written as it is made, the columns that say the same on
    // every row dropped as a whole table drops them
    let mut head = diff_table_head(
        &d,
        &args.old.display().to_string(),
        &args.new.display().to_string(),
    );
    let width = head.headers.len();
    let mut plan = UninformativeColumns::new(&head.headers, &DIFF_DROPPABLE);
    for row in diff_rows(&d, width) {
        plan.add(&row);
    }
    plan.decide();
    plan.apply_head(&mut head);
    let mut widths = ColumnWidths::of(&head, fmt);
    for row in diff_rows(&d, width) {
        widths.add(&plan.row(row));
    }
    crate::out::stream(|w| {
        let mut rows = head.write_head(fmt, &widths, w)?;
        for row in diff_rows(&d, width) {
            rows.row(&plan.row(row))?;
        }
        rows.finish()?;
        Ok(())
    })?;
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
