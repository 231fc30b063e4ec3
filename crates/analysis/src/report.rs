//! The full results table: every record of one or more files, skipped and
//! invalid points included with their reasons, and the validity flags explained.

use crate::format::{opt, pct, sig};
use crate::table::{Table, TableFormat};
use crate::table_stream::ColumnWidths;
use joulebench_core::protocol::{HostSummary, Summary, ValidityFlag, WindowMethod};
use joulebench_core::record::{flags_now, PointStatus, PowerCapRecord, Record};
use joulebench_core::Precision;
use serde::Deserialize;
use std::collections::BTreeSet;

pub fn records_table(records: &[Record]) -> Table {
    let mut digest = RecordsTableDigest::default();
    for r in records {
        digest.push(r);
    }
    let mut t = digest.head();
    for r in records {
        t.push(digest.row(r));
    }
    t
}

/// What the results table's headers and notes say of all its records: a table of
/// a million rows is written one row at a time (`crate::table_stream`), its head
/// known from this before the first row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordsTableDigest {
    records: usize,
    simulated: usize,
    gapped: bool,
    /// Some record read the host's CPU and DRAM energy beside the GPU's.
    host: bool,
    host_sources: BTreeSet<String>,
    /// The columns' widths in a format that aligns them, host columns included.
    widths: Option<ColumnWidths>,
}

/// The host's energy per FLOP beside the GPU's, where a record has it.
fn host_summary(r: &Record) -> Option<&HostSummary> {
    r.measurement.as_ref().and_then(|m| m.summary.host.as_ref())
}

impl RecordsTableDigest {
    /// A digest that also measures the columns for `format`, so the table can be
    /// written row by row ([`RecordsTableDigest::widths`]).
    pub fn measuring(format: TableFormat) -> RecordsTableDigest {
        RecordsTableDigest {
            widths: Some(ColumnWidths::of(&Table::default(), format)),
            ..RecordsTableDigest::default()
        }
    }

    /// The widths of `head`'s columns (from [`RecordsTableDigest::head`]) and every
    /// row pushed; `None` unless made by [`RecordsTableDigest::measuring`].
    pub fn widths(&self, head: &Table) -> Option<ColumnWidths> {
        let mut rows = self.widths.clone()?;
        if !self.host {
            rows.remove(HOST_AT + 1);
            rows.remove(HOST_AT);
        }
        rows.add(&head.headers);
        Some(rows)
    }

    pub fn push(&mut self, r: &Record) {
        if let Some(w) = self.widths.as_mut() {
            w.add(&full_row(&RowView::of(r)));
        }
        self.records += 1;
        self.simulated += usize::from(r.simulated);
        self.gapped |= r.window_method() == Some(WindowMethod::Gapped);
        self.host |= host_summary(r).is_some();
        if let Some(h) = r.meter.host.as_ref() {
            let source = format!("{} ({})", h.source.name(), h.domains.join(", "));
            if !self.host_sources.contains(&source) {
                self.host_sources.insert(source);
            }
        }
    }

    /// The table's title, headers and notes, without rows.
    pub fn head(&self) -> Table {
        let mut t = Table::new("Results", &GPU_HEADERS);
        if self.simulated > 0 {
            t.notes.push(if self.simulated == self.records {
                "SIMULATED DATA: every row comes from joulebench's model device, not from a measurement.".into()
            } else {
                "MIXED DATA: rows whose device says (simulated) come from the model device, not from a measurement.".into()
            });
        }
        if self.gapped {
            t.notes.push(format!(
                "windows \"gapped\": {}. Their energy and average power read high; measure again to compare them with busy windows.",
                WindowMethod::Gapped.meaning()
            ));
        }
        // where any record read the host's CPU and DRAM energy beside the GPU's: that
        // energy per FLOP, and the GPU's and the host's together
        if self.host {
            t.headers.insert(HOST_AT, "host CPU+DRAM (pJ/FLOP)".into());
            t.headers.insert(HOST_AT + 1, "GPU + host (pJ/FLOP)".into());
            t.notes.push(format!(
                "Host energy: {}; energy (pJ/FLOP) is the GPU's alone, GPU + host adds the host's CPU packages and DRAM over the same windows.",
                self.host_sources.iter().cloned().collect::<Vec<_>>().join("; ")
            ));
        }
        t
    }

    /// The row of one record.
    pub fn row(&self, r: &Record) -> Vec<String> {
        self.row_of_view(&RowView::of(r))
    }

    /// The row of one record read as a [`RecordRow`]: the same as of the record.
    pub fn row_of(&self, r: &RecordRow) -> Vec<String> {
        self.row_of_view(&RowView::of_row(r))
    }

    fn row_of_view(&self, r: &RowView) -> Vec<String> {
        if self.host {
            full_row(r)
        } else {
            gpu_row(r)
        }
    }
}

/// Where the host columns go: before the last column.
const HOST_AT: usize = GPU_HEADERS.len() - 1;

/// A record's row with the host columns, whether or not the table has them.
fn full_row(r: &RowView) -> Vec<String> {
    let mut row = gpu_row(r);
    let h = r.summary.and_then(|s| s.host.as_ref());
    row.insert(
        HOST_AT,
        opt(h.map(|h| h.host_joules_per_flop.median * 1e12), 3),
    );
    row.insert(
        HOST_AT + 1,
        opt(
            h.and_then(|h| h.gpu_and_host_joules_per_flop)
                .map(|s| s.median * 1e12),
            3,
        ),
    );
    row
}

const GPU_HEADERS: [&str; 17] = [
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
];

/// What a row shows of a record, from a whole record or from a [`RecordRow`].
struct RowView<'a> {
    device: &'a str,
    backend: &'a str,
    kernel: &'a str,
    precision: Precision,
    group: &'a str,
    batch_size: u64,
    power_cap: &'a PowerCapRecord,
    status: PointStatus,
    reason: Option<&'a str>,
    relative_error: Option<f64>,
    summary: Option<&'a Summary>,
    method: Option<WindowMethod>,
    flags: &'a [ValidityFlag],
    throttle_reasons: &'a [String],
}

/// A record's or a record row's view: both name the same fields the same way.
macro_rules! row_view {
    ($r:expr) => {{
        let r = $r;
        let m = r.measurement.as_ref();
        RowView {
            device: &r.device.name,
            backend: &r.backend,
            kernel: &r.kernel,
            precision: r.precision,
            group: &r.group,
            batch_size: r.batch_size,
            power_cap: &r.power_cap,
            status: r.status,
            reason: r.reason.as_deref(),
            relative_error: r.verification.as_ref().map(|v| v.relative_error),
            summary: m.map(|m| &m.summary),
            method: m.map(|m| m.method),
            flags: &r.flags,
            throttle_reasons: m.map_or(&[], |m| &m.telemetry.throttle_reasons),
        }
    }};
}

impl<'a> RowView<'a> {
    fn of(r: &'a Record) -> RowView<'a> {
        row_view!(r)
    }

    fn of_row(r: &'a RecordRow) -> RowView<'a> {
        row_view!(r)
    }
}

/// What the results table shows of a record, read without the rest of it
/// (windows, protocol, telemetry): the table of a campaign too large to hold reads
/// its files a second time as these, after a first read checked every record.
#[derive(Clone, Debug, Deserialize)]
pub struct RecordRow {
    device: RowDevice,
    backend: String,
    kernel: String,
    precision: Precision,
    group: String,
    batch_size: u64,
    power_cap: PowerCapRecord,
    status: PointStatus,
    reason: Option<String>,
    verification: Option<RowVerification>,
    measurement: Option<RowMeasurement>,
    flags: Vec<ValidityFlag>,
}

#[derive(Clone, Debug, Deserialize)]
struct RowDevice {
    name: String,
}

#[derive(Clone, Debug, Deserialize)]
struct RowVerification {
    relative_error: f64,
}

#[derive(Clone, Debug, Deserialize)]
struct RowMeasurement {
    #[serde(default)]
    method: WindowMethod,
    summary: Summary,
    telemetry: RowTelemetry,
}

#[derive(Clone, Debug, Deserialize)]
struct RowTelemetry {
    throttle_reasons: Vec<String>,
}

fn gpu_row(r: &RowView) -> Vec<String> {
    let m = r.summary;
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
        PointStatus::Measured => flags_now(r.flags, r.method, r.throttle_reasons)
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(" "),
        _ => r.reason.unwrap_or_default().to_string(),
    };
    vec![
        r.device.to_string(),
        r.backend.to_string(),
        r.kernel.to_string(),
        r.precision.to_string(),
        r.group.to_string(),
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
        r.relative_error
            .map(|e| sig(e, 2))
            .unwrap_or_else(|| "–".into()),
        r.method
            .map(|w| w.name().to_string())
            .unwrap_or_else(|| "–".into()),
        note,
    ]
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
    status_line_of(
        records.len(),
        [
            count(PointStatus::Measured),
            count(PointStatus::Invalid),
            count(PointStatus::Skipped),
            count(PointStatus::Failed),
        ],
    )
}

/// [`status_line`] from counts: all records, then measured, invalid, skipped, failed.
pub fn status_line_of(records: usize, by_status: [usize; 4]) -> String {
    let [measured, invalid, skipped, failed] = by_status;
    format!(
        "{records} records: {measured} measured, {invalid} invalid, {skipped} skipped, {failed} failed"
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
    fn a_row_read_alone_is_the_row_of_the_whole_record() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = 0;
        for dir in ["results/h200-2026-11-29", "results/sim"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_none_or(|e| e != "jsonl") {
                    continue;
                }
                files += 1;
                let lines = joulebench_core::record::read_record_lines(&path).unwrap();
                let mut digest = RecordsTableDigest::default();
                for l in &lines {
                    digest.push(&l.record);
                }
                for l in &lines {
                    let row: RecordRow = serde_json::from_str(&l.text).unwrap();
                    assert_eq!(
                        digest.row_of(&row),
                        digest.row(&l.record),
                        "{}",
                        path.display()
                    );
                }
            }
        }
        assert!(files >= 8, "{files} results files");
    }

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
