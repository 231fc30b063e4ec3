//! When the energy counter changed, from when its changes were seen. A counter
//! changes on a regular period (about 100 ms for NVML), but the meter's polling
//! thread sees each change late, by a varying amount — later when telemetry queries
//! share the thread — and may miss one. Trusting each observation puts that
//! lateness straight into the window's time and into the work counted between two
//! updates; the timeline instead fits each observation to the counter's own rhythm
//! (docs/ARCHITECTURE.md §4.3): a filter that follows the period as it wanders,
//! weighing each observation by how far observations scatter around it, and placed
//! at the promptest of them, since no change can be seen before it happens.

use crate::meter::CounterUpdate;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How a record's update times were taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateTimes {
    /// Each change at the time the meter's thread saw it (records before the grid
    /// fit, and meters with too few changes to fit).
    #[default]
    AsObserved,
    /// Each change fitted to the regular grid the counter changes on.
    GridFit,
}

impl UpdateTimes {
    pub fn name(self) -> &'static str {
        match self {
            UpdateTimes::AsObserved => "as-observed",
            UpdateTimes::GridFit => "grid-fit",
        }
    }
}

/// Intervals remembered to estimate the period and the scatter of observations.
const HISTORY: usize = 256;
/// The fit starts once this many single-period intervals have been seen; before
/// that, update times are taken as observed.
const MIN_INTERVALS: usize = 16;
/// How far the period may wander from one change to the next, as a share of it:
/// the fit follows a firmware loop that reschedules itself, and smooths the rest.
const WANDER_PER_PERIOD: f64 = 0.002;
/// The lateness offset tracks this quantile of the observations around the fit
/// (the promptest ones), moving by at most this share of their scatter per update.
const PROMPT_QUANTILE: f64 = 0.05;
const OFFSET_STEP: f64 = 0.01;
/// The offset starts at the quantile of this many observations around the fit.
const OFFSET_START: usize = 32;
/// More than this many periods between two observations: the counter (or the
/// thread) stopped for a while, and the fit starts again from the observation.
const MAX_GAP_PERIODS: f64 = 50.0;

/// The fit's state: the latest change's time (still carrying the mean lateness)
/// and the period, with their covariance.
#[derive(Clone, Copy, Debug)]
struct Fit {
    time_s: f64,
    period_s: f64,
    cov: [[f64; 2]; 2],
}

/// A counter's updates with their fitted times.
#[derive(Clone, Debug)]
pub struct CounterTimeline {
    fit: bool,
    nominal_period_s: f64,
    /// Single-period intervals between consecutive observations, newest last.
    intervals: VecDeque<f64>,
    last_observed_s: Option<f64>,
    last_fitted_s: Option<f64>,
    state: Option<Fit>,
    /// How much earlier than the fit's line the changes happened: the lateness of
    /// the promptest observations, tracked slowly.
    offset_s: f64,
    /// Observations around the fit until the offset starts from their quantile.
    first_residuals: Vec<f64>,
    fitted_count: u64,
}

impl CounterTimeline {
    /// A timeline for a counter that changes about every `period_s`; with `fit`
    /// off, every update keeps its observed time.
    pub fn new(period_s: f64, fit: bool) -> CounterTimeline {
        CounterTimeline {
            fit: fit && period_s > 0.0,
            nominal_period_s: period_s,
            intervals: VecDeque::new(),
            last_observed_s: None,
            last_fitted_s: None,
            state: None,
            offset_s: 0.0,
            first_residuals: Vec::new(),
            fitted_count: 0,
        }
    }

    /// Whether updates are fitted to the grid (once enough have been seen).
    pub fn method(&self) -> UpdateTimes {
        if self.fit && self.fitted_count > 0 {
            UpdateTimes::GridFit
        } else {
            UpdateTimes::AsObserved
        }
    }

    /// The period the counter keeps, as observed (the nominal one until measured).
    pub fn period_s(&self) -> f64 {
        match self.state {
            Some(f) => f.period_s,
            None if self.intervals.len() >= MIN_INTERVALS => {
                self.intervals.iter().sum::<f64>() / self.intervals.len() as f64
            }
            None => self.nominal_period_s,
        }
    }

    /// Take one observed update (in the order seen) and return it at its fitted time.
    pub fn push(&mut self, u: CounterUpdate) -> CounterUpdate {
        let fitted = self.fitted_time(u.time_s);
        // changes keep their order
        let time_s = match self.last_fitted_s {
            Some(prev) if fitted <= prev => u.time_s.max(prev + 1e-9),
            _ => fitted,
        };
        self.last_fitted_s = Some(time_s);
        CounterUpdate {
            time_s,
            joules: u.joules,
        }
    }

    fn fitted_time(&mut self, observed_s: f64) -> f64 {
        let period = self.period_s();
        let steps = match self.last_observed_s {
            Some(prev) if period > 0.0 => ((observed_s - prev) / period).round().max(1.0),
            _ => 0.0,
        };
        if steps == 1.0 {
            if let Some(prev) = self.last_observed_s {
                self.intervals.push_back(observed_s - prev);
                if self.intervals.len() > HISTORY {
                    self.intervals.pop_front();
                }
            }
        }
        self.last_observed_s = Some(observed_s);
        if !self.fit || self.intervals.len() < MIN_INTERVALS || steps == 0.0 {
            self.state = None;
            return observed_s;
        }
        let r = self.scatter();
        let q = (WANDER_PER_PERIOD * period).powi(2);
        let Some(f) = self.state.filter(|_| steps <= MAX_GAP_PERIODS) else {
            // the fit starts from this observation and the mean interval, as
            // uncertain as the observations make them
            let n = self.intervals.len() as f64;
            self.state = Some(Fit {
                time_s: observed_s,
                period_s: self.intervals.iter().sum::<f64>() / n,
                cov: [[r, 0.0], [0.0, 2.0 * r / (n * n) + q]],
            });
            return observed_s;
        };
        // predict `steps` periods ahead
        let [[a, b], [c, d]] = f.cov;
        let n = steps;
        let pred_time = f.time_s + n * f.period_s;
        let (a, b, c) = (a + n * (b + c) + n * n * d + n * q, b + n * d, c + n * d);
        let innovation = observed_s - pred_time;
        if innovation.abs() > 0.5 * f.period_s + 4.0 * (a + r).sqrt() {
            // not this grid any more (a reset, a clock jump): start again
            self.state = None;
            return self.fitted_time_restart(observed_s);
        }
        let (k0, k1) = (a / (a + r), c / (a + r));
        let fit = Fit {
            time_s: pred_time + k0 * innovation,
            period_s: f.period_s + k1 * innovation,
            cov: [[(1.0 - k0) * a, (1.0 - k0) * b], [c - k1 * a, d - k1 * b]],
        };
        self.state = Some(fit);
        // follow the promptest observations' place around the fit, slowly
        let residual = observed_s - fit.time_s;
        if self.first_residuals.len() < OFFSET_START {
            self.first_residuals.push(residual);
            if self.first_residuals.len() == OFFSET_START {
                let mut v = self.first_residuals.clone();
                v.sort_by(f64::total_cmp);
                self.offset_s = v[((OFFSET_START - 1) as f64 * PROMPT_QUANTILE).round() as usize];
            }
        } else {
            let below = if residual < self.offset_s { 1.0 } else { 0.0 };
            self.offset_s += OFFSET_STEP * r.sqrt() * (PROMPT_QUANTILE - below);
        }
        self.fitted_count += 1;
        fit.time_s + self.offset_s.min(0.0)
    }

    fn fitted_time_restart(&mut self, observed_s: f64) -> f64 {
        let r = self.scatter();
        let n = self.intervals.len() as f64;
        let q = (WANDER_PER_PERIOD * self.nominal_period_s).powi(2);
        self.state = Some(Fit {
            time_s: observed_s,
            period_s: self.intervals.iter().sum::<f64>() / n,
            cov: [[r, 0.0], [0.0, 2.0 * r / (n * n) + q]],
        });
        observed_s
    }

    /// The variance of the observations' scatter around the changes, from the
    /// intervals: neighbouring intervals share one observation, so their
    /// covariance is minus that variance (whatever the period's wander).
    fn scatter(&self) -> f64 {
        let n = self.intervals.len() as f64;
        let mean = self.intervals.iter().sum::<f64>() / n;
        let cov1 = self
            .intervals
            .iter()
            .zip(self.intervals.iter().skip(1))
            .map(|(a, b)| (a - mean) * (b - mean))
            .sum::<f64>()
            / (n - 1.0);
        (-cov1).max((1e-6 * mean).powi(2)).max(1e-18)
    }
}

/// Energy between two moments from a meter's updates, each end interpolated
/// between the updates around it (for windows whose ends are not updates, such as
/// EnergyMonitor's). `None` if the updates do not bracket both ends.
pub fn energy_between(updates: &[CounterUpdate], a: f64, b: f64) -> Option<f64> {
    Some(energy_at(updates, b)? - energy_at(updates, a)?)
}

/// The cumulative reading at `t`: interpolated between the updates around it, or,
/// past the last update, extrapolated at the power of the last two.
pub fn energy_at_or_after_last(updates: &[CounterUpdate], t: f64) -> Option<f64> {
    match updates {
        [.., a, b] if t > b.time_s && b.time_s > a.time_s => {
            Some(b.joules + (t - b.time_s) * (b.joules - a.joules) / (b.time_s - a.time_s))
        }
        _ => energy_at(updates, t),
    }
}

/// The cumulative reading at `t`, interpolated between the updates around it.
pub fn energy_at(updates: &[CounterUpdate], t: f64) -> Option<f64> {
    let after = updates.iter().position(|u| u.time_s >= t)?;
    let hi = updates[after];
    if hi.time_s == t || after == 0 {
        return (hi.time_s == t).then_some(hi.joules);
    }
    let lo = updates[after - 1];
    let f = (t - lo.time_s) / (hi.time_s - lo.time_s);
    Some(lo.joules + f * (hi.joules - lo.joules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn u(t: f64, j: f64) -> CounterUpdate {
        CounterUpdate {
            time_s: t,
            joules: j,
        }
    }

    #[test]
    fn interpolation_between_updates() {
        let ups = [u(1.0, 10.0), u(2.0, 20.0), u(3.0, 40.0)];
        assert_eq!(energy_at(&ups, 1.5), Some(15.0));
        assert_eq!(energy_at(&ups, 2.5), Some(30.0));
        assert_eq!(energy_at(&ups, 3.0), Some(40.0));
        assert_eq!(energy_at(&ups, 0.5), None);
        assert_eq!(energy_at(&ups, 3.5), None);
        assert_eq!(energy_between(&ups, 1.5, 2.5), Some(15.0));
        assert_eq!(energy_at_or_after_last(&ups, 3.5), Some(50.0));
        assert_eq!(energy_at_or_after_last(&ups, 2.5), Some(30.0));
    }

    /// Changes every 100 ms, seen up to `late_s` late. The period wanders (each
    /// step ± 0.5 ms, accumulating) or, with `grid`, each change keeps within
    /// ± 0.5 ms of a fixed grid.
    fn observed(late_s: f64, grid: bool, n: usize, seed: u64) -> Vec<(f64, f64)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut t = 0.137;
        (0..n)
            .map(|k| {
                let jitter = 0.0005 * (rng.random::<f64>() - 0.5) * 3.46;
                let truth = if grid {
                    0.137 + 0.1 * k as f64 + jitter
                } else {
                    t += 0.1 + jitter;
                    t
                };
                (truth, truth + late_s * rng.random::<f64>())
            })
            .collect()
    }

    /// The errors of the time between two changes a second apart.
    fn second_errors(late_s: f64, grid: bool, fit: bool) -> Vec<f64> {
        let obs = observed(late_s, grid, 600, 7);
        let mut tl = CounterTimeline::new(0.1, fit);
        let fitted: Vec<f64> = obs
            .iter()
            .enumerate()
            .map(|(i, (_, seen))| tl.push(u(*seen, i as f64)).time_s)
            .collect();
        (100..580)
            .map(|i| {
                let truth = obs[i + 10].0 - obs[i].0;
                (fitted[i + 10] - fitted[i]) / truth - 1.0
            })
            .collect()
    }

    fn rms(v: &[f64]) -> f64 {
        (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
    }

    fn worst(v: &[f64]) -> f64 {
        v.iter().fold(0.0, |a: f64, x| a.max(x.abs()))
    }

    #[test]
    fn fitting_to_the_grid_removes_most_of_the_lateness() {
        // seen up to 20 ms late, a second's length is off by up to 2%; fitted, the
        // typical error is a fifth of that or less, the worst a third
        for grid in [false, true] {
            let raw = second_errors(0.02, grid, false);
            let fit = second_errors(0.02, grid, true);
            assert!(worst(&raw) > 0.015, "{}", worst(&raw));
            assert!(
                rms(&fit) < 0.2 * rms(&raw),
                "grid {grid}: fit {} raw {}",
                rms(&fit),
                rms(&raw)
            );
            assert!(
                worst(&fit) < 0.33 * worst(&raw),
                "grid {grid}: fit {} raw {}",
                worst(&fit),
                worst(&raw)
            );
        }
    }

    #[test]
    fn prompt_updates_keep_their_times() {
        let mut tl = CounterTimeline::new(0.1, true);
        for i in 0..100 {
            let t = 0.05 + 0.1 * i as f64;
            let f = tl.push(u(t, i as f64));
            assert!((f.time_s - t).abs() < 1e-6, "{} vs {t}", f.time_s);
        }
        assert_eq!(tl.method(), UpdateTimes::GridFit);
        assert_eq!(
            CounterTimeline::new(0.1, false).method(),
            UpdateTimes::AsObserved
        );
    }

    #[test]
    fn a_missed_update_and_a_restart_do_not_derail_the_fit() {
        let mut tl = CounterTimeline::new(0.1, true);
        let mut t = 0.0;
        for i in 0..60 {
            t += if i == 40 { 0.2 } else { 0.1 };
            let f = tl.push(u(t + 0.001, i as f64));
            assert!((f.time_s - t).abs() < 0.0015, "{i}: {} vs {t}", f.time_s);
        }
        // the counter restarts on another phase: the fit follows
        t += 0.035;
        for i in 60..100 {
            t += 0.1;
            let f = tl.push(u(t, i as f64));
            if i > 62 {
                assert!((f.time_s - t).abs() < 0.002, "{i}: {} vs {t}", f.time_s);
            }
        }
    }
}
