//! From kernels to a training step and to serving: a transformer's dimensions (a TOML
//! file or a preset), one training step — or a prefill and a decode step — as the
//! GEMMs and attention calls it is made of, each with its own shape and FLOP, split as
//! tensor and pipeline parallelism split them, whether the layout fits the card's
//! memory, and the records joulebench measured for those shapes composed into joules
//! per token, tokens per second, MFU and where the energy goes. It knows records and
//! workloads, not GPUs.

pub mod compose;
pub mod config;
pub mod inference;
pub mod layout;
pub mod memory;
pub mod peak;
pub mod plan;
pub mod step;

pub use compose::{compose, StepFigures};
pub use config::{ModelConfig, ModelError, PRESETS};
pub use inference::{InferenceOptions, Phase};
pub use layout::Layout;
pub use plan::{KernelChoice, ModelPlan, StepSetting};
pub use step::{step_ops, Category, Pass, StepOp};
