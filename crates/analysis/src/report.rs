//! The full results table: every record of one or more files, skipped and
//! invalid points included with their reasons, and the validity flags explained.

use crate::format::{opt, pct, sig};
use crate::table::Table;
use joulebench_core::protocol::{ValidityFlag, WindowMethod};
use joulebench_core::record::{PointStatus, Record};

pub fn records_table(records: &[Record]) -> Table {
    let mut t = records_table_gpu(records);
    add_host_columns(&mut t, records);
    t
}

/// Where any record read the host's CPU and DRAM energy beside the GPU's: that
/// energy per FLOP, and the GPU's and the host's together.
fn add_host_columns(t: &mut Table, records: &[Record]) {
    let host = |r: &Record| {
        r.measurement
            .as_ref()
            .and_then(|m| m.summary.host.as_ref())
            .cloned()
    };
    if !records.iter().any(|r| host(r).is_some()) {
        return;
    }
    let at = t.headers.len() - 1;
    t.headers.insert(at, "host CPU+DRAM (pJ/FLOP)".into());
    t.headers.insert(at + 1, "GPU + host (pJ/FLOP)".into());
    for (row, r) in t.rows.iter_mut().zip(records) {
        let h = host(r);
        row.insert(
            at,
            opt(h.as_ref().map(|h| h.host_joules_per_flop.median * 1e12), 3),
        );
        row.insert(
            at + 1,
            opt(
                h.and_then(|h| h.gpu_and_host_joules_per_flop)
                    .map(|s| s.median * 1e12),
                3,
            ),
        );
    }
    let sources: std::collections::BTreeSet<String> = records
        .iter()
        .filter_map(|r| r.meter.host.as_ref())
        .map(|h| format!("{} ({})", h.source.name(), h.domains.join(", ")))
        .collect();
    t.notes.push(format!(
        "Host energy: {}; energy (pJ/FLOP) is the GPU's alone, GPU + host adds the host's CPU packages and DRAM over the same windows.",
        sources.into_iter().collect::<Vec<_>>().join("; ")
    ));
}

fn records_table_gpu(records: &[Record]) -> Table {
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
                .flags_now()
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
        t.push(vec![f.name().into(), f.kind().into(), f.meaning().into()]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TableFormat;
    use crate::testutil::rec;
    use joulebench_core::protocol::HostSummary;
    use joulebench_core::stats::Stat;
    use joulebench_core::{HostMeterInfo, MeterSource, Precision};

    #[test]
    fn host_energy_gets_its_columns_only_where_a_record_has_it() {
        let plain = rec("a", false, Precision::Bf16, "default", 100.0, 2.0);
        let t = records_table(std::slice::from_ref(&plain));
        assert!(
            !t.headers.iter().any(|h| h.contains("host")),
            "{:?}",
            t.headers
        );

        let mut with_host = rec("b", false, Precision::Bf16, "default", 100.0, 2.0);
        let stat = |x: f64| Stat {
            median: x,
            rel_spread: 0.0,
            min: x,
            max: x,
        };
        if let Some(m) = with_host.measurement.as_mut() {
            m.summary.host = Some(HostSummary {
                host_joules_per_flop: stat(0.5e-12),
                gpu_and_host_joules_per_flop: Some(stat(2.5e-12)),
                host_average_w: 60.0,
            });
        }
        with_host.meter.host = Some(HostMeterInfo {
            source: MeterSource::Rapl,
            domains: vec!["package-0".into(), "dram".into()],
            update_period_s: 0.002,
        });
        let t = records_table(&[plain, with_host]);
        let col = |name: &str| t.headers.iter().position(|h| h == name).unwrap();
        let (h, both) = (col("host CPU+DRAM (pJ/FLOP)"), col("GPU + host (pJ/FLOP)"));
        assert_eq!(
            (t.rows[1][h].as_str(), t.rows[1][both].as_str()),
            ("0.500", "2.50")
        );
        assert_eq!(t.rows[0][h], "–");
        assert_eq!(t.headers.last().unwrap(), "flags / reason");
        let md = t.render(TableFormat::Markdown);
        assert!(md.contains("Host energy: rapl (package-0, dram)"), "{md}");
    }
}
