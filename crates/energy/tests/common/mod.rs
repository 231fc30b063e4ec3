//! Shared set-up for the energy crate's tests: fake devices and guards on them.
#![allow(dead_code)]

use joulebench_core::{DeviceInfo, PowerError};
use joulebench_energy::guard::{GuardConfig, PowerGuard, RestoreOptions};
use joulebench_energy::nvml::{
    FakeDevice, FakeState, NvmlDevice, NvmlPowerControl, DEVICE_KIND_FAKE,
};
use std::path::Path;
use std::sync::Arc;

/// An H100-like fake (200–700 W, default and current 700 W) living in memory.
pub fn fake(state: FakeState) -> Arc<FakeDevice> {
    Arc::new(FakeDevice::in_memory(state))
}

pub fn fake_info(fake: &FakeDevice) -> DeviceInfo {
    fake.identity().unwrap().to_device_info()
}

/// The per-GPU lock of a test's guards: beside its state files, so tests running at
/// once on fakes with one UUID do not take each other's lock.
pub fn lock_dir(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join(".locks")
}

pub fn guard_on(fake: &Arc<FakeDevice>, state_dir: &Path, allow: bool) -> PowerGuard {
    let config = GuardConfig::new(fake_info(fake), DEVICE_KIND_FAKE, state_dir, allow)
        .with_lock_dir(&lock_dir(state_dir));
    taken_once_children_exec(|| {
        PowerGuard::new(
            Box::new(NvmlPowerControl::new(fake.clone())),
            config.clone(),
        )
    })
    .unwrap()
}

/// `take()` a guard again while the GPU's lock is held by this very process: a guard
/// just dropped here can still have its lock file open in a child another test of
/// this binary is starting (between fork and exec, before close-on-exec closes it),
/// and a flock lasts while any copy of the descriptor does. A lock held by another
/// process is returned at once.
pub fn taken_once_children_exec<T>(
    mut take: impl FnMut() -> Result<T, PowerError>,
) -> Result<T, PowerError> {
    let me = format!("joulebench process {} ", std::process::id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match take() {
            Err(PowerError::Locked { holder, .. })
                if holder.starts_with(&me) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

pub fn limit_w(fake: &FakeDevice) -> f64 {
    fake.power_limits_mw().unwrap().current_mw as f64 / 1000.0
}

#[cfg(unix)]
pub mod sysfs_fixture;

/// How a test restores from a state file: under the test's own lock directory, so
/// tests running at once on fakes with one UUID do not take each other's lock.
pub fn restore_options(state_dir: &Path, force: bool) -> RestoreOptions {
    RestoreOptions {
        force,
        lock_dir: Some(lock_dir(state_dir)),
    }
}
