//! A sweep as one library call (docs/ARCHITECTURE.md §1.2): a [`Sweep`] built from a
//! config is planned on an opened device — clocks resolved, points expanded, caps and
//! clocks checked, nothing changed — into a [`PlannedSweep`] that printers read, which
//! skips what a results file already holds and runs into a record sink with an
//! observer for progress, arming the guard first and putting the GPU back after.
//!
//! ```
//! use joulebench_core::plan::{Preset, SweepConfig};
//! use joulebench_core::record::RecordSink;
//! use joulebench_core::sweep::SilentObserver;
//! use joulebench_device::{open, BackendKind, OpenOptions, Sweep};
//! use std::sync::atomic::AtomicBool;
//!
//! let mut dev = open(&OpenOptions::new(BackendKind::Sim)).map_err(|e| e.to_string())?;
//! let mut config = SweepConfig::preset(Preset::Quick, dev.backend.as_ref());
//! config.matmul.truncate(1);
//! config.attention.clear();
//! config.kernels = vec!["sim-vendor".into()];
//! config.kernel_precisions.clear();
//! config.protocol.idle_baseline_s = 0.0;
//! let planned = Sweep::new(config).plan(&mut dev).map_err(|e| e.to_string())?;
//! let mut records = Vec::new();
//! let run = planned
//!     .run(&mut dev, &mut records, &mut SilentObserver, &AtomicBool::new(false))
//!     .map_err(|e| e.to_string())?;
//! let outcome = run.outcome.map_err(|e| e.to_string())?;
//! assert_eq!(outcome.measured, records.len());
//! assert!(records.iter().all(|r| r.simulated));
//! # Ok::<(), String>(())
//! ```

mod clocks;
mod error;
mod planned;
mod spec;

pub use error::{Change, SweepSetupError};
pub use planned::{PlannedRun, PlannedSweep, SweepRun};
pub use spec::{host_name, process_command_line, Sweep};

#[cfg(test)]
mod tests;
