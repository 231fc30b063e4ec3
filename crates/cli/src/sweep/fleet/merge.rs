//! Gathers the workers' per-device files into the sweep's `--out`: each record's line
//! is appended as the worker wrote it, never re-encoded, and a line `--out` already
//! holds (a resumed sweep merges its device files again) is not appended twice.

use joulebench_core::record::{read_record_lines, JsonlWriter, RecordError};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Records appended to `--out` now.
    pub appended: usize,
    /// Records of the device files `--out` already held.
    pub already_there: usize,
}

/// The record lines of a results file, each checked as a record (schema version,
/// file:line of anything corrupt).
fn record_lines(path: &Path) -> Result<Vec<String>, RecordError> {
    Ok(read_record_lines(path)?
        .into_iter()
        .map(|l| l.text)
        .collect())
}

/// Append to `out` (held by the sweep under its lock) every record line of `parts`
/// it does not hold yet. Lines, not point keys: two GPUs that cannot be told apart
/// (no UUID, no PCI bus id) keep both their records. Missing parts (a worker that
/// failed before its first point) are passed over.
pub fn append_new_records(
    out: &mut JsonlWriter,
    parts: &[PathBuf],
) -> Result<MergeOutcome, RecordError> {
    let mut seen: HashSet<String> = record_lines(out.path())?.into_iter().collect();
    let mut outcome = MergeOutcome::default();
    for part in parts.iter().filter(|p| p.exists()) {
        for line in record_lines(part)? {
            if seen.contains(&line) {
                outcome.already_there += 1;
                continue;
            }
            // one synced write per record, as the sweep writes: a killed merge leaves
            // whole lines
            out.write_line(&line)?;
            outcome.appended += 1;
            seen.insert(line);
        }
    }
    Ok(outcome)
}
