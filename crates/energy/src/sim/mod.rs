//! The simulated device (docs/ARCHITECTURE.md §8): a model GPU so the whole pipeline, power
//! caps and locked clocks included, runs and is tested on any machine. Its backend,
//! meter, power and clock control and its clock share one state advanced in
//! virtual time, so a sweep that would take an hour on a GPU takes seconds here.
//! Every record from it says `simulated: true`.
//!
//! It misbehaves the way real cards do, so that tests catch what only a card would
//! otherwise show: a power limiter that lowers the clock and reports
//! `sw-power-cap`; leakage that grows with temperature, and temperature that
//! follows power through a fast and a slow pole; board power that takes a few
//! hundred milliseconds to fall back to idle after work stops; and an energy
//! counter fed by a sensor that sees only the last quarter of each 100 ms update
//! period. It knows its true energy ([`SimDevice::truth`]), so the protocol's error
//! is a tested number. The equations are on [`SimProfile::at_clock_and_temperature`].
//!
//! - `profile`: the modelled parts and kernels;
//! - `model`: operating point, power, thermal and sensor dynamics;
//! - `backend`: the `Backend` and its prepared kernels;
//! - `flash_backward`: the fused attention backward's algorithm, which the fused
//!   backward's correctness check runs;
//! - `meter`: the energy counter and telemetry;
//! - `control`: power cap, locked clocks, and the virtual clock.

mod backend;
mod control;
pub mod flash_backward;
mod meter;
mod model;
mod profile;

pub use backend::SimBackend;
pub use control::{SimClock, SimClockControl, SimPowerControl};
pub use meter::SimMeter;
pub use model::{OperatingPoint, SimTruth, TELEMETRY_PERIOD_S};
pub use profile::{
    activity, kernel, kernel_bytes, profile, profile_names, SimKernel, SimProfile, KERNELS,
    PROFILES,
};

use joulebench_core::backend::BackendError;
use joulebench_core::device::DeviceInfo;
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
        self.0.lock().truth
    }

    /// The die temperature now, °C (not rounded as telemetry is).
    pub fn temperature_c(&self) -> f64 {
        self.0.lock().temperature_c()
    }

    /// Board power now, W.
    pub fn power_w(&self) -> f64 {
        self.0.lock().power_w()
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
        let rng =
            ChaCha8Rng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let shared = Shared(Arc::new(Mutex::new(SimState::new(profile, rng))));
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
        Ok(SimDevice {
            backend: SimBackend::new(shared.clone(), device),
            meter: SimMeter::new(shared.clone()),
            power: SimPowerControl::new(shared.clone()),
            clocks: SimClockControl::new(shared.clone()),
            clock: Arc::new(SimClock::new(shared.clone())),
            truth: SimTruthProbe(shared),
        })
    }

    /// What the device really consumed, for measuring a protocol's error.
    pub fn truth(&self) -> SimTruthProbe {
        self.truth.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::meter::EnergyMeter;
    use joulebench_core::precision::Precision;
    use joulebench_core::workload::{MatmulShape, Workload};
    use joulebench_core::{Backend, Clock};
    use std::time::Duration;

    fn square(n: u64) -> Workload {
        Workload::Matmul(MatmulShape {
            batch: 1,
            m: n,
            n,
            k: n,
        })
    }

    fn vendor() -> &'static SimKernel {
        kernel("sim-vendor").unwrap()
    }

    #[test]
    fn lower_cap_means_lower_power_and_longer_time() {
        let p = profile("sim-h100").unwrap();
        let mut last: Option<OperatingPoint> = None;
        for cap in [700.0, 600.0, 500.0, 400.0, 300.0] {
            let op = p.operating_point(vendor(), Precision::Bf16, &square(8192), cap);
            assert!(op.power_w <= cap + 1e-6, "cap {cap}: {op:?}");
            if let Some(prev) = last {
                assert!(op.power_w < prev.power_w, "power must fall with the cap");
                assert!(
                    op.seconds_per_op > prev.seconds_per_op,
                    "time must grow as the cap falls"
                );
            }
            last = Some(op);
        }
    }

    #[test]
    fn heavy_tensor_core_work_sits_at_the_default_limit_at_a_lowered_clock() {
        // as the H200 ran bf16 and fp8 GEMMs at 1290–1500 MHz under 700 W
        let p = profile("sim-h100").unwrap();
        for precision in [Precision::Bf16, Precision::Fp8E4m3] {
            let op = p.operating_point(vendor(), precision, &square(8192), 700.0);
            let mhz = op.clock_fraction * p.max_sm_clock_mhz as f64;
            assert!(op.power_limited, "{precision}: {op:?}");
            assert!((1200.0..1600.0).contains(&mhz), "{precision}: {mhz:.0} MHz");
        }
        // f32 SIMT work stays under the limit at full clock
        let f32 = p.operating_point(vendor(), Precision::F32, &square(8192), 700.0);
        assert!(!f32.power_limited && f32.clock_fraction == 1.0, "{f32:?}");
    }

    #[test]
    fn moderate_cap_saves_energy_on_compute_bound_work() {
        let p = profile("sim-h100").unwrap();
        let e = |o: OperatingPoint| o.power_w * o.seconds_per_op;
        let full = p.operating_point(vendor(), Precision::Bf16, &square(8192), 700.0);
        // the default limit already holds the clock near 70%: a further 20% saves less
        let capped = p.operating_point(vendor(), Precision::Bf16, &square(8192), 560.0);
        assert!(e(capped) < 0.96 * e(full), "{} vs {}", e(capped), e(full));
        assert!(capped.seconds_per_op > 1.1 * full.seconds_per_op);
    }

    #[test]
    fn attention_backward_costs_more_than_its_forward_and_unfused_costs_memory() {
        use joulebench_core::workload::AttentionShape;
        let p = profile("sim-h100").unwrap();
        let s = AttentionShape {
            batch: 1,
            heads: 32,
            seq_q: 4096,
            seq_kv: 4096,
            head_dim: 128,
            causal: true,
        };
        let at = |k: &str, w: Workload| {
            p.operating_point(kernel(k).unwrap(), Precision::Bf16, &w, 700.0)
        };
        let fwd = at("sim-fused", Workload::Attention(s));
        let bwd = at("sim-fused-bwd", Workload::AttentionBackward(s));
        // 2.5× the FLOP at a lower efficiency: more than 2.5× the time
        assert!(
            bwd.seconds_per_op > 2.5 * fwd.seconds_per_op,
            "{bwd:?} vs {fwd:?}"
        );
        // the unfused backward moves 10 score-sized matrices: memory time of its own
        let unfused = at("sim-unfused-bwd", Workload::AttentionBackward(s));
        assert!(
            unfused.memory_utilisation > unfused.compute_utilisation,
            "{unfused:?}"
        );
        assert!(bwd.memory_utilisation < 0.2, "{bwd:?}");
        assert!(unfused.seconds_per_op > bwd.seconds_per_op);
    }

    #[test]
    fn memory_bound_work_barely_notices_the_cap() {
        let p = profile("sim-h100").unwrap();
        let w = Workload::Matmul(MatmulShape {
            batch: 64,
            m: 1,
            n: 8192,
            k: 8192,
        });
        let full = p.operating_point(vendor(), Precision::F16, &w, 700.0);
        let capped = p.operating_point(vendor(), Precision::F16, &w, 400.0);
        assert!(full.memory_utilisation > 0.9);
        assert!((capped.seconds_per_op / full.seconds_per_op) < 1.02);
    }

    #[test]
    fn energy_per_flop_has_its_minimum_below_the_maximum_clock() {
        let p = profile("sim-h100").unwrap();
        let energy = |phi: f64| {
            let op = p.settled_point(
                vendor(),
                Precision::Bf16,
                &square(8192),
                10_000.0,
                (phi, phi),
            );
            op.power_w * op.seconds_per_op
        };
        let clocks: Vec<f64> = (5..=20).map(|i| i as f64 / 20.0).collect();
        let (best, _) = clocks
            .iter()
            .map(|&c| (c, energy(c)))
            .fold((1.0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        assert!(
            best > p.v_knee_fraction && best < 0.9,
            "minimum at φ = {best}"
        );
        assert!(energy(best) < 0.85 * energy(1.0));
    }

    #[test]
    fn the_counter_updates_every_period_in_whole_millijoules() {
        let mut dev = SimDevice::open("sim-h100", 0, 1).unwrap();
        dev.clock.sleep(Duration::from_millis(50));
        assert_eq!(dev.meter.energy_j().unwrap(), 0.0, "no update yet");
        dev.clock.sleep(Duration::from_millis(60));
        let e = dev.meter.energy_j().unwrap();
        assert!(
            (e - 12.0).abs() < 1e-3,
            "one 100 ms update at 120 W idle: {e}"
        );
        assert_eq!((e * 1000.0).fract(), 0.0);
        let ups = dev.meter.take_updates().unwrap();
        assert_eq!(ups.len(), 1);
        assert!((ups[0].time_s - 0.1).abs() < 1e-9);
    }

    #[test]
    fn the_sensor_sees_only_the_end_of_each_period() {
        // idle for the first 70 ms of a period, work for the last 30: the sensor's
        // 25 ms window sees only the work, and the counter books it for all 100 ms
        let mut dev = SimDevice::open("sim-h100", 0, 1).unwrap();
        let truth = dev.truth();
        dev.clock.sleep(Duration::from_millis(170));
        dev.meter.take_updates().unwrap();
        let e0 = truth.snapshot().energy_j;
        let mut k = dev
            .backend
            .prepare("sim-vendor", Precision::Bf16, &square(2048), 1)
            .unwrap();
        while dev.clock.now_s() < 0.1995 {
            k.run(1).unwrap();
        }
        drop(k);
        let true_j = truth.snapshot().energy_j - e0 + 0.07 * 120.0;
        dev.clock
            .sleep(Duration::from_secs_f64(0.2001 - dev.clock.now_s()));
        let ups = dev.meter.take_updates().unwrap();
        assert_eq!(ups.len(), 1, "{ups:?}");
        let counted = ups[0].joules - 12.0;
        assert!(
            counted > 1.8 * true_j,
            "counted {counted} J of a true {true_j} J"
        );
    }

    #[test]
    fn power_falls_back_to_idle_over_hundreds_of_milliseconds() {
        let mut dev = SimDevice::open("sim-h100", 0, 1).unwrap();
        let truth = dev.truth();
        let mut k = dev
            .backend
            .prepare("sim-vendor", Precision::Bf16, &square(8192), 1)
            .unwrap();
        k.run(500).unwrap();
        drop(k);
        let busy = truth.power_w();
        assert!(busy > 650.0, "{busy}");
        dev.clock.sleep(Duration::from_millis(20));
        let after_20ms = truth.power_w();
        dev.clock.sleep(Duration::from_millis(180));
        let after_200ms = truth.power_w();
        dev.clock.sleep(Duration::from_millis(2800));
        let after_3s = truth.power_w();
        assert!(after_20ms > 400.0, "{after_20ms}");
        assert!(after_200ms > 150.0 && after_200ms < 300.0, "{after_200ms}");
        assert!(after_3s < 120.5, "{after_3s}");
    }

    #[test]
    fn temperature_follows_power_and_leakage_costs_clock_at_the_limit() {
        let mut dev = SimDevice::open("sim-h100", 0, 1).unwrap();
        let truth = dev.truth();
        let cold = truth.temperature_c();
        let mut k = dev
            .backend
            .prepare("sim-vendor", Precision::Bf16, &square(8192), 1)
            .unwrap();
        let seconds = |k: &mut Box<dyn joulebench_core::PreparedKernel + '_>, n| {
            k.run(n).unwrap().wall_s / n as f64
        };
        let first = seconds(&mut k, 200);
        let mut t = 0.0;
        while t < 10.0 {
            t += k.run(1000).unwrap().wall_s;
        }
        let after_10s = truth.temperature_c();
        while t < 300.0 {
            t += k.run(5000).unwrap().wall_s;
        }
        let hot = truth.temperature_c();
        let last = seconds(&mut k, 200);
        assert!(
            cold < 37.0 && after_10s > cold + 12.0 && hot > after_10s + 5.0,
            "{cold} {after_10s} {hot}"
        );
        assert!((hot - 61.5).abs() < 2.0, "steady at 700 W: {hot}");
        // hotter die, more leakage, less power left for switching: slower at the limit
        assert!(last > first * 1.01, "{first} → {last} s per op");
    }
}
