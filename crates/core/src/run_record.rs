//! The record of a whole program measured by `joulebench run` (docs/ARCHITECTURE.md
//! §5): one record for the run and one per GPU it measured, in the same results
//! files as kernel points. A run record is not a point — it has no workload, FLOP or
//! windows — so it has a kind and a schema of its own: readers that know only points
//! refuse its schema by number instead of misreading it.

use crate::device::DeviceInfo;
use crate::meter::{HostMeterInfo, MeterSource};
use crate::power::PowerCap;
use crate::protocol::ValidityFlag;
use crate::tool::ToolInfo;
use serde::{Deserialize, Serialize};

/// The schema of run records; point records keep their own ([`crate::SCHEMA_VERSION`]).
pub const RUN_RECORD_SCHEMA: u32 = 3;

/// The `kind` that marks a run record.
pub const RUN_RECORD_KIND: &str = "run";

/// What a run record covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunScope {
    /// The whole run: every GPU's energy added up, the host's, the tokens, the
    /// steady state and the prediction beside it.
    Run,
    /// One GPU of the run: its energy, telemetry and the settings applied to it.
    Gpu,
}

/// How the program ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramInfo {
    /// The program and its arguments, as given after `--`.
    pub argv: Vec<String>,
    /// Its exit code, where it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, where one did.
    pub exit_signal: Option<i32>,
    /// Signals joulebench received while the program ran, and what it did with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<String>,
}

impl ProgramInfo {
    /// The status a shell reports for it: the code, or 128 + the signal.
    pub fn shell_status(&self) -> Option<i32> {
        self.exit_code.or(self.exit_signal.map(|s| 128 + s))
    }

    /// "exit 0", "exit 3", "killed by signal 15".
    pub fn describe_exit(&self) -> String {
        match (self.exit_code, self.exit_signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown".into(),
        }
    }
}

/// The lowest, mean and highest of a telemetry reading through the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

/// One throttle reason and the share of the telemetry readings that showed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReasonShare {
    pub reason: String,
    pub share: f64,
}

/// Telemetry sampled through a GPU's run (every reading between the program's start
/// and its end).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTelemetry {
    pub samples: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_clock_mhz: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced_limit_w: Option<Range>,
    /// Every throttle reason seen, most frequent first.
    #[serde(default)]
    pub throttle_reasons: Vec<ReasonShare>,
}

/// The settings a GPU ran under: as asked, and as found and enforced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Where they came from: "settings.toml: [[device]] NVIDIA H100 80GB HBM3",
    /// "--power-cap", or "none" (the GPU as found).
    pub source: String,
    /// The cap as asked ("default": the limit as found, not changed).
    pub power_cap: PowerCap,
    /// The cap in watts on this GPU, where one was applied.
    pub power_cap_w: Option<f64>,
    /// The limit found before the run, its default, and the one enforced during it.
    pub found_limit_w: Option<f64>,
    pub default_limit_w: Option<f64>,
    pub enforced_limit_w: Option<f64>,
    /// Locked clocks, MHz; `None`: not locked by this run.
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    /// Whether what was changed was put back after the program ended (`None`:
    /// nothing was changed).
    pub restored: Option<bool>,
}

/// One phase the program marked (every span of that name added up), for one GPU or
/// for the whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseFigures {
    pub name: String,
    /// How many times the program entered it.
    pub occurrences: u64,
    /// Seconds spent in it, all spans together.
    pub seconds: f64,
    pub joules: Option<f64>,
    /// Run scope: the host's energy (RAPL) over the same spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_joules: Option<f64>,
    /// Tokens the program reported while in it.
    pub tokens: Option<u64>,
    pub joules_per_token: Option<f64>,
    pub tokens_per_second: Option<f64>,
    /// A warm-up phase: left out of the steady state.
    pub warmup: bool,
    /// `short-window` where its spans are shorter, together, than the meter needs.
    #[serde(default)]
    pub flags: Vec<ValidityFlag>,
}

/// The phases steady-state figures are made of (warm-up left out), added up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SteadyState {
    pub phases: Vec<String>,
    pub seconds: f64,
    pub joules: Option<f64>,
    pub tokens: Option<u64>,
    pub joules_per_token: Option<f64>,
    pub tokens_per_second: Option<f64>,
}

/// What `joulebench model` predicted for this run, beside what was measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The model name of the settings file's `[[model.<name>]]` entry.
    pub model: String,
    /// The settings file.
    pub source: String,
    pub device_model: String,
    /// How the model was spread when predicted ("1 GPU", "TP 2 (2 GPUs)").
    pub layout: String,
    /// The prediction came from the simulated device.
    pub simulated: bool,
    pub predicted_joules_per_token: f64,
    pub predicted_tokens_per_second: f64,
    /// Measured over `measured_over`, every GPU of the run together.
    pub measured_joules_per_token: Option<f64>,
    /// Per model copy: the run's tokens per second × the layout's GPUs / the GPUs measured.
    pub measured_tokens_per_second: Option<f64>,
    /// measured / predicted − 1.
    pub energy_difference_fraction: Option<f64>,
    pub throughput_difference_fraction: Option<f64>,
    /// "the steady state (phases train)" or "the whole run (no phases marked)".
    pub measured_over: String,
    /// What the prediction does not include, which the measurement does.
    pub left_out: Vec<String>,
    /// Why the two may not compare (a different setting, GPU count or device).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One record of a run (see the module comment). Which fields are filled depends on
/// `scope`: a GPU record has `device`, `meter`, `settings` and `telemetry`; the run
/// record has `gpus`, `host_joules`, `steady` and `prediction`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema: u32,
    /// Always [`RUN_RECORD_KIND`].
    pub kind: String,
    pub scope: RunScope,
    /// Shared by the records of one run.
    pub run_id: String,
    pub tool: ToolInfo,
    pub host: String,
    /// When the program started.
    pub unix_time_s: f64,
    /// joulebench's command line.
    pub command: String,
    pub program: ProgramInfo,
    /// Not a real GPU's measurement: a fake device of a test build (or a settings
    /// entry from the simulated device applied to one).
    pub simulated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceInfo>,
    /// Run scope: the GPUs measured, as `DeviceInfo::key` names them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<MeterSource>,
    /// Seconds between two of the meter's updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_update_period_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_meter: Option<HostMeterInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<RunSettings>,
    /// From the program's start to its end.
    pub seconds: f64,
    /// GPU energy over the run (run scope: every GPU's added up); `None` where a GPU
    /// had no meter.
    pub joules: Option<f64>,
    pub average_w: Option<f64>,
    /// The highest power reading sampled during the run (GPU scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_w: Option<f64>,
    /// Run scope: the host's CPU and DRAM energy (RAPL) over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_joules: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<RunTelemetry>,
    /// Tokens the run processed (`--tokens`, or what the program reported).
    pub tokens: Option<u64>,
    pub joules_per_token: Option<f64>,
    #[serde(default)]
    pub phases: Vec<PhaseFigures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady: Option<SteadyState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
    #[serde(default)]
    pub flags: Vec<ValidityFlag>,
    /// What the reader should know (a meter that stopped, a restore that failed).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// A run record whose numbers contradict themselves or no measurement produces.
fn bad(what: &str, v: f64) -> String {
    format!("{what} = {v} cannot come from a measurement")
}

fn check_non_negative(what: &str, v: Option<f64>) -> Result<(), String> {
    match v {
        Some(x) if !(x.is_finite() && x >= 0.0) => Err(bad(what, x)),
        _ => Ok(()),
    }
}

/// `ratio` must be `num / den` (to a millionth), where all three are given.
fn check_ratio(
    what: &str,
    ratio: Option<f64>,
    num: Option<f64>,
    den: Option<f64>,
) -> Result<(), String> {
    if let (Some(r), Some(n), Some(d)) = (ratio, num, den) {
        if d > 0.0 {
            let expect = n / d;
            if (r - expect).abs() > 1e-6 * expect.abs().max(f64::MIN_POSITIVE) {
                return Err(format!(
                    "{what} = {r:e} is not the quotient of its own figures ({expect:e}): the record contradicts itself"
                ));
            }
        }
    }
    Ok(())
}

impl RunRecord {
    /// Refuses numbers no measurement produces and figures that contradict each
    /// other, as point records are checked when read.
    pub fn check_numbers(&self) -> Result<(), String> {
        if self.kind != RUN_RECORD_KIND {
            return Err(format!("kind '{}' is not '{RUN_RECORD_KIND}'", self.kind));
        }
        if !(self.seconds.is_finite() && self.seconds > 0.0) {
            return Err(bad("seconds", self.seconds));
        }
        for (what, v) in [
            ("joules", self.joules),
            ("average_w", self.average_w),
            ("peak_w", self.peak_w),
            ("host_joules", self.host_joules),
            ("joules_per_token", self.joules_per_token),
        ] {
            check_non_negative(what, v)?;
        }
        check_ratio("average_w", self.average_w, self.joules, Some(self.seconds))?;
        check_ratio(
            "joules_per_token",
            self.joules_per_token,
            self.joules,
            self.tokens.map(|t| t as f64),
        )?;
        let slack = 1e-6 * self.seconds + 1e-9;
        let mut phase_s = 0.0;
        let mut phase_j = 0.0;
        for p in &self.phases {
            let what = |f: &str| format!("phases[{}].{f}", p.name);
            if !(p.seconds.is_finite() && p.seconds >= 0.0) {
                return Err(bad(&what("seconds"), p.seconds));
            }
            check_non_negative(&what("joules"), p.joules)?;
            check_non_negative(&what("host_joules"), p.host_joules)?;
            check_ratio(
                &what("joules_per_token"),
                p.joules_per_token,
                p.joules,
                p.tokens.map(|t| t as f64),
            )?;
            check_ratio(
                &what("tokens_per_second"),
                p.tokens_per_second,
                p.tokens.map(|t| t as f64),
                Some(p.seconds),
            )?;
            phase_s += p.seconds;
            phase_j += p.joules.unwrap_or(0.0);
        }
        if phase_s > self.seconds + slack {
            return Err(format!(
                "the phases last {phase_s} s together, longer than the run's {} s: the record contradicts itself",
                self.seconds
            ));
        }
        if let Some(j) = self.joules {
            if phase_j > j * (1.0 + 1e-6) + 1e-6 {
                return Err(format!(
                    "the phases hold {phase_j} J together, more than the run's {j} J: the record contradicts itself"
                ));
            }
        }
        if let Some(s) = &self.steady {
            if !(s.seconds.is_finite() && s.seconds >= 0.0) || s.seconds > self.seconds + slack {
                return Err(bad("steady.seconds", s.seconds));
            }
            check_non_negative("steady.joules", s.joules)?;
            check_ratio(
                "steady.joules_per_token",
                s.joules_per_token,
                s.joules,
                s.tokens.map(|t| t as f64),
            )?;
        }
        if let Some(p) = &self.prediction {
            for (what, v) in [
                (
                    "prediction.predicted_joules_per_token",
                    p.predicted_joules_per_token,
                ),
                (
                    "prediction.predicted_tokens_per_second",
                    p.predicted_tokens_per_second,
                ),
            ] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(bad(what, v));
                }
            }
            check_ratio(
                "prediction.energy_difference_fraction",
                p.energy_difference_fraction.map(|d| d + 1.0),
                p.measured_joules_per_token,
                Some(p.predicted_joules_per_token),
            )?;
        }
        match self.scope {
            RunScope::Gpu if self.device.is_none() => {
                Err("a GPU's run record names no device".into())
            }
            _ => Ok(()),
        }
    }

    /// "NVIDIA H100 80GB HBM3 [GPU-…]" for a GPU record, "run" for the run's.
    pub fn label(&self) -> String {
        match (&self.scope, &self.device) {
            (RunScope::Gpu, Some(d)) => d.key(),
            _ => "run".into(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn gpu_record() -> RunRecord {
        RunRecord {
            schema: RUN_RECORD_SCHEMA,
            kind: RUN_RECORD_KIND.into(),
            scope: RunScope::Gpu,
            run_id: "h-1-2".into(),
            tool: crate::sweep::tool_info(),
            host: "h".into(),
            unix_time_s: 1.7e9,
            command: "joulebench run -- sleep 1".into(),
            program: ProgramInfo {
                argv: vec!["sleep".into(), "1".into()],
                exit_code: Some(0),
                ..ProgramInfo::default()
            },
            simulated: false,
            device: Some(DeviceInfo {
                name: "GPU".into(),
                ..DeviceInfo::default()
            }),
            gpus: Vec::new(),
            meter: Some(MeterSource::NvmlCounter),
            meter_update_period_s: Some(0.1),
            host_meter: None,
            settings: None,
            seconds: 2.0,
            joules: Some(600.0),
            average_w: Some(300.0),
            peak_w: Some(310.0),
            host_joules: None,
            telemetry: None,
            tokens: Some(1000),
            joules_per_token: Some(0.6),
            phases: vec![PhaseFigures {
                name: "train".into(),
                occurrences: 1,
                seconds: 1.5,
                joules: Some(450.0),
                host_joules: None,
                tokens: Some(1000),
                joules_per_token: Some(0.45),
                tokens_per_second: Some(1000.0 / 1.5),
                warmup: false,
                flags: Vec::new(),
            }],
            steady: None,
            prediction: None,
            flags: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_whole_record_passes_and_each_contradiction_is_named() {
        let r = gpu_record();
        r.check_numbers().unwrap();
        let mut x = r.clone();
        x.average_w = Some(250.0);
        assert!(x.check_numbers().unwrap_err().contains("average_w"));
        let mut x = r.clone();
        x.phases[0].seconds = 3.0;
        x.phases[0].tokens_per_second = Some(1000.0 / 3.0);
        assert!(x
            .check_numbers()
            .unwrap_err()
            .contains("longer than the run"));
        let mut x = r.clone();
        x.phases[0].joules = Some(700.0);
        x.phases[0].joules_per_token = Some(0.7);
        assert!(x.check_numbers().unwrap_err().contains("more than the run"));
        let mut x = r.clone();
        x.joules = Some(-1.0);
        assert!(x.check_numbers().unwrap_err().contains("joules = -1"));
        let mut x = r;
        x.device = None;
        assert!(x.check_numbers().unwrap_err().contains("no device"));
    }
}
