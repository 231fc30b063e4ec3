//! What a run finds on a GPU before it changes anything: clocks locked by a run
//! that was killed (its state file, here or where the GPU's lock file points, says
//! so) or by another tool (where the device can say). Checked at the start the way
//! a changed power limit is, so points at "default clocks" are flagged instead of
//! passing for the device's defaults.

use super::lock::DeviceLock;
use super::state::{read_state_file, state_file_for};
use joulebench_core::{ClockControl, ClockLocks, DeviceInfo, PowerError};
use std::path::{Path, PathBuf};

/// Locked clocks found on a device, and who says so.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundClockLocks {
    pub locks: ClockLocks,
    /// The state file that owes their reset, where one does.
    pub state_file: Option<PathBuf>,
}

impl FoundClockLocks {
    /// "the SM clock is locked (SM 1200–1200 MHz)", or "… (a killed run's state
    /// file P says so)".
    pub fn describe(&self) -> String {
        let which = match (self.locks.sm_mhz.is_some(), self.locks.mem_mhz.is_some()) {
            (true, true) => "the SM and memory clocks are",
            (true, false) => "the SM clock is",
            _ => "the memory clock is",
        };
        let ranges = self.locks.describe();
        match &self.state_file {
            Some(p) if ranges.contains("0–0") || ranges.is_empty() => format!(
                "{which} locked (a run that ended without resetting it says so in {})",
                p.display()
            ),
            Some(p) => format!("{which} locked ({ranges}; state file {})", p.display()),
            None => format!("{which} locked ({ranges})"),
        }
    }
}

/// The clocks locked on `device` now: as the device says where it can, else as a
/// pending state file for it says (in `state_dir`, or where the GPU's lock file in
/// `lock_dir` points). A range a state file cannot know reads 0–0 MHz.
pub fn found_clock_locks(
    clocks: Option<&mut (dyn ClockControl + '_)>,
    device: &DeviceInfo,
    state_dir: Option<&Path>,
    lock_dir: &Path,
) -> Option<FoundClockLocks> {
    let owed_file = state_dir
        .map(|d| state_file_for(d, device))
        .filter(|p| p.exists())
        .into_iter()
        .chain(DeviceLock::owed_state_file(lock_dir, device).filter(|p| p.exists()))
        .find(|p| read_state_file(p).is_ok_and(|s| s.locked_clocks.any()));
    if let Some(locks) = clocks.and_then(|c| c.clock_locks().ok()) {
        return locks.any().then_some(FoundClockLocks {
            locks,
            state_file: owed_file,
        });
    }
    let path = owed_file?;
    let s = read_state_file(&path).ok()?;
    let unknown = Some((0, 0));
    Some(FoundClockLocks {
        locks: ClockLocks {
            sm_mhz: if s.locked_clocks.sm { unknown } else { None },
            mem_mhz: if s.locked_clocks.mem { unknown } else { None },
        },
        state_file: Some(path),
    })
}

/// A clock control that answers [`ClockControl::clock_locks`] with what was found
/// at the start where the device itself cannot say: for a run that changes no
/// clock, so its records at default clocks are flagged all the same.
pub struct KnownClockLocks {
    inner: Box<dyn ClockControl>,
    found: ClockLocks,
}

impl KnownClockLocks {
    pub fn new(inner: Box<dyn ClockControl>, found: ClockLocks) -> Self {
        KnownClockLocks { inner, found }
    }
}

impl ClockControl for KnownClockLocks {
    fn supported_sm_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError> {
        self.inner.supported_sm_clocks_mhz()
    }
    fn supported_mem_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError> {
        self.inner.supported_mem_clocks_mhz()
    }
    fn lock_sm_clocks_mhz(&mut self, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError> {
        self.inner.lock_sm_clocks_mhz(min_mhz, max_mhz)
    }
    fn reset_sm_clocks(&mut self) -> Result<(), PowerError> {
        self.inner.reset_sm_clocks()
    }
    fn lock_mem_clocks_mhz(&mut self, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError> {
        self.inner.lock_mem_clocks_mhz(min_mhz, max_mhz)
    }
    fn reset_mem_clocks(&mut self) -> Result<(), PowerError> {
        self.inner.reset_mem_clocks()
    }
    fn clock_locks(&mut self) -> Result<ClockLocks, PowerError> {
        self.inner.clock_locks().or(Ok(self.found))
    }
}
