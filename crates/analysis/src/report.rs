//! The full results table: every record of one or more files, skipped and
//! invalid points included with their reasons, and the validity flags explained.

use crate::format::{opt, pct, sig};
use crate::table::Table;
use joulebench_core::protocol::{ValidityFlag, WindowMethod};
use joulebench_core::record::{PointStatus, Record};

pub fn records_table(records: &[Record]) -> Table {
    let mut t = Table::new(
        "Results",
        &[
            "device",
            "backend",
            "kernel",
            "precision",
            "workload",
            "batch",
            "power cap",
            "status",
            "time (ms/op)",
            "throughput (TFLOP/s)",
            "energy (pJ/FLOP)",
            "efficiency (GFLOP/J)",
            "avg power (W)",
            "spread",
            "rel. error",
            "windows",
            "flags / reason",
        ],
    );
    if records.iter().any(|r| r.simulated) {
        let all = records.iter().all(|r| r.simulated);
        t.notes.push(if all {
            "SIMULATED DATA: every row comes from joulebench's model device, not from a measurement.".into()
        } else {
            "MIXED DATA: rows whose device says (simulated) come from the model device, not from a measurement.".into()
        });
    }
    if records
        .iter()
        .any(|r| r.window_method() == Some(WindowMethod::Gapped))
    {
        t.notes.push(format!(
            "windows \"gapped\": {}. Their energy and average power read high; measure again to compare them with busy windows.",
            WindowMethod::Gapped.meaning()
        ));
    }
    for r in records {
        let m = r.measurement.as_ref().map(|m| &m.summary);
        let jpf = m.and_then(|s| s.joules_per_flop);
        let spread = m.map(|s| {
            s.joules_per_flop
                .map(|j| j.rel_spread)
                .unwrap_or(s.seconds_per_op.rel_spread)
        });
        let cap = match r.power_cap.requested_w.or(r.power_cap.enforced_w) {
            Some(w) if !r.power_cap.requested.is_default() => {
                format!("{} ({w:.0} W)", r.power_cap.requested)
            }
            Some(w) => format!("default ({w:.0} W)"),
            None => r.power_cap.requested.to_string(),
        };
        let note = match r.status {
            PointStatus::Measured => r
                .flags
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(" "),
            _ => r.reason.clone().unwrap_or_default(),
        };
        t.push(vec![
            r.device.name.clone(),
            r.backend.clone(),
            r.kernel.clone(),
            r.precision.to_string(),
            r.group.clone(),
            r.batch_size.to_string(),
            cap,
            format!("{:?}", r.status).to_lowercase(),
            opt(m.map(|s| s.seconds_per_op.median * 1e3), 3),
            opt(m.map(|s| s.tflops), 3),
            opt(jpf.map(|j| j.median * 1e12), 3),
            opt(jpf.map(|j| 1e-9 / j.median), 3),
            opt(m.and_then(|s| s.average_w), 3),
            spread
                .map(|s| pct(s).trim_start_matches('+').to_string())
                .unwrap_or_else(|| "–".into()),
            r.verification
                .as_ref()
                .map(|v| sig(v.relative_error, 2))
                .unwrap_or_else(|| "–".into()),
            r.window_method()
                .map(|w| w.name().to_string())
                .unwrap_or_else(|| "–".into()),
            note,
        ]);
    }
    t
}

/// What each validity flag means, for reports.
pub fn flags_legend() -> Table {
    let mut t = Table::new("Validity flags", &["flag", "kind", "meaning"]);
    for f in ValidityFlag::ALL {
        t.push(vec![
            f.name().into(),
            if f.is_caution() {
                "caution"
            } else {
                "information"
            }
            .into(),
            f.meaning().into(),
        ]);
    }
    t
}

/// Counts by status, one line.
pub fn status_line(records: &[Record]) -> String {
    let count = |s: PointStatus| records.iter().filter(|r| r.status == s).count();
    format!(
        "{} records: {} measured, {} invalid, {} skipped, {} failed",
        records.len(),
        count(PointStatus::Measured),
        count(PointStatus::Invalid),
        count(PointStatus::Skipped),
        count(PointStatus::Failed)
    )
}
