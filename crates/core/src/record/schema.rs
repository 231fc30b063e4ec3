//! The record's schema (docs/ARCHITECTURE.md §5): one self-describing JSON object per
//! measured, skipped, invalid or failed point, its versions, and the keys `--resume`
//! and reports tell points and settings apart by.

use crate::clocks::{clock_key, ClockRecord};
use crate::device::DeviceInfo;
use crate::inputs::{inputs_key, InputDistribution};
use crate::meter::{HostMeterInfo, MeterAgreement, MeterSource};
use crate::power::PowerCap;
use crate::precision::Precision;
use crate::protocol::{IdleBaseline, Measurement, ProtocolConfig, ValidityFlag};
pub use crate::tool::ToolInfo;
use crate::verify::Verification;
use crate::workload::Workload;
use serde::{Deserialize, Serialize};

/// Bumped whenever a field changes meaning or is removed. Schema 2: busy windows
/// between counter updates (`measurement.method`), telemetry sampled during the
/// windows, `power-limited` apart from `throttled`, repeats.
pub const SCHEMA_VERSION: u32 = 2;

/// Schema versions of point records this joulebench reads: 1 (gapped windows) and 2.
/// Run records (`kind: "run"`) have their own, [`crate::run_record::RUN_RECORD_SCHEMA`].
pub const READABLE_SCHEMAS: std::ops::RangeInclusive<u64> = 1..=SCHEMA_VERSION as u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointStatus {
    /// Verified and measured.
    Measured,
    /// Failed the correctness check: recorded with its error, never measured.
    Invalid,
    /// The backend cannot run this point (precision, kernel, shape); the reason says why.
    Skipped,
    /// A backend error while preparing or running.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerCapRecord {
    /// As the user asked: "default", "300W", "80%".
    pub requested: PowerCap,
    pub requested_w: Option<f64>,
    /// What the device reported enforcing while the point ran.
    pub enforced_w: Option<f64>,
    pub default_w: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeterInfo {
    pub source: MeterSource,
    pub update_period_s: f64,
    /// Check mode: how the energy counter and integrated power agreed on this point.
    #[serde(default)]
    pub check: Option<MeterAgreement>,
    /// The host (CPU and DRAM) meter read beside the device's, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostMeterInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub schema: u32,
    pub tool: ToolInfo,
    pub host: String,
    pub unix_time_s: f64,
    /// The command line that produced this record.
    pub command: String,
    /// From the simulated device's model, not a measurement.
    pub simulated: bool,
    pub status: PointStatus,
    /// Why a point was skipped, invalid or failed.
    pub reason: Option<String>,
    pub device: DeviceInfo,
    pub backend: String,
    pub kernel: String,
    pub kernel_variant: Option<String>,
    pub vendor_kernel: bool,
    pub precision: Precision,
    pub workload: Workload,
    /// What recommendations compare settings within: the shape without its batch.
    pub group: String,
    /// The batch axis: tokens / seq for a linear layer, the batch of attention.
    pub batch_size: u64,
    pub seed: u64,
    /// How the inputs were drawn from `seed` (records without it: `normal`, the
    /// only inputs joulebench drew before).
    #[serde(default)]
    pub inputs: InputDistribution,
    pub flop: u64,
    pub min_bytes: u64,
    pub power_cap: PowerCapRecord,
    pub meter: MeterInfo,
    pub idle: Option<IdleBaseline>,
    pub verification: Option<Verification>,
    pub measurement: Option<Measurement>,
    pub flags: Vec<ValidityFlag>,
    /// The protocol's settings. Settings a later joulebench dropped are ignored
    /// when reading, so records of every readable schema parse.
    #[serde(deserialize_with = "lenient_protocol")]
    pub protocol: ProtocolConfig,
    /// Which run of the point this is, when `--repeat` measured it several times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// Host time spent on the point besides warm-up and windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<PointOverhead>,
    /// The clocks the point asked for and those seen during its windows (records
    /// made before clocks could be locked read as the default clocks).
    #[serde(default)]
    pub clocks: ClockRecord,
}

/// What a point costs besides its measurement: preparing the kernel (inputs
/// generated and uploaded, buffers allocated, compiled where not cached) and the
/// correctness check (one run, the output read back, the reference computed).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointOverhead {
    pub prepare_s: f64,
    pub verify_s: f64,
}

impl PointOverhead {
    pub fn total_s(&self) -> f64 {
        self.prepare_s + self.verify_s
    }
}

/// The protocol settings of a record, keeping the ones this version knows.
fn lenient_protocol<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ProtocolConfig, D::Error> {
    let mut value = serde_json::Value::deserialize(d)?;
    let known =
        serde_json::to_value(ProtocolConfig::default()).map_err(serde::de::Error::custom)?;
    if let (Some(map), Some(known)) = (value.as_object_mut(), known.as_object()) {
        map.retain(|k, _| known.contains_key(k));
    }
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

impl Record {
    /// What identifies a point for `--resume` (with its repeat, if any).
    pub fn point_key(&self) -> String {
        repeat_key(self.setting_key(), self.repeat)
    }

    /// The point without its repeat: what repeats of one setting share.
    pub fn setting_key(&self) -> String {
        let key = point_key(
            &self.device,
            &self.backend,
            &self.kernel,
            self.precision,
            &self.workload,
            &self.power_cap.requested,
        );
        key + &clock_key(self.clocks.sm_requested_mhz, self.clocks.mem_requested_mhz)
            + &inputs_key(self.inputs)
    }

    /// The record's flags as this version defines them. Schema-1 records flagged a
    /// card at its power limit `throttled`: where NVML's `sw-power-cap` was the only
    /// reason, that reads as `power-limited` (information) now.
    pub fn flags_now(&self) -> Vec<ValidityFlag> {
        let Some(m) = self.measurement.as_ref() else {
            return self.flags.clone();
        };
        if m.method != crate::protocol::WindowMethod::Gapped {
            return self.flags.clone();
        }
        let reasons = &m.telemetry.throttle_reasons;
        let power_only = !reasons.is_empty()
            && reasons
                .iter()
                .all(|r| crate::meter::is_power_limit_reason(r));
        let mut flags: Vec<ValidityFlag> = self
            .flags
            .iter()
            .map(|&f| match f {
                ValidityFlag::Throttled if power_only => ValidityFlag::PowerLimited,
                f => f,
            })
            .collect();
        if power_only && !flags.contains(&ValidityFlag::PowerLimited) {
            flags.push(ValidityFlag::PowerLimited);
        }
        flags.sort();
        flags.dedup();
        flags
    }

    /// Which window method produced this record's numbers (`gapped` for schema 1).
    pub fn window_method(&self) -> Option<crate::protocol::WindowMethod> {
        self.measurement.as_ref().map(|m| m.method)
    }

    /// Verified, measured, and with an energy figure.
    pub fn has_energy(&self) -> bool {
        self.status == PointStatus::Measured
            && self
                .measurement
                .as_ref()
                .is_some_and(|m| m.summary.joules_per_flop.is_some())
    }
}

/// A point key with its repeat appended (`#r2`), unchanged without one.
pub fn repeat_key(key: String, repeat: Option<u32>) -> String {
    match repeat {
        Some(r) => format!("{key}#r{r}"),
        None => key,
    }
}

pub fn point_key(
    device: &DeviceInfo,
    backend: &str,
    kernel: &str,
    precision: Precision,
    workload: &Workload,
    cap: &PowerCap,
) -> String {
    let w = serde_json::to_string(workload).unwrap_or_default();
    format!(
        "{}|{}|{}|{}|{}|{}",
        device.key(),
        backend,
        kernel,
        precision,
        w,
        cap
    )
}
