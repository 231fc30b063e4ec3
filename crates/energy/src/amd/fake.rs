//! A fake amdsmi device for tests, in the style of the fake NVML device: its state
//! (identity, power cap, energy accumulator, faults to inject) lives in memory or
//! in a JSON file that separate processes share, so a killed `joulebench sweep`
//! leaves the fake capped as a real GPU would be, for `power restore` to find.
//! Point `JOULEBENCH_FAKE_AMDSMI` at the file and every `amd::open_*` opens it.

use super::{AmdIdentity, AmdSmiDevice, AmdSmiError, EnergyCount, PowerCapInfoUw};
use crate::fake_store::{unix_ms_now, FakeStore, FakeStoreError, StepGrid};
use crate::nvml::PciBusId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

impl FakeAmdSmiState {
    pub fn draw_w(&self) -> f64 {
        self.power_demand_w.min(self.cap_uw as f64 / 1e6)
    }

    fn grid(&self) -> StepGrid {
        StepGrid {
            epoch_unix_ms: self.energy_epoch_unix_ms,
            period_ms: self.counter_period_ms,
        }
    }

    /// The accumulator at `now_ms` (unix ms): whole steps, wrapping at 2^64.
    pub fn energy_ticks_at(&self, now_ms: u64) -> u64 {
        if let Some(t) = self.frozen_ticks {
            return t;
        }
        let (steps, period) = self.grid().steps_at(now_ms);
        let uj = steps as f64 * period as f64 * 1e3 * self.draw_w();
        self.energy_base_ticks
            .wrapping_add((uj / self.resolution_uj.max(1e-9)) as u64)
    }

    /// Folds the energy so far into the base before the draw changes.
    fn fold_energy(&mut self, now_ms: u64) {
        self.energy_base_ticks = self.energy_ticks_at(now_ms);
        self.energy_epoch_unix_ms = self.grid().folded_epoch(now_ms);
    }

    /// A reset of the accumulator, as a driver reload or a firmware fault makes it:
    /// it goes down by `ticks` (a test's way to make it go backwards).
    pub fn reset_energy_by(&mut self, ticks: u64) {
        self.fold_energy(unix_ms_now());
        self.energy_base_ticks = self.energy_base_ticks.saturating_sub(ticks);
    }
}

/// Names the fake amdsmi device in messages about its state file.
const WHAT: &str = "fake amdsmi";

impl From<FakeStoreError> for AmdSmiError {
    fn from(e: FakeStoreError) -> Self {
        match e {
            FakeStoreError::Unavailable(m) => AmdSmiError::Unavailable(m),
            FakeStoreError::Failed(m) => AmdSmiError::Failed(m),
        }
    }
}

pub struct FakeAmdSmi {
    store: FakeStore<FakeAmdSmiState>,
}

impl FakeAmdSmi {
    pub fn in_memory(mut state: FakeAmdSmiState) -> Self {
        if state.energy_epoch_unix_ms == 0 {
            state.energy_epoch_unix_ms = unix_ms_now();
        }
        FakeAmdSmi {
            store: FakeStore::in_memory(WHAT, state),
        }
    }

    /// Writes `state` to `path` and opens it there, shared with any other process.
    pub fn create(
        path: impl Into<PathBuf>,
        mut state: FakeAmdSmiState,
    ) -> Result<Self, AmdSmiError> {
        if state.energy_epoch_unix_ms == 0 {
            state.energy_epoch_unix_ms = unix_ms_now();
        }
        Ok(FakeAmdSmi {
            store: FakeStore::create(WHAT, path.into(), &state)?,
        })
    }

    /// Opens a state file that exists (`{}` is a valid default fake).
    pub fn from_state_file(path: impl Into<PathBuf>) -> Result<Self, AmdSmiError> {
        let fake = FakeAmdSmi {
            store: FakeStore::open(WHAT, path.into())?,
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
        Ok(self.store.state()?)
    }

    /// Changes the state; across processes readers see the old or the new file.
    pub fn update<R>(&self, f: impl FnOnce(&mut FakeAmdSmiState) -> R) -> Result<R, AmdSmiError> {
        Ok(self.store.update(f)?)
    }

    pub(crate) fn matches_any(&self) -> Result<bool, AmdSmiError> {
        Ok(self.state()?.match_any)
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
        std::fs::write(&p, "{}").unwrap();
        let fake = FakeAmdSmi::from_state_file(&p).unwrap();
        assert_eq!(fake.power_cap_info().unwrap().cap_uw, 300_000_000);
        std::fs::write(&p, "{\"cap_uw\": \"high\"}").unwrap();
        assert!(matches!(
            FakeAmdSmi::from_state_file(&p),
            Err(AmdSmiError::Unavailable(_))
        ));
    }
}
