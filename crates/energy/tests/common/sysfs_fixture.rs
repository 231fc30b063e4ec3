//! Sysfs fixture trees in the layout and units the kernel documents
//! (Documentation/hwmon/sysfs-interface.rst, the amdgpu, xe and i915 hwmon ABI,
//! Documentation/power/powercap/powercap.rst), for `JOULEBENCH_SYSFS_ROOT`:
//!
//! ```text
//! sys/devices/pci0000:00/0000:03:00.0/{vendor,device,product_name}
//! sys/devices/pci0000:00/0000:03:00.0/hwmon/hwmon3/{name,power1_average,power1_cap,...}
//! sys/devices/pci0000:00/0000:03:00.0/hwmon/hwmon3/device -> ../../../0000:03:00.0
//! sys/class/hwmon/hwmon3 -> ../../devices/pci0000:00/0000:03:00.0/hwmon/hwmon3
//! sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/{name,energy_uj,max_energy_range_uj}
//! sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/intel-rapl:0:0/...
//! sys/class/powercap/intel-rapl:0 -> ../../devices/virtual/powercap/intel-rapl/intel-rapl:0
//! ```
//!
//! A `Ticker` advances the counters in a thread of its own, as the hardware would.
//! Shared by the energy crate's tests and the CLI's end-to-end tests.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A RAPL zone: its directory name, `name`, and `max_energy_range_uj`.
pub struct Zone<'a> {
    pub zone: &'a str,
    pub name: &'a str,
    pub max_energy_range_uj: u64,
}

/// Package 0 and 1 with their DRAM, and cores and psys (which must not be counted),
/// with the ranges a two-socket Xeon reports.
pub const TWO_SOCKETS: [Zone<'static>; 6] = [
    Zone {
        zone: "intel-rapl:0",
        name: "package-0",
        max_energy_range_uj: 262_143_328_850,
    },
    Zone {
        zone: "intel-rapl:0:0",
        name: "dram",
        max_energy_range_uj: 65_712_999_613,
    },
    Zone {
        zone: "intel-rapl:0:1",
        name: "core",
        max_energy_range_uj: 262_143_328_850,
    },
    Zone {
        zone: "intel-rapl:1",
        name: "package-1",
        max_energy_range_uj: 262_143_328_850,
    },
    Zone {
        zone: "intel-rapl:1:0",
        name: "dram",
        max_energy_range_uj: 65_712_999_613,
    },
    Zone {
        zone: "intel-rapl:2",
        name: "psys",
        max_energy_range_uj: 262_143_328_850,
    },
];

pub struct SysfsFixture {
    pub dir: tempfile::TempDir,
}

/// Written to a temporary file and renamed, as a reader of sysfs never sees half
/// a value.
pub fn write_atomic(path: &Path, value: &str) {
    let tmp = path.with_extension("fixture-tmp");
    fs::write(&tmp, value).unwrap();
    if let Ok(m) = fs::metadata(path) {
        fs::set_permissions(&tmp, m.permissions()).unwrap();
    }
    fs::rename(&tmp, path).unwrap();
}

impl SysfsFixture {
    pub fn new() -> SysfsFixture {
        let dir = tempfile::tempdir().unwrap();
        // others may traverse it, as /sys: a test reads it as an unprivileged user
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        SysfsFixture { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    fn pci_dir(&self, pci: &str) -> PathBuf {
        self.root().join("sys/devices/pci0000:00").join(pci)
    }

    /// A hwmon directory of `driver` on the PCI device `pci`, linked from
    /// /sys/class/hwmon/hwmon`n`.
    pub fn hwmon(&self, n: u32, driver: &str, pci: &str, vendor: &str) -> PathBuf {
        let dev = self.pci_dir(pci);
        let hw = dev.join("hwmon").join(format!("hwmon{n}"));
        fs::create_dir_all(&hw).unwrap();
        fs::write(dev.join("vendor"), format!("{vendor}\n")).unwrap();
        fs::write(hw.join("name"), format!("{driver}\n")).unwrap();
        symlink(format!("../../../{pci}"), hw.join("device")).unwrap();
        let class = self.root().join("sys/class/hwmon");
        fs::create_dir_all(&class).unwrap();
        symlink(
            format!("../../devices/pci0000:00/{pci}/hwmon/hwmon{n}"),
            class.join(format!("hwmon{n}")),
        )
        .unwrap();
        hw
    }

    /// An amdgpu board: power in µW, caps in µW, temperatures in m°C, clocks in Hz.
    pub fn amdgpu(&self, n: u32, pci: &str, power_uw: u64, cap_uw: u64) -> PathBuf {
        let hw = self.hwmon(n, "amdgpu", pci, "0x1002");
        fs::write(
            self.pci_dir(pci).join("product_name"),
            "AMD Instinct MI210\n",
        )
        .unwrap();
        for (f, v) in [
            ("power1_average", power_uw),
            ("power1_cap", cap_uw),
            ("power1_cap_min", 100_000_000),
            ("power1_cap_max", 300_000_000),
            ("power1_cap_default", 300_000_000),
            ("temp1_input", 45_000),
            ("temp2_input", 52_000),
            ("freq1_input", 1_700_000_000),
            ("freq2_input", 1_600_000_000),
        ] {
            fs::write(hw.join(f), format!("{v}\n")).unwrap();
        }
        hw
    }

    /// An Intel board under `driver` (xe or i915): energy in µJ, PL1 in µW.
    pub fn intel(&self, n: u32, driver: &str, pci: &str, energy_uj: u64) -> PathBuf {
        let hw = self.hwmon(n, driver, pci, "0x8086");
        fs::write(hw.join("energy1_input"), format!("{energy_uj}\n")).unwrap();
        fs::write(hw.join("power1_max"), "150000000\n").unwrap();
        fs::write(hw.join("temp2_input"), "48000\n").unwrap();
        hw
    }

    /// RAPL zones with `energy_uj` at `start_uj`, mode 0400 as on Linux 5.10 and later.
    pub fn rapl(&self, zones: &[Zone<'_>], start_uj: u64) -> Vec<PathBuf> {
        let base = self.root().join("sys/devices/virtual/powercap/intel-rapl");
        let class = self.root().join("sys/class/powercap");
        fs::create_dir_all(&class).unwrap();
        let mut energy = Vec::new();
        for z in zones {
            // a sub-zone "intel-rapl:0:0" lives inside "intel-rapl:0"
            let parts: Vec<&str> = z.zone.split(':').collect();
            let rel = if parts.len() == 3 {
                format!("{}:{}/{}", parts[0], parts[1], z.zone)
            } else {
                z.zone.to_string()
            };
            let dir = base.join(&rel);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("name"), format!("{}\n", z.name)).unwrap();
            fs::write(
                dir.join("max_energy_range_uj"),
                format!("{}\n", z.max_energy_range_uj),
            )
            .unwrap();
            let e = dir.join("energy_uj");
            fs::write(&e, format!("{start_uj}\n")).unwrap();
            fs::set_permissions(&e, fs::Permissions::from_mode(0o400)).unwrap();
            symlink(
                format!("../../devices/virtual/powercap/intel-rapl/{rel}"),
                class.join(z.zone),
            )
            .unwrap();
            if ["package", "dram"].iter().any(|p| z.name.starts_with(p)) {
                energy.push(e);
            }
        }
        energy
    }
}

/// One counter a ticker advances: its file, how fast, and where it wraps.
#[derive(Clone, Debug)]
pub struct Counter {
    pub path: PathBuf,
    pub watts: f64,
    /// The largest value before it starts again at zero.
    pub max_uj: u64,
}

/// Advances counters in µJ at their power every `every`, until dropped.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub fn start(counters: Vec<Counter>, every: Duration) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let starts: Vec<u64> = counters
                .iter()
                .map(|c| fs::read_to_string(&c.path).unwrap().trim().parse().unwrap())
                .collect();
            let t0 = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                let s = t0.elapsed().as_secs_f64();
                for (c, start) in counters.iter().zip(&starts) {
                    let add = (c.watts * s * 1e6) as u128;
                    let range = c.max_uj as u128 + 1;
                    let v = (*start as u128 + add) % range;
                    write_atomic(&c.path, &format!("{v}\n"));
                }
            }
        });
        Ticker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
