//! Every energy meter of this crate through the one meter conformance suite
//! (`joulebench_core::meter_suite`), each against a rig standing in for its device:
//! NVML's counter and sampler on the fake NVML device, amdsmi's accumulator on the
//! fake amdsmi device, hwmon's counter (Intel) and power readings (amdgpu) and RAPL
//! on sysfs fixture trees whose counters a thread advances, and the simulated
//! device. A new meter gets every check with a rig and one line.

mod common;

use joulebench_core::meter_suite::{ExpectedTelemetry, Fault, MeterRig};
use joulebench_core::{Clock, EnergyMeter, Telemetry};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a meter that integrates power samples has no fault of a counter.
const INTEGRATES: &str =
    "it integrates power samples: its reading grows with every sample, there is no counter to wrap, stall or go back";

mod nvml_rig {
    use super::*;
    use joulebench_energy::nvml::{
        CounterMeter, FakeDevice, FakeState, PeriodProbe, SamplingConfig, SamplingMeter,
    };

    const WATTS: f64 = 250.0;
    const PERIOD_MS: u64 = 5;

    /// The fake NVML device (an H100-like part drawing 250 W, its counter stepping
    /// every 5 ms, at its power limit), read by the counter or the sampler.
    pub struct NvmlRig {
        fake: Arc<FakeDevice>,
        sampled: bool,
    }

    impl NvmlRig {
        fn on(sampled: bool) -> NvmlRig {
            let fake = FakeDevice::in_memory(FakeState {
                counter_period_ms: PERIOD_MS,
                power_demand_mw: (WATTS * 1000.0) as u32,
                // sw-power-cap
                throttle_reasons: 0x4,
                ..FakeState::default()
            });
            NvmlRig {
                fake: Arc::new(fake),
                sampled,
            }
        }

        pub fn counter() -> NvmlRig {
            Self::on(false)
        }

        pub fn sampled() -> NvmlRig {
            Self::on(true)
        }
    }

    impl MeterRig for NvmlRig {
        fn open(&mut self) -> Result<Box<dyn EnergyMeter>, String> {
            let period = Duration::from_millis(PERIOD_MS);
            let meter: Box<dyn EnergyMeter> = if self.sampled {
                Box::new(
                    SamplingMeter::start(self.fake.clone(), SamplingConfig { interval: period })
                        .map_err(|e| e.to_string())?,
                )
            } else {
                let probe = PeriodProbe {
                    max_wait: Duration::from_millis(500),
                    ..PeriodProbe::default()
                };
                Box::new(
                    CounterMeter::with_probe(self.fake.clone(), &probe)
                        .map_err(|e| e.to_string())?,
                )
            };
            Ok(meter)
        }
        fn watts(&self) -> f64 {
            WATTS
        }
        fn update_period_s(&self) -> f64 {
            PERIOD_MS as f64 / 1e3
        }
        fn inject(&mut self, fault: Fault) -> Result<(), String> {
            if self.sampled {
                return Err(INTEGRATES.into());
            }
            let changed = match fault {
                Fault::StartNearWrap => {
                    return Err("NVML's counter counts 64-bit millijoules: it does not wrap in a GPU's lifetime".into())
                }
                // the counter steps by the power drawn: at 0 W it stands still
                Fault::Stall => self.fake.update(|s| s.set_power_demand_mw(0)),
                Fault::GoBackwards => self.fake.update(|s| s.reset_energy_by_mj(100_000)),
            };
            changed.map_err(|e| e.to_string())
        }
        fn telemetry(&self) -> ExpectedTelemetry {
            ExpectedTelemetry {
                fields: Telemetry {
                    sm_clock_mhz: Some(1980),
                    mem_clock_mhz: Some(2619),
                    default_sm_clock_mhz: Some(1980),
                    temperature_c: Some(45),
                    throttle_reasons: vec!["sw-power-cap".into()],
                    enforced_power_limit_w: Some(700.0),
                    performance_state: Some("P0".into()),
                    power_w: None,
                },
                exact: true,
                power_during_work: true,
            }
        }
    }
}

mod amdsmi_rig {
    use super::*;
    use joulebench_energy::amd::{AmdSmiCounterMeter, AmdSmiDevice, FakeAmdSmi, FakeAmdSmiState};
    use joulebench_energy::hwmon_meter::CounterProbe;

    const WATTS: f64 = 220.0;
    const RESOLUTION_UJ: f64 = 15.3;

    /// The fake amdsmi device (an MI210-like board drawing 220 W, its accumulator
    /// stepping every 2 ms in 15.3 µJ ticks, at its PPT limit).
    pub struct AmdSmiRig {
        fake: Arc<FakeAmdSmi>,
    }

    impl AmdSmiRig {
        pub fn new() -> AmdSmiRig {
            let fake = FakeAmdSmi::in_memory(FakeAmdSmiState {
                counter_period_ms: 2,
                power_demand_w: WATTS,
                resolution_uj: RESOLUTION_UJ,
                // PPT0: the power limit
                throttle_status: 1,
                ..FakeAmdSmiState::default()
            });
            AmdSmiRig {
                fake: Arc::new(fake),
            }
        }
    }

    impl MeterRig for AmdSmiRig {
        fn open(&mut self) -> Result<Box<dyn EnergyMeter>, String> {
            let probe = CounterProbe {
                max_wait: Duration::from_millis(300),
                ..CounterProbe::default()
            };
            let m =
                AmdSmiCounterMeter::open(self.fake.clone(), probe).map_err(|e| e.to_string())?;
            Ok(Box::new(m))
        }
        fn watts(&self) -> f64 {
            WATTS
        }
        fn update_period_s(&self) -> f64 {
            0.002
        }
        fn inject(&mut self, fault: Fault) -> Result<(), String> {
            let changed = match fault {
                Fault::StartNearWrap => {
                    // a tenth of a second of work below the top of 64 bits
                    let margin = (0.1 * WATTS / (RESOLUTION_UJ * 1e-6)) as u64;
                    self.fake.update(|s| {
                        s.energy_base_ticks = u64::MAX - margin;
                        s.energy_epoch_unix_ms = unix_ms_now();
                    })
                }
                Fault::Stall => {
                    let now = self.fake.energy_count().map_err(|e| e.to_string())?.ticks;
                    self.fake.update(|s| s.frozen_ticks = Some(now))
                }
                // 100 J of ticks lower, as in ROCm/amdsmi#115
                Fault::GoBackwards => self.fake.update(|s| s.reset_energy_by(6_535_948)),
            };
            changed.map_err(|e| e.to_string())
        }
        fn telemetry(&self) -> ExpectedTelemetry {
            ExpectedTelemetry {
                fields: Telemetry {
                    sm_clock_mhz: Some(1700),
                    mem_clock_mhz: Some(1600),
                    temperature_c: Some(50),
                    throttle_reasons: vec!["sw-power-cap".into()],
                    enforced_power_limit_w: Some(300.0),
                    ..Telemetry::default()
                },
                exact: true,
                power_during_work: true,
            }
        }
    }
}

#[cfg(unix)]
mod sysfs_rigs {
    use super::*;
    use crate::common::sysfs_fixture::{write_atomic, Counter, SysfsFixture, Ticker, TWO_SOCKETS};
    use joulebench_energy::hwmon_meter::{CounterProbe, HwmonEnergyMeter, HwmonSampledMeter};
    use joulebench_energy::nvml::PciBusId;
    use joulebench_energy::rapl::RaplMeter;
    use joulebench_energy::sysfs::hwmon::{find_by_pci, HwmonDevice, AMDGPU, XE};
    use joulebench_energy::sysfs::Sysfs;
    use std::path::PathBuf;

    /// Counters in µJ that a thread advances every `tick`, which the rig can stop,
    /// set back and start again.
    struct Counters {
        counters: Vec<Counter>,
        tick: Duration,
        ticker: Option<Ticker>,
    }

    impl Counters {
        fn start(&mut self) {
            self.ticker = Some(Ticker::start(self.counters.clone(), self.tick));
        }
        fn stop(&mut self) {
            self.ticker = None;
        }
        /// Set the first counter back by `uj` and count on from there.
        fn set_back(&mut self, uj: u64) {
            self.stop();
            let path = &self.counters[0].path;
            let now: u64 = std::fs::read_to_string(path)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            write_atomic(path, &format!("{}\n", now.saturating_sub(uj)));
            self.start();
        }
    }

    fn find(fs: &Sysfs, drivers: &[&str], pci: &str) -> HwmonDevice {
        find_by_pci(fs, drivers, &PciBusId::parse(pci).unwrap())
            .unwrap()
            .unwrap()
    }

    /// An Intel GPU under `xe`: `energy1_input` in µJ at 80 W, stepping every 5 ms.
    pub struct IntelRig {
        // the ticker stops before the tree it writes goes (fields drop in order)
        energy: Counters,
        fs: Sysfs,
        hwmon: HwmonDevice,
        _fx: SysfsFixture,
    }

    const INTEL_W: f64 = 80.0;

    impl IntelRig {
        pub fn new() -> IntelRig {
            let fx = SysfsFixture::new();
            let hw = fx.intel(3, "xe", "0000:03:00.0", 1_000_000_000);
            let fs = Sysfs::at(fx.root());
            let hwmon = find(&fs, &[XE], "0000:03:00.0");
            let energy = Counters {
                counters: vec![Counter {
                    path: hw.join("energy1_input"),
                    watts: INTEL_W,
                    max_uj: u64::MAX,
                }],
                tick: Duration::from_millis(5),
                ticker: None,
            };
            IntelRig {
                _fx: fx,
                fs,
                hwmon,
                energy,
            }
        }
    }

    impl MeterRig for IntelRig {
        fn open(&mut self) -> Result<Box<dyn EnergyMeter>, String> {
            self.energy.start();
            let probe = CounterProbe {
                max_wait: Duration::from_millis(400),
                ..CounterProbe::default()
            };
            let m =
                HwmonEnergyMeter::open(&self.fs, &self.hwmon, probe).map_err(|e| e.to_string())?;
            Ok(Box::new(m))
        }
        fn watts(&self) -> f64 {
            INTEL_W
        }
        fn update_period_s(&self) -> f64 {
            0.005
        }
        fn inject(&mut self, fault: Fault) -> Result<(), String> {
            match fault {
                Fault::StartNearWrap => {
                    let margin = (0.1 * INTEL_W * 1e6) as u64;
                    write_atomic(
                        &self.energy.counters[0].path,
                        &format!("{}\n", u64::MAX - margin),
                    );
                }
                Fault::Stall => self.energy.stop(),
                Fault::GoBackwards => self.energy.set_back(1_000_000_000),
            }
            Ok(())
        }
        fn telemetry(&self) -> ExpectedTelemetry {
            ExpectedTelemetry {
                fields: Telemetry {
                    temperature_c: Some(48),
                    enforced_power_limit_w: Some(150.0),
                    ..Telemetry::default()
                },
                exact: true,
                // the counter's rate: neither driver reports power as such
                power_during_work: true,
            }
        }
    }

    /// An AMD GPU under `amdgpu` without amdsmi: `power1_input` at 150 W, sampled
    /// every 5 ms and integrated.
    pub struct AmdgpuRig {
        fs: Sysfs,
        hwmon: HwmonDevice,
        _fx: SysfsFixture,
    }

    impl AmdgpuRig {
        pub fn new() -> AmdgpuRig {
            let fx = SysfsFixture::new();
            let hw = fx.amdgpu(5, "0000:c1:00.0", 150_000_000, 250_000_000);
            // the instant reading: the firmware's average would delay every window by 1 s
            std::fs::write(hw.join("power1_input"), "150000000\n").unwrap();
            let fs = Sysfs::at(fx.root());
            let hwmon = find(&fs, &[AMDGPU], "0000:c1:00.0");
            AmdgpuRig { _fx: fx, fs, hwmon }
        }
    }

    impl MeterRig for AmdgpuRig {
        fn open(&mut self) -> Result<Box<dyn EnergyMeter>, String> {
            let m = HwmonSampledMeter::open(&self.fs, &self.hwmon, Duration::from_millis(5))
                .map_err(|e| e.to_string())?;
            Ok(Box::new(m))
        }
        fn watts(&self) -> f64 {
            150.0
        }
        fn update_period_s(&self) -> f64 {
            0.005
        }
        fn inject(&mut self, _fault: Fault) -> Result<(), String> {
            Err(INTEGRATES.into())
        }
        fn telemetry(&self) -> ExpectedTelemetry {
            ExpectedTelemetry {
                fields: Telemetry {
                    sm_clock_mhz: Some(1700),
                    mem_clock_mhz: Some(1600),
                    temperature_c: Some(52),
                    enforced_power_limit_w: Some(250.0),
                    ..Telemetry::default()
                },
                exact: true,
                power_during_work: true,
            }
        }
    }

    /// The host's RAPL: package 0 at 40 W and its DRAM at 10 W, advancing every
    /// 2 ms, polled every 4 ms.
    pub struct RaplRig {
        // the ticker stops before the tree it writes goes (fields drop in order)
        energy: Counters,
        fs: Sysfs,
        _fx: SysfsFixture,
    }

    const RAPL_POLL: Duration = Duration::from_millis(4);

    impl RaplRig {
        pub fn new() -> RaplRig {
            let fx = SysfsFixture::new();
            let zones = &TWO_SOCKETS[..2];
            let files: Vec<PathBuf> = fx.rapl(zones, 10_000_000);
            let counters = files
                .into_iter()
                .zip([40.0, 10.0])
                .zip(zones)
                .map(|((path, watts), z)| Counter {
                    path,
                    watts,
                    max_uj: z.max_energy_range_uj,
                })
                .collect();
            let fs = Sysfs::at(fx.root());
            RaplRig {
                _fx: fx,
                fs,
                energy: Counters {
                    counters,
                    tick: Duration::from_millis(2),
                    ticker: None,
                },
            }
        }
    }

    impl MeterRig for RaplRig {
        fn open(&mut self) -> Result<Box<dyn EnergyMeter>, String> {
            self.energy.start();
            let m = RaplMeter::open_polling(&self.fs, RAPL_POLL).map_err(|e| e.to_string())?;
            Ok(Box::new(m))
        }
        fn watts(&self) -> f64 {
            50.0
        }
        fn update_period_s(&self) -> f64 {
            RAPL_POLL.as_secs_f64()
        }
        fn inject(&mut self, fault: Fault) -> Result<(), String> {
            match fault {
                Fault::StartNearWrap => {
                    // package 0, a tenth of a second of its 40 W below its range
                    let c = &self.energy.counters[0];
                    write_atomic(&c.path, &format!("{}\n", c.max_uj - 4_000_000));
                }
                Fault::Stall => self.energy.stop(),
                Fault::GoBackwards => self.energy.set_back(1_000_000_000),
            }
            Ok(())
        }
        fn telemetry(&self) -> ExpectedTelemetry {
            // clocks and temperatures are the GPU meter's; RAPL has none
            ExpectedTelemetry {
                fields: Telemetry::default(),
                exact: true,
                power_during_work: false,
            }
        }
    }
}

mod sim_rig {
    use super::*;
    use joulebench_energy::sim::{SimClock, SimDevice, SimMeter};

    /// The simulated H100 at rest: its counter follows the model (whole mJ every
    /// 100 ms) in virtual time, so the suite costs no wall time.
    pub struct SimRig {
        meter: Option<SimMeter>,
        clock: Arc<SimClock>,
        idle_w: f64,
        period_s: f64,
    }

    impl SimRig {
        pub fn new() -> SimRig {
            let dev = SimDevice::open("sim-h100", 0, 1).expect("a built-in profile");
            let profile = dev.backend.profile();
            let (idle_w, period_s) = (profile.idle_w, profile.counter_period_s);
            let SimDevice { meter, clock, .. } = dev;
            SimRig {
                meter: Some(meter),
                clock,
                idle_w,
                period_s,
            }
        }
    }

    impl MeterRig for SimRig {
        fn open(&mut self) -> Result<Box<dyn EnergyMeter>, String> {
            let meter = self.meter.take().ok_or("the meter was opened before")?;
            Ok(Box::new(meter))
        }
        fn clock(&self) -> Arc<dyn Clock> {
            self.clock.clone()
        }
        fn watts(&self) -> f64 {
            self.idle_w
        }
        fn update_period_s(&self) -> f64 {
            self.period_s
        }
        fn inject(&mut self, _fault: Fault) -> Result<(), String> {
            Err("the simulated counter follows its model: no fault can be injected into it".into())
        }
        fn telemetry(&self) -> ExpectedTelemetry {
            // every field, with values that follow the model (temperature moves)
            ExpectedTelemetry {
                fields: Telemetry {
                    sm_clock_mhz: Some(0),
                    mem_clock_mhz: Some(0),
                    default_sm_clock_mhz: Some(0),
                    temperature_c: Some(0),
                    throttle_reasons: Vec::new(),
                    enforced_power_limit_w: Some(0.0),
                    performance_state: Some(String::new()),
                    power_w: None,
                },
                exact: false,
                power_during_work: true,
            }
        }
    }
}

mod nvml_counter {
    joulebench_core::meter_conformance!(super::nvml_rig::NvmlRig::counter);
}

mod nvml_sampled {
    joulebench_core::meter_conformance!(super::nvml_rig::NvmlRig::sampled);
}

mod amdsmi_counter {
    joulebench_core::meter_conformance!(super::amdsmi_rig::AmdSmiRig::new);
}

#[cfg(unix)]
mod intel_hwmon_energy {
    joulebench_core::meter_conformance!(super::sysfs_rigs::IntelRig::new);
}

#[cfg(unix)]
mod amdgpu_hwmon_power {
    joulebench_core::meter_conformance!(super::sysfs_rigs::AmdgpuRig::new);
}

#[cfg(unix)]
mod rapl {
    joulebench_core::meter_conformance!(super::sysfs_rigs::RaplRig::new);
}

mod simulated {
    joulebench_core::meter_conformance!(super::sim_rig::SimRig::new);
}
