//! The warm-up (docs/ARCHITECTURE.md §4.2): run the kernel until the device has
//! settled, so that a point does not inherit the thermal state of the one before.
//! NVML reports whole degrees, so a temperature slope over a few seconds reads
//! zero during the slow drift of a heat sink; settling is judged instead over a
//! span long enough for a whole degree to show the slope asked for, and on what
//! the figures are made of: the board's power and the work's pace (at the power
//! limit, power stays put while the clock drifts with the die's temperature).

use super::config::ProtocolConfig;
use super::ProtocolError;
use crate::backend::{BackendError, RunTiming};
use crate::meter::Telemetry;
use crate::window::WindowEngine;

/// What the warm-up came to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Warmup {
    pub seconds: f64,
    pub iterations: u64,
    /// `None` where the meter gives no telemetry to judge by.
    pub settled: Option<bool>,
    pub temperature_start_c: Option<f64>,
}

/// Run blocks of `block` iterations from `start_s` (when the point began) for at
/// least `warmup_s` and until power, pace and temperature have settled, or until
/// `warmup_max_s`.
pub fn warm_up<F>(
    engine: &mut WindowEngine<'_>,
    run: &mut F,
    block: u64,
    start_s: f64,
    cfg: &ProtocolConfig,
) -> Result<Warmup, ProtocolError>
where
    F: FnMut(u64) -> Result<RunTiming, BackendError>,
{
    let by_power_and_pace = engine.safeguards().settle_by_power_and_pace;
    let mut iterations = 0u64;
    // the work's own time counts too, should the clock stand still (a workload that
    // does not advance a virtual clock)
    let mut ran_s = 0.0;
    let settled = loop {
        let (timing, _) = engine.run_block(run, block)?;
        iterations += block;
        let now = engine.clock().now_s();
        ran_s += timing.wall_s.max(0.0);
        let elapsed = (now - start_s).max(ran_s);
        if elapsed < cfg.warmup_s {
            continue;
        }
        let settled = if by_power_and_pace {
            settle_check(engine, start_s, now, cfg)
        } else {
            temperature_slope_check(engine, start_s, now, cfg)
        };
        match settled {
            Some(true) | None => break settled,
            Some(false) if elapsed >= cfg.warmup_max_s => break settled,
            Some(false) => {}
        }
    };
    let temperature_start_c = engine
        .telemetry_since(start_s)
        .find_map(|s| s.telemetry.temperature_c)
        .map(f64::from);
    Ok(Warmup {
        seconds: engine.clock().now_s() - start_s,
        iterations,
        settled,
        temperature_start_c,
    })
}

/// Whether power, pace and temperature have settled over the trailing settle
/// window: `None` when the meter reports no telemetry at all; `Some(false)` while
/// the device has not yet been at load for a whole settle window.
fn settle_check(
    engine: &WindowEngine<'_>,
    start_s: f64,
    now_s: f64,
    cfg: &ProtocolConfig,
) -> Option<bool> {
    let from = now_s - cfg.settle_window_s;
    let recent = recent_telemetry(engine, start_s, from)?;
    if recent.is_empty()
        || now_s - start_s < cfg.settle_window_s
        || engine.busy_for_s() < cfg.settle_window_s
    {
        return Some(false);
    }
    let series = |f: &dyn Fn(&Telemetry) -> Option<f64>| -> Vec<(f64, f64)> {
        recent
            .iter()
            .filter_map(|(t, s)| f(s).map(|v| (*t, v)))
            .collect()
    };
    let temp = series(&|t| t.temperature_c.map(f64::from));
    let power = series(&|t| t.power_w);
    let pace = engine.block_pace_since(from);
    let temp_ok = temp.len() < 5 || slope(&temp).abs() <= cfg.settle_temp_c_per_s;
    let power_ok = power.len() < 5 || relative_slope(&power) <= cfg.settle_power_per_s;
    let pace_ok = pace.len() < 5 || relative_slope(&pace) <= cfg.settle_pace_per_s;
    Some(temp_ok && power_ok && pace_ok)
}

/// The settling check before power and pace were judged: the slope of the
/// whole-degree temperature (and of power, at 1% per second) over the trailing
/// settle window, whatever its length (kept to show what it misses).
fn temperature_slope_check(
    engine: &WindowEngine<'_>,
    start_s: f64,
    now_s: f64,
    cfg: &ProtocolConfig,
) -> Option<bool> {
    const SHORT_WINDOW_S: f64 = 3.0;
    const POWER_PER_S: f64 = 0.01;
    let from = now_s - SHORT_WINDOW_S;
    let recent = recent_telemetry(engine, start_s, from)?;
    let span = match (recent.first(), recent.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0.0,
    };
    let earliest = engine.telemetry_since(start_s).next().map(|s| s.time_s);
    if recent.len() < 5 || span < 0.8 * SHORT_WINDOW_S || earliest.is_none_or(|t| t > from) {
        return Some(false);
    }
    let series = |f: &dyn Fn(&Telemetry) -> Option<f64>| -> Vec<(f64, f64)> {
        recent
            .iter()
            .filter_map(|(t, s)| f(s).map(|v| (*t, v)))
            .collect()
    };
    let temp = series(&|t| t.temperature_c.map(f64::from));
    let power = series(&|t| t.power_w);
    let temp_ok = temp.len() < 5 || slope(&temp).abs() <= cfg.settle_temp_c_per_s;
    let power_ok = power.len() < 5 || relative_slope(&power) <= POWER_PER_S;
    Some(temp_ok && power_ok)
}

/// Telemetry of the point since `from_s`: `None` when the point has none at all.
fn recent_telemetry(
    engine: &WindowEngine<'_>,
    start_s: f64,
    from_s: f64,
) -> Option<Vec<(f64, Telemetry)>> {
    let mut all = engine.telemetry_since(start_s).peekable();
    all.peek()?;
    Some(
        all.filter(|s| s.time_s >= from_s)
            .map(|s| (s.time_s, s.telemetry.clone()))
            .collect(),
    )
}

/// |slope| / mean of y over t: the fraction of itself y moves per second.
fn relative_slope(points: &[(f64, f64)]) -> f64 {
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    if mean <= 0.0 {
        return 0.0;
    }
    slope(points).abs() / mean
}

/// Least-squares slope of y over t.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mt, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (t, y)| (a + t / n, b + y / n));
    let (mut sty, mut stt) = (0.0, 0.0);
    for (t, y) in points {
        sty += (t - mt) * (y - my);
        stt += (t - mt) * (t - mt);
    }
    if stt > 0.0 {
        sty / stt
    } else {
        0.0
    }
}
