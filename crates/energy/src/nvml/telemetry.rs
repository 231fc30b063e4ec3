//! One telemetry reading per measurement window (docs/ARCHITECTURE.md §4.5). Best effort: what a
//! device does not report stays empty, but a lost GPU is an error, so the sweep stops
//! instead of recording windows from a device that is gone.

use super::{decode_throttle_reasons, NvmlDevice, NvmlError, ReferenceClocksMhz};
use joulebench_core::{MeterError, Telemetry};

/// Clocks, temperature, throttle reasons, enforced limit and P-state, now.
/// `power_w` is the power the calling meter last saw (it knows which reading it uses).
pub fn read_telemetry(
    device: &dyn NvmlDevice,
    reference: &ReferenceClocksMhz,
    power_w: Option<f64>,
) -> Result<Telemetry, MeterError> {
    let clocks = best_effort(device.clocks_mhz())?.unwrap_or_default();
    Ok(Telemetry {
        sm_clock_mhz: clocks.sm_mhz,
        mem_clock_mhz: clocks.mem_mhz,
        default_sm_clock_mhz: reference.unthrottled_sm_mhz(),
        temperature_c: best_effort(device.temperature_c())?,
        throttle_reasons: best_effort(device.throttle_reasons())?
            .map(decode_throttle_reasons)
            .unwrap_or_default(),
        enforced_power_limit_w: best_effort(device.enforced_limit_mw())?
            .map(|mw| mw as f64 / 1000.0),
        performance_state: best_effort(device.performance_state())?
            .flatten()
            .map(|p| format!("P{p}")),
        power_w,
    })
}

/// A missing reading is `None`; a device that is gone or a driver that went away is
/// the meter's error.
fn best_effort<T>(r: Result<T, NvmlError>) -> Result<Option<T>, MeterError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e @ (NvmlError::GpuLost | NvmlError::Unavailable(_))) => {
            Err(e.into_meter_error("reading telemetry"))
        }
        Err(_) => Ok(None),
    }
}
