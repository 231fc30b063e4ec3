//! The NVML meters on the fake device (whose counter steps in wall-clock time like
//! the real one): update-period measurement, counter and sampled energy, check-mode
//! agreement, telemetry, and a lost device. Real NVML is only checked for a clear
//! message when it is missing.

mod common;

use common::fake;
use joulebench_core::{EnergyMeter, MeterError, MeterSource};
use joulebench_energy::nvml::{
    measure_update_period, nvml_unavailable_reason, open_meter, CheckMeter, CounterMeter,
    DeviceMatch, FakeState, MeterMode, NvmlDevice, PeriodProbe, PowerReadingKind, SamplingConfig,
    SamplingMeter,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn quick_probe() -> PeriodProbe {
    PeriodProbe {
        max_wait: Duration::from_millis(1500),
        ..Default::default()
    }
}

fn sampling(ms: u64) -> SamplingConfig {
    SamplingConfig {
        interval: Duration::from_millis(ms),
    }
}

#[test]
fn the_counter_update_period_is_measured_not_assumed() {
    for period_ms in [20u64, 50] {
        let f = fake(FakeState {
            counter_period_ms: period_ms,
            ..Default::default()
        });
        let p = measure_update_period(f.as_ref(), &quick_probe()).unwrap();
        assert!(p.measured);
        assert_eq!(p.changes_seen, 5);
        let expected = period_ms as f64 / 1000.0;
        assert!(
            (p.seconds - expected).abs() < 0.3 * expected,
            "{period_ms} ms counter measured as {:.1} ms",
            p.seconds * 1e3
        );
    }
}

#[test]
fn a_counter_that_never_moves_falls_back_within_the_time_bound() {
    let f = fake(FakeState {
        power_demand_mw: 0,
        counter_period_ms: 10,
        ..Default::default()
    });
    let probe = PeriodProbe {
        max_wait: Duration::from_millis(200),
        ..Default::default()
    };
    let start = Instant::now();
    let p = measure_update_period(f.as_ref(), &probe).unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(!p.measured);
    assert_eq!(p.seconds, probe.fallback_s);
}

#[test]
fn counter_meter_reads_joules_over_a_window() {
    let f = fake(FakeState {
        counter_period_ms: 10,
        power_demand_mw: 250_000,
        ..Default::default()
    });
    let mut m = CounterMeter::with_probe(f.clone(), &quick_probe()).unwrap();
    assert_eq!(m.source(), MeterSource::NvmlCounter);
    assert!((m.update_period_s() - 0.010).abs() < 0.004);
    let (e0, t0) = (m.energy_j().unwrap(), Instant::now());
    std::thread::sleep(Duration::from_millis(500));
    let (e1, t1) = (m.energy_j().unwrap(), Instant::now());
    let expected = 250.0 * (t1 - t0).as_secs_f64();
    // Within one counter step (2.5 J) either end, plus scheduling slack.
    assert!(
        ((e1 - e0) - expected).abs() < 5.0 + 0.02 * expected,
        "{} vs {expected}",
        e1 - e0
    );
}

#[test]
fn sampling_meter_integrates_instant_power_and_keeps_the_average() {
    let f = fake(FakeState {
        power_demand_mw: 200_000,
        ..Default::default()
    });
    let mut m = SamplingMeter::start(f.clone(), sampling(5)).unwrap();
    assert_eq!(m.source(), MeterSource::NvmlSampled);
    assert_eq!(m.reading_kind(), PowerReadingKind::Instant);
    assert_eq!(m.update_period_s(), 0.005);
    std::thread::sleep(Duration::from_millis(50));
    let (e0, t0) = (m.energy_j().unwrap(), Instant::now());
    std::thread::sleep(Duration::from_millis(300));
    // A step in power mid-window: 200 W for 0.3 s, then 400 W for 0.3 s.
    f.update(|s| s.set_power_demand_mw(400_000)).unwrap();
    let t_step = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let (e1, t1) = (m.energy_j().unwrap(), Instant::now());
    let expected = 200.0 * (t_step - t0).as_secs_f64() + 400.0 * (t1 - t_step).as_secs_f64();
    let got = e1 - e0;
    assert!(
        (got - expected).abs() < 0.1 * expected,
        "{got} J vs {expected} J"
    );
    let s = m.last_sample().unwrap();
    assert_eq!(
        (s.instant_w, s.average_w, s.usage_w),
        (Some(400.0), Some(400.0), Some(400.0))
    );
    assert!(m.samples_taken() > 50);
    let t = m.telemetry().unwrap();
    assert_eq!(t.power_w, Some(400.0));
}

#[test]
fn without_power_fields_the_sampler_integrates_power_usage() {
    let f = fake(FakeState {
        has_power_fields: false,
        ..Default::default()
    });
    let m = SamplingMeter::start(f, sampling(5)).unwrap();
    assert_eq!(m.reading_kind(), PowerReadingKind::Usage);
    let s = m.last_sample().unwrap();
    assert_eq!(
        (s.instant_w, s.average_w, s.usage_w),
        (None, None, Some(350.0))
    );
}

#[test]
fn check_mode_records_sampled_against_counter_agreement() {
    let f = fake(FakeState {
        counter_period_ms: 10,
        power_demand_mw: 300_000,
        ..Default::default()
    });
    let counter = CounterMeter::with_probe(f.clone(), &quick_probe()).unwrap();
    let sampled = SamplingMeter::start(f.clone(), sampling(5)).unwrap();
    let mut m = CheckMeter::from_meters(counter, sampled);
    let agreement = m.agreement();
    assert_eq!(m.source(), MeterSource::NvmlCounter);
    // the window engine takes the counter's updates as the work runs; every
    // stretch of them at least 0.25 s long is compared with the sampled integral
    let mut updates = 0;
    for step in 0..18 {
        std::thread::sleep(Duration::from_millis(100));
        if step == 8 {
            f.update(|s| s.set_power_demand_mw(150_000)).unwrap();
        }
        updates += m.take_updates().unwrap().len();
    }
    assert!(updates > 100, "{updates} counter updates in 1.8 s");
    let intervals = agreement.intervals();
    assert!((4..=7).contains(&intervals.len()), "{intervals:?}");
    assert!(intervals.iter().all(|i| i.seconds >= 0.25), "{intervals:?}");
    let a = agreement.take().unwrap();
    assert_eq!(a.intervals, intervals.len());
    assert!(a.agreement_pct > 95.0, "{a:?}");
    assert!(a.worst_difference_pct < 5.0, "{a:?}");
    assert!(agreement.summary().is_none(), "take starts afresh");
}

#[test]
fn telemetry_carries_clocks_reasons_limit_and_pstate() {
    let f = fake(FakeState {
        sm_clock_mhz: 1200,
        mem_clock_mhz: 2619,
        default_sm_clock_mhz: None,
        max_sm_clock_mhz: 1980,
        temperature_c: 83,
        throttle_reasons: 0x4 | 0x40,
        performance_state: Some(2),
        limit_mw: 450_000,
        ..Default::default()
    });
    let mut m = CounterMeter::with_probe(f.clone(), &quick_probe()).unwrap();
    let t = m.telemetry().unwrap();
    assert_eq!(t.sm_clock_mhz, Some(1200));
    assert_eq!(t.mem_clock_mhz, Some(2619));
    // No default applications clock on this part: the max SM clock stands in.
    assert_eq!(t.default_sm_clock_mhz, Some(1980));
    assert_eq!(t.temperature_c, Some(83));
    assert_eq!(t.throttle_reasons, ["sw-power-cap", "hw-thermal-slowdown"]);
    assert!(t.has_brake_reason());
    assert_eq!(t.enforced_power_limit_w, Some(450.0));
    assert_eq!(t.performance_state.as_deref(), Some("P2"));
    assert_eq!(t.power_w, Some(350.0));
}

#[test]
fn a_lost_gpu_is_a_meter_error_on_every_meter() {
    let f = fake(FakeState {
        counter_period_ms: 10,
        ..Default::default()
    });
    let mut counter = CounterMeter::with_probe(f.clone(), &quick_probe()).unwrap();
    let mut sampled = SamplingMeter::start(f.clone(), sampling(5)).unwrap();
    counter.energy_j().unwrap();
    sampled.energy_j().unwrap();
    f.update(|s| s.lost = true).unwrap();

    let e = counter.energy_j().unwrap_err();
    assert!(
        matches!(e, MeterError::Read(_)) && e.to_string().contains("lost"),
        "{e}"
    );
    assert!(counter.telemetry().is_err());

    let deadline = Instant::now() + Duration::from_secs(2);
    let e = loop {
        match sampled.energy_j() {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(_) => panic!("the sampling meter kept reading a lost GPU"),
        }
    };
    assert!(e.to_string().contains("lost"), "{e}");
}

#[test]
fn a_counter_that_goes_backwards_stops_the_meter() {
    let f = fake(FakeState::default());
    let mut m = CounterMeter::with_probe(f.clone(), &quick_probe()).unwrap();
    m.energy_j().unwrap();
    f.update(|s| s.energy_base_mj = 0).unwrap();
    let e = m.energy_j().unwrap_err();
    assert!(e.to_string().contains("went backwards"), "{e}");
}

#[test]
fn auto_mode_uses_the_counter_and_falls_back_to_sampling() {
    let with_counter = fake(FakeState {
        counter_period_ms: 10,
        ..Default::default()
    });
    let m = open_meter(with_counter, MeterMode::Auto, sampling(5)).unwrap();
    assert_eq!(m.meter.source(), MeterSource::NvmlCounter);
    assert!(m.note.unwrap().contains("measured"));
    assert!(m.agreement.is_none());

    let without = fake(FakeState {
        has_energy_counter: false,
        ..Default::default()
    });
    let m = open_meter(without.clone(), MeterMode::Auto, sampling(5)).unwrap();
    assert_eq!(m.meter.source(), MeterSource::NvmlSampled);
    assert!(m.note.unwrap().contains("no energy counter"));
    assert!(open_meter(without, MeterMode::Counter, sampling(5)).is_err());

    let checked = fake(FakeState {
        counter_period_ms: 10,
        ..Default::default()
    });
    let m = open_meter(checked, MeterMode::Check, sampling(5)).unwrap();
    assert!(m.agreement.is_some());
    assert_eq!("check".parse::<MeterMode>().unwrap(), MeterMode::Check);
    assert!("watts".parse::<MeterMode>().is_err());
}

#[test]
fn identity_becomes_device_info_and_matches_cuda_spellings() {
    let f = fake(FakeState::default());
    let id = f.identity().unwrap();
    let info = id.to_device_info();
    assert_eq!(info.pci_bus_id.as_deref(), Some("0000:65:00.0"));
    assert_eq!(info.architecture.as_deref(), Some("Hopper"));
    assert_eq!(info.compute_capability.as_deref(), Some("9.0"));
    assert_eq!(info.memory_bytes, Some(80 << 30));
    assert!(!info.simulated);
    // CUDA's cuDeviceGetPCIBusId spelling, and its bare UUID.
    assert!(DeviceMatch::pci_bus_id("0000:65:00.0").matches(&id));
    assert!(DeviceMatch::uuid("fa4e0000000040008000000000000001").matches(&id));
    assert!(!DeviceMatch::pci_bus_id("0000:17:00.0").matches(&id));
}

#[test]
fn without_a_driver_nvml_says_why_instead_of_panicking() {
    match nvml_unavailable_reason() {
        Some(reason) => {
            eprintln!("NVML unavailable here: {reason}");
            assert!(reason.contains("NVIDIA"), "{reason}");
            let e = joulebench_energy::nvml::RealDevice::open(&DeviceMatch::uuid("GPU-0"))
                .err()
                .unwrap();
            assert!(e.to_string().contains("NVML is unavailable"), "{e}");
        }
        None => eprintln!("skipped: NVML is available here, so its absence cannot be tested"),
    }
}

#[allow(dead_code)]
fn assert_send<T: Send>(_: &T) {}

#[test]
fn meters_and_devices_can_move_between_threads() {
    let f: Arc<dyn NvmlDevice> = fake(FakeState::default());
    let m = SamplingMeter::start(f, sampling(5)).unwrap();
    assert_send(&m);
}
