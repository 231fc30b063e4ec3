//! The AMD meter: amdsmi's energy accumulator (a 64-bit count of ticks worth
//! `counter_resolution` µJ each, about 15.3 µJ), polled in a thread of its own, with
//! power, clocks, temperature and throttle status sampled while the work runs. Its
//! update period is measured when it opens, and one that stands still is refused
//! (reported for MI100 and MI210 in ROCm/amdsmi#38 and ROCm/rocm_smi_lib#180).

use super::{decode_indep_throttle_status, AmdSmiDevice, AmdSmiError};
use crate::hwmon_meter::CounterProbe;
use crate::polled_meter::{Polled, PolledMeter};
use crate::poller::{PollConfig, PolledSource, Poller};
use crate::wrapping_counter::{
    measure_change_period, CounterHealth, WrappingCounter, MAX_PLAUSIBLE_W,
};
use joulebench_core::clock::monotonic_s;
use joulebench_core::{MeterError, MeterSource, Telemetry};
use std::sync::Arc;

/// Named when the accumulator drops.
pub const AMDSMI_DROP_HINT: &str =
    "amdsmi counters going backwards are reported in ROCm/amdsmi#115";

fn telemetry_of(device: &dyn AmdSmiDevice, power_w: Option<f64>) -> Result<Telemetry, MeterError> {
    let best = |r: Result<Option<u32>, AmdSmiError>| r.ok().flatten();
    let (sm, mem) = device.clocks_mhz().unwrap_or((None, None));
    Ok(Telemetry {
        sm_clock_mhz: sm,
        mem_clock_mhz: mem,
        temperature_c: best(device.temperature_c()),
        throttle_reasons: device
            .throttle_status()
            .ok()
            .flatten()
            .map(decode_indep_throttle_status)
            .unwrap_or_default(),
        enforced_power_limit_w: device
            .power_cap_info()
            .ok()
            .map(|c| c.cap_uw as f64 / 1e6)
            .filter(|w| *w > 0.0),
        power_w: device.power_w().ok().flatten().or(power_w),
        ..Telemetry::default()
    })
}

struct CounterSource {
    device: Arc<dyn AmdSmiDevice>,
    counter: WrappingCounter,
    /// Time and joules at the last telemetry reading, for power where the library
    /// reports none.
    last: Option<(f64, f64)>,
}

impl PolledSource for CounterSource {
    fn energy_j(&mut self) -> Result<Option<f64>, MeterError> {
        let c = self
            .device
            .energy_count()
            .map_err(|e| e.into_meter_error("reading the amdsmi energy counter"))?;
        self.counter.update(c.ticks, monotonic_s());
        Ok(self.counter.joules())
    }

    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        let now = (monotonic_s(), self.counter.joules().unwrap_or(0.0));
        let derived = self
            .last
            .filter(|(t, _)| now.0 > *t)
            .map(|(t, j)| (now.1 - j) / (now.0 - t))
            // across a drop the rate means nothing
            .filter(|w| *w >= 0.0);
        self.last = Some(now);
        telemetry_of(self.device.as_ref(), derived)
    }
}

/// amdsmi's energy accumulator, polled (see the module comment).
pub type AmdSmiCounterMeter = PolledMeter<AmdSmiCounter>;

/// What [`AmdSmiCounterMeter`] is besides its poller.
pub struct AmdSmiCounter {
    device: Arc<dyn AmdSmiDevice>,
    period_s: f64,
    /// Twice the largest power cap the board allows, else `MAX_PLAUSIBLE_W`.
    max_w: f64,
    resolution_uj: f64,
    health: CounterHealth,
}

impl AmdSmiCounterMeter {
    pub fn open(device: Arc<dyn AmdSmiDevice>, probe: CounterProbe) -> Result<Self, MeterError> {
        let what_dev = device
            .identity()
            .map(|i| i.describe())
            .unwrap_or_else(|_| "the AMD GPU".into());
        let first = device
            .energy_count()
            .map_err(|e| e.into_meter_error("reading the amdsmi energy counter"))?;
        if !(first.resolution_uj.is_finite() && first.resolution_uj > 0.0) {
            return Err(MeterError::Unavailable(format!(
                "amdsmi reports an energy resolution of {} µJ for {what_dev}",
                first.resolution_uj
            )));
        }
        let period = measure_change_period(
            || device.energy_count().map(|c| c.ticks),
            probe.poll_every,
            probe.changes,
            probe.max_wait,
        )
        .map_err(|e| e.into_meter_error("reading the amdsmi energy counter"))?
        .ok_or_else(|| {
            MeterError::Unavailable(format!(
                "the amdsmi energy counter of {what_dev} stood still at {} for {:.1} s \
                 (reported for MI100/MI210 in ROCm/amdsmi#38 and ROCm/rocm_smi_lib#180)",
                first.ticks,
                probe.max_wait.as_secs_f64()
            ))
        })?;
        let max_w = device
            .power_cap_info()
            .ok()
            .filter(|c| c.max_uw > 0)
            .map(|c| (2.0 * c.max_uw as f64 / 1e6).min(MAX_PLAUSIBLE_W))
            .unwrap_or(MAX_PLAUSIBLE_W);
        let counter = WrappingCounter::new(
            format!("the amdsmi energy counter of {what_dev}"),
            u64::MAX,
            first.resolution_uj * 1e-6,
        )
        .with_drop_hint(AMDSMI_DROP_HINT)
        .with_max_plausible_w(max_w);
        let health = counter.health();
        let source = CounterSource {
            device: device.clone(),
            counter,
            last: None,
        };
        let poller = Poller::start("joulebench-amdsmi", Box::new(source), PollConfig::default())?;
        let parts = AmdSmiCounter {
            device,
            period_s: period,
            max_w,
            resolution_uj: first.resolution_uj,
            health,
        };
        Ok(PolledMeter::new(parts, poller))
    }

    pub fn resolution_uj(&self) -> f64 {
        self.parts().resolution_uj
    }
}

impl Polled for AmdSmiCounter {
    fn source(&self) -> MeterSource {
        MeterSource::AmdsmiCounter
    }
    fn update_period_s(&self) -> f64 {
        self.period_s
    }
    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        telemetry_of(self.device.as_ref(), None)
    }
    fn fault_detail(&mut self) -> Option<String> {
        self.health.fault_detail(2.0 * self.period_s)
    }
    fn not_read_yet(&self) -> String {
        "the amdsmi counter was not read yet".into()
    }
    fn max_power_w(&self) -> Option<f64> {
        Some(self.max_w)
    }
}
