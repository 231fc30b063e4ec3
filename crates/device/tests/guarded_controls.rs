//! A GPU's power limit and clocks change only through its guard: before the guard is
//! armed its controls read and refuse changes, armed they change with a state file
//! written first, and after the restore (or the device dropped) the GPU is as found. Run on the simulated
//! device with a fake NVML device behind it, as the CLI's end-to-end tests do.

use joulebench_device::{open, BackendKind, OpenOptions};
use joulebench_energy::nvml::{FakeDevice, FakeState, FAKE_NVML_ENV};
use std::path::Path;

fn limit_history(fake: &Path) -> Vec<u32> {
    FakeDevice::from_state_file(fake)
        .unwrap()
        .state()
        .unwrap()
        .limit_history_mw
}

#[test]
fn a_gpu_changes_only_through_its_armed_guard_and_is_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("nvml.json");
    FakeDevice::create(
        &fake,
        FakeState {
            match_any: true,
            supported_sm_clocks_mhz: vec![1200, 1980],
            ..FakeState::default()
        },
    )
    .unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    // the only test in this binary: nothing else reads these variables meanwhile
    std::env::set_var(FAKE_NVML_ENV, &fake);
    std::env::set_var("JOULEBENCH_STATE_DIR", &state_dir);
    std::env::set_var("JOULEBENCH_LOCK_DIR", dir.path().join("locks"));

    let mut dev = open(&OpenOptions::new(BackendKind::Sim)).unwrap();
    assert!(dev.power_needs_permission());
    assert!(dev.control_identity().is_some());

    // before the guard: reads pass, changes are refused and reach nothing
    let power = dev.power_mut().unwrap();
    assert_eq!(power.limits().unwrap().default_w, 700.0);
    let refused = power.set_limit_w(500.0).unwrap_err().to_string();
    assert!(refused.contains("arm it first"), "{refused}");
    let clocks = dev.clocks_mut().unwrap();
    assert_eq!(clocks.supported_sm_clocks_mhz().unwrap(), vec![1200, 1980]);
    assert!(clocks.lock_sm_clocks_mhz(1200, 1200).is_err());
    assert!(limit_history(&fake).is_empty());
    assert_eq!(std::fs::read_dir(&state_dir).unwrap().count(), 0);

    // armed: the change goes through, with the state file written first
    dev.arm_guard(true, true).unwrap();
    dev.power_mut().unwrap().set_limit_w(500.0).unwrap();
    dev.clocks_mut()
        .unwrap()
        .lock_sm_clocks_mhz(1200, 1200)
        .unwrap();
    assert_eq!(limit_history(&fake), vec![500_000]);
    assert_eq!(std::fs::read_dir(&state_dir).unwrap().count(), 1);

    // restored: the limit and clocks as found, and no state file
    let report = dev.restore().unwrap();
    assert!(report.is_some());
    let state = FakeDevice::from_state_file(&fake).unwrap().state().unwrap();
    assert_eq!(state.limit_mw, 700_000);
    assert_eq!(state.locked_sm_mhz, None);
    assert_eq!(std::fs::read_dir(&state_dir).unwrap().count(), 0);
    assert_eq!(dev.restore().unwrap(), None);

    // the guard stays: a later change arms it again, and dropping the device restores
    dev.power_mut().unwrap().set_limit_w(400.0).unwrap();
    assert_eq!(std::fs::read_dir(&state_dir).unwrap().count(), 1);
    drop(dev);
    assert_eq!(
        limit_history(&fake),
        vec![500_000, 700_000, 400_000, 700_000]
    );
    assert_eq!(std::fs::read_dir(&state_dir).unwrap().count(), 0);
    std::env::remove_var(FAKE_NVML_ENV);
}
