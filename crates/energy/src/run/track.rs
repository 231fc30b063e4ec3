//! One meter followed through a program's run: the cumulative energy at each
//! boundary the run asks for (its start, every phase mark, its end), interpolated
//! between the meter's own updates around it, and its telemetry summed up as it
//! comes. Boundaries are resolved as soon as an update after them arrives, so a run
//! of days keeps only a few seconds of updates, whatever the meter's rate.

use joulebench_core::meter::{CounterUpdate, TelemetrySample};
use joulebench_core::run_record::{Range, ReasonShare, RunTelemetry};
use joulebench_core::window::{energy_at, energy_at_or_after_last};
use joulebench_core::EnergyMeter;
use std::collections::{BTreeMap, VecDeque};

/// Updates kept behind the oldest boundary still waiting, seconds: a mark is
/// stamped when read and handed over within milliseconds, far less than this.
const KEEP_BEHIND_S: f64 = 5.0;

/// A running lowest, mean and highest.
#[derive(Clone, Copy, Debug, Default)]
struct Running {
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Running {
    fn add(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.n == 0 {
            self.min = x;
            self.max = x;
        }
        self.n += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn range(&self) -> Option<Range> {
        (self.n > 0).then(|| Range {
            min: self.min,
            mean: self.sum / self.n as f64,
            max: self.max,
        })
    }
}

/// Telemetry readings of one device between two moments, summed up.
#[derive(Clone, Debug, Default)]
pub(crate) struct TelemetryStats {
    samples: u64,
    power_w: Running,
    sm_mhz: Running,
    mem_mhz: Running,
    temperature_c: Running,
    enforced_w: Running,
    reasons: BTreeMap<String, u64>,
}

impl TelemetryStats {
    fn add(&mut self, s: &TelemetrySample) {
        let t = &s.telemetry;
        self.samples += 1;
        if let Some(w) = t.power_w {
            self.power_w.add(w);
        }
        if let Some(m) = t.sm_clock_mhz {
            self.sm_mhz.add(m as f64);
        }
        if let Some(m) = t.mem_clock_mhz {
            self.mem_mhz.add(m as f64);
        }
        if let Some(c) = t.temperature_c {
            self.temperature_c.add(c as f64);
        }
        if let Some(w) = t.enforced_power_limit_w {
            self.enforced_w.add(w);
        }
        for r in &t.throttle_reasons {
            *self.reasons.entry(r.clone()).or_default() += 1;
        }
    }

    pub(crate) fn peak_w(&self) -> Option<f64> {
        self.power_w.range().map(|r| r.max)
    }

    pub(crate) fn summary(&self) -> RunTelemetry {
        let mut reasons: Vec<ReasonShare> = self
            .reasons
            .iter()
            .map(|(reason, n)| ReasonShare {
                reason: reason.clone(),
                share: *n as f64 / self.samples.max(1) as f64,
            })
            .collect();
        reasons.sort_by(|a, b| b.share.total_cmp(&a.share));
        RunTelemetry {
            samples: self.samples,
            power_w: self.power_w.range(),
            sm_clock_mhz: self.sm_mhz.range(),
            mem_clock_mhz: self.mem_mhz.range(),
            temperature_c: self.temperature_c.range(),
            enforced_limit_w: self.enforced_w.range(),
            throttle_reasons: reasons,
        }
    }
}

/// How a boundary's energy was found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Resolved {
    /// Interpolated between the updates around it.
    Between(f64),
    /// Extrapolated past the last update (the meter did not update after it in time).
    Extrapolated(f64),
}

impl Resolved {
    pub(crate) fn joules(self) -> f64 {
        match self {
            Resolved::Between(j) | Resolved::Extrapolated(j) => j,
        }
    }
}

/// See the module comment.
pub(crate) struct Track {
    pub(crate) meter: Box<dyn EnergyMeter>,
    has_energy: bool,
    recent: VecDeque<CounterUpdate>,
    /// Boundary index → time, not resolved yet.
    pending: BTreeMap<usize, f64>,
    resolved: BTreeMap<usize, Resolved>,
    telemetry: TelemetryStats,
    /// Telemetry before this time is not the run's.
    from_s: f64,
    /// Why the meter stopped, once it has: no energy is claimed after that.
    pub(crate) error: Option<String>,
}

impl Track {
    pub(crate) fn new(meter: Box<dyn EnergyMeter>) -> Track {
        let has_energy = meter.source() != joulebench_core::MeterSource::None;
        Track {
            meter,
            has_energy,
            recent: VecDeque::new(),
            pending: BTreeMap::new(),
            resolved: BTreeMap::new(),
            telemetry: TelemetryStats::default(),
            from_s: f64::INFINITY,
            error: None,
        }
    }

    pub(crate) fn has_energy(&self) -> bool {
        self.has_energy && self.error.is_none()
    }

    /// Telemetry from `t` on counts as the run's.
    pub(crate) fn start_telemetry_at(&mut self, t: f64) {
        self.from_s = t;
    }

    /// Whether the meter has updated at or before `t` (so `t` can be interpolated).
    pub(crate) fn has_update_before(&self, t: f64) -> bool {
        self.recent.front().is_some_and(|u| u.time_s <= t)
    }

    pub(crate) fn last_update_s(&self) -> Option<f64> {
        self.recent.back().map(|u| u.time_s)
    }

    /// Ask for the energy at boundary `id`, time `t`.
    pub(crate) fn add_boundary(&mut self, id: usize, t: f64) {
        if self.has_energy {
            self.pending.insert(id, t);
        }
    }

    /// Take the meter's new updates and telemetry, and resolve every boundary an
    /// update has passed.
    pub(crate) fn poll(&mut self, until_s: f64) {
        match self.meter.take_telemetry() {
            Ok(samples) => {
                for s in samples
                    .iter()
                    .filter(|s| s.time_s >= self.from_s && s.time_s <= until_s)
                {
                    self.telemetry.add(s);
                }
            }
            Err(e) => self.fail(e.to_string()),
        }
        if !self.has_energy() {
            return;
        }
        match self.meter.take_updates() {
            Ok(ups) => self.recent.extend(ups),
            Err(e) => {
                let detail = self.meter.fault_detail();
                self.fail(match detail {
                    Some(d) => format!("{e} ({d})"),
                    None => e.to_string(),
                });
                return;
            }
        }
        let Some(last) = self.last_update_s() else {
            return;
        };
        let ready: Vec<(usize, f64)> = self
            .pending
            .iter()
            .filter(|(_, t)| **t <= last)
            .map(|(i, t)| (*i, *t))
            .collect();
        for (id, t) in ready {
            self.pending.remove(&id);
            let updates = self.recent.make_contiguous();
            // a boundary before the first update kept (a meter that had just opened)
            // takes the first reading: off by at most one update
            let j = energy_at(updates, t).or_else(|| updates.first().map(|u| u.joules));
            if let Some(j) = j {
                self.resolved.insert(id, Resolved::Between(j));
            }
        }
        let oldest_wanted = self.pending.values().copied().fold(last, f64::min) - KEEP_BEHIND_S;
        while self.recent.len() > 2 && self.recent[1].time_s < oldest_wanted {
            self.recent.pop_front();
        }
    }

    /// The meter did not update after `t` in time: the boundaries still waiting are
    /// extrapolated from its last two updates.
    pub(crate) fn give_up_waiting(&mut self) {
        let pending: Vec<(usize, f64)> = self.pending.iter().map(|(i, t)| (*i, *t)).collect();
        self.pending.clear();
        let updates = self.recent.make_contiguous();
        for (id, t) in pending {
            if let Some(j) = energy_at_or_after_last(updates, t) {
                self.resolved.insert(id, Resolved::Extrapolated(j));
            }
        }
    }

    pub(crate) fn waiting(&self) -> bool {
        self.has_energy() && !self.pending.is_empty()
    }

    pub(crate) fn energy_at(&self, id: usize) -> Option<Resolved> {
        if !self.has_energy() {
            return None;
        }
        self.resolved.get(&id).copied()
    }

    pub(crate) fn telemetry(&self) -> &TelemetryStats {
        &self.telemetry
    }

    fn fail(&mut self, why: String) {
        if self.error.is_none() {
            self.error = Some(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::meter::{MeterError, MeterSource, Telemetry};

    /// A meter whose updates a test hands in.
    struct Scripted {
        updates: std::sync::Arc<std::sync::Mutex<Vec<CounterUpdate>>>,
    }

    impl EnergyMeter for Scripted {
        fn source(&self) -> MeterSource {
            MeterSource::NvmlCounter
        }
        fn energy_j(&mut self) -> Result<f64, MeterError> {
            Ok(0.0)
        }
        fn update_period_s(&self) -> f64 {
            0.1
        }
        fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
            Ok(std::mem::take(&mut *self.updates.lock().unwrap()))
        }
        fn take_telemetry(&mut self) -> Result<Vec<TelemetrySample>, MeterError> {
            Ok(vec![TelemetrySample {
                time_s: 1.0,
                telemetry: Telemetry {
                    power_w: Some(300.0),
                    throttle_reasons: vec!["sw-power-cap".into()],
                    ..Telemetry::default()
                },
            }])
        }
    }

    fn ramp(from_s: f64, to_s: f64, watts: f64) -> Vec<CounterUpdate> {
        let mut t = from_s;
        let mut out = Vec::new();
        while t <= to_s + 1e-9 {
            out.push(CounterUpdate {
                time_s: t,
                joules: watts * t,
            });
            t += 0.1;
        }
        out
    }

    #[test]
    fn boundaries_between_updates_are_interpolated_and_old_updates_let_go() {
        let feed = std::sync::Arc::new(std::sync::Mutex::new(ramp(0.0, 1.0, 200.0)));
        let mut track = Track::new(Box::new(Scripted {
            updates: feed.clone(),
        }));
        track.start_telemetry_at(0.0);
        track.add_boundary(0, 0.55);
        track.poll(100.0);
        match track.energy_at(0) {
            Some(Resolved::Between(j)) => assert!((j - 110.0).abs() < 1e-9, "{j}"),
            other => panic!("{other:?}"),
        }
        // a boundary past the last update waits for one
        track.add_boundary(1, 1.25);
        track.poll(100.0);
        assert!(track.waiting());
        feed.lock().unwrap().extend(ramp(1.1, 20.0, 200.0));
        track.poll(100.0);
        let j = track.energy_at(1).unwrap().joules();
        assert!((j - 250.0).abs() < 1e-6, "{j}");
        // only a few seconds of updates are kept
        assert!(track.recent.len() < 60, "{}", track.recent.len());
        // a boundary the meter never passes is extrapolated, and says so
        track.add_boundary(2, 20.5);
        track.poll(100.0);
        track.give_up_waiting();
        match track.energy_at(2) {
            Some(Resolved::Extrapolated(j)) => assert!((j - 4100.0).abs() < 1e-6, "{j}"),
            other => panic!("{other:?}"),
        }
        let tel = track.telemetry().summary();
        assert_eq!(tel.samples, 4);
        assert_eq!(tel.throttle_reasons[0].share, 1.0);
        assert_eq!(track.telemetry().peak_w(), Some(300.0));
    }
}
