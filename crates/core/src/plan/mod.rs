//! A sweep's axes (from a preset or a TOML file) and their expansion into the
//! list of points the runner measures, in an order that changes the power cap as
//! rarely as possible.
//!
//! One job a file: the config and its TOML form (`config`), the built-in presets
//! (`presets`), the expansion into points (`points`), the estimate of what a plan
//! costs (`estimate`).

mod config;
mod error;
mod estimate;
mod points;
mod presets;

pub use config::{AttentionSpec, LinearSpec, MatmulSpec, SweepConfig};
pub use error::{PlanError, UnknownKernel};
pub use estimate::{PlanEstimate, POINT_OVERHEAD_S};
pub use points::{check_kernels_known, group_with_inputs, PlanPoint, PlannedWorkload};
pub use presets::{Preset, STANDARD_REPEAT};

#[cfg(test)]
mod tests;
