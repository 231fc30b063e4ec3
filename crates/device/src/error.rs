//! Why a device could not be opened or its guard armed, each case a variant a caller
//! acts on: a bad option or a state the user must fix is bad input, a missing driver
//! or a failing device is not.

use joulebench_core::PowerError;

/// Why a device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A bad option: an unknown simulated profile and the like.
    #[error("{0}")]
    BadOption(String),
    /// The backend's driver, library or device is missing or failed.
    #[error("{backend}: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
    },
    /// NVML (or its fake) could not be opened to control the device's power.
    #[error("{0}")]
    PowerControl(String),
    /// The power guard could not be put in place (bad state directory or file, a
    /// pending restore, a change that was not allowed).
    #[error(transparent)]
    Guard(#[from] PowerError),
    #[error("no directory for the power state file: set JOULEBENCH_STATE_DIR or HOME")]
    NoStateDir,
}

impl OpenError {
    /// Bad input (a wrong option, or a state a user must fix), as opposed to a
    /// missing driver or a failing device.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            OpenError::BadOption(_) | OpenError::Guard(_) | OpenError::NoStateDir
        )
    }
}

/// The guard could not put everything back: what failed, and the command that
/// finishes the restore from the state file.
#[derive(Debug, thiserror::Error)]
#[error("{source}; run `{command}`")]
pub struct RestoreFailed {
    pub source: Box<PowerError>,
    /// `joulebench power restore …`, for the user.
    pub command: String,
}
