//! Why a sweep could not start, each case a variant a caller acts on; every one is
//! found before anything on the device changes.

use crate::error::OpenError;
use joulebench_core::plan::PlanError;
use joulebench_core::PowerError;

/// A change of the GPU's state a sweep asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    PowerLimit,
    Clocks,
}

impl Change {
    /// The permission that allows it, as the command line names it.
    pub fn flag(self) -> &'static str {
        match self {
            Change::PowerLimit => "--allow-power-changes",
            Change::Clocks => "--allow-clock-changes",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepSetupError {
    /// The config does not make a plan: a kernel the backend lacks, a bad shape.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A clock axis the device cannot take: it has no clock control, does not
    /// support the clock, or offers a single memory clock.
    #[error("{0}")]
    Clocks(String),
    /// The device could not say which clocks it supports.
    #[error("reading the {what} clocks the GPU supports: {source}")]
    ClockRead {
        what: &'static str,
        source: PowerError,
    },
    /// A cap the device cannot take, or a control that failed while checking.
    #[error(transparent)]
    Power(#[from] PowerError),
    /// A change of a real GPU the caller did not allow.
    #[error("{}", match .0 {
        Change::PowerLimit => "changing a GPU's power limit needs --allow-power-changes (the original limit is restored on exit)",
        Change::Clocks => "locking a GPU's clocks needs --allow-clock-changes (the default clocks are restored on exit)",
    })]
    NotAllowed(Change),
    /// Clocks found locked (by a killed run, or another tool) on a GPU whose clocks
    /// this sweep would lock: its restore could not put back a lock it did not make.
    #[error("{device}: {found}, not at its default; a clock sweep resets the clocks to the default when it ends and cannot put back a lock it did not make: run `joulebench power restore` (or `nvidia-smi -rgc`) first, then sweep")]
    ClocksFoundLocked { device: String, found: String },
    /// The guard could not be put in place.
    #[error(transparent)]
    Guard(#[from] OpenError),
}

impl SweepSetupError {
    /// Bad input or a state the user must settle first, as opposed to a failing
    /// device.
    pub fn is_bad_input(&self) -> bool {
        match self {
            SweepSetupError::Plan(_)
            | SweepSetupError::Clocks(_)
            | SweepSetupError::NotAllowed(_)
            | SweepSetupError::ClocksFoundLocked { .. } => true,
            SweepSetupError::ClockRead { source, .. } | SweepSetupError::Power(source) => {
                source.is_refusal()
            }
            SweepSetupError::Guard(e) => e.is_bad_input(),
        }
    }
}
