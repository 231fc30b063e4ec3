//! The results file of a sweep: held under an advisory lock for the whole sweep (a
//! second writer is refused, naming the first), an incomplete last record cut off
//! before `--resume` appends (after copying it aside), and a file measured with
//! other protocol settings, another seed or another `--repeat` refused unless the
//! user says to mix them.

use crate::error::{usage, CliError};
use crate::results::read_results_warn;
use joulebench_core::plan::SweepConfig;
use joulebench_core::record::{JsonlWriter, RecordError, ResultsFile};
use joulebench_core::sweep::input_seed;
use joulebench_core::DeviceInfo;
use std::collections::HashSet;
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
    let mut file = read_results_warn(out)?;
    if let Some(tail) = file.tail.take() {
        let copy = writer.cut_partial_tail(&tail)?;
        eprintln!(
            "--resume: cut the incomplete last record ({} bytes from byte offset {}) off {}; \
             a copy is in {}",
            tail.bytes,
            tail.offset,
            out.display(),
            copy.display()
        );
    }
    Ok((writer, file))
}

/// The keys of the points `file` already holds, after checking that its records of
/// this device and backend were measured as this command would measure them.
pub fn points_done(
    file: &ResultsFile,
    out: &Path,
    device: &DeviceInfo,
    backend: &str,
    cfg: &SweepConfig,
    repeat: u32,
    allow_mismatch: bool,
) -> Result<HashSet<String>, CliError> {
    if !allow_mismatch {
        if let Some(why) = mismatch(file, device, backend, cfg, repeat) {
            return Err(usage(format!(
                "--resume: {}:{why}; its points and this command's would not be comparable. \
                 Resume with the settings the file was measured with, write to another --out, or \
                 pass --allow-config-mismatch to add points measured differently",
                out.display()
            )));
        }
    }
    Ok(file.records().map(|r| r.point_key()).collect())
}

/// The first record of this device and backend measured differently, and how.
fn mismatch(
    file: &ResultsFile,
    device: &DeviceInfo,
    backend: &str,
    cfg: &SweepConfig,
    repeat: u32,
) -> Option<String> {
    let ours = device.key();
    for line in &file.lines {
        let r = &line.record;
        if r.device.key() != ours || r.backend != backend {
            continue;
        }
        let at = line.line_no;
        if r.protocol != cfg.protocol {
            return Some(format!(
                "{at} was measured with other protocol settings ({})",
                protocol_diff(&r.protocol, &cfg.protocol)
            ));
        }
        if r.seed != input_seed(cfg.seed, &r.workload, r.precision) {
            return Some(format!(
                "{at} was measured with another seed than this command's ({})",
                cfg.seed
            ));
        }
        let repeats_ok = match (r.repeat, repeat) {
            (None, 1) => true,
            (Some(n), k) => k > 1 && n <= k,
            (None, _) => false,
        };
        if !repeats_ok {
            return Some(format!(
                "{at} was measured {} and this command asks for --repeat {repeat}",
                match r.repeat {
                    Some(n) => format!("as repeat {n} of a --repeat sweep"),
                    None => "once per point (no --repeat)".into(),
                }
            ));
        }
    }
    None
}

/// "min_window_s 1 in the file, 0.5 now; …"
fn protocol_diff<T: serde::Serialize>(file: &T, now: &T) -> String {
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
