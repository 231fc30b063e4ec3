//! What a results file already holds for a sweep (docs/ARCHITECTURE.md §5): the file
//! opened for appending under its lock, an incomplete last record cut off (after a
//! copy is kept beside it), its records checked to have been measured as this sweep
//! measures — same protocol settings, seed and repeat count — and the keys of the
//! points it holds, which the sweep skips.

use crate::device::DeviceInfo;
use crate::plan::SweepConfig;
use crate::protocol::ProtocolConfig;
use crate::record::{read_results_file, JsonlWriter, PartialTail, RecordError, ResultsFile};
use crate::sweep::input_seed;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A results file opened for a sweep: the writer (holding the file's lock for as
/// long as it lives) and what the file held.
pub struct OpenedResults {
    pub writer: JsonlWriter,
    /// Every complete record already there (empty unless resuming).
    pub existing: ResultsFile,
    /// The incomplete tail cut off before appending, and where its copy is.
    pub cut: Option<(PartialTail, PathBuf)>,
}

/// Open `out` for appending under its lock; with `resume`, read what it holds and
/// cut off an incomplete tail (every complete record is kept, the tail copied aside).
/// A second writer of the file is refused with [`RecordError::Locked`].
pub fn open_results(out: &Path, resume: bool) -> Result<OpenedResults, RecordError> {
    let mut writer = JsonlWriter::append_exclusive(out)?;
    let (existing, cut) = match resume {
        true => read_to_resume(&mut writer)?,
        false => (ResultsFile::default(), None),
    };
    Ok(OpenedResults {
        writer,
        existing,
        cut,
    })
}

/// What the file `writer` appends to holds, its incomplete tail (if any) cut off
/// after a copy is kept beside it: the tail and the copy's path.
pub fn read_to_resume(
    writer: &mut JsonlWriter,
) -> Result<(ResultsFile, Option<(PartialTail, PathBuf)>), RecordError> {
    let mut existing = read_results_file(writer.path())?;
    let cut = match existing.tail.take() {
        Some(tail) => {
            let copy = writer.cut_partial_tail(&tail)?;
            Some((tail, copy))
        }
        None => None,
    };
    Ok((existing, cut))
}

/// A record of the results file measured otherwise than this sweep would measure it:
/// its points and the sweep's would not be comparable.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}:{line} was measured {how}", path.display())]
pub struct ResumeMismatch {
    pub path: PathBuf,
    pub line: usize,
    /// "with other protocol settings (min_window_s 1 in the file, 0.5 now)", …
    pub how: String,
}

/// The first record of `file` (at `path`) from this device and backend measured
/// otherwise than `cfg` and `repeat` measure: other protocol settings, another seed,
/// another repeat count.
pub fn check_same_measurement(
    file: &ResultsFile,
    path: &Path,
    device: &DeviceInfo,
    backend: &str,
    cfg: &SweepConfig,
    repeat: u32,
) -> Result<(), ResumeMismatch> {
    let ours = device.key();
    for line in &file.lines {
        let r = &line.record;
        if r.device.key() != ours || r.backend != backend {
            continue;
        }
        let mismatch = |how: String| ResumeMismatch {
            path: path.to_path_buf(),
            line: line.line_no,
            how,
        };
        if r.protocol != cfg.protocol {
            return Err(mismatch(format!(
                "with other protocol settings ({})",
                protocol_diff(&r.protocol, &cfg.protocol)
            )));
        }
        if r.seed != input_seed(cfg.seed, &r.workload, r.precision) {
            return Err(mismatch(format!(
                "with another seed than this command's ({})",
                cfg.seed
            )));
        }
        let repeats_ok = match (r.repeat, repeat) {
            (None, 1) => true,
            (Some(n), k) => k > 1 && n <= k,
            (None, _) => false,
        };
        if !repeats_ok {
            return Err(mismatch(format!(
                "{} and this command asks for --repeat {repeat}",
                match r.repeat {
                    Some(n) => format!("as repeat {n} of a --repeat sweep"),
                    None => "once per point (no --repeat)".into(),
                }
            )));
        }
    }
    Ok(())
}

/// The keys of every point `file` holds (with its repeat): what a sweep skips.
pub fn done_keys(file: &ResultsFile) -> HashSet<String> {
    file.records().map(|r| r.point_key()).collect()
}

/// "min_window_s 1 in the file, 0.5 now; …"
fn protocol_diff(file: &ProtocolConfig, now: &ProtocolConfig) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(file), serde_json::to_value(now))
    else {
        return "they differ".into();
    };
    let diffs: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "{k} {v} in the file, {} now",
                b.get(k).cloned().unwrap_or_default()
            )
        })
        .collect();
    if diffs.is_empty() {
        "they differ".into()
    } else {
        diffs.join("; ")
    }
}
