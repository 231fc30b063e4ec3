//! Cumulative energy counters read as raw ticks that wrap: amdsmi's accumulator and
//! hwmon's `energy1_input` are 64-bit, RAPL's `energy_uj` wraps at
//! `max_energy_range_uj`. Readings become joules that keep growing across a wrap; a
//! drop that cannot be a wrap (a reset, a misreport) is passed on as a drop, so the
//! window engine rejects the window, and the counter says why in plain words.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// No single device draws this much: a "wrap" implying more is a drop, not a wrap.
pub const MAX_PLAUSIBLE_W: f64 = 10_000.0;

/// How late a reading may be stamped (a polling thread delayed on a loaded host, a
/// driver that writes its counter in steps): a wrap is judged against the energy the
/// device could draw over the interval plus this, so a late stamp is no drop.
const LATE_STAMP_S: f64 = 0.25;

/// What one reading did to the counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterStep {
    First,
    Unchanged,
    Advanced,
    /// Passed its largest value and started again from zero.
    Wrapped,
    /// Went down by more than a wrap could explain.
    Dropped,
}

/// Why a counter's readings cannot be trusted, shared between the thread that
/// reads it and the meter that reports it.
#[derive(Clone, Debug, Default)]
pub struct CounterHealth(Arc<Mutex<HealthState>>);

#[derive(Debug, Default)]
struct HealthState {
    last_ticks: Option<u64>,
    last_change_s: f64,
    last_read_s: f64,
    drop: Option<String>,
    what: String,
}

impl CounterHealth {
    fn lock(&self) -> MutexGuard<'_, HealthState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counter's own account of its last drop (taken once), else of how long
    /// it has stood still, if it has for more than `stood_still_s`.
    pub fn fault_detail(&self, stood_still_s: f64) -> Option<String> {
        let mut st = self.lock();
        if let Some(d) = st.drop.take() {
            return Some(d);
        }
        let still_s = st.last_read_s - st.last_change_s;
        match st.last_ticks {
            Some(t) if still_s > stood_still_s => Some(format!(
                "{} stood still at {t} for {still_s:.2} s while it was read",
                st.what
            )),
            _ => None,
        }
    }
}

/// A wrap-aware view of one raw counter (see the module comment).
#[derive(Debug)]
pub struct WrappingCounter {
    /// Names the counter in messages, e.g. "the amdsmi energy counter of 0000:03:00.0".
    what: String,
    /// The largest value the counter takes before it starts again at zero.
    max_ticks: u64,
    joules_per_tick: f64,
    max_plausible_w: f64,
    /// A known cause to name when it drops (an issue tracker entry, say).
    drop_hint: Option<String>,
    last: Option<(u64, f64)>,
    /// The first reading: joules count from there, in integers, so a counter near
    /// the top of 64 bits loses no precision.
    first: u64,
    wraps: u64,
    health: CounterHealth,
}

impl WrappingCounter {
    pub fn new(what: impl Into<String>, max_ticks: u64, joules_per_tick: f64) -> Self {
        let what = what.into();
        let health = CounterHealth::default();
        health.lock().what = what.clone();
        WrappingCounter {
            what,
            max_ticks,
            joules_per_tick,
            max_plausible_w: MAX_PLAUSIBLE_W,
            drop_hint: None,
            last: None,
            first: 0,
            wraps: 0,
            health,
        }
    }

    pub fn with_drop_hint(mut self, hint: impl Into<String>) -> Self {
        self.drop_hint = Some(hint.into());
        self
    }

    pub fn with_max_plausible_w(mut self, watts: f64) -> Self {
        self.max_plausible_w = watts;
        self
    }

    /// The handle a meter keeps to say why this counter misbehaved.
    pub fn health(&self) -> CounterHealth {
        self.health.clone()
    }

    /// Cumulative joules since the first reading; `None` before a reading.
    pub fn joules(&self) -> Option<f64> {
        self.last.map(|(t, _)| {
            let range = self.max_ticks as i128 + 1;
            let ticks = self.wraps as i128 * range + t as i128 - self.first as i128;
            ticks as f64 * self.joules_per_tick
        })
    }

    /// Takes a reading of `ticks` made at `time_s` (seconds, any monotonic origin).
    pub fn update(&mut self, ticks: u64, time_s: f64) -> CounterStep {
        let step = match self.last {
            None => {
                self.first = ticks;
                CounterStep::First
            }
            Some((prev, _)) if ticks == prev => CounterStep::Unchanged,
            Some((prev, _)) if ticks > prev => CounterStep::Advanced,
            Some((prev, prev_s)) => {
                let dt = (time_s - prev_s).max(1e-3);
                // ticks from `prev` up to the top, one more to reach zero, then `ticks`
                let through_wrap = (self.max_ticks - prev.min(self.max_ticks)) as f64 + 1.0;
                let wrap_j = (through_wrap + ticks as f64) * self.joules_per_tick;
                if prev <= self.max_ticks && wrap_j <= self.max_plausible_w * (dt + LATE_STAMP_S) {
                    self.wraps += 1;
                    CounterStep::Wrapped
                } else {
                    self.note_drop(prev, ticks, dt, wrap_j / dt);
                    CounterStep::Dropped
                }
            }
        };
        self.last = Some((ticks, time_s));
        let mut h = self.health.lock();
        h.last_read_s = time_s;
        if step != CounterStep::Unchanged {
            h.last_ticks = Some(ticks);
            h.last_change_s = time_s;
        }
        step
    }

    fn note_drop(&mut self, prev: u64, ticks: u64, dt: f64, implied_w: f64) {
        let jpt = self.joules_per_tick;
        let mut text = format!(
            "{} went backwards from {prev} to {ticks} ({:.3} J → {:.3} J) within {dt:.3} s; \
             that is not a wrap of its range (0 to {}: a wrap would mean {implied_w:.3e} W), so \
             the counter was reset or misreported, and the window across it is rejected",
            self.what,
            prev as f64 * jpt,
            ticks as f64 * jpt,
            self.max_ticks
        );
        if let Some(h) = &self.drop_hint {
            text.push_str(&format!(" ({h})"));
        }
        self.health.lock().drop = Some(text);
    }

    pub fn what(&self) -> &str {
        &self.what
    }
}

/// How often a raw counter changes, measured by polling it: the mean time between
/// changes over up to `changes` changes within `max_wait`. `Ok(None)` when it changed
/// fewer than twice, a counter that stands still.
pub fn measure_change_period<E>(
    mut read: impl FnMut() -> Result<u64, E>,
    poll_every: Duration,
    changes: u32,
    max_wait: Duration,
) -> Result<Option<f64>, E> {
    let start = Instant::now();
    let mut last = read()?;
    let mut times: Vec<Instant> = Vec::new();
    while times.len() < changes as usize + 1 && start.elapsed() < max_wait {
        std::thread::sleep(poll_every);
        let v = read()?;
        if v != last {
            times.push(Instant::now());
            last = v;
        }
    }
    Ok(match (times.first(), times.last()) {
        (Some(a), Some(b)) if times.len() >= 2 => {
            Some(b.duration_since(*a).as_secs_f64() / (times.len() - 1) as f64)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_64_bit_counter_wraps_into_growing_joules() {
        let mut c = WrappingCounter::new("the test counter", u64::MAX, 1e-6);
        assert_eq!(c.update(u64::MAX - 1_000_000, 0.0), CounterStep::First);
        let before = c.joules().unwrap();
        // 2 J later, past the top: 1 J to the top, 1 more after zero
        assert_eq!(c.update(999_999, 0.01), CounterStep::Wrapped);
        let after = c.joules().unwrap();
        assert!((after - before - 2.0).abs() < 1e-3, "{before} → {after}");
        assert_eq!(c.update(1_999_999, 0.02), CounterStep::Advanced);
        assert!((c.joules().unwrap() - before - 3.0).abs() < 1e-3);
    }

    #[test]
    fn rapl_wraps_at_its_max_energy_range() {
        // package-0 with a 262 143 328 850 µJ range, as a Xeon reports it
        let range = 262_143_328_850u64;
        let mut c = WrappingCounter::new("package-0", range, 1e-6);
        c.update(range - 500_000, 0.0);
        assert_eq!(c.update(700_000, 0.01), CounterStep::Wrapped);
        // one tick (1 µJ) more: from the top back to zero
        assert!((c.joules().unwrap() - 1.200_001).abs() < 1e-9);
    }

    #[test]
    fn a_drop_is_not_a_wrap_and_says_why() {
        let mut c = WrappingCounter::new(
            "the amdsmi energy counter of 0000:03:00.0",
            u64::MAX,
            15.3e-6,
        )
        .with_drop_hint("reported for amdsmi in ROCm/amdsmi#115");
        c.update(4_975_767_868, 0.0);
        let before = c.joules().unwrap();
        assert_eq!(c.update(4_750_896_266, 0.001), CounterStep::Dropped);
        assert!(
            c.joules().unwrap() < before,
            "the drop reaches the window engine"
        );
        let why = c.health().fault_detail(1.0).unwrap();
        assert!(
            why.contains("went backwards from 4975767868 to 4750896266"),
            "{why}"
        );
        assert!(
            why.contains("not a wrap") && why.contains("ROCm/amdsmi#115"),
            "{why}"
        );
        // taken once: afterwards only a stall would be reported
        assert!(c.health().fault_detail(1.0).is_none());
        // and a RAPL counter that falls by a little is a drop too, not a wrap
        let mut r = WrappingCounter::new("dram", 65_712_999_613, 1e-6);
        r.update(50_000_000, 0.0);
        assert_eq!(r.update(40_000_000, 1.0), CounterStep::Dropped);
    }

    #[test]
    fn a_counter_that_stands_still_says_for_how_long() {
        let mut c = WrappingCounter::new("energy1_input of 0000:03:00.0", u64::MAX, 1e-6);
        c.update(10, 0.0);
        c.update(10, 0.4);
        assert!(c.health().fault_detail(0.5).is_none());
        c.update(10, 1.5);
        let why = c.health().fault_detail(0.5).unwrap();
        assert!(why.contains("stood still at 10 for 1.50 s"), "{why}");
    }

    #[test]
    fn the_change_period_of_a_counter_is_measured_or_missing() {
        let t0 = Instant::now();
        let p = measure_change_period(
            || Ok::<_, ()>((t0.elapsed().as_millis() / 10) as u64),
            Duration::from_millis(1),
            4,
            Duration::from_secs(1),
        )
        .unwrap()
        .unwrap();
        assert!(p > 0.007 && p < 0.02, "{p}");
        let still = measure_change_period(
            || Ok::<_, ()>(5),
            Duration::from_millis(1),
            4,
            Duration::from_millis(30),
        )
        .unwrap();
        assert!(still.is_none());
    }
}
