//! The fallback meter (docs/ARCHITECTURE.md §4.7): where a device has no energy counter, a thread
//! of its own reads power at a fixed interval and integrates it (trapezoid rule). It
//! integrates instant power where the driver exposes it (field values, newer drivers)
//! and nvmlDeviceGetPowerUsage otherwise — a 1 s average on Ampere and newer, which
//! smooths but over a window of seconds still integrates to the right energy.

use super::counter::current_power_w;
use super::{read_telemetry, NvmlDevice, NvmlError, ReferenceClocksMhz};
use joulebench_core::clock::monotonic_s;
use joulebench_core::meter::{CounterUpdate, TelemetrySample};
use joulebench_core::{EnergyMeter, MeterError, MeterSource, Telemetry};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Trapezoid integration of (time s, power W) samples, one sample at a time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrapezoidIntegrator {
    last: Option<(f64, f64)>,
    energy_j: f64,
    samples: u64,
}

impl TrapezoidIntegrator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample; one out of time order (or a non-finite one) is ignored.
    pub fn add(&mut self, time_s: f64, power_w: f64) {
        if !time_s.is_finite() || !power_w.is_finite() {
            return;
        }
        if let Some((t0, p0)) = self.last {
            if time_s <= t0 {
                return;
            }
            self.energy_j += 0.5 * (p0 + power_w) * (time_s - t0);
        }
        self.last = Some((time_s, power_w));
        self.samples += 1;
    }

    /// Energy from the first sample to the last, joules.
    pub fn energy_j(&self) -> f64 {
        self.energy_j
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    pub fn last_sample(&self) -> Option<(f64, f64)> {
        self.last
    }
}

/// Energy of a whole trace of (time s, power W) samples.
pub fn integrate_trapezoid_j(samples: &[(f64, f64)]) -> f64 {
    let mut integ = TrapezoidIntegrator::new();
    for &(t, p) in samples {
        integ.add(t, p);
    }
    integ.energy_j()
}

/// Which reading the sampling meter integrates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerReadingKind {
    /// NVML_FI_DEV_POWER_INSTANT.
    Instant,
    /// nvmlDeviceGetPowerUsage (averaged over 1 s on Ampere and newer, except GA100).
    Usage,
}

/// One poll of the device's power readings, watts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PowerSample {
    /// Seconds since the meter started.
    pub time_s: f64,
    pub instant_w: Option<f64>,
    /// NVML_FI_DEV_POWER_AVERAGE.
    pub average_w: Option<f64>,
    pub usage_w: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingConfig {
    pub interval: Duration,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        // Well under the ~100 ms a power sensor updates in, at a cost of a few NVML
        // calls per 10 ms on one host thread.
        SamplingConfig {
            interval: Duration::from_millis(10),
        }
    }
}

struct SamplerState {
    integ: TrapezoidIntegrator,
    last: Option<PowerSample>,
    error: Option<NvmlError>,
    /// The integral after each sample (the meter's "updates"), and telemetry read
    /// every 50 ms, until the window engine takes them.
    updates: VecDeque<CounterUpdate>,
    telemetry: VecDeque<TelemetrySample>,
}

/// Samples and readings kept until taken.
const KEEP: usize = 1 << 15;
/// Telemetry is read this often by the sampling thread.
const TELEMETRY_EVERY_S: f64 = 0.05;

struct Shared {
    state: Mutex<SamplerState>,
    stop: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, SamplerState> {
        // The sampler never panics while holding the lock; if it did, its numbers
        // are still whole values and the error field says what happened.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct SamplingMeter {
    device: Arc<dyn NvmlDevice>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    interval: Duration,
    kind: PowerReadingKind,
    reference: ReferenceClocksMhz,
    /// Twice the highest limit the board takes: a sample implying more is rejected.
    max_w: Option<f64>,
}

impl SamplingMeter {
    /// Starts the sampling thread; it runs until the meter is dropped.
    pub fn start(device: Arc<dyn NvmlDevice>, config: SamplingConfig) -> Result<Self, MeterError> {
        if config.interval.is_zero() {
            return Err(MeterError::Unavailable(
                "the sampling interval must be greater than zero".into(),
            ));
        }
        let first = read_sample(device.as_ref(), monotonic_s())
            .map_err(|e| e.into_meter_error("reading GPU power"))?;
        let kind = if first.instant_w.is_some() {
            PowerReadingKind::Instant
        } else if first.usage_w.is_some() {
            PowerReadingKind::Usage
        } else {
            return Err(MeterError::Unavailable(
                "this device reports neither instant nor average power".into(),
            ));
        };
        let mut integ = TrapezoidIntegrator::new();
        if let Some(w) = pick(&first, kind) {
            integ.add(first.time_s, w);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(SamplerState {
                integ,
                last: Some(first),
                error: None,
                updates: VecDeque::new(),
                telemetry: VecDeque::new(),
            }),
            stop: AtomicBool::new(false),
        });
        let reference = device.reference_clocks_mhz().unwrap_or_default();
        let thread = {
            let (device, shared, interval) = (device.clone(), shared.clone(), config.interval);
            std::thread::Builder::new()
                .name("joulebench-power-sampler".into())
                .spawn(move || sample_loop(device.as_ref(), &shared, interval, kind, &reference))
                .map_err(|e| {
                    MeterError::Unavailable(format!("cannot start the power-sampling thread: {e}"))
                })?
        };
        let max_w = device
            .power_limits_mw()
            .ok()
            .filter(|l| l.max_mw > 0)
            .map(|l| 2.0 * l.max_mw as f64 / 1000.0);
        Ok(SamplingMeter {
            device,
            shared,
            thread: Some(thread),
            interval: config.interval,
            kind,
            reference,
            max_w,
        })
    }

    pub fn reading_kind(&self) -> PowerReadingKind {
        self.kind
    }

    /// The latest poll: instant, averaged and usage power, where the device has them.
    pub fn last_sample(&self) -> Option<PowerSample> {
        self.shared.state().last
    }

    pub fn samples_taken(&self) -> u64 {
        self.shared.state().integ.samples()
    }
}

fn pick(s: &PowerSample, kind: PowerReadingKind) -> Option<f64> {
    match kind {
        PowerReadingKind::Instant => s.instant_w,
        PowerReadingKind::Usage => s.usage_w,
    }
}

fn read_sample(device: &dyn NvmlDevice, time_s: f64) -> Result<PowerSample, NvmlError> {
    let fields = match device.power_fields_mw() {
        Ok(f) => f,
        Err(e @ (NvmlError::GpuLost | NvmlError::Unavailable(_))) => return Err(e),
        Err(_) => Default::default(),
    };
    let usage = match device.power_usage_mw() {
        Ok(mw) => Some(mw),
        Err(e @ (NvmlError::GpuLost | NvmlError::Unavailable(_))) => return Err(e),
        Err(_) => None,
    };
    let w = |mw: Option<u32>| mw.map(|v| v as f64 / 1000.0);
    Ok(PowerSample {
        time_s,
        instant_w: w(fields.instant_mw),
        average_w: w(fields.average_mw),
        usage_w: w(usage),
    })
}

fn sample_loop(
    device: &dyn NvmlDevice,
    shared: &Shared,
    interval: Duration,
    kind: PowerReadingKind,
    reference: &ReferenceClocksMhz,
) {
    let origin = Instant::now();
    let mut tick: u32 = 0;
    let mut next_telemetry = 0.0;
    while !shared.stop.load(Ordering::Relaxed) {
        // Ticks on a fixed grid, so a slow NVML call does not stretch every later interval.
        tick = tick.saturating_add(1);
        let due = origin + interval.saturating_mul(tick);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // samples are stamped on the protocol's time line
        let t = monotonic_s();
        let telemetry = if t >= next_telemetry {
            next_telemetry = t + TELEMETRY_EVERY_S;
            match read_telemetry(device, reference, None) {
                Ok(tel) => Some(tel),
                Err(e) => {
                    shared.state().error = Some(NvmlError::Failed(e.to_string()));
                    return;
                }
            }
        } else {
            None
        };
        match read_sample(device, t) {
            Ok(s) => {
                let mut st = shared.state();
                if let Some(w) = pick(&s, kind) {
                    st.integ.add(t, w);
                    let joules = st.integ.energy_j();
                    push(&mut st.updates, CounterUpdate { time_s: t, joules });
                }
                if let Some(mut tel) = telemetry {
                    tel.power_w = pick(&s, kind);
                    push(
                        &mut st.telemetry,
                        TelemetrySample {
                            time_s: t,
                            telemetry: tel,
                        },
                    );
                }
                st.last = Some(s);
            }
            Err(e) => {
                // The error is the meter's answer from now on; there is nothing
                // more to sample on a lost device.
                shared.state().error = Some(e);
                return;
            }
        }
    }
}

fn push<T>(q: &mut VecDeque<T>, item: T) {
    if q.len() >= KEEP {
        q.pop_front();
    }
    q.push_back(item);
}

impl EnergyMeter for SamplingMeter {
    fn source(&self) -> MeterSource {
        MeterSource::NvmlSampled
    }

    fn max_power_w(&self) -> Option<f64> {
        self.max_w
    }

    /// Averaged power lags the work by its averaging window (1 s on Ampere and
    /// newer); instant power by one sampling interval.
    fn response_s(&self) -> f64 {
        match self.kind {
            PowerReadingKind::Instant => self.interval.as_secs_f64(),
            PowerReadingKind::Usage => self.interval.as_secs_f64().max(1.0),
        }
    }

    fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
        let mut st = self.shared.state();
        if let Some(e) = &st.error {
            return Err(e.clone().into_meter_error("sampling GPU power"));
        }
        Ok(st.updates.drain(..).collect())
    }

    fn take_telemetry(&mut self) -> Result<Vec<TelemetrySample>, MeterError> {
        Ok(self.shared.state().telemetry.drain(..).collect())
    }

    /// The integral up to the latest sample: it lags by up to one interval at both
    /// ends of a window, which cancels on average and is a small part of a window
    /// of at least ten intervals.
    fn energy_j(&mut self) -> Result<f64, MeterError> {
        let st = self.shared.state();
        if let Some(e) = &st.error {
            return Err(e.clone().into_meter_error("sampling GPU power"));
        }
        Ok(st.integ.energy_j())
    }

    fn update_period_s(&self) -> f64 {
        self.interval.as_secs_f64()
    }

    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        let power_w = self
            .last_sample()
            .and_then(|s| pick(&s, self.kind))
            .or_else(|| current_power_w(self.device.as_ref()));
        read_telemetry(self.device.as_ref(), &self.reference, power_w)
    }
}

impl Drop for SamplingMeter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapezoid_is_exact_on_piecewise_linear_power() {
        // 100 W for 1 s, a ramp to 300 W over 1 s, 300 W for 2 s: 100 + 200 + 600 J.
        let trace = [(0.0, 100.0), (1.0, 100.0), (2.0, 300.0), (4.0, 300.0)];
        assert!((integrate_trapezoid_j(&trace) - 900.0).abs() < 1e-9);
    }

    #[test]
    fn trapezoid_converges_on_a_sine_and_ignores_bad_samples() {
        // P(t) = 200 + 100 sin(2πt) over 3 s: 600 J.
        let n = 3000;
        let mut integ = TrapezoidIntegrator::new();
        for i in 0..=n {
            let t = 3.0 * i as f64 / n as f64;
            integ.add(t, 200.0 + 100.0 * (2.0 * std::f64::consts::PI * t).sin());
            if i == 10 {
                integ.add(t - 0.5, 1e6); // out of order
                integ.add(t + 1e-4, f64::NAN);
            }
        }
        assert!(
            (integ.energy_j() - 600.0).abs() < 0.01,
            "{}",
            integ.energy_j()
        );
        assert_eq!(integ.samples(), n as u64 + 1);
    }
}
