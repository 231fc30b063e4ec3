//! joulebench's core: what is measured (workloads, precisions, FLOP and byte
//! counts), how (the protocol, written once against the `Backend`, `EnergyMeter`
//! and `PowerControl` traits), how it is checked (f64 CPU references), and how it
//! is recorded (the versioned JSONL schema). It knows no GPU API.

pub mod backend;
pub mod clock;
pub mod clocks;
pub mod device;
pub mod identity;
pub mod inputs;
pub mod memory;
pub mod meter;
#[cfg(any(test, feature = "test-suite"))]
pub mod meter_suite;
pub mod plan;
pub mod power;
pub mod precision;
pub mod protocol;
pub mod record;
pub mod reference;
mod results_lock;
pub mod resume;
pub mod run_record;
pub mod stats;
pub mod stop;
#[cfg(feature = "test-suite")]
pub mod suite;
pub mod sweep;
pub mod text;
pub mod tool;
pub mod verify;
pub mod window;
pub mod workload;

pub use backend::{Backend, BackendError, KernelInfo, PreparedKernel, RunTiming, Support};
pub use clock::{monotonic_s, Clock, SystemClock};
pub use clocks::{ClockControl, ClockLocks, ClockRecord, ClockSpec};
pub use device::{AdapterInfo, DeviceInfo};
pub use inputs::InputDistribution;
pub use meter::{
    CounterUpdate, EnergyMeter, HostMeterInfo, MeterError, MeterSource, NoMeter, Telemetry,
    TelemetrySample,
};
pub use power::{PowerCap, PowerControl, PowerError, PowerLimits};
pub use precision::Precision;
pub use protocol::{ProtocolConfig, ValidityFlag, WindowMethod};
pub use record::{Record, SCHEMA_VERSION};
pub use window::{Calibration, Safeguards, Window, WindowEngine, WindowError, WindowRules};
pub use workload::{AttentionShape, MatmulShape, Op, Workload};
