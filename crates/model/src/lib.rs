//! From kernels to a training step: a transformer's dimensions (a TOML file or a
//! preset), one training step as the GEMMs and attention calls it is made of —
//! forward and backward, with their own shapes and FLOP — and the records joulebench
//! measured for those shapes composed into joules per token, tokens per second and
//! where the energy goes. It knows records and workloads, not GPUs.

pub mod compose;
pub mod config;
pub mod plan;
pub mod step;

pub use compose::{compose, StepFigures};
pub use config::{ModelConfig, ModelError, PRESETS};
pub use plan::{KernelChoice, ModelPlan, StepSetting};
pub use step::{step_ops, Category, Pass, StepOp};
