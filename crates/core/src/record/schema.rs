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

/// The protocol settings of a record, keeping the ones this version knows: the
/// others are skipped as they are read, and the rest is `ProtocolConfig`'s own.
fn lenient_protocol<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ProtocolConfig, D::Error> {
    d.deserialize_any(KnownProtocol(known_protocol_settings()?))
}

/// The names of the protocol settings this version knows, found once.
fn known_protocol_settings<E: serde::de::Error>() -> Result<&'static [String], E> {
    static KNOWN: std::sync::OnceLock<Result<Vec<String>, String>> = std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| match serde_json::to_value(ProtocolConfig::default()) {
            Ok(serde_json::Value::Object(map)) => Ok(map.keys().cloned().collect()),
            Ok(other) => Err(format!("protocol settings as {other}")),
            Err(e) => Err(e.to_string()),
        })
        .as_deref()
        .map_err(E::custom)
}

/// Reads protocol settings as `ProtocolConfig` does, skipping unknown names.
struct KnownProtocol(&'static [String]);

impl<'de> serde::de::Visitor<'de> for KnownProtocol {
    type Value = ProtocolConfig;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("struct ProtocolConfig")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ProtocolConfig, A::Error> {
        ProtocolConfig::deserialize(serde::de::value::MapAccessDeserializer::new(KnownFields {
            map,
            known: self.0,
        }))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<ProtocolConfig, A::Error> {
        ProtocolConfig::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
    }
}

/// A map's entries whose names are among `known`; the others are read and dropped.
struct KnownFields<A> {
    map: A,
    known: &'static [String],
}

impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for KnownFields<A> {
    type Error = A::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        use serde::de::IntoDeserializer;
        while let Some(key) = self.map.next_key::<String>()? {
            if self.known.contains(&key) {
                return seed.deserialize(key.into_deserializer()).map(Some);
            }
            self.map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(None)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
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
        match self.measurement.as_ref() {
            Some(m) => flags_now(&self.flags, Some(m.method), &m.telemetry.throttle_reasons),
            None => flags_now(&self.flags, None, &[]),
        }
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

/// [`Record::flags_now`] from a record's flags, its window method (none without a
/// measurement) and its throttle reasons: for a reader that took only these.
pub fn flags_now(
    flags: &[ValidityFlag],
    method: Option<crate::protocol::WindowMethod>,
    throttle_reasons: &[String],
) -> Vec<ValidityFlag> {
    if method != Some(crate::protocol::WindowMethod::Gapped) {
        return flags.to_vec();
    }
    let power_only = !throttle_reasons.is_empty()
        && throttle_reasons
            .iter()
            .all(|r| crate::meter::is_power_limit_reason(r));
    let mut now: Vec<ValidityFlag> = flags
        .iter()
        .map(|&f| match f {
            ValidityFlag::Throttled if power_only => ValidityFlag::PowerLimited,
            f => f,
        })
        .collect();
    if power_only && !now.contains(&ValidityFlag::PowerLimited) {
        now.push(ValidityFlag::PowerLimited);
    }
    now.sort();
    now.dedup();
    now
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
