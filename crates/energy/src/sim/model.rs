//! The physics of the simulated device: where a kernel settles (clock, time,
//! power) under a power cap, a locked clock and the leakage of a warm die; how
//! board power follows the work (fast to rise, slow to fall back to idle); how
//! temperature follows power (a fast and a slow pole); and an energy counter fed by
//! a sensor that sees only part of each update period. All of it advances in
//! virtual time, event by event, and keeps the true energy for tests.

use super::profile::{activity, kernel_bytes, SimKernel, SimProfile};
use joulebench_core::meter::{CounterUpdate, Telemetry, TelemetrySample};
use joulebench_core::precision::Precision;
use joulebench_core::workload::Workload;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::collections::VecDeque;

/// Half-saturation size of the size efficiency, FLOP.
const F_HALF_FLOP: f64 = 1e9;
const LAUNCH_S: f64 = 5e-6;
/// Noise per run: time × (1 + N(0, 0.3%)), power × (1 + N(0, 0.5%)).
const TIME_NOISE: f64 = 0.003;
const POWER_NOISE: f64 = 0.005;
/// The longest step of the integration (temperature and the clock are updated
/// at least this often while work runs).
const SUBSTEP_S: f64 = 0.01;
/// Telemetry is sampled this often, as a meter's background thread would.
pub const TELEMETRY_PERIOD_S: f64 = 0.05;
/// Readings kept for `take_updates` / `take_telemetry`; older ones are dropped.
const KEEP_READINGS: usize = 1 << 14;

/// Where the model settles for one op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OperatingPoint {
    pub clock_fraction: f64,
    pub seconds_per_op: f64,
    pub power_w: f64,
    pub compute_utilisation: f64,
    pub memory_utilisation: f64,
    /// The power limit held the clock below the highest one allowed.
    pub power_limited: bool,
}

impl SimProfile {
    /// Time and power at clock fraction φ with the die at `temperature_c` (no noise):
    ///
    /// - size efficiency η_s = F / (F + F_half); compute time
    ///   t_c = F / (R_p · φ · η_k · η_s); memory time t_m = B / BW;
    /// - t = max(t_c, t_m) + t_launch (t_c + t_m for the unfused attention baseline);
    /// - P = P_idle + P_static + k_leak·(T − T_ref)⁺ + a · P_dyn · φ·V(φ)² · u_c
    ///   \+ P_mem · u_m, with the activity a = α_p · (0.35 + 0.65·η_k·η_s) and
    ///   the voltage V(φ) flat below the knee and rising above it.
    pub fn at_clock_and_temperature(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        phi: f64,
        temperature_c: f64,
    ) -> OperatingPoint {
        let flop = w.flop().unwrap_or(0) as f64;
        let peak = self.peak_tflops(precision).unwrap_or(1.0) * 1e12;
        let size_eff = flop / (flop + F_HALF_FLOP);
        let t_c = flop / (peak * phi * k.efficiency * size_eff);
        let t_m = kernel_bytes(k, precision, w) / (self.mem_bandwidth_tb_s * 1e12);
        let t = if k.unfused { t_c + t_m } else { t_c.max(t_m) } + LAUNCH_S;
        let (u_c, u_m) = (t_c / t, t_m / t);
        let a = activity(precision) * (0.35 + 0.65 * k.efficiency * size_eff);
        let v = self.voltage(phi);
        let leak = self.leakage_w_per_c * (temperature_c - self.leakage_ref_c).max(0.0);
        let power = self.idle_w
            + self.busy_static_w
            + leak
            + a * self.dynamic_w * phi * v * v * u_c
            + self.memory_w * u_m;
        OperatingPoint {
            clock_fraction: phi,
            seconds_per_op: t,
            power_w: power,
            compute_utilisation: u_c,
            memory_utilisation: u_m,
            power_limited: false,
        }
    }

    /// The fastest point whose power fits under `cap_w`, with the clock fraction in
    /// `clock_range` (a locked clock narrows it) and the die at `temperature_c`.
    pub fn operating_point_at(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        cap_w: f64,
        temperature_c: f64,
        clock_range: (f64, f64),
    ) -> OperatingPoint {
        let (lo0, hi0) = clock_range;
        let at = |phi| self.at_clock_and_temperature(k, precision, w, phi, temperature_c);
        let top = at(hi0);
        if top.power_w <= cap_w {
            return top;
        }
        let limited = |mut p: OperatingPoint| {
            p.power_limited = true;
            p
        };
        // a power limit wins over a locked clock, as on a GPU: below the locked
        // range if even its lowest clock draws more than the cap
        let (mut lo, mut hi) = (lo0, hi0);
        if at(lo).power_w > cap_w {
            hi = lo;
            lo = self.min_clock_fraction();
            if at(lo).power_w > cap_w {
                return limited(at(lo));
            }
        }
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if at(mid).power_w <= cap_w {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        limited(at(lo))
    }

    /// Where a kernel settles under `cap_w` once the die has reached its steady
    /// temperature at that power (no locked clock, no noise).
    pub fn operating_point(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        cap_w: f64,
    ) -> OperatingPoint {
        self.settled_point(k, precision, w, cap_w, (self.min_clock_fraction(), 1.0))
    }

    /// As [`SimProfile::operating_point`], with the clock fraction in `clock_range`.
    pub fn settled_point(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        cap_w: f64,
        clock_range: (f64, f64),
    ) -> OperatingPoint {
        let mut temp = self.steady_temperature_c(self.idle_w);
        let mut op = self.operating_point_at(k, precision, w, cap_w, temp, clock_range);
        for _ in 0..20 {
            temp = self.steady_temperature_c(op.power_w);
            op = self.operating_point_at(k, precision, w, cap_w, temp, clock_range);
        }
        op
    }

    /// Shorthand for tests and docs: time and power at clock fraction φ at the
    /// leakage reference temperature.
    pub fn at_clock(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        phi: f64,
    ) -> OperatingPoint {
        self.at_clock_and_temperature(k, precision, w, phi, self.leakage_ref_c)
    }
}

/// What the simulated device really consumed, for tests that measure the error of
/// the protocol against the truth.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SimTruth {
    /// Exact energy since the device was opened.
    pub energy_j: f64,
    /// Energy while kernels ran (not during host syncs or idle).
    pub busy_energy_j: f64,
    pub busy_seconds: f64,
    pub busy_iterations: f64,
}

/// The work being run, as the operating point depends on it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Job {
    pub kernel: SimKernel,
    pub precision: Precision,
    pub workload: Workload,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct CachedPoint {
    job: Job,
    temperature_c: f64,
    cap_w: f64,
    clock_range: (f64, f64),
    point: OperatingPoint,
}

/// The state every part of one simulated device shares.
pub struct SimState {
    pub profile: &'static SimProfile,
    pub now_s: f64,
    /// Board power above idle, in a fast and a slow part.
    fast_w: f64,
    slow_w: f64,
    /// Temperature above ambient, in the fast and slow poles.
    temp_fast_c: f64,
    temp_slow_c: f64,
    /// The counter as a reader sees it: whole mJ, changed at each update.
    pub counter_j: f64,
    counter_exact_j: f64,
    next_tick_s: f64,
    slice_energy_j: f64,
    /// The sensor's last reading, W (what an "instant power" query returns).
    pub sensor_w: f64,
    updates: VecDeque<CounterUpdate>,
    next_sample_s: f64,
    samples: VecDeque<TelemetrySample>,
    pub cap_w: f64,
    /// A locked SM clock range, MHz.
    pub locked_sm_mhz: Option<(u32, u32)>,
    pub clock_mhz: u32,
    busy: bool,
    power_limited: bool,
    pub truth: SimTruth,
    cache: Option<CachedPoint>,
    rng: ChaCha8Rng,
}

impl SimState {
    pub fn new(profile: &'static SimProfile, rng: ChaCha8Rng) -> SimState {
        let rise = profile.thermal_c_per_w * profile.idle_w;
        SimState {
            profile,
            now_s: 0.0,
            fast_w: 0.0,
            slow_w: 0.0,
            temp_fast_c: profile.thermal_fast_share * rise,
            temp_slow_c: (1.0 - profile.thermal_fast_share) * rise,
            counter_j: 0.0,
            counter_exact_j: 0.0,
            next_tick_s: profile.counter_period_s,
            slice_energy_j: 0.0,
            sensor_w: profile.idle_w,
            updates: VecDeque::new(),
            next_sample_s: TELEMETRY_PERIOD_S,
            samples: VecDeque::new(),
            cap_w: profile.default_cap_w,
            locked_sm_mhz: None,
            clock_mhz: profile.min_sm_clock_mhz,
            busy: false,
            power_limited: false,
            truth: SimTruth::default(),
            cache: None,
            rng,
        }
    }

    pub fn temperature_c(&self) -> f64 {
        self.profile.ambient_c + self.temp_fast_c + self.temp_slow_c
    }

    pub fn power_w(&self) -> f64 {
        self.profile.idle_w + self.fast_w + self.slow_w
    }

    /// The clock fractions the device may run at: all, or the locked range.
    pub fn clock_range(&self) -> (f64, f64) {
        let p = self.profile;
        let f = |mhz: u32| mhz as f64 / p.max_sm_clock_mhz as f64;
        match self.locked_sm_mhz {
            Some((lo, hi)) => (f(lo), f(hi)),
            None => (p.min_clock_fraction(), 1.0),
        }
    }

    fn noise(&mut self, sigma: f64) -> f64 {
        1.0 + sigma * self.rng.sample::<f64, _>(StandardNormal)
    }

    /// The operating point of `job` now, recomputed when the temperature moved by
    /// more than 0.05 °C or the cap or clock lock changed.
    fn point(&mut self, job: &Job) -> OperatingPoint {
        let temp = (self.temperature_c() * 20.0).round() / 20.0;
        let (cap, range) = (self.cap_w, self.clock_range());
        if let Some(c) = &self.cache {
            if c.job == *job && c.temperature_c == temp && c.cap_w == cap && c.clock_range == range
            {
                return c.point;
            }
        }
        let point = self.profile.operating_point_at(
            &job.kernel,
            job.precision,
            &job.workload,
            cap,
            temp,
            range,
        );
        self.cache = Some(CachedPoint {
            job: *job,
            temperature_c: temp,
            cap_w: cap,
            clock_range: range,
            point,
        });
        point
    }

    /// Seconds to the next tick, sensor-window start or telemetry sample.
    fn next_event_in(&self) -> f64 {
        let slice_start = self.next_tick_s - self.profile.sensor_window_s;
        let mut next = self.next_tick_s.min(self.next_sample_s);
        if slice_start > self.now_s + 1e-12 {
            next = next.min(slice_start);
        }
        (next - self.now_s).max(0.0)
    }

    /// Advance by `h` (no event inside) with board power relaxing towards
    /// `target_w` (total, idle included).
    fn step(&mut self, h: f64, target_w: f64) {
        let p = self.profile;
        let excess = (target_w - p.idle_w).max(0.0);
        let relax = |value: f64, target: f64, fall_tau: f64| {
            let tau = if target > value {
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
        self.fast_w = fast;
        self.slow_w = slow;
        let joules = p.idle_w * h + fast_j + slow_j;
        let avg_w = if h > 0.0 { joules / h } else { self.power_w() };
        self.truth.energy_j += joules;
        if self.busy {
            self.truth.busy_energy_j += joules;
            self.truth.busy_seconds += h;
        }
        if self.now_s >= self.next_tick_s - p.sensor_window_s - 1e-12 {
            self.slice_energy_j += joules;
        }
        let heat = |value: f64, share: f64, tau: f64| {
            let target = share * p.thermal_c_per_w * avg_w;
            target + (value - target) * (-h / tau).exp()
        };
        self.temp_fast_c = heat(self.temp_fast_c, p.thermal_fast_share, p.thermal_fast_tau_s);
        self.temp_slow_c = heat(
            self.temp_slow_c,
            1.0 - p.thermal_fast_share,
            p.thermal_slow_tau_s,
        );
        self.now_s += h;
        self.events();
    }

    /// Counter updates and telemetry samples due now.
    fn events(&mut self) {
        let p = self.profile;
        if self.now_s >= self.next_tick_s - 1e-12 {
            self.sensor_w = self.slice_energy_j / p.sensor_window_s;
            self.counter_exact_j += self.sensor_w * p.counter_period_s;
            self.counter_j = (self.counter_exact_j * 1000.0).floor() / 1000.0;
            self.slice_energy_j = 0.0;
            push(
                &mut self.updates,
                CounterUpdate {
                    time_s: self.next_tick_s,
                    joules: self.counter_j,
                },
            );
            self.next_tick_s += p.counter_period_s;
        }
        if self.now_s >= self.next_sample_s - 1e-12 {
            let reading = self.reading();
            push(
                &mut self.samples,
                TelemetrySample {
                    time_s: self.next_sample_s,
                    telemetry: reading,
                },
            );
            self.next_sample_s += TELEMETRY_PERIOD_S;
        }
    }

    /// What a telemetry query returns now (integer °C, as NVML gives it).
    pub fn reading(&self) -> Telemetry {
        let p = self.profile;
        Telemetry {
            sm_clock_mhz: Some(if self.busy {
                self.clock_mhz
            } else {
                p.min_sm_clock_mhz
            }),
            mem_clock_mhz: Some(p.mem_clock_mhz),
            default_sm_clock_mhz: Some(p.max_sm_clock_mhz),
            temperature_c: Some(self.temperature_c().round() as u32),
            throttle_reasons: if self.busy && self.power_limited {
                vec!["sw-power-cap".into()]
            } else {
                Vec::new()
            },
            enforced_power_limit_w: Some(self.cap_w),
            performance_state: Some("P0".into()),
            power_w: Some(self.sensor_w),
        }
    }

    /// Let `seconds` pass with the device idle.
    pub fn idle(&mut self, seconds: f64) {
        self.busy = false;
        let mut left = seconds.max(0.0);
        while left > 0.0 {
            let h = left
                .min(self.next_event_in().max(1e-9))
                .min(SUBSTEP_S * 10.0);
            self.step(h, self.profile.idle_w);
            left -= h;
        }
    }

    /// Run `iterations` of `job` back to back; returns the device seconds they took.
    pub fn run(&mut self, job: &Job, iterations: u64) -> f64 {
        let time_noise = self.noise(TIME_NOISE);
        let power_noise = self.noise(POWER_NOISE);
        self.busy = true;
        let mut left = iterations as f64;
        let mut seconds = 0.0;
        while left > 0.0 {
            let op = self.point(job);
            let spo = op.seconds_per_op * time_noise;
            let mut power = op.power_w * power_noise;
            if op.power_limited {
                // the limiter holds the board at its limit, noise or not
                power = power.min(self.cap_w);
            }
            self.clock_mhz =
                (op.clock_fraction * self.profile.max_sm_clock_mhz as f64).round() as u32;
            self.power_limited = op.power_limited;
            let room = self.next_event_in().clamp(1e-9, SUBSTEP_S);
            let h = room.min(left * spo);
            if h >= left * spo {
                left = 0.0;
            } else {
                left -= h / spo;
            }
            self.step(h, power);
            seconds += h;
        }
        self.truth.busy_iterations += iterations as f64;
        self.busy = false;
        seconds
    }

    pub fn take_updates(&mut self) -> Vec<CounterUpdate> {
        self.updates.drain(..).collect()
    }

    pub fn take_samples(&mut self) -> Vec<TelemetrySample> {
        self.samples.drain(..).collect()
    }
}

fn push<T>(q: &mut VecDeque<T>, item: T) {
    if q.len() >= KEEP_READINGS {
        q.pop_front();
    }
    q.push_back(item);
}
