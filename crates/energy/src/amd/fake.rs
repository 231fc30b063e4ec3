//! A fake amdsmi device for tests, in the style of the fake NVML device: its state
//! (identity, power cap, energy accumulator, faults to inject) lives in memory or
//! in a JSON file that separate processes share, so a killed `joulebench sweep`
//! leaves the fake capped as a real GPU would be, for `power restore` to find.
//! Point `JOULEBENCH_FAKE_AMDSMI` at the file and every `amd::open_*` opens it.

use super::{AmdIdentity, AmdSmiDevice, AmdSmiError, EnergyCount, PowerCapInfoUw};
use crate::nvml::PciBusId;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Everything the fake is. Unlisted fields take the defaults (an MI210-like board).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FakeAmdSmiState {
    pub name: String,
    pub uuid: Option<String>,
    pub pci_bus_id: String,
    /// Match any requested device (for tests that pair the fake with lavapipe,
    /// which has no PCI address).
    pub match_any: bool,

    pub min_cap_uw: u64,
    pub max_cap_uw: u64,
    pub default_cap_uw: u64,
    pub cap_uw: u64,
    /// What the board would draw uncapped; it draws min(demand, cap).
    pub power_demand_w: f64,

    /// The accumulator: `energy_base_ticks` at `energy_epoch_unix_ms`, then a step
    /// every `counter_period_ms` by the energy drawn, in ticks of `resolution_uj`,
    /// wrapping at 2^64 as the real one does.
    pub energy_base_ticks: u64,
    pub energy_epoch_unix_ms: u64,
    pub counter_period_ms: u64,
    pub resolution_uj: f64,

    pub gfx_clock_mhz: u32,
    pub mem_clock_mhz: u32,
    pub temperature_c: u32,
    pub throttle_status: u64,

    /// Faults to inject: the accumulator stands at this value (as reported for
    /// MI100/MI210 in ROCm/amdsmi#38 and ROCm/rocm_smi_lib#180) …
    pub frozen_ticks: Option<u64>,
    /// … or has no energy counter at all.
    pub has_energy_counter: bool,
    /// Changing the cap fails with `NoPermission`, as for a user without root.
    pub deny_set_cap: bool,

    /// Every cap ever set, in order (tests assert on it).
    pub cap_history_uw: Vec<u64>,
}

impl Default for FakeAmdSmiState {
    fn default() -> Self {
        FakeAmdSmiState {
            name: "Fake MI210 (fake amdsmi)".into(),
            uuid: Some("fa4e0000-0000-4000-8000-0000000000a1".into()),
            pci_bus_id: "0000:03:00.0".into(),
            match_any: false,
            min_cap_uw: 100_000_000,
            max_cap_uw: 300_000_000,
            default_cap_uw: 300_000_000,
            cap_uw: 300_000_000,
            power_demand_w: 250.0,
            energy_base_ticks: 1_000_000,
            energy_epoch_unix_ms: 0,
            counter_period_ms: 1,
            resolution_uj: 15.3,
            gfx_clock_mhz: 1700,
            mem_clock_mhz: 1600,
            temperature_c: 50,
            throttle_status: 0,
            frozen_ticks: None,
            has_energy_counter: true,
            deny_set_cap: false,
            cap_history_uw: Vec::new(),
        }
    }
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl FakeAmdSmiState {
    pub fn draw_w(&self) -> f64 {
        self.power_demand_w.min(self.cap_uw as f64 / 1e6)
    }

    /// The accumulator at `now_ms` (unix ms): whole steps, wrapping at 2^64.
    pub fn energy_ticks_at(&self, now_ms: u64) -> u64 {
        if let Some(t) = self.frozen_ticks {
            return t;
        }
        let period = self.counter_period_ms.max(1);
        let steps = now_ms.saturating_sub(self.energy_epoch_unix_ms) / period;
        let uj = steps as f64 * period as f64 * 1e3 * self.draw_w();
        self.energy_base_ticks
            .wrapping_add((uj / self.resolution_uj.max(1e-9)) as u64)
    }

    /// Folds the energy so far into the base before the draw changes.
    fn fold_energy(&mut self, now_ms: u64) {
        let period = self.counter_period_ms.max(1);
        let steps = now_ms.saturating_sub(self.energy_epoch_unix_ms) / period;
        self.energy_base_ticks = self.energy_ticks_at(now_ms);
        self.energy_epoch_unix_ms += steps * period;
    }

    /// A reset of the accumulator, as a driver reload or a firmware fault makes it:
    /// it goes down by `ticks` (a test's way to make it go backwards).
    pub fn reset_energy_by(&mut self, ticks: u64) {
        self.fold_energy(unix_ms_now());
        self.energy_base_ticks = self.energy_base_ticks.saturating_sub(ticks);
    }
}

enum Backing {
    Memory(Box<FakeAmdSmiState>),
    File(PathBuf),
}

pub struct FakeAmdSmi {
    backing: Mutex<Backing>,
}

impl FakeAmdSmi {
    pub fn in_memory(mut state: FakeAmdSmiState) -> Self {
        if state.energy_epoch_unix_ms == 0 {
            state.energy_epoch_unix_ms = unix_ms_now();
        }
        FakeAmdSmi {
            backing: Mutex::new(Backing::Memory(Box::new(state))),
        }
    }

    /// Writes `state` to `path` and opens it there, shared with any other process.
    pub fn create(
        path: impl Into<PathBuf>,
        mut state: FakeAmdSmiState,
    ) -> Result<Self, AmdSmiError> {
        let path = path.into();
        if state.energy_epoch_unix_ms == 0 {
            state.energy_epoch_unix_ms = unix_ms_now();
        }
        write_state(&path, &state)?;
        Ok(FakeAmdSmi {
            backing: Mutex::new(Backing::File(path)),
        })
    }

    /// Opens a state file that exists (`{}` is a valid default fake).
    pub fn from_state_file(path: impl Into<PathBuf>) -> Result<Self, AmdSmiError> {
        let path = path.into();
        let fake = FakeAmdSmi {
            backing: Mutex::new(Backing::File(path)),
        };
        if fake.state()?.energy_epoch_unix_ms == 0 {
            // a hand-written file: its counter starts now, once for every process
            fake.update(|s| {
                if s.energy_epoch_unix_ms == 0 {
                    s.energy_epoch_unix_ms = unix_ms_now();
                }
            })?;
        }
        Ok(fake)
    }

    pub fn state(&self) -> Result<FakeAmdSmiState, AmdSmiError> {
        match &*self.lock() {
            Backing::Memory(s) => Ok(s.as_ref().clone()),
            Backing::File(p) => read_state(p),
        }
    }

    /// Changes the state; across processes readers see the old or the new file.
    pub fn update<R>(&self, f: impl FnOnce(&mut FakeAmdSmiState) -> R) -> Result<R, AmdSmiError> {
        match &mut *self.lock() {
            Backing::Memory(s) => Ok(f(s)),
            Backing::File(p) => {
                let _lock = FileLock::acquire(p)?;
                let mut s = read_state(p)?;
                let r = f(&mut s);
                write_state(p, &s)?;
                Ok(r)
            }
        }
    }

    pub(crate) fn matches_any(&self) -> Result<bool, AmdSmiError> {
        Ok(self.state()?.match_any)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backing> {
        self.backing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_state(path: &Path) -> Result<FakeAmdSmiState, AmdSmiError> {
    let text = fs::read_to_string(path).map_err(|e| {
        AmdSmiError::Unavailable(format!("fake amdsmi state file {}: {e}", path.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        AmdSmiError::Unavailable(format!(
            "fake amdsmi state file {} is not valid: {e}",
            path.display()
        ))
    })
}

fn write_state(path: &Path, state: &FakeAmdSmiState) -> Result<(), AmdSmiError> {
    let io = |e: std::io::Error| {
        AmdSmiError::Failed(format!(
            "writing fake amdsmi state file {}: {e}",
            path.display()
        ))
    };
    let text = serde_json::to_string_pretty(state)
        .map_err(|e| AmdSmiError::Failed(format!("encoding fake amdsmi state: {e}")))?;
    let tmp = sibling(path, &format!("tmp-{}", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

/// Serialises read-modify-write between processes; a lock left by a killed
/// process is broken after two seconds.
struct FileLock(PathBuf);

impl FileLock {
    fn acquire(path: &Path) -> Result<FileLock, AmdSmiError> {
        let lock = sibling(path, "lock");
        let start = Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => return Ok(FileLock(lock)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if start.elapsed() > Duration::from_secs(2) {
                        let _ = fs::remove_file(&lock);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    return Err(AmdSmiError::Failed(format!(
                        "locking fake amdsmi state {}: {e}",
                        lock.display()
                    )))
                }
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

impl AmdSmiDevice for FakeAmdSmi {
    fn identity(&self) -> Result<AmdIdentity, AmdSmiError> {
        let s = self.state()?;
        Ok(AmdIdentity {
            name: s.name,
            uuid: s.uuid,
            pci_bus_id: PciBusId::parse(&s.pci_bus_id),
            driver_version: Some("fake".into()),
            fake: true,
        })
    }

    fn energy_count(&self) -> Result<EnergyCount, AmdSmiError> {
        let s = self.state()?;
        if !s.has_energy_counter {
            return Err(AmdSmiError::NotSupported);
        }
        let now = unix_ms_now();
        Ok(EnergyCount {
            ticks: s.energy_ticks_at(now),
            resolution_uj: s.resolution_uj,
            timestamp_ns: now.saturating_mul(1_000_000),
        })
    }

    fn power_w(&self) -> Result<Option<f64>, AmdSmiError> {
        Ok(Some(self.state()?.draw_w()))
    }

    fn clocks_mhz(&self) -> Result<(Option<u32>, Option<u32>), AmdSmiError> {
        let s = self.state()?;
        Ok((Some(s.gfx_clock_mhz), Some(s.mem_clock_mhz)))
    }

    fn temperature_c(&self) -> Result<Option<u32>, AmdSmiError> {
        Ok(Some(self.state()?.temperature_c))
    }

    fn throttle_status(&self) -> Result<Option<u64>, AmdSmiError> {
        Ok(Some(self.state()?.throttle_status))
    }

    fn power_cap_info(&self) -> Result<PowerCapInfoUw, AmdSmiError> {
        let s = self.state()?;
        Ok(PowerCapInfoUw {
            cap_uw: s.cap_uw,
            default_uw: s.default_cap_uw,
            min_uw: s.min_cap_uw,
            max_uw: s.max_cap_uw,
        })
    }

    fn set_power_cap_uw(&self, cap_uw: u64) -> Result<(), AmdSmiError> {
        self.update(|s| {
            if s.deny_set_cap {
                return Err(AmdSmiError::NoPermission(
                    "the fake device denies power-cap changes".into(),
                ));
            }
            if cap_uw < s.min_cap_uw || cap_uw > s.max_cap_uw {
                return Err(AmdSmiError::Failed(format!(
                    "{cap_uw} µW is outside {}–{} µW",
                    s.min_cap_uw, s.max_cap_uw
                )));
            }
            s.fold_energy(unix_ms_now());
            s.cap_uw = cap_uw;
            s.cap_history_uw.push(cap_uw);
            Ok(())
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accumulator_steps_at_the_drawn_power_and_wraps_at_2_64() {
        let s = FakeAmdSmiState {
            energy_base_ticks: u64::MAX - 10,
            energy_epoch_unix_ms: 1_000,
            counter_period_ms: 1,
            resolution_uj: 1.0,
            power_demand_w: 1.0,
            ..Default::default()
        };
        // 1 W for 1 ms is 1000 µJ: past the top of the counter
        assert_eq!(s.energy_ticks_at(1_000), u64::MAX - 10);
        assert_eq!(s.energy_ticks_at(1_001), 1000 - 11);
    }

    #[test]
    fn an_empty_state_file_is_a_default_fake() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("amd.json");
        fs::write(&p, "{}").unwrap();
        let fake = FakeAmdSmi::from_state_file(&p).unwrap();
        assert_eq!(fake.power_cap_info().unwrap().cap_uw, 300_000_000);
        fs::write(&p, "{\"cap_uw\": \"high\"}").unwrap();
        assert!(matches!(
            FakeAmdSmi::from_state_file(&p),
            Err(AmdSmiError::Unavailable(_))
        ));
    }
}
