//! Gathers the workers' per-device files into the sweep's `--out`: each record's line
//! is appended as the worker wrote it, never re-encoded, and a point already in
//! `--out` (a resumed sweep) is not appended twice.

use joulebench_core::record::{existing_keys, read_records, RecordError};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Records appended to `--out` now.
    pub appended: usize,
    /// Records of the device files `--out` already held.
    pub already_there: usize,
}

/// Append to `out` every record of `parts` whose point it does not hold yet. Missing
/// parts (a worker that failed before its first point) are passed over; `out` is
/// created only when there is something to write.
pub fn append_new_records(out: &Path, parts: &[PathBuf]) -> Result<MergeOutcome, RecordError> {
    let mut keys = existing_keys(out)?;
    let mut file: Option<File> = None;
    let mut outcome = MergeOutcome::default();
    let werr = |source| RecordError::Write {
        path: out.into(),
        source,
    };
    for part in parts.iter().filter(|p| p.exists()) {
        // every line is checked as a record (schema, file:line of anything corrupt)
        let records = read_records(part)?;
        let text = std::fs::read_to_string(part).map_err(|source| RecordError::Read {
            path: part.clone(),
            source,
        })?;
        let lines = text.lines().filter(|l| !l.trim().is_empty());
        for (record, line) in records.iter().zip(lines) {
            if !keys.insert(record.point_key()) {
                outcome.already_there += 1;
                continue;
            }
            let f = match &mut file {
                Some(f) => f,
                None => file.insert(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(out)
                        .map_err(werr)?,
                ),
            };
            // one write per record, as the sweep writes: a killed merge leaves whole lines
            f.write_all(format!("{line}\n").as_bytes()).map_err(werr)?;
            outcome.appended += 1;
        }
    }
    if let Some(f) = file {
        f.sync_data().map_err(werr)?;
    }
    Ok(outcome)
}
