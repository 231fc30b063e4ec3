//! Joules as a criterion [`Measurement`]: criterion's statistics and reports stay
//! as they are, and print energy (nJ … kJ) and energy efficiency (FLOP/J) instead
//! of time and FLOP/s.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;
use joulebench_core::{EnergyMeter, MeterSource};
use std::sync::Mutex;

/// Energy per benchmark sample, in joules.
///
/// With [`criterion::Bencher::iter_custom`] (the way to use it: see
/// [`crate::EnergyBench::joules`]) the routine returns the joules of its
/// iterations and no meter is needed here: `Energy::default()`.
///
/// [`Energy::reading`] also serves `Bencher::iter`, reading a meter before and
/// after each batch of iterations. That is only trustworthy when every batch
/// lasts at least max(1 s, 10 meter updates) — NVML's counter moves every ~100 ms
/// — so prefer `iter_custom` with windows sized by [`crate::EnergyBench`].
#[derive(Default)]
pub struct Energy {
    meter: Option<Mutex<Box<dyn EnergyMeter>>>,
    formatter: EnergyFormatter,
}

impl Energy {
    /// A measurement that reads `meter` around every batch of `Bencher::iter`.
    pub fn reading(meter: Box<dyn EnergyMeter>) -> Energy {
        Energy {
            meter: Some(Mutex::new(meter)),
            formatter: EnergyFormatter,
        }
    }

    /// The meter read by `Bencher::iter`, if any.
    pub fn meter_source(&self) -> Option<MeterSource> {
        self.meter
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).source())
    }

    fn read_joules(&self) -> Option<f64> {
        let meter = self.meter.as_ref()?;
        let mut meter = meter.lock().unwrap_or_else(|p| p.into_inner());
        match meter.energy_j() {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::warn!("energy meter read failed: {e}; this sample counts 0 J");
                None
            }
        }
    }
}

impl Measurement for Energy {
    /// The meter's cumulative reading at the start of a batch.
    type Intermediate = Option<f64>;
    /// Joules.
    type Value = f64;

    fn start(&self) -> Option<f64> {
        self.read_joules()
    }

    fn end(&self, start: Option<f64>) -> f64 {
        match (start, self.read_joules()) {
            (Some(a), Some(b)) => (b - a).max(0.0),
            _ => 0.0,
        }
    }

    fn add(&self, v1: &f64, v2: &f64) -> f64 {
        v1 + v2
    }

    fn zero(&self) -> f64 {
        0.0
    }

    fn to_f64(&self, joules: &f64) -> f64 {
        *joules
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &self.formatter
    }
}

/// Prints joules with an SI prefix and throughput per joule.
///
/// Throughput follows criterion's kinds, per joule instead of per second:
/// `Throughput::Elements(flop)` prints FLOP/J (kFLOP/J … TFLOP/J) — joulebench's
/// benches give FLOP as elements; `Bytes`/`BytesDecimal` print B/J (kB/J … GB/J,
/// decimal); `Bits` prints bit/J; `ElementsAndBytes` prints its elements.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnergyFormatter;

/// (factor, unit) for a value in joules.
fn joule_scale(typical_j: f64) -> (f64, &'static str) {
    let a = typical_j.abs();
    if a < 1e-6 {
        (1e9, "nJ")
    } else if a < 1e-3 {
        (1e6, "µJ")
    } else if a < 1.0 {
        (1e3, "mJ")
    } else if a < 1e3 {
        (1.0, "J")
    } else {
        (1e-3, "kJ")
    }
}

/// (divisor, unit) for a rate per joule, with decimal prefixes.
fn per_joule_scale(typical: f64, units: [&'static str; 5]) -> (f64, &'static str) {
    let steps = [1.0, 1e3, 1e6, 1e9, 1e12];
    let i = steps.iter().rposition(|&s| typical >= s).unwrap_or(0);
    (steps[i], units[i])
}

/// `amount` per joule; 0 for a zero or negative energy rather than inf or NaN.
fn per_joule(amount: f64, joules: f64) -> f64 {
    if joules > 0.0 {
        amount / joules
    } else {
        0.0
    }
}

impl ValueFormatter for EnergyFormatter {
    fn scale_values(&self, typical_j: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = joule_scale(typical_j);
        for v in values {
            *v *= factor;
        }
        unit
    }

    fn scale_throughputs(
        &self,
        typical_j: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (amount, units) = match *throughput {
            Throughput::Elements(flop) | Throughput::ElementsAndBytes { elements: flop, .. } => (
                flop as f64,
                ["FLOP/J", "kFLOP/J", "MFLOP/J", "GFLOP/J", "TFLOP/J"],
            ),
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => {
                (b as f64, ["B/J", "kB/J", "MB/J", "GB/J", "TB/J"])
            }
            Throughput::Bits(b) => (b as f64, ["bit/J", "kbit/J", "Mbit/J", "Gbit/J", "Tbit/J"]),
        };
        let (divisor, unit) = per_joule_scale(per_joule(amount, typical_j), units);
        for v in values {
            *v = per_joule(amount, *v) / divisor;
        }
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "J"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::MeterError;

    #[test]
    fn joules_get_si_prefixes() {
        let f = EnergyFormatter;
        let mut v = [2.5e-3, 3e-3];
        assert_eq!(f.scale_values(2.5e-3, &mut v), "mJ");
        assert!((v[0] - 2.5).abs() < 1e-12 && (v[1] - 3.0).abs() < 1e-12);
        let mut v = [4e-7];
        assert_eq!(f.scale_values(4e-7, &mut v), "nJ");
        assert!((v[0] - 400.0).abs() < 1e-9);
        assert_eq!(f.scale_values(5e-5, &mut [5e-5]), "µJ");
        assert_eq!(f.scale_values(12.0, &mut [12.0]), "J");
        assert_eq!(f.scale_values(1.2e4, &mut [1.2e4]), "kJ");
        assert!(
            f.format_value(2.5e-3).contains("2.5000 mJ"),
            "{}",
            f.format_value(2.5e-3)
        );
    }

    #[test]
    fn flop_throughput_is_flop_per_joule() {
        let f = EnergyFormatter;
        // 2·1024³ FLOP for 2.7 mJ ≈ 795 GFLOP/J (≈ 1.26 pJ/FLOP)
        let flop = 2 * 1024u64.pow(3);
        let mut v = [2.7e-3, 0.0];
        let unit = f.scale_throughputs(2.7e-3, &Throughput::Elements(flop), &mut v);
        assert_eq!(unit, "GFLOP/J");
        assert!((v[0] - flop as f64 / 2.7e-3 / 1e9).abs() < 1e-6, "{v:?}");
        assert_eq!(v[1], 0.0, "zero energy must not become inf or NaN");
        let mut v = [1.0];
        assert_eq!(
            f.scale_throughputs(1.0, &Throughput::Bytes(5_000_000), &mut v),
            "MB/J"
        );
        assert!((v[0] - 5.0).abs() < 1e-12);
    }

    struct Counter(f64);
    impl EnergyMeter for Counter {
        fn source(&self) -> MeterSource {
            MeterSource::Simulated
        }
        fn energy_j(&mut self) -> Result<f64, MeterError> {
            self.0 += 1.5;
            Ok(self.0)
        }
        fn update_period_s(&self) -> f64 {
            0.1
        }
        fn take_updates(
            &mut self,
        ) -> Result<Vec<joulebench_core::meter::CounterUpdate>, MeterError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn reading_measurement_takes_counter_differences() {
        let e = Energy::reading(Box::new(Counter(10.0)));
        let start = e.start();
        assert_eq!(e.end(start), 1.5);
        assert_eq!(e.meter_source(), Some(MeterSource::Simulated));
        // without a meter, `iter` measures nothing rather than failing
        let none = Energy::default();
        assert_eq!(none.end(none.start()), 0.0);
        assert_eq!(none.add(&1.0, &2.0), 3.0);
    }
}
