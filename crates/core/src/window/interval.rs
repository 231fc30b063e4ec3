//! Windows between two moments of the caller's choosing, around work the engine
//! does not run: `EnergyMonitor`'s `begin_window`/`end_window`, and criterion's
//! `Energy` measurement around each batch of `Bencher::iter`. They cannot keep the
//! device busy across the counter's updates, so each end is interpolated on the
//! counter's timeline (its update times fitted as the busy windows' are), and the
//! end waits for the first update after it rather than guessing past the last one.
//! The meter checks are the engine's: a reading that goes down, or none for many
//! periods, is an error, never a window of zero joules.

use super::timeline::{energy_at, energy_at_or_after_last, CounterTimeline, UpdateTimes};
use super::types::WindowRules;
use super::WindowError;
use crate::clock::Clock;
use crate::meter::{CounterUpdate, EnergyMeter, MeterError, MeterSource};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How a window's ends sit on the counter's timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowEnds {
    /// Each end between two updates around it.
    Interpolated,
    /// The meter had not changed before the window began (it had just opened): the
    /// start is extrapolated back from the first two updates after it.
    StartExtrapolated,
    /// The caller asked not to wait for the update after the end: it is
    /// extrapolated at the power of the last two updates.
    EndExtrapolated,
}

/// What an interval window measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntervalEnergy {
    pub begin_s: f64,
    pub end_s: f64,
    /// `None` without an energy meter.
    pub joules: Option<f64>,
    pub ends: WindowEnds,
    /// Counter updates strictly inside the window.
    pub counter_updates: u32,
    /// How long the end waited for the first update after it.
    pub waited_s: f64,
}

impl IntervalEnergy {
    pub fn seconds(&self) -> f64 {
        self.end_s - self.begin_s
    }
}

/// A window gives up waiting for an update after this many periods (and at least
/// this long), and calls the meter stalled.
const STALL_PERIODS: f64 = 5.0;
const STALL_MIN_S: f64 = 0.5;

/// A meter and clock, with the counter's timeline, for windows between two moments.
pub struct IntervalMeter {
    meter: Box<dyn EnergyMeter>,
    clock: Arc<dyn Clock>,
    rules: WindowRules,
    timeline: Option<CounterTimeline>,
    grid_fit: bool,
    wait_for_update: bool,
    /// Updates at their fitted times, from shortly before the oldest moment a
    /// window may still begin at.
    updates: Vec<CounterUpdate>,
}

impl IntervalMeter {
    /// Windows on `meter` and `clock` under `rules`; each end waits for the update
    /// after it, and update times are fitted to the counter's period.
    pub fn new(meter: Box<dyn EnergyMeter>, clock: Arc<dyn Clock>, rules: WindowRules) -> Self {
        IntervalMeter {
            meter,
            clock,
            rules,
            timeline: None,
            grid_fit: true,
            wait_for_update: true,
            updates: Vec::new(),
        }
    }

    /// With `false`, a window's end does not wait for the next update: it is
    /// extrapolated, and says so ([`WindowEnds::EndExtrapolated`]).
    pub fn set_wait_for_update(&mut self, wait: bool) {
        self.wait_for_update = wait;
    }

    /// Trust each update's observed time instead of fitting it (tests only).
    pub fn set_grid_fit(&mut self, fit: bool) {
        self.grid_fit = fit;
        self.timeline = None;
    }

    pub fn rules(&self) -> WindowRules {
        self.rules
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn meter_source(&self) -> MeterSource {
        self.meter.source()
    }

    pub fn update_period_s(&self) -> f64 {
        self.meter.update_period_s()
    }

    pub fn has_energy(&self) -> bool {
        self.meter.source() != MeterSource::None && self.meter.update_period_s() > 0.0
    }

    pub fn update_times(&self) -> UpdateTimes {
        self.timeline
            .as_ref()
            .map_or(UpdateTimes::AsObserved, |t| t.method())
    }

    /// The shortest window the rules trust on this meter.
    pub fn min_window_s(&self) -> f64 {
        self.rules.target_s(self.meter.update_period_s())
    }

    /// Whether a window this long is shorter than the rules ask.
    pub fn is_short(&self, seconds: f64) -> bool {
        self.rules.is_short(seconds, self.meter.update_period_s())
    }

    /// Whether energy can be read at all: a reading, or the meter's reason why not.
    pub fn check_meter(&mut self) -> Result<(), MeterError> {
        self.meter.energy_j().map(|_| ())
    }

    /// Now, on the device's clock, with what the meter saw so far taken in: the
    /// moment a window begins.
    pub fn mark(&mut self) -> Result<f64, MeterError> {
        if self.has_energy() {
            self.drain()?;
        }
        Ok(self.clock.now_s())
    }

    /// The energy between `begin_s` and `end_s` (moments from [`Self::mark`]), once
    /// an update after `end_s` has been seen (unless waiting is off).
    pub fn measure(
        &mut self,
        begin_s: f64,
        end_s: f64,
    ) -> Result<IntervalEnergy, WindowError<Infallible>> {
        if !self.has_energy() {
            return Ok(IntervalEnergy {
                begin_s,
                end_s,
                joules: None,
                ends: WindowEnds::Interpolated,
                counter_updates: 0,
                waited_s: 0.0,
            });
        }
        self.drain()?;
        let period = self.meter.update_period_s();
        let stall_s = (STALL_PERIODS * period).max(STALL_MIN_S);
        let step = Duration::from_secs_f64((period / 20.0).clamp(1e-4, 0.01));
        let waited_from = self.clock.now_s();
        let mut last_change = waited_from;
        let mut seen = self.updates.len();
        // the update after the end, and (for a window begun before the meter's first
        // update) a second one to extrapolate the start back from
        let placed = |ups: &[CounterUpdate]| {
            ups.last().is_some_and(|u| u.time_s >= end_s)
                && (ups.first().is_some_and(|u| u.time_s <= begin_s) || ups.len() >= 2)
        };
        while self.wait_for_update && !placed(&self.updates) {
            self.clock.sleep(step);
            self.drain()?;
            let now = self.clock.now_s();
            if self.updates.len() > seen {
                seen = self.updates.len();
                last_change = now;
            } else if now - last_change > stall_s {
                return Err(WindowError::MeterStalled {
                    waited_s: now - last_change,
                    period_s: period,
                    detail: self.meter.fault_detail(),
                });
            }
        }
        let waited_s = self.clock.now_s() - waited_from;
        if let Some(w) = self.updates.windows(2).find(|w| w[1].joules < w[0].joules) {
            let (from_j, to_j) = (w[0].joules, w[1].joules);
            return Err(WindowError::MeterBackwards {
                from_j,
                to_j,
                detail: self.meter.fault_detail(),
            });
        }
        super::check_no_jump(&self.updates, self.meter.max_power_w(), period)?;
        let (start_j, start_ends) = place(&self.updates, begin_s);
        let (end_j, end_ends) = place(&self.updates, end_s);
        let joules = match (start_j, end_j) {
            (Some(a), Some(b)) => b - a,
            // too few updates to place either end (the meter has barely started)
            _ => {
                return Err(WindowError::MeterStalled {
                    waited_s,
                    period_s: period,
                    detail: Some(
                        "too few counter updates around the window to place its ends".into(),
                    ),
                })
            }
        };
        let ends = if start_ends != WindowEnds::Interpolated {
            start_ends
        } else {
            end_ends
        };
        Ok(IntervalEnergy {
            begin_s,
            end_s,
            joules: Some(joules),
            ends,
            counter_updates: self
                .updates
                .iter()
                .filter(|u| u.time_s > begin_s && u.time_s < end_s)
                .count() as u32,
            waited_s,
        })
    }

    /// Forget updates no window beginning at or after `time_s` needs: keep from
    /// the last one before it.
    pub fn forget_before(&mut self, time_s: f64) {
        let keep_from = self
            .updates
            .iter()
            .rposition(|u| u.time_s <= time_s)
            .unwrap_or(0);
        self.updates.drain(..keep_from);
    }

    /// Give the meter back.
    pub fn into_meter(self) -> Box<dyn EnergyMeter> {
        self.meter
    }

    fn drain(&mut self) -> Result<(), MeterError> {
        let updates = self.meter.take_updates()?;
        if updates.is_empty() {
            return Ok(());
        }
        let period = self.meter.update_period_s();
        let fit = self.grid_fit;
        let timeline = self
            .timeline
            .get_or_insert_with(|| CounterTimeline::new(period, fit));
        self.updates
            .extend(updates.into_iter().map(|u| timeline.push(u)));
        Ok(())
    }
}

/// The reading at `t` on the timeline, and how it was placed: between the updates
/// around it, or extrapolated from the first two (before them) or the last two
/// (after them).
fn place(updates: &[CounterUpdate], t: f64) -> (Option<f64>, WindowEnds) {
    if let Some(j) = energy_at(updates, t) {
        return (Some(j), WindowEnds::Interpolated);
    }
    match updates.first() {
        Some(first) if t < first.time_s => {
            (extrapolate_back(updates, t), WindowEnds::StartExtrapolated)
        }
        _ => (
            energy_at_or_after_last(updates, t),
            WindowEnds::EndExtrapolated,
        ),
    }
}

/// The reading at `t` before the first update, at the power of the first two.
fn extrapolate_back(updates: &[CounterUpdate], t: f64) -> Option<f64> {
    match updates {
        [a, b, ..] if t < a.time_s && b.time_s > a.time_s => {
            Some(a.joules - (a.time_s - t) * (b.joules - a.joules) / (b.time_s - a.time_s))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A counter booking exactly 100 W every 100 ms, and a clock that only moves
    /// when slept.
    struct World {
        now: f64,
        seen: usize,
    }
    struct Shared(Arc<Mutex<World>>);
    impl Clock for Shared {
        fn now_s(&self) -> f64 {
            self.0.lock().unwrap().now
        }
        fn sleep(&self, d: Duration) {
            self.0.lock().unwrap().now += d.as_secs_f64();
        }
    }
    struct Meter(Arc<Mutex<World>>, bool);
    impl EnergyMeter for Meter {
        fn source(&self) -> MeterSource {
            MeterSource::Simulated
        }
        fn energy_j(&mut self) -> Result<f64, MeterError> {
            Ok(0.0)
        }
        fn update_period_s(&self) -> f64 {
            0.1
        }
        fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
            let mut w = self.0.lock().unwrap();
            let stuck = self.1;
            let upto = (w.now / 0.1 + 1e-9).floor() as usize;
            let from = w.seen;
            w.seen = upto.max(from);
            Ok((from + 1..=upto)
                .filter(|_| !stuck)
                .map(|k| CounterUpdate {
                    time_s: k as f64 * 0.1,
                    joules: 10.0 * k as f64,
                })
                .collect())
        }
    }

    fn interval(stuck: bool) -> (IntervalMeter, Arc<Mutex<World>>) {
        let w = Arc::new(Mutex::new(World { now: 0.0, seen: 0 }));
        let clock: Arc<dyn Clock> = Arc::new(Shared(w.clone()));
        (
            IntervalMeter::new(
                Box::new(Meter(w.clone(), stuck)),
                clock,
                WindowRules::default(),
            ),
            w,
        )
    }

    #[test]
    fn the_end_waits_for_the_next_update_and_both_ends_interpolate() {
        let (mut m, w) = interval(false);
        w.lock().unwrap().now = 0.33;
        let a = m.mark().unwrap();
        w.lock().unwrap().now = 1.57;
        let e = m.measure(a, 1.57).unwrap();
        assert_eq!(e.ends, WindowEnds::Interpolated);
        assert!((e.joules.unwrap() - 124.0).abs() < 1e-9, "{e:?}");
        assert!(e.waited_s > 0.02 && e.waited_s < 0.04, "{e:?}");
        assert_eq!(e.counter_updates, 12);
        assert!(m.is_short(0.9) && !m.is_short(1.0));
    }

    #[test]
    fn without_waiting_the_end_is_extrapolated_and_says_so() {
        let (mut m, w) = interval(false);
        w.lock().unwrap().now = 0.33;
        let a = m.mark().unwrap();
        m.set_wait_for_update(false);
        w.lock().unwrap().now = 1.57;
        let e = m.measure(a, 1.57).unwrap();
        assert_eq!(e.ends, WindowEnds::EndExtrapolated);
        assert_eq!(e.waited_s, 0.0);
        assert!((e.joules.unwrap() - 124.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn a_counter_that_never_moves_is_an_error_not_zero_joules() {
        let (mut m, w) = interval(true);
        let a = m.mark().unwrap();
        w.lock().unwrap().now = 2.0;
        let err = m.measure(a, 2.0).unwrap_err();
        assert!(matches!(err, WindowError::MeterStalled { .. }), "{err}");
    }
}
