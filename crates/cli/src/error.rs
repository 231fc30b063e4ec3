//! Every failure a user can meet, with the exit code it maps to.

#[derive(Debug)]
pub enum CliError {
    /// Bad input: flags, shapes, files, paths (exit 2).
    Usage(String),
    /// A device, driver or run failure (exit 1).
    Runtime(String),
    /// Stopped by a signal; finished records are kept (exit 128 + the signal number).
    Interrupted { message: String, signal: i32 },
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Runtime(_) => 1,
            CliError::Interrupted { signal, .. } => 128 + signal,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m)
            | CliError::Runtime(m)
            | CliError::Interrupted { message: m, .. } => f.write_str(m),
        }
    }
}

/// A sweep stopped by `signal`: what it kept and how to continue.
pub fn interrupted(out: &std::path::Path, signal: i32) -> CliError {
    CliError::Interrupted {
        message: format!(
            "interrupted; finished points are in {} (continue with --resume --out {})",
            out.display(),
            out.display()
        ),
        signal,
    }
}

pub fn usage(m: impl std::fmt::Display) -> CliError {
    CliError::Usage(m.to_string())
}

pub fn runtime(m: impl std::fmt::Display) -> CliError {
    CliError::Runtime(m.to_string())
}
