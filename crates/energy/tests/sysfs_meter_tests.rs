//! The hwmon (AMD, Intel) and RAPL meters against fixture trees in the kernel's
//! layout, with counters a thread advances as the hardware would: energy matches
//! the power written, counters that wrap keep counting, one that goes backwards
//! or stands still rejects its window with a reason, and an unreadable RAPL
//! counter says what to do — for a real unprivileged process, not only a fake one.
#![cfg(unix)]

mod common;

use common::sysfs_fixture::{write_atomic, Counter, SysfsFixture, Ticker, TWO_SOCKETS};
use joulebench_core::backend::RunTiming;
use joulebench_core::{
    EnergyMeter, MeterSource, PowerControl, SystemClock, Window, WindowEngine, WindowError,
    WindowRules,
};
use joulebench_energy::host::{with_host_energy, HostMeter};
use joulebench_energy::hwmon_meter::{
    CounterProbe, HwmonEnergyMeter, HwmonPowerReading, HwmonSampledMeter,
};
use joulebench_energy::hwmon_power::HwmonPowerControl;
use joulebench_energy::nvml::PciBusId;
use joulebench_energy::rapl::{self, RaplError, RaplMeter};
use joulebench_energy::sysfs::hwmon::{find_by_pci, list_gpu_hwmons, AMDGPU, I915, XE};
use joulebench_energy::sysfs::{AttributeIo, Sysfs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(5);

fn rules() -> WindowRules {
    WindowRules {
        min_window_s: 0.3,
        min_counter_updates: 10,
    }
}

/// One window of "work" that sleeps, on the real clock.
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

fn watts(w: &Window) -> f64 {
    w.joules.unwrap() / w.seconds
}

fn pci(s: &str) -> PciBusId {
    PciBusId::parse(s).unwrap()
}

fn quick_probe() -> CounterProbe {
    CounterProbe {
        max_wait: Duration::from_millis(400),
        ..CounterProbe::default()
    }
}

#[test]
fn gpus_are_found_by_pci_address_whatever_their_hwmon_number() {
    let fx = SysfsFixture::new();
    fx.amdgpu(7, "0000:c1:00.0", 150_000_000, 300_000_000);
    fx.intel(2, "xe", "0000:03:00.0", 1_000);
    fx.intel(11, "i915", "0000:00:02.0", 1_000);
    // a hwmon that is not a GPU driver's is not listed
    fx.hwmon(0, "k10temp", "0000:00:18.3", "0x1022");
    let fs = Sysfs::at(fx.root());
    let all = list_gpu_hwmons(&fs, &[AMDGPU, XE, I915]).unwrap();
    let names: Vec<String> = all.iter().map(|h| h.hwmon_name()).collect();
    assert_eq!(names, ["hwmon2", "hwmon7", "hwmon11"]);
    let amd = find_by_pci(&fs, &[AMDGPU], &pci("c1:00.0"))
        .unwrap()
        .unwrap();
    assert_eq!(amd.vendor_id, Some(0x1002));
    assert_eq!(amd.describe(), "AMD Instinct MI210 (amdgpu, 0000:c1:00.0)");
    let xe = find_by_pci(&fs, &[XE, I915], &pci("00000000:03:00.0"))
        .unwrap()
        .unwrap();
    assert_eq!((xe.driver.as_str(), xe.vendor_id), ("xe", Some(0x8086)));
    assert!(find_by_pci(&fs, &[AMDGPU], &pci("0000:03:00.0"))
        .unwrap()
        .is_none());
    // without a /sys/class/hwmon the error names the directory
    let empty = tempfile::tempdir().unwrap();
    let err = list_gpu_hwmons(&Sysfs::at(empty.path()), &[AMDGPU]).unwrap_err();
    assert!(
        err.to_string().contains("sys/class/hwmon does not exist"),
        "{err}"
    );
}

#[test]
fn intel_energy_counter_measures_the_power_written_and_wraps_at_64_bits() {
    let fx = SysfsFixture::new();
    // 2 J below the top of 64 bits: at 80 W it wraps within the first window
    let hw = fx.intel(3, "xe", "0000:03:00.0", u64::MAX - 2_000_000);
    let _t = Ticker::start(
        vec![Counter {
            path: hw.join("energy1_input"),
            watts: 80.0,
            max_uj: u64::MAX,
        }],
        TICK,
    );
    let fs = Sysfs::at(fx.root());
    let h = find_by_pci(&fs, &[XE], &pci("0000:03:00.0"))
        .unwrap()
        .unwrap();
    let mut m = HwmonEnergyMeter::open(&fs, &h, quick_probe()).unwrap();
    assert_eq!(m.source(), MeterSource::HwmonEnergy);
    assert!(m.update_period_s() > 0.003 && m.update_period_s() < 0.02);
    for _ in 0..2 {
        let w = window_on(&mut m).unwrap();
        assert!((watts(&w) - 80.0).abs() < 8.0, "{} W over {w:?}", watts(&w));
    }
    // its power in telemetry is the counter's rate
    let during = window_on(&mut m).unwrap().during.unwrap();
    assert!(
        during
            .power_w
            .is_some_and(|p| (p.median - 80.0).abs() < 10.0),
        "{during:?}"
    );
    assert_eq!(during.enforced_power_limit_w, Some(150.0));
}

#[test]
fn a_counter_that_goes_backwards_rejects_the_window_and_says_it_is_not_a_wrap() {
    let fx = SysfsFixture::new();
    let hw = fx.intel(3, "i915", "0000:03:00.0", 5_000_000_000);
    let energy = hw.join("energy1_input");
    let fs = Sysfs::at(fx.root());
    let h = find_by_pci(&fs, &[I915], &pci("0000:03:00.0"))
        .unwrap()
        .unwrap();
    let ticker = Ticker::start(
        vec![Counter {
            path: energy.clone(),
            watts: 60.0,
            max_uj: u64::MAX,
        }],
        TICK,
    );
    let mut m = HwmonEnergyMeter::open(&fs, &h, quick_probe()).unwrap();
    // while the window runs, the driver "resets": 1000 J lower, counting on from there
    let reset = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        drop(ticker);
        write_atomic(&energy, "4000000000\n");
        Ticker::start(
            vec![Counter {
                path: energy,
                watts: 60.0,
                max_uj: u64::MAX,
            }],
            TICK,
        )
    });
    let err = window_on(&mut m).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WindowError::MeterBackwards { .. }), "{msg}");
    assert!(
        msg.contains("energy1_input of Intel GPU (i915, 0000:03:00.0) went backwards"),
        "{msg}"
    );
    assert!(msg.contains("not a wrap"), "{msg}");
    let _ticking = reset.join().unwrap();
    // the next window, after the drop, is whole again
    let w = window_on(&mut m).unwrap();
    assert!((watts(&w) - 60.0).abs() < 6.0, "{} W", watts(&w));
}

#[test]
fn a_counter_that_jumps_beyond_the_boards_power_rejects_the_window() {
    let fx = SysfsFixture::new();
    let hw = fx.intel(3, "xe", "0000:03:00.0", 5_000_000_000);
    let energy = hw.join("energy1_input");
    let fs = Sysfs::at(fx.root());
    let h = find_by_pci(&fs, &[XE], &pci("0000:03:00.0"))
        .unwrap()
        .unwrap();
    let counter = |path| Counter {
        path,
        watts: 60.0,
        max_uj: u64::MAX,
    };
    let ticker = Ticker::start(vec![counter(energy.clone())], TICK);
    let mut m = HwmonEnergyMeter::open(&fs, &h, quick_probe()).unwrap();
    // while the window runs, the counter leaps ahead by ~5 MJ in one step: the
    // 994 MW a misreporting driver gave, not anything a 150 W board draws
    let jump = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        drop(ticker);
        let now: u64 = std::fs::read_to_string(&energy)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        write_atomic(&energy, &format!("{}\n", now + 4_970_000_000_000));
        Ticker::start(vec![counter(energy)], TICK)
    });
    let err = window_on(&mut m).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WindowError::MeterJumped { .. }), "{msg}");
    assert!(msg.contains("more than the device's 300 W"), "{msg}");
    let _ticking = jump.join().unwrap();
    // the next window, after the jump, is whole again
    let w = window_on(&mut m).unwrap();
    assert!((watts(&w) - 60.0).abs() < 6.0, "{} W", watts(&w));
}

#[test]
fn a_counter_that_stands_still_is_refused_or_rejected_with_how_long() {
    let fx = SysfsFixture::new();
    let hw = fx.intel(3, "xe", "0000:03:00.0", 1_000);
    let fs = Sysfs::at(fx.root());
    let h = find_by_pci(&fs, &[XE], &pci("0000:03:00.0"))
        .unwrap()
        .unwrap();
    // never moving: refused when it opens
    let err = HwmonEnergyMeter::open(&fs, &h, quick_probe())
        .err()
        .unwrap();
    assert!(err.to_string().contains("stood still for 0.4 s"), "{err}");
    // moving when it opens, then stuck: the window is rejected with the reason
    let ticker = Ticker::start(
        vec![Counter {
            path: hw.join("energy1_input"),
            watts: 60.0,
            max_uj: u64::MAX,
        }],
        TICK,
    );
    let mut m = HwmonEnergyMeter::open(&fs, &h, quick_probe()).unwrap();
    drop(ticker);
    let err = window_on(&mut m).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WindowError::MeterStalled { .. }), "{msg}");
    assert!(
        msg.contains("did not update") && msg.contains("stood still at"),
        "{msg}"
    );
}

#[test]
fn amdgpu_power_is_sampled_and_integrated_and_its_cap_is_in_microwatts() {
    let fx = SysfsFixture::new();
    let hw = fx.amdgpu(5, "0000:c1:00.0", 150_000_000, 250_000_000);
    let fs = Sysfs::at(fx.root());
    let h = find_by_pci(&fs, &[AMDGPU], &pci("0000:c1:00.0"))
        .unwrap()
        .unwrap();
    let mut m = HwmonSampledMeter::open(&fs, &h, Duration::from_millis(5)).unwrap();
    assert_eq!(m.reading(), HwmonPowerReading::Average);
    assert_eq!(m.source(), MeterSource::HwmonSampled);
    // the firmware's average trails by a second; an instant reading does not
    assert!((m.response_s() - 1.0).abs() < 1e-9);
    let w = window_on(&mut m).unwrap();
    assert!((watts(&w) - 150.0).abs() < 1.5, "{} W", watts(&w));
    let t = w.during.unwrap();
    assert_eq!(t.temperature_c.map(|r| r.median), Some(52.0));
    assert_eq!(t.sm_clock_mhz.map(|r| r.median), Some(1700.0));
    assert_eq!(t.enforced_power_limit_w, Some(250.0));
    std::fs::write(hw.join("power1_input"), "200000000\n").unwrap();
    let m2 = HwmonSampledMeter::open(&fs, &h, Duration::from_millis(5)).unwrap();
    assert_eq!(m2.reading(), HwmonPowerReading::Input);
    assert!(m2.response_s() < 0.01);

    let mut cap = HwmonPowerControl::new(&fs, &h).unwrap();
    let l = cap.limits().unwrap();
    assert_eq!(
        (l.min_w, l.max_w, l.default_w, l.current_w),
        (100.0, 300.0, 300.0, 250.0)
    );
    cap.set_limit_w(180.0).unwrap();
    let written = std::fs::read_to_string(hw.join("power1_cap")).unwrap();
    assert_eq!(written.trim(), "180000000");
    assert!(cap.set_limit_w(50.0).is_err(), "outside power1_cap_min");
}

#[test]
fn rapl_counts_packages_and_dram_once_and_wraps_at_max_energy_range() {
    let fx = SysfsFixture::new();
    let files = fx.rapl(&TWO_SOCKETS, 0);
    // an MMIO interface repeating package 0 must not be counted either
    std::os::unix::fs::symlink(
        "../../devices/virtual/powercap/intel-rapl/intel-rapl:0",
        fx.root().join("sys/class/powercap/intel-rapl-mmio:0"),
    )
    .unwrap();
    let fs = Sysfs::at(fx.root());
    let zones = rapl::discover(&fs).unwrap();
    let names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(names, ["package-0", "dram", "package-1", "dram"]);
    // package 0 starts 1 J below its range: it wraps during the measurement
    let p0 = &files[0];
    write_atomic(p0, &format!("{}\n", 262_143_328_850u64 - 1_000_000));
    let counters: Vec<Counter> = files
        .iter()
        .zip([40.0, 10.0, 35.0, 9.0])
        .zip(&zones)
        .map(|((p, w), z)| Counter {
            path: p.clone(),
            watts: w,
            max_uj: z.max_energy_range_uj,
        })
        .collect();
    let _t = Ticker::start(counters, TICK);
    let mut host = RaplMeter::open(&fs).unwrap();
    assert_eq!(host.describe(), "package-0, dram, package-1, dram");
    std::thread::sleep(Duration::from_millis(400));
    let ups = host.take_updates().unwrap();
    assert!(
        ups.windows(2).all(|w| w[1].joules >= w[0].joules),
        "no drop across the wrap"
    );
    let (a, b) = (ups[ups.len() / 4], ups[ups.len() - 1]);
    let w = (b.joules - a.joules) / (b.time_s - a.time_s);
    assert!((w - 94.0).abs() < 8.0, "{w} W");
}

/// Answers EACCES for `energy_uj`, as the kernel does for a user who is not root.
struct DenyEnergy;
impl AttributeIo for DenyEnergy {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        if path.ends_with("energy_uj") {
            return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        }
        std::fs::read_to_string(path)
    }
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()> {
        std::fs::write(path, value)
    }
}

const ROOT_ONLY: &str = "energy_uj is readable only by root on current kernels";

#[test]
fn unreadable_rapl_says_it_is_root_only_and_the_gpu_goes_on_without_host_energy() {
    let fx = SysfsFixture::new();
    fx.rapl(&TWO_SOCKETS, 0);
    let fs = Sysfs::at(fx.root()).with_io(Arc::new(DenyEnergy));
    let err = RaplMeter::open(&fs).err().unwrap();
    assert!(matches!(err, RaplError::Unreadable { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("intel-rapl:0/energy_uj"), "{msg}");
    assert!(
        msg.contains(ROOT_ONLY) && msg.contains("run as root or grant read access"),
        "{msg}"
    );
    assert!(msg.ends_with("continuing without host energy"), "{msg}");
    let gpu = Box::new(joulebench_core::NoMeter {
        reason: "test".into(),
    });
    let (meter, outcome) = with_host_energy(gpu, &fs);
    assert!(outcome.is_err() && meter.host_meter().is_none());
}

const CHILD_ENV: &str = "JOULEBENCH_TEST_UNPRIVILEGED_RAPL";

/// The child's side: opens RAPL as the unprivileged user it was started as.
#[test]
fn child_reads_rapl() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    match RaplMeter::open(&Sysfs::at(root)) {
        Ok(_) => println!("READABLE"),
        Err(e) => println!("ERROR {e}"),
    }
}

#[test]
fn a_real_unprivileged_process_gets_permission_denied_with_the_same_message() {
    use std::os::unix::process::CommandExt;
    let fx = SysfsFixture::new();
    fx.rapl(&TWO_SOCKETS, 0);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        // not root: the fixture's 0400 files are ours, so readable; nothing to show
        eprintln!("skipped: needs root to start a process as another user");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    // the test binary must be reachable by the other user
    let out = std::process::Command::new(&exe)
        .args([
            "--exact",
            "child_reads_rapl",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, fx.root())
        .uid(65534)
        .gid(65534)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: cannot start a process as nobody here ({e})");
            return;
        }
        Err(e) => panic!("cannot start a process as nobody: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Permission denied") && !text.contains("ERROR") {
        eprintln!("skipped: the test binary is not readable by nobody: {text}");
        return;
    }
    assert!(
        text.contains("ERROR") && text.contains(ROOT_ONLY),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("continuing without host energy"), "{text}");
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn host_energy_is_interpolated_over_each_gpu_window() {
    let fx = SysfsFixture::new();
    let files = fx.rapl(&TWO_SOCKETS[..2], 10_000_000);
    let hw = fx.intel(3, "xe", "0000:03:00.0", 1_000);
    let mut counters: Vec<Counter> = files
        .iter()
        .zip([45.0, 5.0])
        .map(|(p, w)| Counter {
            path: p.clone(),
            watts: w,
            max_uj: 65_712_999_613,
        })
        .collect();
    counters.push(Counter {
        path: hw.join("energy1_input"),
        watts: 120.0,
        max_uj: u64::MAX,
    });
    let _t = Ticker::start(counters, TICK);
    let fs = Sysfs::at(fx.root());
    let h = find_by_pci(&fs, &[XE], &pci("0000:03:00.0"))
        .unwrap()
        .unwrap();
    let gpu = HwmonEnergyMeter::open(&fs, &h, quick_probe()).unwrap();
    let mut m = HostMeter::new(Box::new(gpu), RaplMeter::open(&fs).unwrap());
    let info = m.host_meter().unwrap();
    assert_eq!(info.source, MeterSource::Rapl);
    assert_eq!(info.domains, ["package-0", "dram"]);
    let w = window_on(&mut m).unwrap();
    assert!((watts(&w) - 120.0).abs() < 12.0, "GPU {} W", watts(&w));
    let host_w = w.host_joules.unwrap() / w.seconds;
    assert!((host_w - 50.0).abs() < 5.0, "host {host_w} W over {w:?}");
}
