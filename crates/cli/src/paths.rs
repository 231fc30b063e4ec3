//! The one place output paths are checked and written. A results file that exists
//! is continued only with `--resume`, a report or settings file replaced only with
//! `--force`; whatever `--force` says, nothing is ever written onto one of the
//! command's inputs, onto another of its outputs, onto a results file another
//! process holds (a sweep writing it), or onto anything but a regular file (a
//! device, a FIFO, a symbolic link's target). A written file is whole or absent:
//! written to a temporary file beside it, renamed into place, and removed on
//! failure. Standard output is checked too: a write that fails is an I/O error.

use crate::error::{io, usage, CliError};
use crate::out::WriteFail;
use joulebench_core::text::{shorten, ECHO_MAX_CHARS};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

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

/// A path as messages show it: long ones shortened.
pub fn shown(path: &Path) -> String {
    shorten(&path.display().to_string(), ECHO_MAX_CHARS)
}

/// Refuse a directory, an existing file unless `existing` allows it, anything but a
/// regular file whatever `existing` says, and a results file another process holds
/// — before any work is done.
pub fn check_output(path: &Path, flag: &str, existing: Existing) -> Result<(), CliError> {
    let p = shown(path);
    if path.is_dir() {
        return Err(usage(format!(
            "{flag} {p} is a directory; give a file path"
        )));
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        // continuing a results file through a link is the user's own arrangement;
        // replacing would write wherever the link points
        let target_regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
        if !(existing == Existing::Continue && target_regular) {
            return Err(usage(format!(
                "{flag} {p} is a symbolic link; joulebench never writes through one, even with \
                 --force: name the file itself, or remove the link"
            )));
        }
    } else if !kind.is_file() {
        return Err(usage(format!(
            "{flag} {p} is {}, not a regular file; joulebench writes only regular files, even \
             with --force: choose a file path",
            describe_kind(&meta)
        )));
    }
    if let Existing::Refuse { hint } = existing {
        return Err(usage(format!(
            "{flag} {p} already exists; joulebench never overwrites a file silently: {hint}"
        )));
    }
    refuse_held(path, flag, existing)
}

/// A results file a live process holds (a sweep appending to it) is never replaced
/// or continued by another: its records would be lost.
fn refuse_held(path: &Path, flag: &str, existing: Existing) -> Result<(), CliError> {
    if let Some(pid) = joulebench_core::record::results_file_holder(path) {
        let who = pid.map_or_else(
            || "another joulebench".to_string(),
            |p| format!("another joulebench (process {p})"),
        );
        let action = match existing {
            Existing::Continue => "continue it",
            _ => "replace it",
        };
        return Err(usage(format!(
            "{flag} {} is being written by {who} now (a sweep holds it); joulebench will not {action}, \
             even with --force: wait for that process to finish, or choose another name",
            shown(path)
        )));
    }
    Ok(())
}

#[cfg(unix)]
fn describe_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn describe_kind(_meta: &std::fs::Metadata) -> &'static str {
    "not a regular file"
}

/// An output that is one of the inputs is refused, even with `--force`: writing it
/// would replace what is being read (a merge over its own source loses records).
pub fn refuse_input_as_output(out: &Path, inputs: &[PathBuf], flag: &str) -> Result<(), CliError> {
    match inputs.iter().find(|input| same_file(out, input)) {
        Some(input) => Err(usage(format!(
            "{flag} {} is also an input ({}); joulebench never writes over a file it reads, \
             even with --force: choose another name",
            shown(out),
            shown(input)
        ))),
        None => Ok(()),
    }
}

/// Two outputs of one command naming one file are refused: the second would
/// replace the first (a settings file written over the results it came from).
pub fn refuse_shared_outputs(outputs: &[(&Path, &str)]) -> Result<(), CliError> {
    for (i, (a, flag_a)) in outputs.iter().enumerate() {
        for (b, flag_b) in &outputs[i + 1..] {
            if same_file(a, b) || lexical(a) == lexical(b) {
                return Err(usage(format!(
                    "{flag_a} and {flag_b} both name {}; each output needs a file of its own, \
                     even with --force",
                    shown(a)
                )));
            }
        }
    }
    Ok(())
}

/// Whether two paths name one existing file (links and `..` included).
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

/// `path` made absolute against the working directory, `.` and `..` resolved
/// lexically: how two outputs that do not exist yet are told apart.
pub fn lexical(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
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

/// Write `text` to `path` through a temporary file in the same directory (created
/// exclusively, removed again if anything fails), so the file is whole or absent.
/// The checks run again just before: the path may have changed since the command
/// started.
pub fn write_output(path: &Path, text: &str, force: bool, flag: &str) -> Result<(), CliError> {
    write_output_with(path, force, flag, |w| {
        w.write_all(text.as_bytes())?;
        Ok(())
    })
}

/// [`write_output`] of an output too long to hold, written as `write` makes it.
pub fn write_output_with(
    path: &Path,
    force: bool,
    flag: &str,
    write: impl FnOnce(&mut dyn Write) -> Result<(), WriteFail>,
) -> Result<(), CliError> {
    check_new_output(path, force, flag)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io(format!("cannot create {}: {e}", shown(dir))))?;
    let werr = |e: std::io::Error| io(format!("cannot write {}: {e}", shown(path)));
    let (file, tmp) = create_temp_beside(path).map_err(werr)?;
    let mut buffered = std::io::BufWriter::with_capacity(1 << 16, file);
    let written = write(&mut buffered).and_then(|_| {
        let file = buffered
            .into_inner()
            .map_err(|e| WriteFail::Output(e.into_error()))?;
        file.sync_all()?;
        Ok(())
    });
    let renamed = written.and_then(|_| {
        // the last moment before the rename: still a regular file no one else holds
        check_new_output(path, force, flag)
            .map_err(|e| WriteFail::Output(std::io::Error::other(e.to_string())))?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    });
    if let Err(e) = renamed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into_cli(werr));
    }
    Ok(())
}

/// A new file beside `target`, created exclusively under a name no one can guess.
fn create_temp_beside(target: &Path) -> std::io::Result<(std::fs::File, PathBuf)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = name.chars().take(100).collect();
    let mut last = None;
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = target.with_file_name(format!(
            ".{name}.{}-{nanos:x}-{attempt}.tmp",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::AlreadyExists.into()))
}

/// A plot directory: refused before any work when it names something that is not
/// a directory (or cannot become one), so a long run never fails at its last step.
pub fn check_plot_dir(dir: &Path, flag: &str) -> Result<(), CliError> {
    let p = shown(dir);
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) if m.file_type().is_symlink() && dir.is_dir() => Ok(()),
        Ok(_) => Err(usage(format!(
            "{flag} {p} exists and is not a directory; name a directory for the plots"
        ))),
        Err(_) => {
            // missing: its nearest existing parent must be a directory to create it in
            let parent = lexical(dir)
                .ancestors()
                .skip(1)
                .find(|a| a.exists())
                .map(Path::to_path_buf)
                .unwrap_or_default();
            if parent.is_dir() {
                Ok(())
            } else {
                Err(usage(format!(
                    "{flag} {p} cannot be created: {} is not a directory",
                    shown(&parent)
                )))
            }
        }
    }
}
