//! The record of docs/ARCHITECTURE.md §5: one self-describing JSON object per measured (or
//! skipped, or failed) point, appended and flushed one at a time so a killed sweep
//! loses nothing it finished. Readers name the file and line of anything corrupt.

use crate::clocks::{clock_key, ClockRecord};
use crate::device::DeviceInfo;
use crate::inputs::{inputs_key, InputDistribution};
use crate::meter::{HostMeterInfo, MeterAgreement, MeterSource};
use crate::power::PowerCap;
use crate::precision::Precision;
use crate::protocol::{IdleBaseline, Measurement, ProtocolConfig, ValidityFlag};
use crate::verify::Verification;
use crate::workload::Workload;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Bumped whenever a field changes meaning or is removed. Schema 2: busy windows
/// between counter updates (`measurement.method`), telemetry sampled during the
/// windows, `power-limited` apart from `throttled`, repeats.
pub const SCHEMA_VERSION: u32 = 2;

/// Schema versions this joulebench reads: 1 (gapped windows) and 2.
pub const READABLE_SCHEMAS: std::ops::RangeInclusive<u64> = 1..=SCHEMA_VERSION as u64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
    pub git_commit: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointStatus {
    /// Verified and measured.
    Measured,
    /// Failed the correctness check: recorded with its error, never measured.
    Invalid,
    /// The backend cannot run this point (precision, kernel, shape); the reason says why.
    Skipped,
    /// A backend error while preparing or running.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerCapRecord {
    /// As the user asked: "default", "300W", "80%".
    pub requested: PowerCap,
    pub requested_w: Option<f64>,
    /// What the device reported enforcing while the point ran.
    pub enforced_w: Option<f64>,
    pub default_w: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeterInfo {
    pub source: MeterSource,
    pub update_period_s: f64,
    /// Check mode: how the energy counter and integrated power agreed on this point.
    #[serde(default)]
    pub check: Option<MeterAgreement>,
    /// The host (CPU and DRAM) meter read beside the device's, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostMeterInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub schema: u32,
    pub tool: ToolInfo,
    pub host: String,
    pub unix_time_s: f64,
    /// The command line that produced this record.
    pub command: String,
    /// From the simulated device's model, not a measurement.
    pub simulated: bool,
    pub status: PointStatus,
    /// Why a point was skipped, invalid or failed.
    pub reason: Option<String>,
    pub device: DeviceInfo,
    pub backend: String,
    pub kernel: String,
    pub kernel_variant: Option<String>,
    pub vendor_kernel: bool,
    pub precision: Precision,
    pub workload: Workload,
    /// What recommendations compare settings within: the shape without its batch.
    pub group: String,
    /// The batch axis: tokens / seq for a linear layer, the batch of attention.
    pub batch_size: u64,
    pub seed: u64,
    /// How the inputs were drawn from `seed` (records without it: `normal`, the
    /// only inputs joulebench drew before).
    #[serde(default)]
    pub inputs: InputDistribution,
    pub flop: u64,
    pub min_bytes: u64,
    pub power_cap: PowerCapRecord,
    pub meter: MeterInfo,
    pub idle: Option<IdleBaseline>,
    pub verification: Option<Verification>,
    pub measurement: Option<Measurement>,
    pub flags: Vec<ValidityFlag>,
    /// The protocol's settings. Settings a later joulebench dropped are ignored
    /// when reading, so records of every readable schema parse.
    #[serde(deserialize_with = "lenient_protocol")]
    pub protocol: ProtocolConfig,
    /// Which run of the point this is, when `--repeat` measured it several times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// Host time spent on the point besides warm-up and windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<PointOverhead>,
    /// The clocks the point asked for and those seen during its windows (records
    /// made before clocks could be locked read as the default clocks).
    #[serde(default)]
    pub clocks: ClockRecord,
}

/// What a point costs besides its measurement: preparing the kernel (inputs
/// generated and uploaded, buffers allocated, compiled where not cached) and the
/// correctness check (one run, the output read back, the reference computed).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointOverhead {
    pub prepare_s: f64,
    pub verify_s: f64,
}

impl PointOverhead {
    pub fn total_s(&self) -> f64 {
        self.prepare_s + self.verify_s
    }
}

/// The protocol settings of a record, keeping the ones this version knows: the
/// others are skipped as they are read, and the rest is `ProtocolConfig`'s own.
fn lenient_protocol<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ProtocolConfig, D::Error> {
    d.deserialize_any(KnownProtocol(known_protocol_settings()?))
}

/// The names of the protocol settings this version knows, found once.
fn known_protocol_settings<E: serde::de::Error>() -> Result<&'static [String], E> {
    static KNOWN: std::sync::OnceLock<Result<Vec<String>, String>> = std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| match serde_json::to_value(ProtocolConfig::default()) {
            Ok(serde_json::Value::Object(map)) => Ok(map.keys().cloned().collect()),
            Ok(other) => Err(format!("protocol settings as {other}")),
            Err(e) => Err(e.to_string()),
        })
        .as_deref()
        .map_err(E::custom)
}

/// Reads protocol settings as `ProtocolConfig` does, skipping unknown names.
struct KnownProtocol(&'static [String]);

impl<'de> serde::de::Visitor<'de> for KnownProtocol {
    type Value = ProtocolConfig;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("struct ProtocolConfig")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ProtocolConfig, A::Error> {
        ProtocolConfig::deserialize(serde::de::value::MapAccessDeserializer::new(KnownFields {
            map,
            known: self.0,
        }))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<ProtocolConfig, A::Error> {
        ProtocolConfig::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
    }
}

/// A map's entries whose names are among `known`; the others are read and dropped.
struct KnownFields<A> {
    map: A,
    known: &'static [String],
}

impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for KnownFields<A> {
    type Error = A::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        use serde::de::IntoDeserializer;
        while let Some(key) = self.map.next_key::<String>()? {
            if self.known.contains(&key) {
                return seed.deserialize(key.into_deserializer()).map(Some);
            }
            self.map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(None)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

impl Record {
    /// What identifies a point for `--resume` (with its repeat, if any).
    pub fn point_key(&self) -> String {
        repeat_key(self.setting_key(), self.repeat)
    }

    /// The point without its repeat: what repeats of one setting share.
    pub fn setting_key(&self) -> String {
        let key = point_key(
            &self.device,
            &self.backend,
            &self.kernel,
            self.precision,
            &self.workload,
            &self.power_cap.requested,
        );
        key + &clock_key(self.clocks.sm_requested_mhz, self.clocks.mem_requested_mhz)
            + &inputs_key(self.inputs)
    }

    /// The record's flags as this version defines them. Schema-1 records flagged a
    /// card at its power limit `throttled`: where NVML's `sw-power-cap` was the only
    /// reason, that reads as `power-limited` (information) now.
    pub fn flags_now(&self) -> Vec<ValidityFlag> {
        match self.measurement.as_ref() {
            Some(m) => flags_now(&self.flags, Some(m.method), &m.telemetry.throttle_reasons),
            None => flags_now(&self.flags, None, &[]),
        }
    }

    /// Which window method produced this record's numbers (`gapped` for schema 1).
    pub fn window_method(&self) -> Option<crate::protocol::WindowMethod> {
        self.measurement.as_ref().map(|m| m.method)
    }

    /// Refuses numbers no measurement produces — energy, time or power that is
    /// negative or not finite, a measured point of 0 FLOP — so a damaged or forged
    /// record is an error naming its line, not the first row of a ranking.
    pub fn check_numbers(&self) -> Result<(), String> {
        fn check(what: &str, v: f64, zero_ok: bool) -> Result<(), String> {
            if v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0)) {
                Ok(())
            } else {
                Err(format!(
                    "{what} = {v} cannot come from a measurement (it must be finite and {})",
                    if zero_ok { "≥ 0" } else { "> 0" }
                ))
            }
        }
        if self.status == PointStatus::Measured && self.flop == 0 {
            return Err("a measured point of 0 FLOP cannot have an energy per FLOP".into());
        }
        let cap = &self.power_cap;
        for (what, v) in [
            ("power_cap.requested_w", cap.requested_w),
            ("power_cap.enforced_w", cap.enforced_w),
            ("power_cap.default_w", cap.default_w),
        ] {
            if let Some(v) = v {
                check(what, v, false)?;
            }
        }
        if let Some(idle) = &self.idle {
            check("idle.watts", idle.watts, true)?;
        }
        if let Some(m) = &self.measurement {
            let s = &m.summary;
            check("summary.seconds_per_op", s.seconds_per_op.median, false)?;
            check("summary.tflops", s.tflops, true)?;
            if let Some(j) = &s.joules_per_op {
                check("summary.joules_per_op", j.median, false)?;
            }
            if let Some(j) = &s.joules_per_flop {
                check("summary.joules_per_flop", j.median, false)?;
            }
            if let Some(w) = s.average_w {
                check("summary.average_w", w, true)?;
            }
        }
        self.check_consistency()
    }

    /// Refuses numbers that contradict each other: a FLOP count that is not the
    /// shape's, windows with negative energy or no work, a summary that no central
    /// value of its own windows gives, an energy per FLOP that is not the energy per
    /// op over the FLOP. Each alone looks plausible; together they cannot all be a
    /// measurement's.
    fn check_consistency(&self) -> Result<(), String> {
        if let Ok(shape_flop) = self.workload.flop() {
            if shape_flop != self.flop
                && self.status == PointStatus::Measured
                && Some(self.flop) != half_product_causal_flop(&self.workload)
            {
                return Err(format!(
                    "flop = {} but the workload's shape makes {shape_flop}: the record contradicts itself",
                    self.flop
                ));
            }
        }
        let Some(m) = &self.measurement else {
            return Ok(());
        };
        if m.windows.is_empty() {
            return Err("a measurement without windows cannot have a summary".into());
        }
        for (i, w) in m.windows.iter().enumerate() {
            let bad = |what: &str, v: f64| {
                format!("windows[{i}].{what} = {v} cannot come from a measurement")
            };
            if !(w.iterations.is_finite() && w.iterations > 0.0) {
                return Err(bad("iterations", w.iterations));
            }
            if !(w.seconds.is_finite() && w.seconds > 0.0) {
                return Err(bad("seconds", w.seconds));
            }
            if let Some(j) = w.joules {
                if !(j.is_finite() && j >= 0.0) {
                    return Err(bad("joules", j));
                }
            }
        }
        let s = &m.summary;
        // any median, mean or trimmed value of the windows lies within their range
        let within = |what: &str, median: f64, values: &[f64]| -> Result<(), String> {
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let slack = 1e-6 * hi.abs().max(lo.abs());
            if median < lo - slack || median > hi + slack {
                return Err(format!(
                    "summary.{what} = {median:e} lies outside its windows' {lo:e} to {hi:e}: the \
                     record contradicts itself"
                ));
            }
            Ok(())
        };
        let spo: Vec<f64> = m.windows.iter().map(|w| w.seconds_per_op()).collect();
        within("seconds_per_op", s.seconds_per_op.median, &spo)?;
        let idle_w = self.idle.map(|i| i.watts);
        let jpo: Option<Vec<f64>> = m.windows.iter().map(|w| w.joules_per_op(idle_w)).collect();
        match (&s.joules_per_op, jpo) {
            (Some(j), Some(values)) => within("joules_per_op", j.median, &values)?,
            (Some(_), None) => {
                return Err(
                    "summary.joules_per_op is given but a window has no energy: the record \
                     contradicts itself"
                        .into(),
                )
            }
            _ => {}
        }
        if let (Some(jpo), Some(jpf)) = (&s.joules_per_op, &s.joules_per_flop) {
            if self.flop > 0 {
                let expect = jpo.median / self.flop as f64;
                if (jpf.median - expect).abs() > 1e-6 * expect.abs().max(f64::MIN_POSITIVE) {
                    return Err(format!(
                        "summary.joules_per_flop = {:e} is not joules_per_op / flop = {expect:e}: \
                         the record contradicts itself",
                        jpf.median
                    ));
                }
            }
        }
        Ok(())
    }

    /// Verified, measured, and with an energy figure.
    pub fn has_energy(&self) -> bool {
        self.status == PointStatus::Measured
            && self
                .measurement
                .as_ref()
                .is_some_and(|m| m.summary.joules_per_flop.is_some())
    }
}

/// [`Record::flags_now`] from a record's flags, its window method (none without a
/// measurement) and its throttle reasons: for a reader that took only these.
pub fn flags_now(
    flags: &[ValidityFlag],
    method: Option<crate::protocol::WindowMethod>,
    throttle_reasons: &[String],
) -> Vec<ValidityFlag> {
    if method != Some(crate::protocol::WindowMethod::Gapped) {
        return flags.to_vec();
    }
    let power_only = !throttle_reasons.is_empty()
        && throttle_reasons
            .iter()
            .all(|r| crate::meter::is_power_limit_reason(r));
    let mut now: Vec<ValidityFlag> = flags
        .iter()
        .map(|&f| match f {
            ValidityFlag::Throttled if power_only => ValidityFlag::PowerLimited,
            f => f,
        })
        .collect();
    if power_only && !now.contains(&ValidityFlag::PowerLimited) {
        now.push(ValidityFlag::PowerLimited);
    }
    now.sort();
    now.dedup();
    now
}

/// Causal attention as records before the exact count of visible pairs counted it:
/// half the unmasked product. Such records are whole, not contradictory.
fn half_product_causal_flop(workload: &Workload) -> Option<u64> {
    let unmasked = |s: &crate::workload::AttentionShape| crate::workload::AttentionShape {
        causal: false,
        ..*s
    };
    match workload {
        Workload::Attention(s) if s.causal => {
            Workload::Attention(unmasked(s)).flop().ok().map(|f| f / 2)
        }
        Workload::AttentionBackward(s) if s.causal => Workload::AttentionBackward(unmasked(s))
            .flop()
            .ok()
            .map(|f| f / 2),
        _ => None,
    }
}

/// A point key with its repeat appended (`#r2`), unchanged without one.
pub fn repeat_key(key: String, repeat: Option<u32>) -> String {
    match repeat {
        Some(r) => format!("{key}#r{r}"),
        None => key,
    }
}

pub fn point_key(
    device: &DeviceInfo,
    backend: &str,
    kernel: &str,
    precision: Precision,
    workload: &Workload,
    cap: &PowerCap,
) -> String {
    let w = serde_json::to_string(workload).unwrap_or_default();
    format!(
        "{}|{}|{}|{}|{}|{}",
        device.key(),
        backend,
        kernel,
        precision,
        w,
        cap
    )
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: corrupt results line: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: record has schema version {found}, this joulebench reads versions 1 to {expected}; use a newer joulebench or write to a new file")]
    Schema {
        path: PathBuf,
        line: usize,
        found: u64,
        expected: u32,
    },
    #[error("{path}: no records")]
    Empty { path: PathBuf },
    #[error("{path} is being written by another joulebench{}; two writers would interleave their records: wait for it to finish, or choose another file", holder.map(|p| format!(" (process {p})")).unwrap_or_default())]
    Locked { path: PathBuf, holder: Option<u32> },
}

/// One record of a results file, with its line as written (so a tool that copies
/// records keeps fields this version does not know) and its line number.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordLine {
    pub line_no: usize,
    pub text: String,
    pub record: Record,
}

/// The longest line a results file may hold. A record with the most windows the
/// protocol allows (10 000) takes a few MB; a longer line is not a record, and
/// reading it whole could exhaust memory.
pub const MAX_RECORD_LINE_BYTES: usize = 16 << 20;

/// The end of a results file that is not a whole record: a line without its
/// newline (a crash or a full disk in the middle of a write) and NUL bytes (blocks
/// a power loss left unwritten). Records are written one whole line at a time, so
/// nothing finished can be in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialTail {
    /// Byte offset where the tail starts: the length of the file's whole records.
    pub offset: u64,
    pub bytes: u64,
    /// The line the tail starts on.
    pub line_no: usize,
    pub nul_padded: bool,
}

impl PartialTail {
    /// What a reader tells the user when it skips the tail.
    pub fn describe(&self, path: &Path) -> String {
        format!(
            "{}: skipped an incomplete last record: {} bytes from byte offset {} (line {}){}, \
             left by a write that did not finish (a crash, a full disk or a power loss); \
             every complete record before it was read",
            path.display(),
            self.bytes,
            self.offset,
            self.line_no,
            if self.nul_padded { ", NUL-padded" } else { "" }
        )
    }
}

/// A results file as read: its records, and the incomplete tail it ended with, if any.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultsFile {
    pub lines: Vec<RecordLine>,
    pub tail: Option<PartialTail>,
}

impl ResultsFile {
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.lines.iter().map(|l| &l.record)
    }
}

/// Read every record of a JSONL file; blank lines are allowed, anything else that
/// is not a record of a readable schema is an error naming its line. An incomplete
/// tail is skipped (see [`read_results_file`] to learn of it).
pub fn read_records(path: &Path) -> Result<Vec<Record>, RecordError> {
    Ok(read_record_lines(path)?
        .into_iter()
        .map(|l| l.record)
        .collect())
}

/// [`read_records`], keeping each record's line.
pub fn read_record_lines(path: &Path) -> Result<Vec<RecordLine>, RecordError> {
    Ok(read_results_file(path)?.lines)
}

/// Every record of a results file, and its incomplete tail (which readers skip
/// with a warning and `--resume` cuts off). A line longer than
/// [`MAX_RECORD_LINE_BYTES`], a record whose numbers cannot be true, and NUL bytes
/// followed by more records are errors naming their line.
pub fn read_results_file(path: &Path) -> Result<ResultsFile, RecordError> {
    let mut out = ResultsFile::default();
    let end = for_each_record(path, |r| -> Result<(), RecordError> {
        out.lines.push(RecordLine {
            line_no: r.line_no,
            text: r.text.to_string(),
            record: r.record,
        });
        Ok(())
    })?;
    out.tail = end.tail;
    Ok(out)
}

/// Why one line is not a record, before its file and line are known.
pub(crate) enum LineError {
    Corrupt(String),
    Schema(u64),
}

impl LineError {
    pub(crate) fn at(self, path: &Path, line: usize) -> RecordError {
        match self {
            LineError::Corrupt(message) => RecordError::Corrupt {
                path: path.into(),
                line,
                message,
            },
            LineError::Schema(found) => RecordError::Schema {
                path: path.into(),
                line,
                found,
                expected: SCHEMA_VERSION,
            },
        }
    }
}

/// One line as a record. The common case is parsed straight into a [`Record`];
/// a line that refuses that is parsed again through a JSON value, which says why
/// (the schema first), so both ways accept and refuse the same lines.
pub(crate) fn parse_record(line: &str) -> Result<Record, LineError> {
    // a JSON array would fill a record's fields in order: only an object is a record
    if line.trim_start().starts_with('{') {
        if let Ok(record) = serde_json::from_str::<Record>(line) {
            let schema = u64::from(record.schema);
            if !READABLE_SCHEMAS.contains(&schema) {
                return Err(LineError::Schema(schema));
            }
            record.check_numbers().map_err(LineError::Corrupt)?;
            return Ok(record);
        }
    }
    parse_record_value(line)
}

fn parse_record_value(line: &str) -> Result<Record, LineError> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| LineError::Corrupt(format!("not JSON ({e})")))?;
    match value.get("schema").and_then(|v| v.as_u64()) {
        Some(v) if READABLE_SCHEMAS.contains(&v) => {}
        Some(found) => return Err(LineError::Schema(found)),
        None => {
            return Err(LineError::Corrupt(
                "not a joulebench record (no \"schema\" field)".into(),
            ))
        }
    }
    let record: Record =
        serde_json::from_value(value).map_err(|e| LineError::Corrupt(e.to_string()))?;
    record.check_numbers().map_err(LineError::Corrupt)?;
    Ok(record)
}

/// Read several files; each must hold at least one record.
pub fn read_many(paths: &[PathBuf]) -> Result<Vec<Record>, RecordError> {
    let mut all = Vec::new();
    for p in paths {
        let r = read_records(p)?;
        if r.is_empty() {
            return Err(RecordError::Empty { path: p.clone() });
        }
        all.extend(r);
    }
    Ok(all)
}

/// Whether a writer (a sweep) holds the results file at `path` now: `Some` with
/// its pid where the system says. Outputs are never written onto such a file.
pub fn results_file_holder(path: &Path) -> Option<Option<u32>> {
    crate::results_lock::holder_of(path)
}

/// Anything that takes records as they are produced.
pub trait RecordSink {
    fn write(&mut self, record: &Record) -> Result<(), RecordError>;
}

/// Appends one line per record and flushes it to disk before returning.
pub struct JsonlWriter {
    path: PathBuf,
    file: File,
}

impl JsonlWriter {
    /// Open for appending, creating the file (and its directory) if needed.
    pub fn append(path: &Path) -> Result<Self, RecordError> {
        let werr = |source| RecordError::Write {
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(werr)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(werr)?;
        Ok(JsonlWriter {
            path: path.into(),
            file,
        })
    }

    /// [`JsonlWriter::append`], holding the advisory lock every joulebench writer
    /// takes for as long as the writer lives: a second writer of the same file is
    /// refused with [`RecordError::Locked`], naming the first one's process.
    pub fn append_exclusive(path: &Path) -> Result<Self, RecordError> {
        let w = Self::append(path)?;
        match crate::results_lock::try_lock(&w.file) {
            Ok(()) => Ok(w),
            Err(holder) => Err(RecordError::Locked {
                path: path.into(),
                holder,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Cut an incomplete tail off the file, after copying it to a file beside it
    /// (`<name>.incomplete-<offset>`), whose path is returned. Only the tail goes:
    /// the file keeps its first `tail.offset` bytes, every complete record.
    pub fn cut_partial_tail(&mut self, tail: &PartialTail) -> Result<PathBuf, RecordError> {
        let werr = |source| RecordError::Write {
            path: self.path.clone(),
            source,
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut copy_path = self
            .path
            .with_file_name(format!("{name}.incomplete-{}", tail.offset));
        let mut copy = None;
        for n in 1..100 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&copy_path)
            {
                Ok(f) => {
                    copy = Some(f);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    copy_path = self
                        .path
                        .with_file_name(format!("{name}.incomplete-{}.{n}", tail.offset));
                }
                Err(e) => return Err(werr(e)),
            }
        }
        let mut copy = copy.ok_or_else(|| werr(std::io::ErrorKind::AlreadyExists.into()))?;
        let mut from = File::open(&self.path).map_err(werr)?;
        from.seek(std::io::SeekFrom::Start(tail.offset))
            .map_err(werr)?;
        std::io::copy(&mut from.take(tail.bytes), &mut copy).map_err(werr)?;
        copy.sync_all().map_err(werr)?;
        self.file.set_len(tail.offset).map_err(werr)?;
        self.file.sync_all().map_err(werr)?;
        Ok(copy_path)
    }

    /// Append one line (a record as another writer wrote it), flushed to disk.
    pub fn write_line(&mut self, line: &str) -> Result<(), RecordError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.write_whole(&bytes)
    }

    /// One write call per line, synced. A write that fails half-way (a full disk)
    /// is cut back off, so the file keeps whole lines; where even that fails,
    /// readers skip the incomplete tail.
    fn write_whole(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        let before = self.file.metadata().map(|m| m.len()).ok();
        let written = self
            .file
            .write_all(bytes)
            .and_then(|_| self.file.sync_data());
        if let Err(source) = written {
            if let Some(len) = before {
                let _ = self.file.set_len(len);
            }
            return Err(RecordError::Write {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }
}

impl RecordSink for JsonlWriter {
    fn write(&mut self, record: &Record) -> Result<(), RecordError> {
        let mut line = serde_json::to_vec(record).map_err(|e| RecordError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.write_whole(&line)
    }
}

/// Points already present in a results file, for `--resume`.
pub fn existing_keys(path: &Path) -> Result<HashSet<String>, RecordError> {
    if !path.exists() {
        return Ok(HashSet::new());
    }
    Ok(read_records(path)?.iter().map(Record::point_key).collect())
}

// Reading a results file one record at a time: the engine behind every reader
// (see `crate::record_stream`).

/// About this many bytes of lines are parsed together: enough to keep every core
/// busy, little enough that the few batches in flight take a few MB.
pub(crate) const BATCH_BYTES: usize = 2 << 20;

/// One line as read, with where it was.
#[derive(Debug)]
pub struct Streamed<'a, T> {
    /// 1-based, counting blank lines.
    pub line_no: usize,
    /// The byte offset its line starts at.
    pub offset: u64,
    /// The line as written, without its line end.
    pub text: &'a str,
    pub record: T,
}

/// One record as read, with where it was.
pub type StreamedRecord<'a> = Streamed<'a, Record>;

/// What a whole read of a file found besides its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamEnd {
    /// Records handed over.
    pub records: usize,
    /// The incomplete tail the file ended with, if any (skipped).
    pub tail: Option<PartialTail>,
    /// Where the file's whole records end: a second read limited to this many bytes
    /// ([`for_each_record_within`]) sees the same records even while a sweep
    /// appends to the file.
    pub whole_bytes: u64,
    /// A checksum of the records' lines as written (blank lines aside), in file
    /// order: a second read that finds another is reading a file rewritten in
    /// between, even one with as many records as before.
    pub lines_crc32: u32,
}

/// The checksum [`StreamEnd::lines_crc32`] is, built a line at a time.
#[derive(Clone, Default)]
pub struct LinesChecksum(crc32fast::Hasher);

impl LinesChecksum {
    /// Add a record's line, without its line end.
    pub fn line(&mut self, text: &[u8]) {
        self.0.update(text);
        // the line end too, so lines joined differently differ
        self.0.update(b"\n");
    }

    pub fn value(&self) -> u32 {
        self.0.clone().finalize()
    }
}

/// Hand every record of the results file at `path` to `each`, in file order. An
/// error of the file (a corrupt line, NUL bytes followed by more records, a line
/// longer than [`MAX_RECORD_LINE_BYTES`]) comes after every record before it was
/// handed over; an error of `each` ends the read at once.
pub fn for_each_record<E, F>(path: &Path, each: F) -> Result<StreamEnd, E>
where
    E: From<RecordError>,
    F: FnMut(StreamedRecord<'_>) -> Result<(), E>,
{
    read(path, None, parse_record, each)
}

/// [`for_each_record`] over the first `bytes` bytes of the file only: a second
/// read of a file a first read ended at [`StreamEnd::whole_bytes`].
pub fn for_each_record_within<E, F>(path: &Path, bytes: u64, each: F) -> Result<StreamEnd, E>
where
    E: From<RecordError>,
    F: FnMut(StreamedRecord<'_>) -> Result<(), E>,
{
    read(path, Some(bytes), parse_record, each)
}

/// Lines of one batch: their bytes one after another, and where each is.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// (line number, offset in the file, range in `bytes`)
    lines: Vec<(usize, u64, std::ops::Range<usize>)>,
}

/// Where the scan of the file's lines stands.
#[derive(Default)]
struct Scan {
    offset: u64,
    line_no: usize,
    /// Where lines that are not whole records began; a tail if nothing follows them.
    suspect: Option<(u64, usize)>,
    nul_padded: bool,
    eof: bool,
    checksum: LinesChecksum,
}

/// A batch of lines parsed, and the error of the file that ended it, if any.
struct Parsed<T> {
    batch: Batch,
    records: Vec<Result<T, RecordError>>,
    stop: Option<RecordError>,
}

/// A second read of a file a first read ([`for_each_record`]) ended at `bytes`,
/// each line read as a `T`: a type with only the fields the caller needs, quicker
/// to read than a whole record. The first read checked every record; this one
/// refuses a line that is no longer a `T`, naming it.
pub fn for_each_line_within<T, E, F>(path: &Path, bytes: u64, mut each: F) -> Result<StreamEnd, E>
where
    T: serde::de::DeserializeOwned + Send,
    E: From<RecordError>,
    F: FnMut(T) -> Result<(), E>,
{
    read(path, Some(bytes), parse_as::<T>, |s| each(s.record))
}

fn parse_as<T: serde::de::DeserializeOwned>(line: &str) -> Result<T, LineError> {
    serde_json::from_str(line).map_err(|e| LineError::Corrupt(e.to_string()))
}

fn read<T, E, F>(
    path: &Path,
    limit: Option<u64>,
    parse: fn(&str) -> Result<T, LineError>,
    mut each: F,
) -> Result<StreamEnd, E>
where
    T: Send,
    E: From<RecordError>,
    F: FnMut(Streamed<'_, T>) -> Result<(), E>,
{
    let file = File::open(path).map_err(|source| RecordError::Read {
        path: path.into(),
        source,
    })?;
    let source: Box<dyn Read + Send> = match limit {
        Some(bytes) => Box::new(file.take(bytes)),
        None => Box::new(file),
    };
    let mut reader = BufReader::with_capacity(1 << 20, source);
    let mut scan = Scan::default();
    // One thread reads and parses the next batch (on every core) while this one
    // hands the last over: what the caller does with a record overlaps the parsing.
    let (to_caller, batches) = std::sync::mpsc::sync_channel::<Parsed<T>>(1);
    std::thread::scope(|threads| {
        let scan = &mut scan;
        threads.spawn(move || {
            while !scan.eof {
                let mut batch = Batch::default();
                let stop = fill(path, &mut reader, scan, &mut batch);
                let records = batch
                    .lines
                    .par_iter()
                    .map(|(line_no, _, range)| {
                        let text =
                            std::str::from_utf8(&batch.bytes[range.clone()]).map_err(|_| {
                                RecordError::Corrupt {
                                    path: path.into(),
                                    line: *line_no,
                                    message: "not UTF-8 text".into(),
                                }
                            })?;
                        parse(text).map_err(|e| e.at(path, *line_no))
                    })
                    .collect();
                let last = stop.is_some();
                if to_caller
                    .send(Parsed {
                        batch,
                        records,
                        stop,
                    })
                    .is_err()
                    || last
                {
                    // the caller stopped, or the file's error ends the read
                    break;
                }
            }
        });
        let mut records = 0;
        for parsed in batches {
            for ((line_no, offset, range), record) in parsed.batch.lines.iter().zip(parsed.records)
            {
                let text =
                    std::str::from_utf8(&parsed.batch.bytes[range.clone()]).unwrap_or_default();
                each(Streamed {
                    line_no: *line_no,
                    offset: *offset,
                    text,
                    record: record?,
                })?;
                records += 1;
            }
            if let Some(e) = parsed.stop {
                return Err(e.into());
            }
        }
        Ok(records)
    })
    .map(|records| {
        let tail = scan.suspect.map(|(start, line)| PartialTail {
            offset: start,
            bytes: scan.offset - start,
            line_no: line,
            nul_padded: scan.nul_padded,
        });
        StreamEnd {
            records,
            whole_bytes: tail.as_ref().map_or(scan.offset, |t| t.offset),
            tail,
            lines_crc32: scan.checksum.value(),
        }
    })
}

/// Read lines into `batch` (emptied first) until it holds [`BATCH_BYTES`], the file
/// ends, or a line is an error of the file: that error is returned, to be raised
/// once the lines before it are handed over.
fn fill(
    path: &Path,
    reader: &mut impl BufRead,
    scan: &mut Scan,
    batch: &mut Batch,
) -> Option<RecordError> {
    let corrupt = |line: usize, message: String| RecordError::Corrupt {
        path: path.into(),
        line,
        message,
    };
    batch.bytes.clear();
    batch.lines.clear();
    while batch.bytes.len() < BATCH_BYTES {
        let from = batch.bytes.len();
        let n = match (&mut *reader)
            .take(MAX_RECORD_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut batch.bytes)
        {
            Ok(n) => n,
            Err(e) => {
                scan.eof = true;
                return Some(corrupt(scan.line_no + 1, e.to_string()));
            }
        };
        if n == 0 {
            scan.eof = true;
            return None;
        }
        scan.line_no += 1;
        let start = scan.offset;
        scan.offset += n as u64;
        let line = &batch.bytes[from..];
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > MAX_RECORD_LINE_BYTES {
            batch.bytes.truncate(from);
            scan.eof = true;
            return Some(corrupt(
                scan.line_no,
                format!(
                    "line is longer than {MAX_RECORD_LINE_BYTES} bytes: not a joulebench record"
                ),
            ));
        }
        let content = if complete { &line[..n - 1] } else { line };
        if content.iter().all(u8::is_ascii_whitespace) {
            batch.bytes.truncate(from);
            continue;
        }
        let has_nul = content.contains(&0);
        if !complete || has_nul {
            scan.nul_padded |= has_nul;
            scan.suspect.get_or_insert((start, scan.line_no));
            batch.bytes.truncate(from);
            continue;
        }
        if let Some((_, first)) = scan.suspect {
            batch.bytes.truncate(from);
            scan.eof = true;
            return Some(corrupt(
                first,
                "an incomplete record or NUL bytes, followed by more records".into(),
            ));
        }
        let end = batch.bytes.len() - 1;
        scan.checksum.line(&batch.bytes[from..end]);
        batch.lines.push((scan.line_no, start, from..end));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::MeterSource;
    use crate::workload::MatmulShape;

    fn skipped() -> Record {
        let workload = Workload::Matmul(MatmulShape {
            batch: 1,
            m: 64,
            n: 64,
            k: 64,
        });
        Record {
            schema: SCHEMA_VERSION,
            tool: crate::sweep::tool_info(),
            host: "h".into(),
            unix_time_s: 1.7e9,
            command: "joulebench sweep".into(),
            simulated: true,
            status: PointStatus::Skipped,
            reason: Some("test".into()),
            device: DeviceInfo {
                name: "d".into(),
                ..DeviceInfo::default()
            },
            backend: "sim".into(),
            kernel: "k".into(),
            kernel_variant: None,
            vendor_kernel: false,
            precision: Precision::F32,
            workload,
            group: workload.shape_label(),
            batch_size: 1,
            seed: 1,
            inputs: Default::default(),
            flop: workload.flop().unwrap_or(0),
            min_bytes: 1,
            power_cap: PowerCapRecord {
                requested: PowerCap::Default,
                requested_w: None,
                enforced_w: None,
                default_w: None,
            },
            meter: MeterInfo {
                source: MeterSource::Simulated,
                update_period_s: 0.1,
                check: None,
                host: None,
            },
            idle: None,
            verification: None,
            measurement: None,
            flags: Vec::new(),
            protocol: ProtocolConfig::default(),
            repeat: None,
            overhead: None,
            clocks: ClockRecord::default(),
        }
    }

    fn line() -> String {
        serde_json::to_string(&skipped()).unwrap()
    }

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        std::fs::write(&p, bytes).unwrap();
        (dir, p)
    }

    #[test]
    fn an_incomplete_last_line_is_a_tail_at_the_end_of_the_whole_records() {
        let whole = format!("{}\n{}\n", line(), line());
        let partial = &line()[..40];
        let (_d, p) = file_with(format!("{whole}{partial}").as_bytes());
        let f = read_results_file(&p).unwrap();
        assert_eq!(f.lines.len(), 2);
        let tail = f.tail.unwrap();
        assert_eq!(tail.offset, whole.len() as u64);
        assert_eq!(tail.bytes, 40);
        assert_eq!(tail.line_no, 3);
        assert!(!tail.nul_padded);
        assert!(tail
            .describe(&p)
            .contains(&format!("byte offset {}", whole.len())));
        // a file of whole records has no tail
        let (_d, p) = file_with(whole.as_bytes());
        assert_eq!(read_results_file(&p).unwrap().tail, None);
    }

    #[test]
    fn nul_padding_after_a_power_loss_is_a_tail_but_nul_bytes_before_records_are_not() {
        let whole = format!("{}\n", line());
        for tail in [
            vec![0u8; 4096],
            [&line().as_bytes()[..100], &[0u8; 300][..]].concat(),
            [&[0u8; 10][..], b"\n", &[0u8; 10][..]].concat(),
        ] {
            let (_d, p) = file_with(&[whole.as_bytes(), &tail].concat());
            let f = read_results_file(&p).unwrap();
            assert_eq!(f.lines.len(), 1);
            let t = f.tail.unwrap();
            assert_eq!((t.offset, t.bytes), (whole.len() as u64, tail.len() as u64));
            assert!(t.nul_padded);
        }
        let (_d, p) = file_with(format!("{whole}\0\0\0\n{whole}").as_bytes());
        let e = read_results_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("r.jsonl:2") && e.contains("followed by more records"),
            "{e}"
        );
    }

    #[test]
    fn a_line_longer_than_the_limit_is_refused_without_reading_it_whole() {
        let mut bytes = format!("{}\n{{\"schema\": 2, \"host\": \"", line()).into_bytes();
        bytes.resize(bytes.len() + MAX_RECORD_LINE_BYTES + 10, b'x');
        bytes.extend_from_slice(b"\"}\n");
        let (_d, p) = file_with(&bytes);
        let e = read_results_file(&p).unwrap_err().to_string();
        assert!(e.contains("r.jsonl:2") && e.contains("longer than"), "{e}");
    }

    #[test]
    fn a_record_says_how_its_inputs_were_drawn_and_older_ones_read_as_normal() {
        let mut r = skipped();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["inputs"], "normal");
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("inputs");
        let back: Record = serde_json::from_value(old).unwrap();
        assert_eq!(back.inputs, InputDistribution::Normal);
        // a point on zeros is another point for --resume
        let normal_key = r.setting_key();
        r.inputs = InputDistribution::Zeros;
        assert_eq!(r.setting_key(), format!("{normal_key}|inputs=zeros"));
        assert_eq!(serde_json::to_value(&r).unwrap()["inputs"], "zeros");
    }

    #[test]
    fn numbers_no_measurement_produces_are_refused_with_their_line() {
        let mut measured = skipped();
        measured.status = PointStatus::Measured;
        measured.flop = 0;
        assert!(measured.check_numbers().unwrap_err().contains("0 FLOP"));
        let mut r = skipped();
        r.power_cap.enforced_w = Some(-5.0);
        assert!(r.check_numbers().unwrap_err().contains("enforced_w = -5"));
        let text = format!("{}\n{}\n", line(), serde_json::to_string(&r).unwrap());
        let (_d, p) = file_with(text.as_bytes());
        let e = read_results_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("r.jsonl:2") && e.contains("cannot come from a measurement"),
            "{e}"
        );
    }

    /// How protocol settings were read before they were read field by field.
    fn protocol_through_a_value(value: serde_json::Value) -> Result<ProtocolConfig, String> {
        let mut value = value;
        let known = serde_json::to_value(ProtocolConfig::default()).unwrap();
        if let (Some(map), Some(known)) = (value.as_object_mut(), known.as_object()) {
            map.retain(|k, _| known.contains_key(k));
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn protocol_settings_read_as_they_were_read_through_a_value() {
        let line = serde_json::to_value(skipped()).unwrap();
        let cases = [
            serde_json::json!({"warmup_s": 2.5, "dropped_setting": [1, {"x": 2}], "min_windows": 4}),
            serde_json::json!({}),
            serde_json::json!({"warmup_s": "slow"}),
            serde_json::json!({"stop_rule": "no-such-rule", "gone": 1}),
            serde_json::json!({"min_windows": -1}),
            serde_json::json!(5),
            serde_json::json!("x"),
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!(2.5),
            serde_json::json!([1.0, 2.0]),
            serde_json::json!([]),
        ];
        for protocol in cases {
            let mut v = line.clone();
            v["protocol"] = protocol.clone();
            let text = serde_json::to_string(&v).unwrap();
            let via_value = match protocol_through_a_value(protocol.clone()) {
                Ok(p) => Ok(p),
                Err(e) => Err(LineError::Corrupt(e).at(Path::new("f"), 1).to_string()),
            };
            let now = parse_record(&text)
                .map(|r| r.protocol)
                .map_err(|e| e.at(Path::new("f"), 1).to_string());
            assert_eq!(now, via_value, "{protocol}");
        }
    }

    #[test]
    fn the_direct_parse_accepts_and_refuses_the_lines_the_general_one_does() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/sim/sim-h200-quick.jsonl"),
        )
        .unwrap();
        let good = text.lines().next().unwrap().to_string();
        let object: serde_json::Value = serde_json::from_str(&good).unwrap();
        let with = |key: &str, v: serde_json::Value| {
            let mut o = object.clone();
            o[key] = v;
            serde_json::to_string(&o).unwrap()
        };
        // the fields in order as an array fill a Record too: the general parse
        // refuses it (no "schema" field), so the direct one must not take it
        let order = "schema tool host unix_time_s command simulated status reason device backend \
                     kernel kernel_variant vendor_kernel precision workload group batch_size seed \
                     inputs flop min_bytes power_cap meter idle verification measurement flags \
                     protocol repeat overhead clocks";
        let fields: Vec<serde_json::Value> = order
            .split_whitespace()
            .map(|k| object.get(k).cloned().unwrap_or_default())
            .collect();
        let array = serde_json::to_string(&fields).unwrap();
        assert!(serde_json::from_str::<Record>(&array).is_ok());
        let mut windows = object.clone();
        windows["measurement"]["windows"][0]["seconds"] = serde_json::json!(-1.0);
        let lines = [
            good.clone(),
            format!("  {good}"),
            array,
            with("schema", serde_json::json!(7)),
            with("schema", serde_json::json!(2.0)),
            with("schema", serde_json::json!(5_000_000_000u64)),
            good.replacen("{", "{\"schema\":1,", 1),
            with("flop", serde_json::json!(12)),
            with("precision", serde_json::json!("f64")),
            serde_json::to_string(&windows).unwrap(),
            format!("{good} x"),
            "{\"schema\": 2}".into(),
        ];
        let outcome = |r: Result<Record, LineError>| match r {
            Ok(r) => Ok(r),
            Err(e) => Err(e.at(Path::new("f"), 1).to_string()),
        };
        for l in &lines {
            assert_eq!(
                outcome(parse_record(l)),
                outcome(parse_record_value(l)),
                "{l}"
            );
        }
        assert!(parse_record(&good).is_ok());
    }

    #[test]
    fn cutting_a_tail_keeps_every_whole_record_and_a_copy_of_the_tail() {
        let whole = format!("{}\n{}\n", line(), line());
        let (d, p) = file_with(format!("{whole}{{\"schema\":2,\"ho").as_bytes());
        let f = read_results_file(&p).unwrap();
        let mut w = JsonlWriter::append_exclusive(&p).unwrap();
        let copy = w.cut_partial_tail(f.tail.as_ref().unwrap()).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), whole);
        assert_eq!(
            std::fs::read_to_string(&copy).unwrap(),
            "{\"schema\":2,\"ho"
        );
        assert_eq!(copy.parent(), Some(d.path()));
        w.write(&skipped()).unwrap();
        assert_eq!(read_results_file(&p).unwrap().lines.len(), 3);
        // a second writer of the same file is refused while the first holds it
        #[cfg(target_os = "linux")]
        match JsonlWriter::append_exclusive(&p) {
            Err(RecordError::Locked { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
