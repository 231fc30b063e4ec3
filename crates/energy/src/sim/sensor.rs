//! The simulated board's power sensor and energy counter, and how the host sees
//! them. The sensor averages power over a short slice once per period, on a cadence
//! of its own; a firmware loop, every period give or take its jitter, adds the
//! latest slice's power × the time since its last update to a counter in whole
//! millijoules; and the meter's polling thread sees each update only when it next
//! looks — up to a poll interval later, or after a telemetry query that held it.

use super::imperfections::{Imperfections, SensorPhase};
use joulebench_core::meter::CounterUpdate;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::collections::VecDeque;

/// Telemetry is sampled this often, as a meter's background thread would.
pub const TELEMETRY_PERIOD_S: f64 = 0.05;

/// Readings kept for `take_updates`; older ones are dropped.
const KEEP_READINGS: usize = 1 << 14;

pub(crate) struct Counter {
    period_s: f64,
    window_s: f64,
    imperfections: Imperfections,
    /// Readings are this many times the true power.
    gain: f64,
    last_tick_s: f64,
    pub next_tick_s: f64,
    /// The end of the sensor's next slice; it starts `window_s` earlier.
    next_slice_end_s: f64,
    slice_energy_j: f64,
    /// How long a finished slice takes to reach the counter.
    latency_s: f64,
    /// Finished slices on their way: when each arrives, and its true average power.
    in_flight: VecDeque<(f64, f64)>,
    /// The latest slice to have arrived: its average power, true (before the gain).
    latest_true_w: f64,
    exact_j: f64,
    /// What a direct read of the counter returns: whole millijoules.
    pub reading_j: f64,
    /// Updates the polling thread has not seen yet (with the moment each really
    /// happened), and those it has.
    pending: VecDeque<(f64, CounterUpdate)>,
    seen: VecDeque<CounterUpdate>,
    /// Every update the polling thread saw, once a test asks for them: when the
    /// counter really changed, and the update as the thread stamped it.
    pub log: Option<Vec<(f64, CounterUpdate)>>,
}

impl Counter {
    pub fn new(
        period_s: f64,
        window_s: f64,
        imperfections: Imperfections,
        gain: f64,
        idle_w: f64,
        rng: &mut ChaCha8Rng,
    ) -> Counter {
        let (first_slice_end, latency_s) = match imperfections.sensor_phase {
            SensorPhase::AlignedToUpdates => (period_s, 0.0),
            SensorPhase::Fixed {
                first_slice_end_s,
                latency_s,
            } => (first_slice_end_s.max(window_s), latency_s.max(0.0)),
            SensorPhase::PerBoard => (
                window_s + rng.random::<f64>() * period_s,
                rng.random::<f64>() * (period_s - window_s).max(0.0),
            ),
        };
        Counter {
            period_s,
            window_s,
            imperfections,
            gain,
            last_tick_s: 0.0,
            next_tick_s: period_s,
            next_slice_end_s: first_slice_end,
            slice_energy_j: 0.0,
            latency_s,
            in_flight: VecDeque::new(),
            latest_true_w: idle_w,
            exact_j: 0.0,
            reading_j: 0.0,
            pending: VecDeque::new(),
            seen: VecDeque::new(),
            log: None,
        }
    }

    fn aligned(&self) -> bool {
        self.imperfections.sensor_phase == SensorPhase::AlignedToUpdates
    }

    /// The next moment something happens: a slice starts, ends or arrives, or an
    /// update.
    pub fn next_event_s(&self, now_s: f64) -> f64 {
        let slice_start = self.next_slice_end_s - self.window_s;
        let mut next = self.next_tick_s.min(self.next_slice_end_s);
        if let Some((arrives, _)) = self.in_flight.front() {
            next = next.min(*arrives);
        }
        if slice_start > now_s + 1e-12 {
            next = next.min(slice_start);
        }
        next
    }

    /// Energy of a step that ended at `end_s` (no event inside it): the sensor
    /// counts it if the step lies in its slice.
    pub fn add(&mut self, end_s: f64, joules: f64) {
        let slice_start = self.next_slice_end_s - self.window_s;
        if end_s > slice_start + 1e-12 && end_s <= self.next_slice_end_s + 1e-12 {
            self.slice_energy_j += joules;
        }
    }

    /// The factor by which readings exceed the true power.
    pub fn gain(&self) -> f64 {
        self.gain
    }

    /// The sensor's latest reading, W, as the board reports it.
    pub fn power_w(&self) -> f64 {
        self.latest_true_w * self.gain
    }

    /// Slices ending, slices arriving, and updates due at `now_s`.
    pub fn events(&mut self, now_s: f64, rng: &mut ChaCha8Rng) {
        if now_s >= self.next_slice_end_s - 1e-12 {
            let watts = self.slice_energy_j / self.window_s;
            self.in_flight
                .push_back((self.next_slice_end_s + self.latency_s, watts));
            self.slice_energy_j = 0.0;
            self.next_slice_end_s += self.period_s;
        }
        while self
            .in_flight
            .front()
            .is_some_and(|(arrives, _)| *arrives <= now_s + 1e-12)
        {
            let (_, watts) = self.in_flight.pop_front().expect("checked");
            self.latest_true_w = watts;
        }
        if now_s >= self.next_tick_s - 1e-12 {
            let t = self.next_tick_s;
            self.exact_j += self.latest_true_w * self.gain * (t - self.last_tick_s);
            self.reading_j = (self.exact_j * 1000.0).floor() / 1000.0;
            let stamp = self.stamp(t, rng);
            self.pending.push_back((
                t,
                CounterUpdate {
                    time_s: stamp,
                    joules: self.reading_j,
                },
            ));
            self.last_tick_s = t;
            if self.pending.len() >= KEEP_READINGS {
                self.pending.pop_front();
            }
            let jitter = self.imperfections.period_jitter_s;
            let z: f64 = if jitter > 0.0 {
                rng.sample(StandardNormal)
            } else {
                0.0
            };
            self.next_tick_s = t + (self.period_s + jitter * z).max(0.5 * self.period_s);
            if self.aligned() {
                self.next_slice_end_s = self.next_tick_s;
            }
        }
        self.promote(now_s);
    }

    /// When the polling thread sees an update made at `t`: at its next poll, or
    /// when the telemetry query that holds it returns.
    fn stamp(&self, t: f64, rng: &mut ChaCha8Rng) -> f64 {
        let imp = &self.imperfections;
        let query_start = ((t + 1e-9) / TELEMETRY_PERIOD_S).floor() * TELEMETRY_PERIOD_S;
        if imp.telemetry_call_s > 0.0 && t < query_start + imp.telemetry_call_s {
            return query_start + imp.telemetry_call_s;
        }
        if imp.poll_interval_s > 0.0 {
            t + rng.random::<f64>() * imp.poll_interval_s
        } else {
            t
        }
    }

    /// Updates the polling thread has seen by `now_s`, since the last call.
    pub fn take_updates(&mut self, now_s: f64) -> Vec<CounterUpdate> {
        self.promote(now_s);
        self.seen.drain(..).collect()
    }

    /// Move what the polling thread has seen by `now_s` to `seen`.
    pub fn promote(&mut self, now_s: f64) {
        while self
            .pending
            .front()
            .is_some_and(|(_, u)| u.time_s <= now_s + 1e-12)
        {
            let (tick, u) = self.pending.pop_front().expect("checked");
            if let Some(log) = self.log.as_mut() {
                log.push((tick, u));
            }
            if self.seen.len() >= KEEP_READINGS {
                self.seen.pop_front();
            }
            self.seen.push_back(u);
        }
    }
}
