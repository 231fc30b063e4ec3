//! The simulated device (docs/ARCHITECTURE.md §8): a model GPU so the whole
//! pipeline, power caps and locked clocks included, runs and is tested on any
//! machine. Its backend, meter, power and clock control and its clock share one
//! state advanced in virtual time, so a sweep that would take an hour on a GPU takes
//! seconds here. Every record from it says `simulated: true`.
//!
//! It is as imperfect as a card where imperfection can fool a protocol, each
//! imperfection a parameter of its profile ([`Imperfections`]): a power limiter
//! that steps the clock in bins and oscillates around the limit; leakage that grows
//! with temperature, and temperature that follows power through a fast and a slow
//! pole; board power that takes a few hundred milliseconds to fall back to idle
//! after work stops; a sensor that averages a quarter of each period at a phase of
//! its own; a counter whose period jitters, read by a polling thread that stamps
//! its updates late; host gaps between blocks; a gain error no protocol removes;
//! power that depends on the input data. It knows its true energy
//! ([`SimDevice::truth`]), so the protocol's error is a tested number. The
//! equations are on [`SimProfile::at_clock_and_temperature`].
//!
//! - `profile`: the modelled parts; `kernels`: the kernels and their fits;
//!   `imperfections`: how a card's readings and pace differ from an ideal's;
//! - `physics`: time and power of an op at a clock, and where a cap settles it;
//! - `model`: the device in motion — limiter, board power, temperature;
//! - `sensor`: the power sensor, the energy counter and their polling;
//! - `truth`: what really happened, for tests;
//! - `backend`: the `Backend` and its prepared kernels;
//! - `flash_backward`: the fused attention backward's algorithm, which the fused
//!   backward's correctness check runs;
//! - `meter`: the energy counter and telemetry as a meter;
//! - `control`: power cap, locked clocks, and the virtual clock.

mod backend;
mod control;
pub mod flash_backward;
mod imperfections;
mod kernels;
mod meter;
mod model;
mod physics;
mod profile;
mod sensor;
mod truth;

pub use backend::SimBackend;
pub use control::{SimClock, SimClockControl, SimPowerControl};
pub use imperfections::{HostGaps, Imperfections, SensorPhase, ThermalSlowdown};
pub use kernels::{
    fit_of, kernel, kernel_bytes, kernel_flop, precision_activity, KernelFit, SimKernel,
    GENERIC_FITS, KERNELS,
};
pub use meter::SimMeter;
pub use physics::{Job, OperatingPoint};
pub use profile::{profile, profile_names, SimProfile, DEFAULT_PROFILE, GH100_FITS, PROFILES};
pub use sensor::TELEMETRY_PERIOD_S;
pub use truth::{SimTruth, TruthSpan};

use joulebench_core::backend::BackendError;
use joulebench_core::device::DeviceInfo;
use joulebench_core::meter::CounterUpdate;
use model::SimState;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone)]
pub(crate) struct Shared(Arc<Mutex<SimState>>);

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock leaves plain numbers behind: keep going.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One simulated GPU: its backend, meter, power and clock control, and clock.
pub struct SimDevice {
    pub backend: SimBackend,
    pub meter: SimMeter,
    pub power: SimPowerControl,
    pub clocks: SimClockControl,
    pub clock: Arc<SimClock>,
    truth: SimTruthProbe,
}

/// Reads what the simulated device really consumed (for tests).
#[derive(Clone)]
pub struct SimTruthProbe(Shared);

impl SimTruthProbe {
    pub fn snapshot(&self) -> SimTruth {
        let st = self.0.lock();
        SimTruth {
            time_s: st.now_s,
            ..st.truth
        }
    }

    /// The die temperature now, °C (not rounded as telemetry is).
    pub fn temperature_c(&self) -> f64 {
        self.0.lock().temperature_c()
    }

    /// Board power now, W.
    pub fn power_w(&self) -> f64 {
        self.0.lock().power_w()
    }

    /// Keep the truth after every step, and every counter update seen, from now on,
    /// so that [`Self::between`] can read any later interval.
    pub fn start_trace(&self) {
        self.0.lock().start_trace();
    }

    /// The true energy, work and clock between two moments of virtual time since
    /// [`Self::start_trace`]; `None` outside what the trace covers.
    pub fn between(&self, from_s: f64, to_s: f64) -> Option<TruthSpan> {
        self.0.lock().truth_between(from_s, to_s)
    }

    /// Every counter update the meter's polling thread has seen since
    /// [`Self::start_trace`], as it stamped them: a window's opening and closing
    /// updates are among them.
    pub fn updates_seen(&self) -> Vec<CounterUpdate> {
        self.update_ticks().into_iter().map(|(_, u)| u).collect()
    }

    /// As [`Self::updates_seen`], each with the moment the counter really changed
    /// (before the polling thread's lateness).
    pub fn update_ticks(&self) -> Vec<(f64, CounterUpdate)> {
        self.0.lock().counter.log.clone().unwrap_or_default()
    }

    /// The factor by which this board's counter and power readings exceed the power
    /// it really draws.
    pub fn counter_gain(&self) -> f64 {
        self.0.lock().counter.gain()
    }
}

impl SimDevice {
    /// Open profile `name` as device number `index` (several simulated GPUs can
    /// exist at once; each has its own UUID); `seed` drives its noise.
    pub fn open(name: &str, index: usize, seed: u64) -> Result<SimDevice, BackendError> {
        let profile = profile(name).ok_or_else(|| {
            BackendError::Unavailable(format!(
                "unknown simulated device profile '{name}': available {}",
                profile_names().join(", ")
            ))
        })?;
        Ok(SimDevice::open_profile(profile.clone(), index, seed))
    }

    /// Open a profile of the caller's (a built-in one with other imperfections, say).
    pub fn open_profile(profile: SimProfile, index: usize, seed: u64) -> SimDevice {
        let rng =
            ChaCha8Rng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let device = DeviceInfo {
            name: format!("{} (simulated)", profile.name),
            uuid: Some(format!("SIM-{}-{index}", profile.name)),
            pci_bus_id: Some(format!("sim:{index:02x}:00.0")),
            architecture: Some("simulated".into()),
            compute_capability: None,
            driver: Some(format!("joulebench-sim {}", env!("CARGO_PKG_VERSION"))),
            memory_bytes: Some(profile.memory_bytes),
            adapter: None,
            cpu_emulation: false,
            simulated: true,
        };
        let shared = Shared(Arc::new(Mutex::new(SimState::new(profile, index, rng))));
        SimDevice {
            backend: SimBackend::new(shared.clone(), device),
            meter: SimMeter::new(shared.clone()),
            power: SimPowerControl::new(shared.clone()),
            clocks: SimClockControl::new(shared.clone()),
            clock: Arc::new(SimClock::new(shared.clone())),
            truth: SimTruthProbe(shared),
        }
    }

    /// What the device really consumed, for measuring a protocol's error.
    pub fn truth(&self) -> SimTruthProbe {
        self.truth.clone()
    }
}

#[cfg(test)]
mod tests;
