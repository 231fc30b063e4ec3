//! The simulated device's controls: its power limit and locked clocks (changing
//! them needs no rights and touches no hardware), and its virtual clock, in which
//! sleeping lets the device idle.

use super::Shared;
use joulebench_core::clock::Clock;
use joulebench_core::clocks::ClockControl;
use joulebench_core::power::{PowerControl, PowerError, PowerLimits};
use std::time::Duration;

pub struct SimPowerControl {
    shared: Shared,
}

impl SimPowerControl {
    pub(crate) fn new(shared: Shared) -> Self {
        SimPowerControl { shared }
    }
}

impl PowerControl for SimPowerControl {
    fn limits(&mut self) -> Result<PowerLimits, PowerError> {
        let st = self.shared.lock();
        Ok(PowerLimits {
            min_w: st.profile.min_cap_w,
            max_w: st.profile.max_cap_w,
            default_w: st.profile.default_cap_w,
            current_w: st.cap_w,
        })
    }

    fn set_limit_w(&mut self, watts: f64) -> Result<(), PowerError> {
        let limits = self.limits()?;
        limits.check(watts)?;
        self.shared.lock().cap_w = watts;
        Ok(())
    }

    fn enforced_limit_w(&mut self) -> Result<f64, PowerError> {
        Ok(self.shared.lock().cap_w)
    }
}

/// Locks the simulated SM clock to a range (MHz), as NVML's locked clocks do.
pub struct SimClockControl {
    shared: Shared,
}

impl SimClockControl {
    pub(crate) fn new(shared: Shared) -> Self {
        SimClockControl { shared }
    }

    /// Every SM clock the device supports, lowest first.
    pub fn supported_sm_clocks_mhz(&self) -> Vec<u32> {
        self.shared.lock().profile.supported_sm_clocks_mhz()
    }

    /// Lock the SM clock to `min_mhz..=max_mhz` (both supported clocks).
    pub fn lock_sm_mhz(&mut self, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError> {
        let supported = self.shared.lock().profile.supported_sm_clocks_mhz();
        for c in [min_mhz, max_mhz] {
            if !supported.contains(&c) {
                return Err(PowerError::Failed(format!(
                    "{c} MHz is not a supported SM clock of this device"
                )));
            }
        }
        if min_mhz > max_mhz {
            return Err(PowerError::Failed(format!(
                "locked clock range {min_mhz}–{max_mhz} MHz is empty"
            )));
        }
        self.shared.lock().locked_sm_mhz = Some((min_mhz, max_mhz));
        Ok(())
    }

    pub fn unlock(&mut self) {
        self.shared.lock().locked_sm_mhz = None;
    }

    pub fn locked_sm_mhz(&self) -> Option<(u32, u32)> {
        self.shared.lock().locked_sm_mhz
    }
}

/// Locked clocks on the simulated device need no rights and touch no hardware. Its
/// memory has one clock, so only that clock "locks".
impl ClockControl for SimClockControl {
    fn supported_sm_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError> {
        Ok(SimClockControl::supported_sm_clocks_mhz(self))
    }

    fn supported_mem_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError> {
        Ok(vec![self.shared.lock().profile.mem_clock_mhz])
    }

    fn lock_sm_clocks_mhz(&mut self, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError> {
        self.lock_sm_mhz(min_mhz, max_mhz)
    }

    fn reset_sm_clocks(&mut self) -> Result<(), PowerError> {
        self.unlock();
        Ok(())
    }

    fn lock_mem_clocks_mhz(&mut self, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError> {
        let mem = self.shared.lock().profile.mem_clock_mhz;
        if (min_mhz, max_mhz) != (mem, mem) {
            return Err(PowerError::Failed(format!(
                "the simulated device's memory runs at {mem} MHz only"
            )));
        }
        Ok(())
    }

    fn reset_mem_clocks(&mut self) -> Result<(), PowerError> {
        Ok(())
    }
}

/// Virtual time: kernels advance it by their modelled duration, sleeps at idle.
pub struct SimClock {
    shared: Shared,
}

impl SimClock {
    pub(crate) fn new(shared: Shared) -> Self {
        SimClock { shared }
    }
}

impl Clock for SimClock {
    fn now_s(&self) -> f64 {
        self.shared.lock().now_s
    }

    fn sleep(&self, duration: Duration) {
        self.shared.lock().idle(duration.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::super::SimDevice;
    use joulebench_core::clocks::ClockControl;
    use joulebench_core::power::{PowerControl, PowerError};

    #[test]
    fn cap_outside_range_is_refused() {
        let mut dev = SimDevice::open("sim-h100", 0, 1).unwrap();
        assert!(matches!(
            dev.power.set_limit_w(100.0),
            Err(PowerError::OutOfRange { .. })
        ));
        assert!(dev.power.set_limit_w(350.0).is_ok());
        assert_eq!(dev.power.enforced_limit_w().unwrap(), 350.0);
    }

    #[test]
    fn the_clock_control_trait_locks_and_resets_the_model() {
        let mut dev = SimDevice::open("sim-h100", 0, 1).unwrap();
        let c: &mut dyn ClockControl = &mut dev.clocks;
        let sm = c.supported_sm_clocks_mhz().unwrap();
        assert_eq!((sm.first(), sm.last()), (Some(&345), Some(&1980)));
        c.lock_sm_clocks_mhz(1200, 1200).unwrap();
        assert!(c.lock_sm_clocks_mhz(1201, 1201).is_err());
        assert!(c.lock_mem_clocks_mhz(1000, 1000).is_err());
        assert_eq!(dev.clocks.locked_sm_mhz(), Some((1200, 1200)));
        ClockControl::reset_sm_clocks(&mut dev.clocks).unwrap();
        assert_eq!(dev.clocks.locked_sm_mhz(), None);
    }

    #[test]
    fn only_supported_clocks_lock() {
        let mut dev = SimDevice::open("sim-h100", 0, 1).unwrap();
        assert!(dev.clocks.lock_sm_mhz(1001, 1001).is_err());
        dev.clocks.lock_sm_mhz(1005, 1005).unwrap();
        assert_eq!(dev.clocks.locked_sm_mhz(), Some((1005, 1005)));
        dev.clocks.unlock();
        assert_eq!(dev.clocks.locked_sm_mhz(), None);
    }
}
