//! The one place output paths are checked and written: a results file that exists
//! is continued only with `--resume`, a report or settings file replaced only with
//! `--force`, a directory never taken for a file, and a written file is whole or
//! absent.

use crate::error::{io, usage, CliError};
use std::path::{Path, PathBuf};

/// What an existing output file may become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Refused; `hint` says which flag would continue or replace it.
    Refuse { hint: &'static str },
    /// Continued (a sweep's `--resume`).
    Continue,
    /// Replaced (`--force`).
    Replace,
}

/// Refuse a directory, and an existing file unless `existing` allows it, before
/// any work is done.
pub fn check_output(path: &Path, flag: &str, existing: Existing) -> Result<(), CliError> {
    if path.is_dir() {
        return Err(usage(format!(
            "{flag} {} is a directory; give a file path",
            path.display()
        )));
    }
    if let (true, Existing::Refuse { hint }) = (path.exists(), existing) {
        return Err(usage(format!(
            "{flag} {} already exists; joulebench never overwrites a file silently: {hint}",
            path.display()
        )));
    }
    Ok(())
}

/// An output that is one of the inputs is refused, even with `--force`: writing it
/// would replace what is being read (a merge over its own source loses records).
pub fn refuse_input_as_output(out: &Path, inputs: &[PathBuf], flag: &str) -> Result<(), CliError> {
    match inputs.iter().find(|input| same_file(out, input)) {
        Some(input) => Err(usage(format!(
            "{flag} {} is also an input ({}); joulebench never writes over a file it reads, \
             even with --force: choose another name",
            out.display(),
            input.display()
        ))),
        None => Ok(()),
    }
}

/// Whether two paths name one file (links and `..` included); a missing path is no
/// input's file.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// [`check_output`] for a report, plot document or settings file: `--force` replaces.
pub fn check_new_output(path: &Path, force: bool, flag: &str) -> Result<(), CliError> {
    let existing = if force {
        Existing::Replace
    } else {
        Existing::Refuse {
            hint: "choose a new name or pass --force",
        }
    };
    check_output(path, flag, existing)
}

/// Write `text` to `path` through a temporary file in the same directory, so the
/// file is whole or absent, even when it was also one of the inputs.
pub fn write_output(path: &Path, text: &str, force: bool, flag: &str) -> Result<(), CliError> {
    check_new_output(path, force, flag)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| io(format!("cannot create {}: {e}", dir.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let werr = |e: std::io::Error| io(format!("cannot write {}: {e}", path.display()));
    std::fs::write(&tmp, text).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        werr(e)
    })
}
