//! Reading a results file (docs/ARCHITECTURE.md §5): every line checked to be a record
//! of a readable schema with numbers a measurement can produce, and an incomplete
//! last line — a crash or a full disk in the middle of a write — told apart from
//! corruption, so readers skip it and `--resume` can cut it off.

use super::error::RecordError;
use super::schema::{Record, READABLE_SCHEMAS, SCHEMA_VERSION};
use super::stream::for_each_record;
use crate::run_record::{RunRecord, RUN_RECORD_KIND, RUN_RECORD_SCHEMA};
use std::path::{Path, PathBuf};

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

/// A run record of a results file, with its line as written and its line number.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecordLine {
    pub line_no: usize,
    pub text: String,
    pub record: RunRecord,
}

/// A results file as read: its point records, its run records (`joulebench run`),
/// and the incomplete tail it ended with, if any.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultsFile {
    pub lines: Vec<RecordLine>,
    pub runs: Vec<RunRecordLine>,
    pub tail: Option<PartialTail>,
}

impl ResultsFile {
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.lines.iter().map(|l| &l.record)
    }
}

/// Read every point record of a JSONL file; blank lines are allowed, anything else
/// that is not a record of a readable schema is an error naming its line. Run
/// records and an incomplete tail are skipped (see [`read_results_file`] for both).
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
    out.runs = end.runs;
    out.tail = end.tail;
    Ok(out)
}

/// Why one line is not a record, before its file and line are known.
pub(super) enum LineError {
    Corrupt(String),
    Schema(u64),
}

impl LineError {
    pub(super) fn at(self, path: &Path, line: usize) -> RecordError {
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

/// A line of a results file: a kernel point (as a `T`: a whole [`Record`], or the
/// fields a second read needs), or a run of `joulebench run`.
pub(super) enum Parsed<T> {
    Point(T),
    Run(Box<RunRecord>),
}

/// One line of a results file. The common case, a point record, is parsed straight
/// into a [`Record`]; any other line is parsed again through a JSON value, which says
/// what it is (a run record) or why it is not a record (the schema first), so both
/// ways accept and refuse the same lines.
pub(super) fn parse_line(line: &str) -> Result<Parsed<Record>, LineError> {
    // a JSON array would fill a record's fields in order: only an object is a record
    if line.trim_start().starts_with('{') {
        if let Ok(record) = serde_json::from_str::<Record>(line) {
            if READABLE_SCHEMAS.contains(&u64::from(record.schema)) {
                record.check_numbers().map_err(LineError::Corrupt)?;
                return Ok(Parsed::Point(record));
            }
        }
    }
    parse_line_value(line)
}

/// [`parse_line`] through a JSON value.
pub(super) fn parse_line_value(line: &str) -> Result<Parsed<Record>, LineError> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| LineError::Corrupt(format!("not JSON ({e})")))?;
    if value.get("kind").and_then(|k| k.as_str()) == Some(RUN_RECORD_KIND) {
        return parse_run(value).map(|r| Parsed::Run(Box::new(r)));
    }
    parse_record(value).map(Parsed::Point)
}

/// A run record: its own schema, checked as a point's numbers are.
fn parse_run(value: serde_json::Value) -> Result<RunRecord, LineError> {
    match value.get("schema").and_then(|v| v.as_u64()) {
        Some(v) if v == RUN_RECORD_SCHEMA as u64 => {}
        Some(found) => {
            return Err(LineError::Corrupt(format!(
                "a `joulebench run` record of schema {found}; this joulebench reads run records of schema {RUN_RECORD_SCHEMA}: use a newer joulebench"
            )))
        }
        None => {
            return Err(LineError::Corrupt(
                "not a joulebench record (no \"schema\" field)".into(),
            ))
        }
    }
    let record: RunRecord =
        serde_json::from_value(value).map_err(|e| LineError::Corrupt(e.to_string()))?;
    record.check_numbers().map_err(LineError::Corrupt)?;
    Ok(record)
}

fn parse_record(value: serde_json::Value) -> Result<Record, LineError> {
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
