//! The host's CPU and DRAM energy through Linux powercap RAPL
//! (`/sys/class/powercap/intel-rapl:*`, on Intel and on AMD CPUs alike): each
//! `package-N` zone and each `dram` zone has an `energy_uj` counter that wraps at its
//! `max_energy_range_uj`. Their sum is the host energy recorded beside the GPU's.

use crate::polled_meter::{Polled, PolledMeter};
use crate::poller::{PollConfig, PolledSource, Poller};
use crate::sysfs::{Sysfs, SysfsError};
use crate::wrapping_counter::{CounterHealth, WrappingCounter};
use joulebench_core::clock::monotonic_s;
use joulebench_core::{HostMeterInfo, MeterError, MeterSource, Telemetry};
use std::path::PathBuf;
use std::time::Duration;

/// What a user who cannot read `energy_uj` is told.
pub const RAPL_UNREADABLE_HINT: &str = "energy_uj is readable only by root on current kernels \
(Linux 5.10 and later, since CVE-2020-8694); run as root or grant read access (e.g. \
`sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj`, \
or a udev rule that does so at boot), continuing without host energy";

/// RAPL updates its counters about every millisecond; read them this often.
pub const RAPL_POLL_EVERY: Duration = Duration::from_millis(2);

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RaplError {
    #[error("no RAPL zones in {dir} (no powercap RAPL driver loaded, a virtual machine, or not Linux); continuing without host energy")]
    NoZones { dir: PathBuf },
    #[error("{path}: {RAPL_UNREADABLE_HINT}")]
    Unreadable { path: PathBuf },
    #[error("RAPL: {0}")]
    Read(SysfsError),
}

impl From<SysfsError> for RaplError {
    fn from(e: SysfsError) -> Self {
        match e {
            SysfsError::PermissionDenied { path } => RaplError::Unreadable { path },
            e => RaplError::Read(e),
        }
    }
}

/// One counted RAPL zone.
#[derive(Clone, Debug, PartialEq)]
pub struct RaplZone {
    pub dir: PathBuf,
    /// "intel-rapl:0", "intel-rapl:0:0".
    pub zone: String,
    /// "package-0", "dram".
    pub name: String,
    pub max_energy_range_uj: u64,
}

impl RaplZone {
    pub fn energy_path(&self) -> PathBuf {
        self.dir.join("energy_uj")
    }
}

/// The zones whose sum is the host's energy: packages and DRAM. Cores and uncore
/// are inside their package, and `psys` covers the whole platform, so counting them
/// would count twice; the MMIO interface repeats the package.
pub fn discover(fs: &Sysfs) -> Result<Vec<RaplZone>, RaplError> {
    let class = fs.path("/sys/class/powercap");
    let entries = match fs.list(&class, "intel-rapl:") {
        Ok(e) => e,
        Err(SysfsError::Missing { .. }) => return Err(RaplError::NoZones { dir: class }),
        Err(e) => return Err(e.into()),
    };
    let mut zones = Vec::new();
    for dir in entries {
        let zone = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = fs.read_string(&dir.join("name"))?;
        if !(name.starts_with("package-") || name == "dram") {
            continue;
        }
        let max_energy_range_uj = fs.read_u64(&dir.join("max_energy_range_uj"))?;
        zones.push(RaplZone {
            dir,
            zone,
            name,
            max_energy_range_uj,
        });
    }
    if zones.is_empty() {
        return Err(RaplError::NoZones { dir: class });
    }
    Ok(zones)
}

struct RaplSource {
    fs: Sysfs,
    zones: Vec<(RaplZone, WrappingCounter)>,
}

impl RaplSource {
    fn read_j(&mut self) -> Result<f64, MeterError> {
        let t = monotonic_s();
        let mut total = 0.0;
        for (zone, counter) in &mut self.zones {
            let uj = self
                .fs
                .read_u64(&zone.energy_path())
                .map_err(|e| MeterError::Read(RaplError::from(e).to_string()))?;
            counter.update(uj, t);
            total += counter.joules().unwrap_or(0.0);
        }
        Ok(total)
    }
}

impl PolledSource for RaplSource {
    fn energy_j(&mut self) -> Result<Option<f64>, MeterError> {
        self.read_j().map(Some)
    }
    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        Ok(Telemetry::default())
    }
}

/// The host's package and DRAM energy, polled in a thread of its own.
pub type RaplMeter = PolledMeter<Rapl>;

/// What [`RaplMeter`] is besides its poller.
pub struct Rapl {
    zones: Vec<RaplZone>,
    health: Vec<CounterHealth>,
    poll_every: Duration,
}

impl RaplMeter {
    /// Finds the zones and reads each counter once, so an unreadable `energy_uj`
    /// is said now, with what to do about it.
    pub fn open(fs: &Sysfs) -> Result<RaplMeter, RaplError> {
        Self::open_polling(fs, RAPL_POLL_EVERY)
    }

    pub fn open_polling(fs: &Sysfs, poll_every: Duration) -> Result<RaplMeter, RaplError> {
        let zones = discover(fs)?;
        let mut counted = Vec::new();
        for z in &zones {
            let first = fs.read_u64(&z.energy_path())?;
            let mut c = WrappingCounter::new(
                format!("RAPL {} ({}) energy_uj", z.name, z.zone),
                z.max_energy_range_uj,
                1e-6,
            );
            c.update(first, monotonic_s());
            counted.push((z.clone(), c));
        }
        let health = counted.iter().map(|(_, c)| c.health()).collect();
        let source = RaplSource {
            fs: fs.clone(),
            zones: counted,
        };
        let poller = Poller::start(
            "joulebench-rapl",
            Box::new(source),
            PollConfig {
                energy_every: poll_every,
                telemetry_every: Duration::from_secs(3600),
            },
        )
        .map_err(|e| {
            RaplError::Read(SysfsError::Io {
                path: fs.path("/sys/class/powercap"),
                message: e.to_string(),
            })
        })?;
        let parts = Rapl {
            zones,
            health,
            poll_every,
        };
        Ok(PolledMeter::new(parts, poller))
    }

    pub fn zones(&self) -> &[RaplZone] {
        &self.parts().zones
    }

    pub fn info(&self) -> HostMeterInfo {
        HostMeterInfo {
            source: MeterSource::Rapl,
            domains: self.zones().iter().map(|z| z.name.clone()).collect(),
            update_period_s: self.parts().poll_every.as_secs_f64(),
        }
    }

    /// "package-0, package-1, dram".
    pub fn describe(&self) -> String {
        self.zones()
            .iter()
            .map(|z| z.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// RAPL has no telemetry of its own: clocks and temperatures are the GPU meter's.
impl Polled for Rapl {
    fn source(&self) -> MeterSource {
        MeterSource::Rapl
    }
    fn update_period_s(&self) -> f64 {
        self.poll_every.as_secs_f64()
    }
    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        Ok(Telemetry::default())
    }
    fn fault_detail(&mut self) -> Option<String> {
        self.health.iter().find_map(|h| h.fault_detail(0.5))
    }
    fn not_read_yet(&self) -> String {
        "RAPL has not been read yet".into()
    }
}
