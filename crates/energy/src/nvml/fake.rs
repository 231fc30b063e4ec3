//! A fake NVML device for tests. Its state (limits, energy counter, clocks, faults to
//! inject) can live in a JSON file, so separate processes share one device: a CLI run
//! that is killed mid-sweep leaves the fake capped exactly as a real GPU would be,
//! and a later `joulebench power restore` sees that. Point `JOULEBENCH_FAKE_NVML` at
//! the file and every `nvml::open_*` function opens the fake instead of the driver.

use super::{
    ClocksMhz, DeviceIdentity, NvmlDevice, NvmlError, PowerFieldsMw, PowerLimitsMw,
    ReferenceClocksMhz,
};
use crate::fake_store::{unix_ms_now, FakeStore, FakeStoreError, StepGrid};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything the fake device is. Unlisted fields take the defaults (an H100-like part).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FakeState {
    pub name: String,
    pub uuid: String,
    pub pci_bus_id: String,
    pub architecture: String,
    pub compute_capability: String,
    pub driver_version: String,
    pub memory_bytes: u64,
    /// Match any requested device (for tests that pair the fake with another backend).
    pub match_any: bool,

    pub min_limit_mw: u32,
    pub max_limit_mw: u32,
    pub default_limit_mw: u32,
    pub limit_mw: u32,
    /// What the device would draw uncapped; it draws min(demand, limit).
    pub power_demand_mw: u32,

    /// The counter: `energy_base_mj` at `energy_epoch_unix_ms`, then it steps every
    /// `counter_period_ms` by the power drawn over that step.
    pub energy_base_mj: u64,
    pub energy_epoch_unix_ms: u64,
    pub counter_period_ms: u64,

    pub sm_clock_mhz: u32,
    pub mem_clock_mhz: u32,
    pub default_sm_clock_mhz: Option<u32>,
    pub max_sm_clock_mhz: u32,
    pub temperature_c: u32,
    pub throttle_reasons: u64,
    pub performance_state: Option<u32>,

    /// Faults to inject.
    pub has_energy_counter: bool,
    pub has_power_fields: bool,
    /// Every call fails with `GpuLost`, as after the GPU falls off the bus.
    pub lost: bool,
    /// Changing the limit fails with `NoPermission`, as for a user without root.
    pub deny_set_limit: bool,

    /// Every limit ever set, in order (tests assert on it).
    pub limit_history_mw: Vec<u32>,

    /// The clocks locked clocks may be set to, MHz.
    pub supported_sm_clocks_mhz: Vec<u32>,
    pub supported_mem_clocks_mhz: Vec<u32>,
    /// The locked ranges now, MHz; `None`: the default clocks.
    pub locked_sm_mhz: Option<(u32, u32)>,
    pub locked_mem_mhz: Option<(u32, u32)>,
    /// Locking clocks fails with `NoPermission`, as for a user without root.
    pub deny_clock_changes: bool,
    /// Resetting these clock domains ("sm", "mem") fails, as a driver that refuses
    /// one step of a restore.
    pub fail_clock_resets: Vec<String>,
    /// Setting the power limit fails (while locking and resetting clocks work).
    pub fail_set_limit: bool,
    /// Every change (limit, clock lock or reset) takes this long, as on a busy driver.
    pub change_delay_ms: u64,
    /// Every clock change, in order: "sm 1410-1410", "sm reset", "mem 2619-2619", …
    pub clock_history: Vec<String>,
}

impl Default for FakeState {
    fn default() -> Self {
        FakeState {
            name: "Fake H100 (fake NVML)".into(),
            uuid: "GPU-fa4e0000-0000-4000-8000-000000000001".into(),
            pci_bus_id: "00000000:65:00.0".into(),
            architecture: "Hopper".into(),
            compute_capability: "9.0".into(),
            driver_version: "fake".into(),
            memory_bytes: 80 << 30,
            match_any: false,
            min_limit_mw: 200_000,
            max_limit_mw: 700_000,
            default_limit_mw: 700_000,
            limit_mw: 700_000,
            power_demand_mw: 350_000,
            energy_base_mj: 1_000_000,
            energy_epoch_unix_ms: 0,
            counter_period_ms: 100,
            sm_clock_mhz: 1980,
            mem_clock_mhz: 2619,
            default_sm_clock_mhz: Some(1980),
            max_sm_clock_mhz: 1980,
            temperature_c: 45,
            throttle_reasons: 0,
            performance_state: Some(0),
            has_energy_counter: true,
            has_power_fields: true,
            lost: false,
            deny_set_limit: false,
            limit_history_mw: Vec::new(),
            supported_sm_clocks_mhz: (345..=1980).step_by(15).collect(),
            supported_mem_clocks_mhz: vec![2619],
            locked_sm_mhz: None,
            locked_mem_mhz: None,
            deny_clock_changes: false,
            fail_clock_resets: Vec::new(),
            fail_set_limit: false,
            change_delay_ms: 0,
            clock_history: Vec::new(),
        }
    }
}

impl FakeState {
    pub fn draw_mw(&self) -> u32 {
        self.power_demand_mw.min(self.limit_mw)
    }

    fn grid(&self) -> StepGrid {
        StepGrid {
            epoch_unix_ms: self.energy_epoch_unix_ms,
            period_ms: self.counter_period_ms,
        }
    }

    /// The counter at `now_ms` (unix ms): whole steps only, as NVML's counter.
    pub fn energy_mj_at(&self, now_ms: u64) -> u64 {
        let (steps, period) = self.grid().steps_at(now_ms);
        self.energy_base_mj + steps * period * self.draw_mw() as u64 / 1000
    }

    /// Folds the energy so far into the base before the draw changes, keeping the
    /// counter's step grid.
    fn fold_energy(&mut self, now_ms: u64) {
        self.energy_base_mj = self.energy_mj_at(now_ms);
        self.energy_epoch_unix_ms = self.grid().folded_epoch(now_ms);
    }

    /// Changes what the device would draw (a test's stand-in for load).
    pub fn set_power_demand_mw(&mut self, mw: u32) {
        self.fold_energy(unix_ms_now());
        self.power_demand_mw = mw;
    }

    /// A reset of the counter, as a driver reload or a GPU reset makes it: it goes
    /// down by `mj` (a test's way to make it go backwards).
    pub fn reset_energy_by_mj(&mut self, mj: u64) {
        self.fold_energy(unix_ms_now());
        self.energy_base_mj = self.energy_base_mj.saturating_sub(mj);
    }
}

/// Names the fake NVML device in messages about its state file.
const WHAT: &str = "fake NVML";

impl From<FakeStoreError> for NvmlError {
    fn from(e: FakeStoreError) -> Self {
        match e {
            FakeStoreError::Unavailable(m) => NvmlError::Unavailable(m),
            FakeStoreError::Failed(m) => NvmlError::Failed(m),
        }
    }
}

#[derive(Clone, Copy)]
enum ClockDomain {
    Sm,
    Mem,
}

pub struct FakeDevice {
    store: FakeStore<FakeState>,
}

impl FakeDevice {
    /// A fake that lives in this process only.
    pub fn in_memory(mut state: FakeState) -> Self {
        if state.energy_epoch_unix_ms == 0 {
            state.energy_epoch_unix_ms = unix_ms_now();
        }
        FakeDevice {
            store: FakeStore::in_memory(WHAT, state),
        }
    }

    /// Writes `state` to `path` and opens it there, shared with any other process.
    pub fn create(path: impl Into<PathBuf>, mut state: FakeState) -> Result<Self, NvmlError> {
        if state.energy_epoch_unix_ms == 0 {
            state.energy_epoch_unix_ms = unix_ms_now();
        }
        Ok(FakeDevice {
            store: FakeStore::create(WHAT, path.into(), &state)?,
        })
    }

    /// Opens a fake whose state file already exists (as written by `create`, or by
    /// hand: every field has a default, so `{}` is a valid fake).
    pub fn from_state_file(path: impl Into<PathBuf>) -> Result<Self, NvmlError> {
        Ok(FakeDevice {
            store: FakeStore::open(WHAT, path.into())?,
        })
    }

    /// The state file, for a file-backed fake.
    pub fn state_path(&self) -> Option<PathBuf> {
        self.store.path()
    }

    /// The device's state now (re-read from the file for a file-backed fake).
    pub fn state(&self) -> Result<FakeState, NvmlError> {
        Ok(self.store.state()?)
    }

    /// Changes the state (a test injecting a fault, a load, a throttle reason).
    /// Across processes the change is atomic: readers see the old or the new file.
    pub fn update<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> Result<R, NvmlError> {
        Ok(self.store.update(f)?)
    }

    pub(crate) fn matches_any(&self) -> Result<bool, NvmlError> {
        Ok(self.state()?.match_any)
    }

    /// Locks (`Some`) or resets (`None`) one clock domain as the driver would:
    /// refused for an unsupported clock, a denied right or a lost GPU.
    fn change_clocks(
        &self,
        domain: ClockDomain,
        range: Option<(u32, u32)>,
    ) -> Result<(), NvmlError> {
        self.delay()?;
        self.update(|s| {
            if s.lost {
                return Err(NvmlError::GpuLost);
            }
            if s.deny_clock_changes {
                return Err(NvmlError::NoPermission(
                    "the fake device denies clock changes".into(),
                ));
            }
            let (supported, locked, name) = match domain {
                ClockDomain::Sm => (&s.supported_sm_clocks_mhz, &mut s.locked_sm_mhz, "sm"),
                ClockDomain::Mem => (&s.supported_mem_clocks_mhz, &mut s.locked_mem_mhz, "mem"),
            };
            if range.is_none() && s.fail_clock_resets.iter().any(|d| d == name) {
                return Err(NvmlError::Failed(format!(
                    "the fake device fails to reset its {name} clocks"
                )));
            }
            match range {
                Some((lo, hi)) => {
                    if lo > hi || !supported.contains(&lo) || !supported.contains(&hi) {
                        return Err(NvmlError::InvalidArgument(format!(
                            "{lo}–{hi} MHz is not a supported {name} clock range"
                        )));
                    }
                    *locked = Some((lo, hi));
                    s.clock_history.push(format!("{name} {lo}-{hi}"));
                }
                None => {
                    *locked = None;
                    s.clock_history.push(format!("{name} reset"));
                }
            }
            Ok(())
        })?
    }

    /// Sleeps `change_delay_ms` before a change (read from the state now).
    fn delay(&self) -> Result<(), NvmlError> {
        let ms = self.state()?.change_delay_ms;
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        Ok(())
    }

    /// Reads the state, failing as a lost GPU would.
    fn live(&self) -> Result<FakeState, NvmlError> {
        let s = self.state()?;
        if s.lost {
            return Err(NvmlError::GpuLost);
        }
        Ok(s)
    }
}

impl NvmlDevice for FakeDevice {
    fn identity(&self) -> Result<DeviceIdentity, NvmlError> {
        let s = self.live()?;
        Ok(DeviceIdentity {
            name: s.name,
            uuid: Some(s.uuid),
            pci_bus_id: Some(s.pci_bus_id),
            architecture: Some(s.architecture),
            compute_capability: Some(s.compute_capability),
            driver_version: Some(s.driver_version),
            memory_bytes: Some(s.memory_bytes),
            fake: true,
        })
    }

    fn total_energy_mj(&self) -> Result<u64, NvmlError> {
        let s = self.live()?;
        if !s.has_energy_counter {
            return Err(NvmlError::NotSupported);
        }
        Ok(s.energy_mj_at(unix_ms_now()))
    }

    fn power_usage_mw(&self) -> Result<u32, NvmlError> {
        Ok(self.live()?.draw_mw())
    }

    fn power_fields_mw(&self) -> Result<PowerFieldsMw, NvmlError> {
        let s = self.live()?;
        if !s.has_power_fields {
            return Ok(PowerFieldsMw::default());
        }
        Ok(PowerFieldsMw {
            instant_mw: Some(s.draw_mw()),
            average_mw: Some(s.draw_mw()),
        })
    }

    fn power_limits_mw(&self) -> Result<PowerLimitsMw, NvmlError> {
        let s = self.live()?;
        Ok(PowerLimitsMw {
            min_mw: s.min_limit_mw,
            max_mw: s.max_limit_mw,
            default_mw: s.default_limit_mw,
            current_mw: s.limit_mw,
        })
    }

    fn set_power_limit_mw(&self, limit_mw: u32) -> Result<(), NvmlError> {
        self.delay()?;
        self.update(|s| {
            if s.lost {
                return Err(NvmlError::GpuLost);
            }
            if s.fail_set_limit {
                return Err(NvmlError::Failed(
                    "the fake device fails to set its power limit".into(),
                ));
            }
            if s.deny_set_limit {
                return Err(NvmlError::NoPermission(
                    "the fake device denies power-limit changes".into(),
                ));
            }
            if limit_mw < s.min_limit_mw || limit_mw > s.max_limit_mw {
                return Err(NvmlError::InvalidArgument(format!(
                    "{limit_mw} mW is outside {}–{} mW",
                    s.min_limit_mw, s.max_limit_mw
                )));
            }
            s.fold_energy(unix_ms_now());
            s.limit_mw = limit_mw;
            s.limit_history_mw.push(limit_mw);
            Ok(())
        })?
    }

    fn enforced_limit_mw(&self) -> Result<u32, NvmlError> {
        Ok(self.live()?.limit_mw)
    }

    fn clocks_mhz(&self) -> Result<ClocksMhz, NvmlError> {
        let s = self.live()?;
        // a locked clock holds the clock at the top of its range
        Ok(ClocksMhz {
            sm_mhz: Some(s.locked_sm_mhz.map_or(s.sm_clock_mhz, |(_, hi)| hi)),
            mem_mhz: Some(s.locked_mem_mhz.map_or(s.mem_clock_mhz, |(_, hi)| hi)),
        })
    }

    fn supported_sm_clocks_mhz(&self) -> Result<Vec<u32>, NvmlError> {
        Ok(self.live()?.supported_sm_clocks_mhz)
    }

    fn supported_mem_clocks_mhz(&self) -> Result<Vec<u32>, NvmlError> {
        Ok(self.live()?.supported_mem_clocks_mhz)
    }

    fn set_locked_sm_clocks_mhz(&self, min_mhz: u32, max_mhz: u32) -> Result<(), NvmlError> {
        self.change_clocks(ClockDomain::Sm, Some((min_mhz, max_mhz)))
    }

    fn reset_locked_sm_clocks(&self) -> Result<(), NvmlError> {
        self.change_clocks(ClockDomain::Sm, None)
    }

    fn set_locked_mem_clocks_mhz(&self, min_mhz: u32, max_mhz: u32) -> Result<(), NvmlError> {
        self.change_clocks(ClockDomain::Mem, Some((min_mhz, max_mhz)))
    }

    fn reset_locked_mem_clocks(&self) -> Result<(), NvmlError> {
        self.change_clocks(ClockDomain::Mem, None)
    }

    fn locked_clocks_mhz(&self) -> Result<super::LockedClocksMhz, NvmlError> {
        let s = self.live()?;
        Ok((s.locked_sm_mhz, s.locked_mem_mhz))
    }

    fn reference_clocks_mhz(&self) -> Result<ReferenceClocksMhz, NvmlError> {
        let s = self.live()?;
        Ok(ReferenceClocksMhz {
            default_sm_mhz: s.default_sm_clock_mhz,
            max_sm_mhz: Some(s.max_sm_clock_mhz),
        })
    }

    fn temperature_c(&self) -> Result<u32, NvmlError> {
        Ok(self.live()?.temperature_c)
    }

    fn throttle_reasons(&self) -> Result<u64, NvmlError> {
        Ok(self.live()?.throttle_reasons)
    }

    fn performance_state(&self) -> Result<Option<u32>, NvmlError> {
        Ok(self.live()?.performance_state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_steps_on_its_grid_at_the_drawn_power() {
        let s = FakeState {
            energy_base_mj: 0,
            energy_epoch_unix_ms: 1_000,
            counter_period_ms: 100,
            power_demand_mw: 300_000,
            limit_mw: 250_000,
            ..Default::default()
        };
        assert_eq!(s.draw_mw(), 250_000);
        assert_eq!(s.energy_mj_at(1_099), 0);
        assert_eq!(s.energy_mj_at(1_100), 25_000);
        assert_eq!(s.energy_mj_at(2_050), 250_000);
    }

    #[test]
    fn an_empty_state_file_is_a_default_fake() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fake.json");
        std::fs::write(&p, "{}").unwrap();
        let fake = FakeDevice::from_state_file(&p).unwrap();
        assert_eq!(fake.power_limits_mw().unwrap().current_mw, 700_000);
        std::fs::write(&p, "{\"limit_mw\": \"high\"}").unwrap();
        assert!(matches!(
            FakeDevice::from_state_file(&p),
            Err(NvmlError::Unavailable(_))
        ));
    }
}
