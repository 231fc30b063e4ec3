//! The idle baseline (docs/ARCHITECTURE.md §4.1): the board's power at rest, once
//! per device per sweep, which above-idle energy subtracts.

use crate::clock::Clock;
use crate::meter::{EnergyMeter, MeterError, MeterSource};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Idle power over a few seconds of rest, once per device per sweep.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleBaseline {
    pub watts: f64,
    pub seconds: f64,
}

/// Idle power between the meter's updates over `seconds` of rest. The first
/// quarter (at least half a second) is let pass first, since a board stays above
/// idle for a while after work stops. A raised `stop` flag ends the rest early,
/// with no baseline.
pub fn measure_idle(
    meter: &mut dyn EnergyMeter,
    clock: &dyn Clock,
    seconds: f64,
    stop: Option<&AtomicBool>,
) -> Result<Option<IdleBaseline>, MeterError> {
    if meter.source() == MeterSource::None || seconds <= 0.0 || meter.update_period_s() <= 0.0 {
        return Ok(None);
    }
    let settle = (0.25 * seconds).max(0.5).min(seconds);
    if !sleep_unless_stopped(clock, settle, stop) {
        return Ok(None);
    }
    meter.take_updates()?;
    meter.take_telemetry()?;
    if !sleep_unless_stopped(clock, (seconds - settle).max(0.0), stop) {
        return Ok(None);
    }
    let updates = meter.take_updates()?;
    meter.take_telemetry()?;
    Ok(match (updates.first(), updates.last()) {
        (Some(a), Some(b)) if b.time_s > a.time_s => Some(IdleBaseline {
            watts: (b.joules - a.joules) / (b.time_s - a.time_s),
            seconds: b.time_s - a.time_s,
        }),
        _ => None,
    })
}

/// Sleep `seconds` in slices of at most 100 ms; false as soon as `stop` is raised.
fn sleep_unless_stopped(clock: &dyn Clock, seconds: f64, stop: Option<&AtomicBool>) -> bool {
    let mut left = seconds;
    while left > 0.0 {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return false;
        }
        let slice = left.min(0.1);
        clock.sleep(Duration::from_secs_f64(slice));
        left -= slice;
    }
    !stop.is_some_and(|s| s.load(Ordering::SeqCst))
}
