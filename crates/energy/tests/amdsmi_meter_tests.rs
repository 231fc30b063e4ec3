//! The amdsmi meter on the fake amdsmi device: energy at the drawn power in ticks of
//! the reported resolution, a 64-bit wrap that keeps counting, a reset that rejects
//! its window naming the known amdsmi issue, a counter that stands still refused at
//! once (with the hwmon fallback taking over), and throttle bits in telemetry.
#![cfg(unix)]

mod common;

use common::sysfs_fixture::SysfsFixture;
use joulebench_core::backend::RunTiming;
use joulebench_core::{
    DeviceInfo, EnergyMeter, MeterSource, PowerControl, SystemClock, Window, WindowEngine,
    WindowError, WindowRules,
};
use joulebench_energy::amd::{
    AmdSmiCounterMeter, AmdSmiDevice, AmdSmiPowerControl, FakeAmdSmi, FakeAmdSmiState,
};
use joulebench_energy::hwmon_meter::CounterProbe;
use std::sync::Arc;
use std::time::Duration;

fn rules() -> WindowRules {
    WindowRules {
        min_window_s: 0.3,
        min_counter_updates: 10,
    }
}

fn window_on(meter: &mut dyn EnergyMeter) -> Result<Window, WindowError<std::io::Error>> {
    let clock = SystemClock;
    let mut engine = WindowEngine::new(meter, &clock, rules());
    let mut run = |n: u64| {
        std::thread::sleep(Duration::from_millis(n));
        Ok(RunTiming {
            wall_s: n as f64 * 1e-3,
            device_s: None,
        })
    };
    engine.window(&mut run, 5, 0.0)
}

fn probe() -> CounterProbe {
    CounterProbe {
        max_wait: Duration::from_millis(300),
        ..CounterProbe::default()
    }
}

fn fake(state: FakeAmdSmiState) -> Arc<FakeAmdSmi> {
    Arc::new(FakeAmdSmi::in_memory(FakeAmdSmiState {
        counter_period_ms: 2,
        ..state
    }))
}

#[test]
fn the_accumulator_reads_the_drawn_power_across_a_64_bit_wrap() {
    // 0.5 J below the top of 64 bits, in 15.3 µJ ticks: it wraps at once
    let dev = fake(FakeAmdSmiState {
        energy_base_ticks: u64::MAX - 32_680,
        power_demand_w: 220.0,
        ..Default::default()
    });
    let mut m = AmdSmiCounterMeter::open(dev.clone(), probe()).unwrap();
    assert_eq!(m.source(), MeterSource::AmdsmiCounter);
    assert!((m.resolution_uj() - 15.3).abs() < 1e-9);
    for _ in 0..2 {
        let w = window_on(&mut m).unwrap();
        let watts = w.joules.unwrap() / w.seconds;
        assert!((watts - 220.0).abs() < 10.0, "{watts} W over {w:?}");
    }
    let t = window_on(&mut m).unwrap().during.unwrap();
    assert_eq!(t.enforced_power_limit_w, Some(300.0));
    assert_eq!(t.temperature_c.map(|r| r.median), Some(50.0));
    assert_eq!(t.sm_clock_mhz.map(|r| r.median), Some(1700.0));
}

#[test]
fn a_reset_rejects_the_window_and_names_the_known_issue() {
    let dev = fake(FakeAmdSmiState::default());
    let mut m = AmdSmiCounterMeter::open(dev.clone(), probe()).unwrap();
    let d = dev.clone();
    let reset = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(120));
        // 100 J worth of ticks lower, as in ROCm/amdsmi#115
        d.update(|s| s.reset_energy_by(6_535_948)).unwrap();
    });
    let err = window_on(&mut m).unwrap_err();
    reset.join().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, WindowError::MeterBackwards { .. }), "{msg}");
    assert!(
        msg.contains("the amdsmi energy counter of Fake MI210 (fake amdsmi)"),
        "{msg}"
    );
    assert!(
        msg.contains("not a wrap") && msg.contains("ROCm/amdsmi#115"),
        "{msg}"
    );
    // later windows count again from where the counter went
    assert!(window_on(&mut m).is_ok());
}

#[test]
fn a_counter_that_stands_still_is_refused_and_one_that_stops_is_rejected() {
    let frozen = fake(FakeAmdSmiState {
        frozen_ticks: Some(5_198_685_762_204),
        ..Default::default()
    });
    let err = AmdSmiCounterMeter::open(frozen, probe()).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("stood still at 5198685762204"), "{msg}");
    assert!(msg.contains("ROCm/rocm_smi_lib#180"), "{msg}");

    let dev = fake(FakeAmdSmiState::default());
    let mut m = AmdSmiCounterMeter::open(dev.clone(), probe()).unwrap();
    let now = dev.energy_count().unwrap().ticks;
    dev.update(|s| s.frozen_ticks = Some(now)).unwrap();
    let err = window_on(&mut m).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WindowError::MeterStalled { .. }), "{msg}");
    assert!(msg.contains("stood still at"), "{msg}");
}

#[test]
fn throttle_bits_read_as_power_limited_or_thermal() {
    let dev = fake(FakeAmdSmiState {
        // PPT0 and the hotspot temperature
        throttle_status: 1 | (1 << 36),
        ..Default::default()
    });
    let mut m = AmdSmiCounterMeter::open(dev, probe()).unwrap();
    let t = m.telemetry().unwrap();
    assert_eq!(t.throttle_reasons, ["sw-power-cap", "thermal-hotspot"]);
    assert!(t.has_brake_reason());
}

#[test]
fn power_caps_are_in_microwatts_and_checked_before_they_reach_the_library() {
    let dev = fake(FakeAmdSmiState::default());
    let mut p = AmdSmiPowerControl::new(dev.clone());
    let l = p.limits().unwrap();
    assert_eq!((l.min_w, l.max_w, l.current_w), (100.0, 300.0, 300.0));
    p.set_limit_w(225.0).unwrap();
    assert_eq!(dev.state().unwrap().cap_history_uw, [225_000_000]);
    assert!(p.set_limit_w(400.0).is_err());
    assert_eq!(p.enforced_limit_w().unwrap(), 225.0);
    dev.update(|s| s.deny_set_cap = true).unwrap();
    let err = p.set_limit_w(200.0).unwrap_err();
    assert!(err.to_string().contains("needs root"), "{err}");
}

#[test]
fn without_a_counter_the_amdgpu_hwmon_readings_take_over() {
    use joulebench_energy::amd::FAKE_AMDSMI_ENV;
    use joulebench_energy::attach::{attach_gpu_meter, AttachOptions};
    use joulebench_energy::nvml::MeterMode;
    use joulebench_energy::sysfs::SYSFS_ROOT_ENV;
    let fx = SysfsFixture::new();
    fx.amdgpu(4, "0000:03:00.0", 140_000_000, 300_000_000);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("amd.json");
    FakeAmdSmi::create(
        &state,
        FakeAmdSmiState {
            has_energy_counter: false,
            ..Default::default()
        },
    )
    .unwrap();
    // the only test in this binary that sets these variables
    std::env::set_var(FAKE_AMDSMI_ENV, &state);
    std::env::set_var(SYSFS_ROOT_ENV, fx.root());
    let info = DeviceInfo {
        name: "AMD GPU".into(),
        pci_bus_id: Some("0000:03:00.0".into()),
        ..DeviceInfo::default()
    };
    let opts = AttachOptions {
        meter: Some(MeterMode::Auto),
        sample_interval: Duration::from_millis(5),
    };
    let a = attach_gpu_meter(&info, opts).ok().unwrap();
    std::env::remove_var(FAKE_AMDSMI_ENV);
    std::env::remove_var(SYSFS_ROOT_ENV);
    assert_eq!(a.meter.source(), MeterSource::HwmonSampled);
    let notes = a.notes.join("\n");
    assert!(notes.contains("amdsmi energy counter unusable"), "{notes}");
    assert!(
        notes.contains("power1_average of AMD Instinct MI210"),
        "{notes}"
    );
    // the cap is still amdsmi's, and the guard reopens it as the fake
    let target = a.guard_target.unwrap();
    assert_eq!(target.device_kind, "fake-amdsmi");
    assert_eq!(target.device.pci_bus_id.as_deref(), Some("0000:03:00.0"));
}
