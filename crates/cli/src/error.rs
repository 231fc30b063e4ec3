//! Every failure a user can meet, with the exit code its kind maps to. Libraries
//! return typed errors; here each becomes a kind (the exit code) and an `anyhow`
//! chain (the message, with the context of what was being done, such as where the
//! finished points of a stopped sweep are).

use joulebench_core::plan::PlanError;
use joulebench_core::record::RecordError;
use joulebench_core::sweep::SweepError;
use joulebench_core::PowerError;
use joulebench_device::{OpenError, SweepSetupError};
use std::fmt;

/// Exit codes, as `joulebench --help` and docs/cli.md list them.
pub const EXIT_OK: i32 = 0;
/// A device, driver, meter or power-control failure, or a run that failed.
pub const EXIT_FAILURE: i32 = 1;
/// Bad input: flags, configs, shapes, the content of results files, output paths.
pub const EXIT_USAGE: i32 = 2;
/// Reading or writing a file failed: a full disk, a permission, a lost mount.
pub const EXIT_IO: i32 = 3;
/// Stopped by a signal: 128 + its number (130 for SIGINT, 143 for SIGTERM).
pub const EXIT_SIGNAL_BASE: i32 = 128;

/// What went wrong, as far as the exit code is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Usage,
    Failure,
    Io,
    /// Stopped by a signal; finished records are kept.
    Interrupted {
        signal: i32,
    },
    /// Whoever read standard output stopped reading (`| head`): the output ends
    /// quietly, with the status of a write to a closed pipe (128 + SIGPIPE).
    ClosedOutput,
    /// The program `joulebench run` ran ended with this status (its exit code, or
    /// 128 + the signal that ended it), which becomes joulebench's; nothing to add.
    ProgramExit {
        code: i32,
    },
}

/// SIGPIPE's number: a closed pipe ends with 128 + 13 = 141, as the shell reports it.
pub const SIGPIPE: i32 = 13;

#[derive(Debug)]
pub struct CliError {
    kind: ErrorKind,
    error: anyhow::Error,
}

impl CliError {
    /// An error of `kind` whose message is `error`'s own (library errors already
    /// say their cause in their message, so their source chain is not repeated).
    pub fn new(kind: ErrorKind, error: impl fmt::Display) -> CliError {
        CliError {
            kind,
            error: message(error),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Usage => EXIT_USAGE,
            ErrorKind::Failure => EXIT_FAILURE,
            ErrorKind::Io => EXIT_IO,
            ErrorKind::Interrupted { signal } => EXIT_SIGNAL_BASE + signal,
            ErrorKind::ClosedOutput => EXIT_SIGNAL_BASE + SIGPIPE,
            ErrorKind::ProgramExit { code } => code,
        }
    }

    /// Nothing to say: standard output was closed by its reader.
    pub fn is_quiet(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::ClosedOutput | ErrorKind::ProgramExit { .. }
        )
    }

    /// The same error, with what was being done (or what is kept) said first.
    pub fn context(self, context: impl fmt::Display + Send + Sync + 'static) -> CliError {
        CliError {
            kind: self.kind,
            error: self.error.context(context),
        }
    }

    /// The same error, with a sentence after it (where finished points are, what to do).
    pub fn hint(self, hint: impl fmt::Display) -> CliError {
        CliError {
            kind: self.kind,
            error: anyhow::anyhow!("{:#}; {hint}", self.error),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the whole chain, outermost first: "context: cause: cause"
        write!(f, "{:#}", self.error)
    }
}

fn message(m: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{m}")
}

/// Bad input (exit 2).
pub fn usage(m: impl fmt::Display) -> CliError {
    CliError::new(ErrorKind::Usage, m)
}

/// A device, driver or run failure (exit 1).
pub fn runtime(m: impl fmt::Display) -> CliError {
    CliError::new(ErrorKind::Failure, m)
}

/// A file could not be read or written (exit 3).
pub fn io(m: impl fmt::Display) -> CliError {
    CliError::new(ErrorKind::Io, m)
}

/// Standard output was closed by its reader (exit 141, no message).
pub fn closed_output() -> CliError {
    CliError::new(ErrorKind::ClosedOutput, "standard output was closed")
}

/// A sweep stopped by `signal`: what it kept and how to continue.
pub fn interrupted(out: &std::path::Path, signal: i32) -> CliError {
    CliError::new(
        ErrorKind::Interrupted { signal },
        format!(
            "interrupted; finished points are in {} (continue with --resume --out {})",
            out.display(),
            out.display()
        ),
    )
}

impl From<RecordError> for CliError {
    fn from(e: RecordError) -> Self {
        let kind = match &e {
            // a file named that does not exist is a typo, not a broken disk
            RecordError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::Usage
            }
            RecordError::Read { .. } | RecordError::Write { .. } => ErrorKind::Io,
            _ => ErrorKind::Usage,
        };
        CliError::new(kind, e)
    }
}

impl From<OpenError> for CliError {
    fn from(e: OpenError) -> Self {
        let kind = if e.is_bad_input() {
            ErrorKind::Usage
        } else {
            ErrorKind::Failure
        };
        CliError::new(kind, e)
    }
}

impl From<PowerError> for CliError {
    fn from(e: PowerError) -> Self {
        // a state the user must settle first (a held lock, a pending restore, a cap out
        // of range, a missing permission) is bad input; a failing device is a failure
        let kind = if e.is_refusal() {
            ErrorKind::Usage
        } else {
            ErrorKind::Failure
        };
        CliError::new(kind, e)
    }
}

impl From<PlanError> for CliError {
    fn from(e: PlanError) -> Self {
        CliError::new(ErrorKind::Usage, e)
    }
}

impl From<SweepSetupError> for CliError {
    fn from(e: SweepSetupError) -> Self {
        match e {
            SweepSetupError::Plan(p) => p.into(),
            SweepSetupError::Power(p) => p.into(),
            SweepSetupError::Guard(o) => o.into(),
            other => {
                let kind = if other.is_bad_input() {
                    ErrorKind::Usage
                } else {
                    ErrorKind::Failure
                };
                CliError::new(kind, other)
            }
        }
    }
}

impl From<SweepError> for CliError {
    fn from(e: SweepError) -> Self {
        match e {
            SweepError::Power(p) => p.into(),
            SweepError::Record(r) => r.into(),
            SweepError::Meter(_) => CliError::new(ErrorKind::Failure, e),
            // the caller knows the signal and the file; this is the fallback
            SweepError::Interrupted => CliError::new(ErrorKind::Interrupted { signal: 2 }, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn kinds_map_to_the_documented_exit_codes() {
        assert_eq!(usage("x").exit_code(), 2);
        assert_eq!(runtime("x").exit_code(), 1);
        assert_eq!(io("x").exit_code(), 3);
        assert_eq!(
            interrupted(std::path::Path::new("r.jsonl"), 15).exit_code(),
            143
        );
        let full = RecordError::Write {
            path: PathBuf::from("r.jsonl"),
            source: std::io::Error::from_raw_os_error(28), // ENOSPC
        };
        let e = CliError::from(SweepError::Record(full));
        assert_eq!(e.exit_code(), EXIT_IO);
        let missing = RecordError::Read {
            path: PathBuf::from("nope.jsonl"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(CliError::from(missing).exit_code(), EXIT_USAGE);
        let corrupt = RecordError::Corrupt {
            path: PathBuf::from("r.jsonl"),
            line: 3,
            message: "not JSON".into(),
        };
        assert_eq!(CliError::from(corrupt).exit_code(), EXIT_USAGE);
    }

    #[test]
    fn context_and_hints_read_outermost_first() {
        let e = io("No space left on device")
            .context("cannot write a record to r.jsonl")
            .hint("finished points are in r.jsonl");
        assert_eq!(
            e.to_string(),
            "cannot write a record to r.jsonl: No space left on device; finished points are in r.jsonl"
        );
        assert_eq!(e.exit_code(), EXIT_IO);
    }
}
