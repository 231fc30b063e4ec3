//! Check mode (docs/ARCHITECTURE.md §4.7): the counter and the sampling meter run side by
//! side, and over every stretch of counter updates at least `min_interval_s` long
//! (windows are made of such stretches) the integrated power is compared with the
//! counter, interpolated at the same update times. Their agreement is kept so a
//! record or the CLI can say how far the two NVML sources differ on this device.
//! The counter's numbers are the ones recorded.

use super::{CounterMeter, NvmlDevice, SamplingConfig, SamplingMeter};
use joulebench_core::meter::{CounterUpdate, TelemetrySample};
use joulebench_core::window::energy_between;
use joulebench_core::{EnergyMeter, MeterError, MeterSource, Telemetry};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// One interval both meters saw.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgreementInterval {
    pub seconds: f64,
    pub counter_j: f64,
    pub sampled_j: f64,
}

impl AgreementInterval {
    /// Sampled minus counter, as a percentage of the counter.
    pub fn difference_pct(&self) -> Option<f64> {
        (self.counter_j > 0.0).then(|| 100.0 * (self.sampled_j - self.counter_j) / self.counter_j)
    }
}

/// Agreement over a set of intervals.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub intervals: usize,
    /// 100 − the median absolute difference: 100 means the two meters agree.
    pub agreement_pct: f64,
    /// Median of (sampled − counter) / counter: its sign says which reads higher.
    pub median_difference_pct: f64,
    /// The largest absolute difference seen.
    pub worst_difference_pct: f64,
}

impl Agreement {
    pub fn of(intervals: &[AgreementInterval]) -> Option<Agreement> {
        let diffs: Vec<f64> = intervals
            .iter()
            .filter_map(|i| i.difference_pct())
            .collect();
        if diffs.is_empty() {
            return None;
        }
        let abs: Vec<f64> = diffs.iter().map(|d| d.abs()).collect();
        Some(Agreement {
            intervals: diffs.len(),
            agreement_pct: 100.0 - median(&abs),
            median_difference_pct: median(&diffs),
            worst_difference_pct: abs.iter().cloned().fold(0.0, f64::max),
        })
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// A handle on the check meter's log that outlives the borrow the sweep holds on the
/// meter, so an observer can report agreement per point.
#[derive(Clone, Default)]
pub struct AgreementHandle {
    log: Arc<Mutex<Vec<AgreementInterval>>>,
}

impl AgreementHandle {
    pub fn intervals(&self) -> Vec<AgreementInterval> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Agreement over everything seen so far.
    pub fn summary(&self) -> Option<Agreement> {
        Agreement::of(&self.intervals())
    }

    /// Agreement since the last `take`, then start afresh (one point at a time).
    pub fn take(&self) -> Option<Agreement> {
        let taken = match self.log.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(_) => return None,
        };
        Agreement::of(&taken)
    }

    fn push(&self, i: AgreementInterval) {
        if let Ok(mut l) = self.log.lock() {
            l.push(i);
        }
    }
}

pub struct CheckMeter {
    counter: CounterMeter,
    sampled: SamplingMeter,
    log: AgreementHandle,
    /// Where the current stretch of counter updates began.
    anchor: Option<CounterUpdate>,
    /// The sampling meter's integral, kept long enough to interpolate it at counter updates.
    sampled_line: Vec<CounterUpdate>,
    min_interval_s: f64,
}

impl CheckMeter {
    pub fn open(device: Arc<dyn NvmlDevice>, sampling: SamplingConfig) -> Result<Self, MeterError> {
        let counter = CounterMeter::open(device.clone())?;
        let sampled = SamplingMeter::start(device, sampling)?;
        Ok(Self::from_meters(counter, sampled))
    }

    pub fn from_meters(counter: CounterMeter, sampled: SamplingMeter) -> Self {
        // Shorter stretches (the moment between two windows) are mostly one
        // counter step of quantisation and would only add noise.
        let min_interval_s = (5.0 * counter.update_period().seconds).max(0.25);
        CheckMeter {
            counter,
            sampled,
            log: AgreementHandle::default(),
            anchor: None,
            sampled_line: Vec::new(),
            min_interval_s,
        }
    }

    pub fn agreement(&self) -> AgreementHandle {
        self.log.clone()
    }

    pub fn counter(&self) -> &CounterMeter {
        &self.counter
    }

    pub fn sampled(&self) -> &SamplingMeter {
        &self.sampled
    }
}

impl EnergyMeter for CheckMeter {
    fn source(&self) -> MeterSource {
        MeterSource::NvmlCounter
    }

    fn take_agreement(&mut self) -> Option<joulebench_core::meter::MeterAgreement> {
        self.log
            .take()
            .map(|a| joulebench_core::meter::MeterAgreement {
                intervals: a.intervals,
                agreement_pct: a.agreement_pct,
                median_difference_pct: a.median_difference_pct,
                worst_difference_pct: a.worst_difference_pct,
            })
    }

    fn energy_j(&mut self) -> Result<f64, MeterError> {
        self.counter.energy_j()
    }

    fn update_period_s(&self) -> f64 {
        self.counter.update_period_s()
    }

    fn max_power_w(&self) -> Option<f64> {
        self.counter.max_power_w()
    }

    /// The counter's updates; on the way, every stretch of them at least
    /// `min_interval_s` long is compared with the sampled integral.
    fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
        let updates = self.counter.take_updates()?;
        self.sampled_line.extend(self.sampled.take_updates()?);
        for u in &updates {
            match self.anchor {
                Some(a) if u.time_s - a.time_s >= self.min_interval_s => {
                    if let Some(sampled_j) = energy_between(&self.sampled_line, a.time_s, u.time_s)
                    {
                        self.log.push(AgreementInterval {
                            seconds: u.time_s - a.time_s,
                            counter_j: u.joules - a.joules,
                            sampled_j,
                        });
                    }
                    self.anchor = Some(*u);
                }
                Some(_) => {}
                None => self.anchor = Some(*u),
            }
        }
        if let Some(a) = self.anchor {
            // keep the samples from just before the anchor on
            let keep_from = self
                .sampled_line
                .iter()
                .rposition(|s| s.time_s < a.time_s)
                .unwrap_or(0);
            self.sampled_line.drain(..keep_from);
        }
        Ok(updates)
    }

    fn take_telemetry(&mut self) -> Result<Vec<TelemetrySample>, MeterError> {
        self.sampled.take_telemetry()?;
        self.counter.take_telemetry()
    }

    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        self.counter.telemetry()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_reports_median_sign_and_worst() {
        let i = |c: f64, s: f64| AgreementInterval {
            seconds: 1.0,
            counter_j: c,
            sampled_j: s,
        };
        let a = Agreement::of(&[
            i(100.0, 102.0),
            i(100.0, 99.0),
            i(100.0, 105.0),
            i(0.0, 3.0),
        ])
        .unwrap();
        assert_eq!(a.intervals, 3);
        assert!((a.agreement_pct - 98.0).abs() < 1e-9);
        assert!((a.median_difference_pct - 2.0).abs() < 1e-9);
        assert!((a.worst_difference_pct - 5.0).abs() < 1e-9);
        assert!(Agreement::of(&[]).is_none());
    }
}
