//! The record of DESIGN.md §5: one self-describing JSON object per measured (or
//! skipped, or failed) point, appended and flushed one at a time so a killed sweep
//! loses nothing it finished. Readers name the file and line of anything corrupt.

use crate::device::DeviceInfo;
use crate::meter::{HostMeterInfo, MeterAgreement, MeterSource};
use crate::power::PowerCap;
use crate::precision::Precision;
use crate::protocol::{IdleBaseline, Measurement, ProtocolConfig, ValidityFlag};
use crate::verify::Verification;
use crate::workload::Workload;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
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

/// The protocol settings of a record, keeping the ones this version knows.
fn lenient_protocol<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ProtocolConfig, D::Error> {
    let mut value = serde_json::Value::deserialize(d)?;
    let known =
        serde_json::to_value(ProtocolConfig::default()).map_err(serde::de::Error::custom)?;
    if let (Some(map), Some(known)) = (value.as_object_mut(), known.as_object()) {
        map.retain(|k, _| known.contains_key(k));
    }
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

impl Record {
    /// What identifies a point for `--resume` (with its repeat, if any).
    pub fn point_key(&self) -> String {
        let key = point_key(
            &self.device,
            &self.backend,
            &self.kernel,
            self.precision,
            &self.workload,
            &self.power_cap.requested,
        );
        repeat_key(key, self.repeat)
    }

    /// The point without its repeat: what repeats of one setting share.
    pub fn setting_key(&self) -> String {
        point_key(
            &self.device,
            &self.backend,
            &self.kernel,
            self.precision,
            &self.workload,
            &self.power_cap.requested,
        )
    }

    /// The record's flags as this version defines them. Schema-1 records flagged a
    /// card at its power limit `throttled`: where NVML's `sw-power-cap` was the only
    /// reason, that reads as `power-limited` (information) now.
    pub fn flags_now(&self) -> Vec<ValidityFlag> {
        let Some(m) = self.measurement.as_ref() else {
            return self.flags.clone();
        };
        if m.method != crate::protocol::WindowMethod::Gapped {
            return self.flags.clone();
        }
        let reasons = &m.telemetry.throttle_reasons;
        let power_only = !reasons.is_empty()
            && reasons
                .iter()
                .all(|r| crate::meter::is_power_limit_reason(r));
        let mut flags: Vec<ValidityFlag> = self
            .flags
            .iter()
            .map(|&f| match f {
                ValidityFlag::Throttled if power_only => ValidityFlag::PowerLimited,
                f => f,
            })
            .collect();
        if power_only && !flags.contains(&ValidityFlag::PowerLimited) {
            flags.push(ValidityFlag::PowerLimited);
        }
        flags.sort();
        flags.dedup();
        flags
    }

    /// Which window method produced this record's numbers (`gapped` for schema 1).
    pub fn window_method(&self) -> Option<crate::protocol::WindowMethod> {
        self.measurement.as_ref().map(|m| m.method)
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
}

/// One record of a results file, with its line as written (so a tool that copies
/// records keeps fields this version does not know) and its line number.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordLine {
    pub line_no: usize,
    pub text: String,
    pub record: Record,
}

/// Read every record of a JSONL file; blank lines are allowed, anything else that
/// is not a record of a readable schema is an error naming its line.
pub fn read_records(path: &Path) -> Result<Vec<Record>, RecordError> {
    Ok(read_record_lines(path)?
        .into_iter()
        .map(|l| l.record)
        .collect())
}

/// [`read_records`], keeping each record's line.
pub fn read_record_lines(path: &Path) -> Result<Vec<RecordLine>, RecordError> {
    let file = File::open(path).map_err(|source| RecordError::Read {
        path: path.into(),
        source,
    })?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| RecordError::Corrupt {
            path: path.into(),
            line: line_no,
            message: e.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record = parse_record(&line).map_err(|e| e.at(path, line_no))?;
        records.push(RecordLine {
            line_no,
            text: line,
            record,
        });
    }
    Ok(records)
}

/// Why one line is not a record, before its file and line are known.
enum LineError {
    Corrupt(String),
    Schema(u64),
}

impl LineError {
    fn at(self, path: &Path, line: usize) -> RecordError {
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

fn parse_record(line: &str) -> Result<Record, LineError> {
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
    serde_json::from_value(value).map_err(|e| LineError::Corrupt(e.to_string()))
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

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl RecordSink for JsonlWriter {
    fn write(&mut self, record: &Record) -> Result<(), RecordError> {
        let mut line = serde_json::to_vec(record).map_err(|e| RecordError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        // One write call per record: a killed process leaves whole lines behind.
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
            .map_err(|source| RecordError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

/// Points already present in a results file, for `--resume`.
pub fn existing_keys(path: &Path) -> Result<HashSet<String>, RecordError> {
    if !path.exists() {
        return Ok(HashSet::new());
    }
    Ok(read_records(path)?.iter().map(Record::point_key).collect())
}
