//! Joules as a criterion [`Measurement`]: criterion's statistics and reports stay
//! as they are, and print energy (nJ … kJ) and energy efficiency (FLOP/J) instead
//! of time and FLOP/s.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;
use joulebench_core::protocol::ProtocolConfig;
use joulebench_core::window::{IntervalMeter, WindowEnds};
use joulebench_core::{Clock, EnergyMeter, MeterSource};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Energy per benchmark sample, in joules.
///
/// With [`criterion::Bencher::iter_custom`] (the way to use it: see
/// [`crate::EnergyBench::iter_joules`]) the routine returns the joules of its
/// iterations and no meter is needed here: `Energy::default()`.
///
/// [`Energy::reading`] also serves `Bencher::iter`: each batch of iterations is an
/// interval window of the window engine (as `EnergyMonitor`'s are), its ends
/// placed on the counter's fitted timeline and its end waiting for the next
/// counter update. Those windows cannot keep the device busy across the
/// counter's updates, and a batch under their bound (max(1 s, 100 meter updates),
/// as `EnergyMonitor`'s) is counted by [`Energy::short_samples`]: prefer `iter_custom` with
/// [`crate::EnergyBench`]. A batch whose energy cannot be measured (the meter
/// fails, stalls or goes backwards) stops the benchmark with the meter's error:
/// criterion has no way to skip a sample, and a 0 J sample would be a lie.
#[derive(Default)]
pub struct Energy {
    meter: Option<Mutex<IntervalMeter>>,
    short: AtomicU64,
    formatter: EnergyFormatter,
}

impl Energy {
    /// A measurement that reads `meter` around every batch of `Bencher::iter`,
    /// with windows under the protocol's default rules.
    pub fn reading(meter: Box<dyn EnergyMeter>, clock: Arc<dyn Clock>) -> Energy {
        Energy::reading_with(meter, clock, &ProtocolConfig::default())
    }

    /// [`Energy::reading`] with the window rules of `config`.
    pub fn reading_with(
        meter: Box<dyn EnergyMeter>,
        clock: Arc<dyn Clock>,
        config: &ProtocolConfig,
    ) -> Energy {
        Energy {
            meter: Some(Mutex::new(IntervalMeter::new(
                meter,
                clock,
                config.window_rules().for_intervals(),
            ))),
            short: AtomicU64::new(0),
            formatter: EnergyFormatter,
        }
    }

    /// The meter read by `Bencher::iter`, if any.
    pub fn meter_source(&self) -> Option<MeterSource> {
        self.meter
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).meter_source())
    }

    /// Batches of `Bencher::iter` shorter than the window rule: their energy is
    /// not to be trusted.
    pub fn short_samples(&self) -> u64 {
        self.short.load(Ordering::Relaxed)
    }

    fn meter(&self) -> std::sync::MutexGuard<'_, IntervalMeter> {
        let meter = self
            .meter
            .as_ref()
            .expect("Energy::default() has no meter: use it with iter_custom and EnergyBench");
        meter.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Measurement for Energy {
    /// When the batch began, on the device's clock.
    type Intermediate = f64;
    /// Joules.
    type Value = f64;

    fn start(&self) -> f64 {
        match self.meter().mark() {
            Ok(t) => t,
            Err(e) => panic!("no energy sample: the energy meter failed: {e}"),
        }
    }

    fn end(&self, begin_s: f64) -> f64 {
        let mut meter = self.meter();
        let end_s = meter.clock().now_s();
        let measured = meter.measure(begin_s, end_s);
        let e = match measured {
            Ok(e) => e,
            Err(e) => panic!("no energy sample: {e}"),
        };
        if meter.is_short(e.seconds()) || e.ends != WindowEnds::Interpolated {
            self.short.fetch_add(1, Ordering::Relaxed);
        }
        meter.forget_before(end_s);
        match e.joules {
            Some(j) => j,
            None => panic!("no energy sample: this device has no energy meter"),
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

    /// A counter booking 150 W exactly every 100 ms, on a clock that moves when slept.
    struct World(Mutex<(f64, usize)>);
    struct Clock1(Arc<World>);
    impl Clock for Clock1 {
        fn now_s(&self) -> f64 {
            self.0 .0.lock().unwrap().0
        }
        fn sleep(&self, d: std::time::Duration) {
            self.0 .0.lock().unwrap().0 += d.as_secs_f64();
        }
    }
    struct Counter(Arc<World>, bool);
    impl EnergyMeter for Counter {
        fn source(&self) -> MeterSource {
            MeterSource::Simulated
        }
        fn energy_j(&mut self) -> Result<f64, MeterError> {
            Ok(0.0)
        }
        fn update_period_s(&self) -> f64 {
            0.1
        }
        fn take_updates(
            &mut self,
        ) -> Result<Vec<joulebench_core::meter::CounterUpdate>, MeterError> {
            let mut w = self.0 .0.lock().unwrap();
            let upto = (w.0 / 0.1 + 1e-9).floor() as usize;
            let from = w.1;
            w.1 = upto.max(from);
            let backwards = self.1;
            Ok((from + 1..=upto)
                .map(|k| joulebench_core::meter::CounterUpdate {
                    time_s: k as f64 * 0.1,
                    joules: if backwards && k > 12 {
                        0.0
                    } else {
                        15.0 * k as f64
                    },
                })
                .collect())
        }
    }

    fn reading(backwards: bool) -> (Energy, Arc<World>) {
        let w = Arc::new(World(Mutex::new((0.15, 0))));
        let e = Energy::reading(
            Box::new(Counter(w.clone(), backwards)),
            Arc::new(Clock1(w.clone())),
        );
        (e, w)
    }

    #[test]
    fn reading_measurement_places_both_ends_on_the_counter() {
        let (e, w) = reading(false);
        let start = e.start();
        w.0.lock().unwrap().0 += 12.0;
        let j = e.end(start);
        assert!((j - 1800.0).abs() < 1e-6, "{j}");
        assert_eq!(e.meter_source(), Some(MeterSource::Simulated));
        assert_eq!(e.short_samples(), 0);
        let start = e.start();
        w.0.lock().unwrap().0 += 0.3;
        assert!((e.end(start) - 45.0).abs() < 1e-6);
        assert_eq!(e.short_samples(), 1);
        let none = Energy::default();
        assert_eq!(none.add(&1.0, &2.0), 3.0);
        assert_eq!(none.meter_source(), None);
    }

    #[test]
    #[should_panic(expected = "went backwards")]
    fn a_counter_that_goes_backwards_is_no_sample_not_zero_joules() {
        let (e, w) = reading(true);
        let start = e.start();
        w.0.lock().unwrap().0 += 1.5;
        e.end(start);
    }
}
