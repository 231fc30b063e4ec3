//! Repeats of one setting (`joulebench sweep --repeat N`): they are one setting to
//! every table, with the median of their medians, and the spread between them —
//! the run-to-run spread, which the spread within one run understates — is shown
//! beside the spread within each run. Only real runs count: a record read twice
//! (the same file given twice, a copy merged in) is one run, and a `--meter check`
//! record — two meters over the same windows, a check of the meter rather than a
//! run of the setting — is used only where no ordinary record of it exists.

use crate::digest::{MaybeF64, Run, SettingsDigest};
use crate::format::{pct, sig};
use crate::significance::Uncertainty;
use crate::table::{Table, TableFormat};
use crate::table_stream::ColumnWidths;
use joulebench_core::record::Record;
use joulebench_core::stats::{median, relative_spread};
use std::collections::BTreeMap;
use std::io::Write;

/// Measured records with energy, grouped by setting (device, backend, kernel,
/// precision, workload, cap, clocks, inputs), in the order each setting first
/// appears; within a group, duplicates dropped and check-mode records set aside
/// where ordinary ones exist. The grouping itself is the digest's
/// (`crate::digest::SettingsDigest`), which every table reads.
pub fn group_settings(records: &[Record]) -> Vec<Vec<usize>> {
    SettingsDigest::of(records)
        .setting_runs()
        .map(|(_, runs)| runs.iter().map(|r| r.index as usize).collect())
        .collect()
}

/// How much repeats of one setting agree.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunSpread {
    pub runs: usize,
    /// Median over runs of each run's J/FLOP median, J/FLOP.
    pub joules_per_flop: f64,
    /// Median over runs of the relative spread across each run's windows.
    pub within_run: f64,
    /// Relative spread (std/mean) of the runs' medians; `None` for one run.
    pub run_to_run: Option<f64>,
    /// The same two for seconds per op.
    pub time_within_run: f64,
    pub time_run_to_run: Option<f64>,
}

impl RunSpread {
    pub fn of(records: &[&Record]) -> Option<RunSpread> {
        let per_run: Vec<(f64, f64, f64, f64)> = records
            .iter()
            .filter_map(|r| {
                let s = &r.measurement.as_ref()?.summary;
                let j = s.joules_per_flop?;
                Some((
                    j.median,
                    j.rel_spread,
                    s.seconds_per_op.median,
                    s.seconds_per_op.rel_spread,
                ))
            })
            .collect();
        RunSpread::of_figures(&per_run)
    }

    /// [`RunSpread::of`] the runs a digest kept.
    pub(crate) fn of_runs(runs: &[&Run]) -> Option<RunSpread> {
        let per_run: Vec<(f64, f64, f64, f64)> = runs
            .iter()
            .map(|r| {
                (
                    r.joules_per_flop,
                    r.joules_per_flop_spread,
                    r.seconds_per_op,
                    r.seconds_per_op_spread,
                )
            })
            .collect();
        RunSpread::of_figures(&per_run)
    }

    /// From each run's (J/FLOP median, its spread, seconds per op, its spread).
    fn of_figures(per_run: &[(f64, f64, f64, f64)]) -> Option<RunSpread> {
        if per_run.is_empty() {
            return None;
        }
        let col =
            |f: fn(&(f64, f64, f64, f64)) -> f64| -> Vec<f64> { per_run.iter().map(f).collect() };
        let (medians, seconds) = (col(|p| p.0), col(|p| p.2));
        let several = per_run.len() > 1;
        Some(RunSpread {
            runs: per_run.len(),
            joules_per_flop: median(&medians),
            within_run: median(&col(|p| p.1)),
            run_to_run: several.then(|| relative_spread(&medians)),
            time_within_run: median(&col(|p| p.3)),
            time_run_to_run: several.then(|| relative_spread(&seconds)),
        })
    }

    /// The uncertainty of the setting's figures: run-to-run where there are
    /// repeats, else the within-run spread raised to `floor`.
    pub fn uncertainty(&self, floor: f64) -> Uncertainty {
        Uncertainty::from_spreads(
            (self.within_run, self.time_within_run),
            self.run_to_run.zip(self.time_run_to_run),
            self.runs,
            floor,
        )
    }
}

/// What the repeats table shows of each setting measured more than once, kept
/// from its runs: a report takes this first, then lets the runs go as it makes
/// its settings ([`crate::recommend::recommend_taking`]), so a campaign's runs and
/// its settings are never held together.
#[derive(Clone, Debug, Default)]
pub struct Repeats {
    rows: Vec<RepeatFigures>,
}

/// One setting's row of the repeats table, in figures.
#[derive(Clone, Debug)]
struct RepeatFigures {
    /// The setting's number in the digest.
    setting: u32,
    runs: u32,
    joules_per_flop: f64,
    within_run: f64,
    run_to_run: MaybeF64,
    /// Each run's temperature at its start and end, as the table shows them.
    temperatures: Box<str>,
}

impl Repeats {
    /// The figures of every setting of `digest` with more than one run (before
    /// its runs are taken: see [`crate::recommend::make_settings`]).
    pub fn of(digest: &SettingsDigest) -> Repeats {
        let rows = digest
            .setting_runs()
            .enumerate()
            .filter(|(_, (_, runs))| runs.len() > 1)
            .filter_map(|(i, (_, runs))| {
                let spread = RunSpread::of_runs(&runs)?;
                let temperatures: Vec<String> = runs
                    .iter()
                    .map(
                        |r| match (r.temperature_start_c.get(), r.temperature_end_c.get()) {
                            (Some(a), Some(b)) => format!("{a:.0}→{b:.0}"),
                            _ => "–".into(),
                        },
                    )
                    .collect();
                Some(RepeatFigures {
                    setting: i as u32,
                    runs: spread.runs as u32,
                    joules_per_flop: spread.joules_per_flop,
                    within_run: spread.within_run,
                    run_to_run: MaybeF64::new(spread.run_to_run),
                    temperatures: temperatures.join(", ").into_boxed_str(),
                })
            })
            .collect();
        Repeats { rows }
    }

    /// No setting was measured more than once.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// One row per setting measured more than once: within-run against run-to-run spread.
pub fn repeats_table(records: &[Record]) -> Option<Table> {
    let digest = SettingsDigest::of(records);
    let repeats = Repeats::of(&digest);
    let mut t = repeats_head(&repeats)?;
    let labels = digest.device_labels();
    for row in repeats_rows(&digest, &repeats, &labels) {
        t.push(row);
    }
    Some(t)
}

/// The repeats table's title, note and headers, without its rows (see
/// [`repeats_rows`]); `None` where no setting was measured more than once.
pub fn repeats_head(repeats: &Repeats) -> Option<Table> {
    if repeats.is_empty() {
        return None;
    }
    let mut t = Table::new(
        "Run-to-run spread (settings measured more than once)",
        &[
            "device",
            "kernel",
            "precision",
            "workload",
            "batch",
            "power cap",
            "runs",
            "energy (pJ/FLOP, median)",
            "spread within a run",
            "spread between runs",
            "temperature (°C, per run)",
        ],
    );
    t.notes.push(
        "The spread within a run is across one run's windows; the spread between runs is across the runs' medians, measured in shuffled order. The second is the uncertainty to quote."
            .into(),
    );
    Some(t)
}

/// The repeats table's rows, one at a time: a fleet's campaign has one per setting.
/// `repeats`: [`Repeats::of`] `digest`; `labels`: [`SettingsDigest::device_labels`].
pub fn repeats_rows<'a>(
    digest: &'a SettingsDigest,
    repeats: &'a Repeats,
    labels: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = Vec<String>> + 'a {
    repeats.rows.iter().map(move |f| {
        let head = digest.setting_head(f.setting as usize);
        let device = digest.device(head.device);
        vec![
            labels
                .get(&device.key)
                .cloned()
                .unwrap_or_else(|| device.info.name.clone()),
            digest.string(head.kernel).to_string(),
            head.precision.to_string(),
            digest.string(head.group).to_string(),
            head.batch_size.to_string(),
            digest.string(head.cap).to_string(),
            f.runs.to_string(),
            sig(f.joules_per_flop * 1e12, 4),
            pct(f.within_run).trim_start_matches('+').to_string(),
            f.run_to_run
                .get()
                .map(|s| pct(s).trim_start_matches('+').to_string())
                .unwrap_or_else(|| "–".into()),
            f.temperatures.to_string(),
        ]
    })
}

/// The repeats table row by row, and a line end; nothing where no setting was
/// measured more than once. Its columns are measured over the rows first.
pub fn write_repeats_table(
    digest: &SettingsDigest,
    repeats: &Repeats,
    format: TableFormat,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let Some(head) = repeats_head(repeats) else {
        return Ok(());
    };
    let labels = digest.device_labels();
    let mut widths = ColumnWidths::of(&head, format);
    for row in repeats_rows(digest, repeats, &labels) {
        widths.add(&row);
    }
    let mut w = head.write_head(format, &widths, out)?;
    for row in repeats_rows(digest, repeats, &labels) {
        w.row(&row)?;
    }
    w.finish()?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Objective;
    use crate::recommend::recommend;
    use crate::testutil::rec;
    use joulebench_core::protocol::ValidityFlag;
    use joulebench_core::Precision;

    #[test]
    fn repeats_are_one_setting_with_their_median_and_run_to_run_spread() {
        let mut v = vec![
            rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0),
            rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.2),
            rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.1),
        ];
        for (i, r) in v.iter_mut().enumerate() {
            r.repeat = Some(i as u32 + 1);
            r.flags = vec![ValidityFlag::PowerLimited];
        }
        v[1].flags.push(ValidityFlag::Unsettled);
        assert_eq!(group_settings(&v), vec![vec![0, 1, 2]]);
        let recs = recommend(&v, Objective::LeastEnergy);
        assert_eq!(recs.len(), 1);
        let s = recs[0].chosen();
        assert_eq!((s.runs, recs[0].settings.len()), (3, 1));
        assert!((s.picojoules_per_flop() - 1.1).abs() < 1e-9);
        assert!((s.run_to_run_spread.unwrap() - 0.1 / 1.1).abs() < 1e-9);
        // power-limited is information; a caution from any run is kept
        assert!(s.power_limited);
        assert_eq!(s.flags, vec!["unsettled".to_string()]);
        let t = repeats_table(&v).unwrap();
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.rows[0][6], "3");
        assert!(repeats_table(&v[..1]).is_none());
    }
}
