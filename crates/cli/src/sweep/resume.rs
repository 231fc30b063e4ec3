//! The results file of a sweep as the command line opens it: held under its lock for
//! the whole sweep (a second writer is refused, naming the first), an incomplete last
//! record cut off before `--resume` appends (after copying it aside), and a file
//! measured with other protocol settings, another seed or another `--repeat` refused
//! unless the user says to mix them (`core::resume` decides; this says it).

use crate::error::{usage, CliError};
use joulebench_core::record::{JsonlWriter, RecordError, ResultsFile};
use joulebench_core::resume::read_to_resume;
use joulebench_device::PlannedSweep;
use std::path::Path;

/// Open `out` for appending under its lock; with `resume`, read what it holds and
/// cut off an incomplete tail (every complete record is kept).
pub fn open_results(out: &Path, resume: bool) -> Result<(JsonlWriter, ResultsFile), CliError> {
    let mut writer = JsonlWriter::append_exclusive(out).map_err(|e| match e {
        RecordError::Locked { .. } => CliError::from(e),
        // a path that cannot be opened for writing is refused before anything runs
        other => usage(other),
    })?;
    if !resume {
        return Ok((writer, ResultsFile::default()));
    }
    let (existing, cut) = read_to_resume(&mut writer)?;
    if let Some((tail, copy)) = &cut {
        eprintln!("warning: {}", tail.describe(out));
        eprintln!(
            "--resume: cut the incomplete last record ({} bytes from byte offset {}) off {}; \
             a copy is in {}",
            tail.bytes,
            tail.offset,
            out.display(),
            copy.display()
        );
    }
    Ok((writer, existing))
}

/// Skip what `file` already holds, once it is shown to have been measured as this
/// command measures.
pub fn resume(
    planned: &mut PlannedSweep,
    file: &ResultsFile,
    out: &Path,
    allow_mismatch: bool,
) -> Result<usize, CliError> {
    planned.resume_from(file, out, allow_mismatch).map_err(|e| {
        usage(format!(
            "--resume: {e}; its points and this command's would not be comparable. \
             Resume with the settings the file was measured with, write to another --out, or \
             pass --allow-config-mismatch to add points measured differently"
        ))
    })
}
