//! Joules in `cargo bench`: a criterion [`Measurement`](criterion::measurement::Measurement)
//! of energy ([`Energy`], printed as nJ … kJ per iteration and FLOP/J), and
//! [`EnergyBench`], which turns the few iterations criterion asks for into a
//! window the energy meter can be trusted over.
//!
//! Why windows: NVML's energy counter updates about every 100 ms, and on A100/H100
//! the power sensor sees only ~25% of the time, so energy over less than
//! max(1 s, 10 counter updates) can be wrong by up to 65%. `EnergyBench::joules`
//! therefore keeps the device busy from before one counter update to after
//! another at least that long apart — the sweep's window engine, under the
//! sweep's protocol settings (block length, warm-up, window rule) — and returns
//! the energy per iteration scaled to the iterations criterion asked for. A bench
//! and `joulebench sweep` on the same point agree (a test holds them within 1%).
//!
//! Time stays criterion's: benchmark the same routine twice, once in a group of a
//! `Criterion<WallTime>` with [`EnergyBench::device_time`] and once in a group of a
//! `Criterion<Energy>` with [`EnergyBench::joules`]:
//!
//! ```no_run
//! use criterion::{Criterion, SamplingMode, Throughput};
//! use joulebench_core::{Backend, MatmulShape, Precision, Workload};
//! use joulebench_criterion::{Energy, EnergyBench, WindowConfig};
//! use joulebench_energy::sim::SimDevice;
//!
//! let mut dev = SimDevice::open("sim-h100", 0, 42).map_err(|e| e.to_string())?;
//! let mut bench = EnergyBench::new(Box::new(dev.meter), dev.clock.clone(), WindowConfig::default());
//! let w = Workload::Matmul(MatmulShape { batch: 1, m: 4096, n: 4096, k: 4096 });
//! let mut kernel = dev.backend.prepare("sim-vendor", Precision::Bf16, &w, 42).map_err(|e| e.to_string())?;
//! let mut run = |n: u64| kernel.run(n);
//! bench.check_meter().map_err(|e| e.to_string())?;         // no meter: time only
//! let cal = bench.calibrate(&mut run).map_err(|e| e.to_string())?;  // blocks, warm-up
//! let flop = w.flop().map_err(|e| e.to_string())?;
//!
//! let mut energy = Criterion::default().with_measurement(Energy::default()).configure_from_args();
//! let mut group = energy.benchmark_group("matmul-energy");
//! group.sampling_mode(SamplingMode::Flat).throughput(Throughput::Elements(flop));
//! group.bench_function("sim-vendor-bf16-4096", |b| bench.iter_joules(b, &cal, &mut run));
//! group.finish();
//! # Ok::<(), String>(())
//! ```
//!
//! A window whose energy cannot be measured never becomes a sample: it is measured
//! again, and if the meter keeps failing the benchmark stops with its error.
//!
//! criterion labels every estimate `time:`; in a `Criterion<Energy>` group its unit
//! is joules, and `thrpt:` is FLOP (or bytes) per joule.

mod measurement;
mod window;

pub use joulebench_core::window::{Calibration, Window};
pub use measurement::{Energy, EnergyFormatter};
pub use window::{
    min_trustworthy_window_s, BenchError, EnergyBench, WindowConfig, WINDOW_ATTEMPTS,
};

/// Whether this bench binary runs in criterion's test mode: `cargo test --benches`
/// (no `--bench` argument) or `cargo bench -- --test`. Each bench then runs once;
/// benches can shrink their windows to keep that quick.
pub fn criterion_test_mode() -> bool {
    test_mode_of(std::env::args().skip(1))
}

fn test_mode_of(args: impl IntoIterator<Item = String>) -> bool {
    let (mut bench, mut test) = (false, false);
    for a in args {
        match a.as_str() {
            "--bench" => bench = true,
            "--test" => test = true,
            _ => {}
        }
    }
    // criterion's own rule: `cargo bench` passes --bench; `cargo test` does not
    !bench || test
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn test_mode_follows_criterion() {
        assert!(test_mode_of(args(&[])));
        assert!(test_mode_of(args(&["matmul"])));
        assert!(!test_mode_of(args(&["--bench"])));
        assert!(!test_mode_of(args(&["--bench", "sim"])));
        assert!(test_mode_of(args(&["--bench", "--test"])));
    }
}
