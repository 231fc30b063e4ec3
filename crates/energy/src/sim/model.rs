//! The simulated device in motion: the work it runs, the clock its power limiter
//! picks (in bins, oscillating around the limit), how board power follows the work
//! (fast to rise, slow to fall back to idle), how temperature follows power (a fast
//! and a slow pole), and what the sensor, the counter and telemetry see. All of it
//! advances in virtual time, event by event, and keeps the truth for tests.

use super::physics::{Job, OperatingPoint};
use super::profile::SimProfile;
use super::sensor::{Counter, TELEMETRY_PERIOD_S};
use super::truth::{SimTruth, Trace, TruthSpan};
use joulebench_core::meter::{CounterUpdate, Telemetry, TelemetrySample};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::collections::VecDeque;

/// Noise per run: time × (1 + N(0, 0.3%)), power × (1 + N(0, 0.5%)).
const TIME_NOISE: f64 = 0.003;
const POWER_NOISE: f64 = 0.005;
/// The longest step of the integration (temperature and the clock are updated
/// at least this often while work runs).
const SUBSTEP_S: f64 = 0.01;
/// Telemetry readings kept for `take_telemetry`; older ones are dropped.
const KEEP_SAMPLES: usize = 1 << 14;
/// Iterations at least this long run their phases (if any) one after the other;
/// shorter ones at their average power, which the board's power filter makes of
/// them anyway.
const MIN_PHASED_ITERATION_S: f64 = 0.002;
/// After work stops the limiter lets the clock go up; after this long idle the
/// SM clock drops to its idle clock.
const IDLE_DOWNCLOCK_S: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq)]
struct CachedPoint {
    job: Job,
    temperature_c: f64,
    cap_w: f64,
    clock_range: (f64, f64),
    /// Where the limit puts the clock (continuous), and the bins the limiter
    /// alternates between around it.
    point: OperatingPoint,
    low: OperatingPoint,
    high: OperatingPoint,
}

/// The power limiter's state: the bin it holds, and how far the energy it let
/// through is above the limit.
#[derive(Default)]
struct Limiter {
    high: bool,
    excess_j: f64,
    next_decision_s: f64,
}

/// The state every part of one simulated device shares.
pub struct SimState {
    pub profile: SimProfile,
    pub now_s: f64,
    /// Board power above idle, in a fast and a slow part.
    fast_w: f64,
    slow_w: f64,
    /// Temperature above ambient, in the fast and slow poles.
    temp_fast_c: f64,
    temp_slow_c: f64,
    pub(crate) counter: Counter,
    next_sample_s: f64,
    samples: VecDeque<TelemetrySample>,
    pub cap_w: f64,
    /// A locked SM clock range, MHz.
    pub locked_sm_mhz: Option<(u32, u32)>,
    pub clock_mhz: u32,
    busy: bool,
    last_busy_s: f64,
    power_limited: bool,
    /// The die is hot enough that the clock is held down (see `ThermalSlowdown`).
    thermal_slowdown: bool,
    limiter: Limiter,
    pub truth: SimTruth,
    trace: Option<Trace>,
    cache: Option<CachedPoint>,
    rng: ChaCha8Rng,
}

impl SimState {
    /// Board number `index` of `profile`; its gain error and sensor phase are its own.
    pub fn new(profile: SimProfile, index: usize, mut rng: ChaCha8Rng) -> SimState {
        let imp = profile.imperfections;
        let gain = 1.0 + imp.counter_gain_error + board_spread(index) * imp.board_gain_spread;
        let counter = Counter::new(
            profile.counter_period_s,
            profile.sensor_window_s,
            imp,
            gain,
            profile.idle_w,
            &mut rng,
        );
        let rise = profile.thermal_c_per_w * profile.idle_w;
        SimState {
            now_s: 0.0,
            fast_w: 0.0,
            slow_w: 0.0,
            temp_fast_c: profile.thermal_fast_share * rise,
            temp_slow_c: (1.0 - profile.thermal_fast_share) * rise,
            counter,
            next_sample_s: TELEMETRY_PERIOD_S,
            samples: VecDeque::new(),
            cap_w: profile.default_cap_w,
            locked_sm_mhz: None,
            clock_mhz: profile.min_sm_clock_mhz,
            busy: false,
            last_busy_s: f64::NEG_INFINITY,
            power_limited: false,
            thermal_slowdown: false,
            limiter: Limiter::default(),
            truth: SimTruth::default(),
            trace: None,
            cache: None,
            rng,
            profile,
        }
    }

    pub fn temperature_c(&self) -> f64 {
        self.profile.ambient_c + self.temp_fast_c + self.temp_slow_c
    }

    pub fn power_w(&self) -> f64 {
        self.profile.idle_w + self.fast_w + self.slow_w
    }

    /// The clock fractions the device may run at: all, or the locked range, under
    /// a thermal slowdown's ceiling while it holds.
    pub fn clock_range(&self) -> (f64, f64) {
        let p = &self.profile;
        let f = |mhz: u32| mhz as f64 / p.max_sm_clock_mhz as f64;
        let (lo, hi) = match self.locked_sm_mhz {
            Some((lo, hi)) => (f(lo), f(hi)),
            None => (p.min_clock_fraction(), 1.0),
        };
        match p.imperfections.thermal_slowdown {
            Some(t) if self.thermal_slowdown => {
                let ceiling = t.clock_fraction.max(p.min_clock_fraction());
                (lo.min(ceiling), hi.min(ceiling))
            }
            _ => (lo, hi),
        }
    }

    /// Start keeping the running totals after every step, so that the truth of any
    /// later interval can be read ([`SimState::truth_between`]).
    pub fn start_trace(&mut self) {
        if self.counter.log.is_none() {
            self.counter.log = Some(Vec::new());
        }
        if self.trace.is_none() {
            let mut t = Trace::default();
            t.push(self.truth_now());
            self.trace = Some(t);
        }
    }

    pub fn truth_between(&self, from_s: f64, to_s: f64) -> Option<TruthSpan> {
        self.trace.as_ref()?.between(from_s, to_s)
    }

    fn truth_now(&self) -> SimTruth {
        SimTruth {
            time_s: self.now_s,
            ..self.truth
        }
    }

    fn noise(&mut self, sigma: f64) -> f64 {
        1.0 + sigma * self.rng.sample::<f64, _>(StandardNormal)
    }

    /// The operating point of `job` now (recomputed when the temperature moved by
    /// more than 0.05 °C or the cap or clock lock changed), with the limiter's bins
    /// around it.
    fn point(&mut self, job: &Job) -> CachedPoint {
        let temp = (self.temperature_c() * 20.0).round() / 20.0;
        let (cap, range) = (self.cap_w, self.clock_range());
        if let Some(c) = &self.cache {
            if c.job == *job && c.temperature_c == temp && c.cap_w == cap && c.clock_range == range
            {
                return *c;
            }
        }
        let p = &self.profile;
        let point = p.limited_point(job, cap, temp, range);
        let bin = p.imperfections.limiter_bin_mhz;
        let (low, high) = if point.power_limited && bin > 0 {
            let max = p.max_sm_clock_mhz as f64;
            let mhz = point.clock_fraction * max;
            let floor = p.min_sm_clock_mhz as f64
                + ((mhz - p.min_sm_clock_mhz as f64) / bin as f64).floor() * bin as f64;
            let swing = (p.imperfections.limiter_swing_bins * bin) as f64;
            let top = range.1 * max;
            let lo = (floor - swing).clamp(p.min_sm_clock_mhz as f64, top);
            let hi = (floor + bin as f64 + swing).clamp(p.min_sm_clock_mhz as f64, top);
            (p.at(job, lo / max, temp), p.at(job, hi / max, temp))
        } else {
            (point, point)
        };
        if self.cache.is_none_or(|c| c.job != *job) {
            self.limiter = Limiter {
                next_decision_s: self.now_s,
                ..Limiter::default()
            };
        }
        let cached = CachedPoint {
            job: *job,
            temperature_c: temp,
            cap_w: cap,
            clock_range: range,
            point,
            low,
            high,
        };
        self.cache = Some(cached);
        cached
    }

    /// Seconds to the next sensor or counter event, or telemetry sample.
    fn next_event_in(&self) -> f64 {
        let next = self
            .counter
            .next_event_s(self.now_s)
            .min(self.next_sample_s);
        (next - self.now_s).max(0.0)
    }

    /// Advance by `h` (no event inside) with board power relaxing towards
    /// `target_w` (total, idle included). While work runs, power follows it within
    /// the rise time both ways; when it stops, it falls in a fast and a slow part.
    fn step(&mut self, h: f64, target_w: f64, iterations: f64) {
        let p = &self.profile;
        let excess = (target_w - p.idle_w).max(0.0);
        let busy = self.busy;
        let relax = |value: f64, target: f64, fall_tau: f64| {
            let tau = if busy || target > value {
                p.power_rise_tau_s
            } else {
                fall_tau
            };
            let decay = (-h / tau).exp();
            let integral = target * h + (value - target) * tau * (1.0 - decay);
            (target + (value - target) * decay, integral)
        };
        let share = p.power_fall_slow_share;
        let (fast, fast_j) = relax(self.fast_w, (1.0 - share) * excess, p.power_fall_fast_tau_s);
        let (slow, slow_j) = relax(self.slow_w, share * excess, p.power_fall_slow_tau_s);
        let joules = p.idle_w * h + fast_j + slow_j;
        let avg_w = if h > 0.0 { joules / h } else { self.power_w() };
        let heat = |value: f64, share: f64, tau: f64| {
            let target = share * p.thermal_c_per_w * avg_w;
            target + (value - target) * (-h / tau).exp()
        };
        let temp_fast = heat(self.temp_fast_c, p.thermal_fast_share, p.thermal_fast_tau_s);
        let temp_slow = heat(
            self.temp_slow_c,
            1.0 - p.thermal_fast_share,
            p.thermal_slow_tau_s,
        );
        self.fast_w = fast;
        self.slow_w = slow;
        self.temp_fast_c = temp_fast;
        self.temp_slow_c = temp_slow;
        if let Some(t) = p.imperfections.thermal_slowdown {
            let temp = self.temperature_c();
            if temp >= t.at_c {
                self.thermal_slowdown = true;
            } else if temp < t.release_c {
                self.thermal_slowdown = false;
            }
        }
        self.truth.energy_j += joules;
        if busy {
            self.truth.busy_energy_j += joules;
            self.truth.busy_seconds += h;
            self.truth.busy_iterations += iterations;
            self.truth.busy_clock_mhz_s += self.clock_mhz as f64 * h;
        }
        self.now_s += h;
        self.counter.add(self.now_s, joules);
        if let Some(trace) = self.trace.as_mut() {
            trace.push(SimTruth {
                time_s: self.now_s,
                ..self.truth
            });
        }
        self.events();
    }

    /// Counter events and telemetry samples due now.
    fn events(&mut self) {
        self.counter.events(self.now_s, &mut self.rng);
        if self.now_s >= self.next_sample_s - 1e-12 {
            let reading = self.reading();
            if self.samples.len() >= KEEP_SAMPLES {
                self.samples.pop_front();
            }
            self.samples.push_back(TelemetrySample {
                time_s: self.next_sample_s,
                telemetry: reading,
            });
            self.next_sample_s += TELEMETRY_PERIOD_S;
        }
    }

    /// What a telemetry query returns now (whole °C, as NVML gives it). Once the
    /// work stops the limiter releases the clock, and after a second idle the SM
    /// clock drops to its idle clock.
    pub fn reading(&self) -> Telemetry {
        let p = &self.profile;
        let released = (self.clock_range().1 * p.max_sm_clock_mhz as f64).round() as u32;
        Telemetry {
            sm_clock_mhz: Some(if self.busy {
                self.clock_mhz
            } else if self.now_s - self.last_busy_s < IDLE_DOWNCLOCK_S {
                released
            } else {
                p.min_sm_clock_mhz
            }),
            mem_clock_mhz: Some(p.mem_clock_mhz),
            default_sm_clock_mhz: Some(p.max_sm_clock_mhz),
            temperature_c: Some(self.temperature_c().round() as u32),
            throttle_reasons: {
                let mut reasons = Vec::new();
                if self.busy && self.power_limited {
                    reasons.push("sw-power-cap".into());
                }
                if self.busy && self.thermal_slowdown {
                    reasons.push("hw-thermal-slowdown".into());
                }
                reasons
            },
            enforced_power_limit_w: Some(self.cap_w),
            performance_state: Some("P0".into()),
            power_w: Some(self.counter.power_w()),
        }
    }

    /// Let `seconds` pass with the device idle.
    pub fn idle(&mut self, seconds: f64) {
        if self.busy {
            self.last_busy_s = self.now_s;
        }
        self.busy = false;
        let mut left = seconds.max(0.0);
        while left > 0.0 {
            let h = left
                .min(self.next_event_in().max(1e-9))
                .min(SUBSTEP_S * 10.0);
            let idle_w = self.profile.idle_w;
            self.step(h, idle_w, 0.0);
            left -= h;
        }
    }

    /// Run `iterations` of `job` back to back; returns the device seconds they took.
    pub fn run(&mut self, job: &Job, iterations: u64) -> f64 {
        let time_noise = self.noise(TIME_NOISE);
        let power_noise = self.noise(POWER_NOISE);
        self.busy = true;
        let total = iterations as f64;
        let mut done = 0.0;
        let mut seconds = 0.0;
        let imp = self.profile.imperfections;
        while total - done > 1e-9 {
            let c = self.point(job);
            let limiting = c.point.power_limited && imp.limiter_bin_mhz > 0;
            if limiting && self.now_s >= self.limiter.next_decision_s - 1e-12 {
                self.limiter.high = self.limiter.excess_j < 0.0;
                self.limiter.next_decision_s = self.now_s + imp.limiter_period_s;
            }
            let op = match (limiting, self.limiter.high) {
                (false, _) => c.point,
                (true, true) => c.high,
                (true, false) => c.low,
            };
            self.clock_mhz =
                (op.clock_fraction * self.profile.max_sm_clock_mhz as f64).round() as u32;
            self.power_limited = c.point.power_limited;
            // a limiter on a continuous clock holds the board exactly at the limit
            let power_noise = if c.point.power_limited && !limiting {
                1.0
            } else {
                power_noise
            };
            let spo = op.seconds_per_op * time_noise;
            // within an iteration: the phase now, and the time left in it
            let (target_w, phase_left_s) = match op.phases {
                Some([(t_c, p_c), (_, p_m)])
                    if imp.kernel_phases && op.seconds_per_op >= MIN_PHASED_ITERATION_S =>
                {
                    let at = done.fract();
                    let split = t_c / op.seconds_per_op;
                    if at < split {
                        (p_c, (split - at) * spo)
                    } else {
                        (p_m, (1.0 - at) * spo)
                    }
                }
                _ => (op.power_w, f64::INFINITY),
            };
            let mut room = self
                .next_event_in()
                .clamp(1e-9, SUBSTEP_S)
                .min(phase_left_s);
            if limiting {
                room = room.min((self.limiter.next_decision_s - self.now_s).max(1e-9));
            }
            let h = room.min((total - done) * spo).max(1e-12);
            let step_iterations = (h / spo).min(total - done);
            if limiting {
                let excess = (op.power_w * power_noise - self.cap_w) * h;
                let bound = self.cap_w * imp.limiter_period_s * 4.0;
                self.limiter.excess_j = (self.limiter.excess_j + excess).clamp(-bound, bound);
            }
            self.step(h, target_w * power_noise, step_iterations);
            done += step_iterations;
            seconds += h;
        }
        self.truth.busy_iterations += total - done;
        self.busy = false;
        self.last_busy_s = self.now_s;
        seconds
    }

    pub fn take_updates(&mut self) -> Vec<CounterUpdate> {
        self.counter.take_updates(self.now_s)
    }

    pub fn take_samples(&mut self) -> Vec<TelemetrySample> {
        self.samples.drain(..).collect()
    }
}

/// Board `index`'s place in the spread of gain errors, in [−1, 1]: 0 for the first
/// board (the profile's own), a fixed, well-spread value for the others.
fn board_spread(index: usize) -> f64 {
    if index == 0 {
        return 0.0;
    }
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    2.0 * (index as f64 * GOLDEN).fract() - 1.0
}
