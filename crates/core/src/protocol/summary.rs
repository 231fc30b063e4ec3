//! What a point's windows come to (docs/ARCHITECTURE.md §4.6): medians and spreads
//! of time, energy and power over one time base (each window's own interval), the
//! device's own time beside it, the host's energy, the telemetry, and the flags
//! read from the telemetry and the windows' power.

use super::flags::ValidityFlag;
use crate::meter::{is_brake_reason, is_power_limit_reason};
use crate::stats::{median, Stat};
use crate::window::{Range, Window, WindowTelemetry};
use serde::{Deserialize, Serialize};

/// What a record's `seconds_per_op` and `tflops` are measured over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeBase {
    /// Records before one time base: device time (timestamps, CUDA events) where
    /// the backend had it, while energy and power were over the window's time.
    #[default]
    Device,
    /// Each window's own interval, the one its energy and power are over: every
    /// figure of the record shares it.
    Window,
}

impl TimeBase {
    pub fn name(self) -> &'static str {
        match self {
            TimeBase::Device => "device",
            TimeBase::Window => "window",
        }
    }
}

/// A point's medians and spreads (docs/ARCHITECTURE.md §4.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Seconds per op over the windows' own intervals (see `time_base`): the time
    /// J/FLOP and average power are over, host syncs and any work besides the
    /// kernel included.
    pub seconds_per_op: Stat,
    /// FLOP over the same time.
    pub tflops: f64,
    /// What `seconds_per_op` and `tflops` are measured over (absent in older
    /// records: device time).
    #[serde(default)]
    pub time_base: TimeBase,
    /// The kernels' own time per op, from the device's timestamps, where it has
    /// them: no host sync, no work besides the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_seconds_per_op: Option<Stat>,
    /// FLOP over device time: the kernels' own throughput, beside `tflops`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_tflops: Option<f64>,
    pub joules_per_op: Option<Stat>,
    pub joules_per_flop: Option<Stat>,
    /// Energy per op above the idle baseline (idle power × time per op subtracted).
    pub above_idle_joules_per_op: Option<f64>,
    /// Median over windows of each window's energy over its own duration.
    pub average_w: Option<f64>,
    /// The host's CPU and DRAM energy over the same windows, where a host meter
    /// (RAPL) read it for every window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostSummary>,
}

/// The host beside the GPU: what a node costs per FLOP, not only its GPU board.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostSummary {
    /// Host (CPU packages and DRAM) energy per FLOP.
    pub host_joules_per_flop: Stat,
    /// GPU and host together per FLOP; `None` where the GPU has no energy meter.
    pub gpu_and_host_joules_per_flop: Option<Stat>,
    /// Median over windows of the host's energy over the window's duration.
    pub host_average_w: f64,
}

impl Summary {
    pub fn picojoules_per_flop(&self) -> Option<f64> {
        self.joules_per_flop.map(|s| s.median * 1e12)
    }
}

/// What the point's telemetry came to: readings taken while the windows' work ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetrySummary {
    pub sm_clock_mhz_median: Option<f64>,
    pub sm_clock_mhz_min: Option<u32>,
    pub mem_clock_mhz_median: Option<f64>,
    pub temperature_c_max: Option<u32>,
    pub throttle_reasons: Vec<String>,
    pub enforced_power_limit_w: Option<f64>,
    pub performance_state: Option<String>,
    /// Median power reading during the windows.
    #[serde(default)]
    pub power_w_median: Option<f64>,
    #[serde(default)]
    pub temperature_c_min: Option<u32>,
    /// Temperature when the warm-up began.
    #[serde(default)]
    pub temperature_warmup_start_c: Option<f64>,
    /// Temperature as the first window opened, and as the last one closed.
    #[serde(default)]
    pub temperature_start_c: Option<f64>,
    #[serde(default)]
    pub temperature_end_c: Option<f64>,
    /// Readings the summary is made of.
    #[serde(default)]
    pub samples: u32,
}

impl TelemetrySummary {
    /// The point's summary from its windows' summaries.
    pub fn of(windows: &[Window]) -> TelemetrySummary {
        let during: Vec<&WindowTelemetry> =
            windows.iter().filter_map(|w| w.during.as_ref()).collect();
        let medians = |f: &dyn Fn(&WindowTelemetry) -> Option<Range>| -> Vec<f64> {
            during
                .iter()
                .filter_map(|d| f(d))
                .map(|r| r.median)
                .collect()
        };
        let sm = medians(&|d| d.sm_clock_mhz);
        let mem = medians(&|d| d.mem_clock_mhz);
        let power = medians(&|d| d.power_w);
        let mut reasons: Vec<String> = during
            .iter()
            .flat_map(|d| d.throttle_reasons.iter().cloned())
            .collect();
        reasons.sort();
        reasons.dedup();
        let temps: Vec<Range> = during.iter().filter_map(|d| d.temperature_c).collect();
        TelemetrySummary {
            sm_clock_mhz_median: (!sm.is_empty()).then(|| median(&sm)),
            sm_clock_mhz_min: during
                .iter()
                .filter_map(|d| d.sm_clock_mhz)
                .map(|r| r.min.round() as u32)
                .min(),
            mem_clock_mhz_median: (!mem.is_empty()).then(|| median(&mem)),
            temperature_c_max: temps.iter().map(|r| r.max.round() as u32).max(),
            throttle_reasons: reasons,
            enforced_power_limit_w: during.iter().rev().find_map(|d| d.enforced_power_limit_w),
            performance_state: during
                .iter()
                .rev()
                .find_map(|d| d.performance_state.clone()),
            power_w_median: (!power.is_empty()).then(|| median(&power)),
            temperature_c_min: temps.iter().map(|r| r.min.round() as u32).min(),
            temperature_warmup_start_c: None,
            temperature_start_c: temps.first().map(|r| r.median),
            temperature_end_c: temps.last().map(|r| r.median),
            samples: during.iter().map(|d| d.samples).sum(),
        }
    }
}

/// `power-limited`, `throttled` and `above-limit`, from the telemetry taken during
/// the windows and the windows' own average power.
pub(super) fn clock_flags(
    windows: &[Window],
    summary: &Summary,
    cap_requested: bool,
) -> Vec<ValidityFlag> {
    let during: Vec<&WindowTelemetry> = windows.iter().filter_map(|w| w.during.as_ref()).collect();
    let limit = during.iter().rev().find_map(|d| d.enforced_power_limit_w);
    let at_limit_power = match (summary.average_w, limit) {
        (Some(w), Some(l)) if l > 0.0 => w >= 0.97 * l,
        _ => false,
    };
    let power_limited = at_limit_power
        || during
            .iter()
            .any(|d| d.throttle_reasons.iter().any(|r| is_power_limit_reason(r)));
    let brake = during
        .iter()
        .any(|d| d.throttle_reasons.iter().any(|r| is_brake_reason(r)));
    let slow = !cap_requested
        && !power_limited
        && during.iter().any(|d| {
            matches!((d.sm_clock_mhz, d.default_sm_clock_mhz),
                (Some(c), Some(def)) if def > 0 && c.median < 0.75 * def as f64)
        });
    let mut flags = Vec::new();
    if power_limited {
        flags.push(ValidityFlag::PowerLimited);
    }
    if brake || slow {
        flags.push(ValidityFlag::Throttled);
    }
    if let (Some(w), Some(l)) = (summary.average_w, limit) {
        if l > 0.0 && w > 1.03 * l {
            flags.push(ValidityFlag::AboveLimit);
        }
    }
    flags
}

pub fn summarize(windows: &[Window], flop: u64, idle_w: Option<f64>) -> Summary {
    let spo: Vec<f64> = windows.iter().map(Window::seconds_per_op).collect();
    let seconds_per_op = Stat::of(&spo);
    let jpo: Option<Vec<f64>> = windows.iter().map(|w| w.joules_per_op(idle_w)).collect();
    let joules_per_op = jpo.as_deref().map(Stat::of);
    let joules_per_flop = jpo
        .as_deref()
        .map(|v| Stat::of(&v.iter().map(|j| j / flop as f64).collect::<Vec<_>>()));
    let watts: Option<Vec<f64>> = windows.iter().map(|w| w.average_w(idle_w)).collect();
    let average_w = watts.filter(|w| !w.is_empty()).map(|w| median(&w));
    let above_idle = match (joules_per_op, idle_w) {
        (Some(j), Some(idle)) => Some(j.median - idle * seconds_per_op.median),
        _ => None,
    };
    let device: Option<Vec<f64>> = windows.iter().map(Window::device_seconds_per_op).collect();
    let device_seconds_per_op = device.filter(|d| !d.is_empty()).map(|d| Stat::of(&d));
    Summary {
        tflops: flop as f64 / seconds_per_op.median / 1e12,
        seconds_per_op,
        time_base: if windows.iter().any(|w| w.busy_s.is_some()) {
            TimeBase::Device
        } else {
            TimeBase::Window
        },
        device_tflops: device_seconds_per_op.map(|d| flop as f64 / d.median / 1e12),
        device_seconds_per_op,
        joules_per_op,
        joules_per_flop,
        above_idle_joules_per_op: above_idle,
        average_w,
        host: summarize_host(windows, flop, idle_w),
    }
}

/// Host energy per FLOP, alone and with the GPU's, when every window has it.
fn summarize_host(windows: &[Window], flop: u64, idle_w: Option<f64>) -> Option<HostSummary> {
    let host: Vec<f64> = windows
        .iter()
        .map(|w| w.host_joules.filter(|j| j.is_finite()))
        .collect::<Option<_>>()?;
    if host.is_empty() || flop == 0 {
        return None;
    }
    let per_flop = |j: f64, w: &Window| j / w.iterations / flop as f64;
    let host_jpf: Vec<f64> = host
        .iter()
        .zip(windows)
        .map(|(j, w)| per_flop(*j, w))
        .collect();
    let both: Option<Vec<f64>> = host
        .iter()
        .zip(windows)
        .map(|(h, w)| {
            w.joules_per_op(idle_w)
                .map(|g| g / flop as f64 + per_flop(*h, w))
        })
        .collect();
    let watts: Vec<f64> = host
        .iter()
        .zip(windows)
        .filter(|(_, w)| w.seconds > 0.0)
        .map(|(h, w)| h / w.seconds)
        .collect();
    Some(HostSummary {
        host_joules_per_flop: Stat::of(&host_jpf),
        gpu_and_host_joules_per_flop: both.as_deref().map(Stat::of),
        host_average_w: if watts.is_empty() {
            0.0
        } else {
            median(&watts)
        },
    })
}
