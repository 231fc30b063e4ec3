//! Opens the device a sweep, a bench or your own code runs on: its backend, energy
//! meter, power control and clock, from plain options. This is the one place that
//! knows which crate provides which part, and where a meter is matched to a CUDA or
//! wgpu device — NVML by UUID or PCI bus id, amdsmi and hwmon by PCI address, never
//! by index — with the host's RAPL beside it. The `joulebench` command line, the
//! criterion benches and the examples all open devices through it.
//!
//! Each GPU backend is a cargo feature (`cuda`, `wgpu`, both on by default), so a
//! program that needs one builds only that one; the simulated device is always
//! there. Opening a backend this build lacks is an [`OpenError::Unavailable`].
//!
//! A GPU's power limit and clocks change only through its guard ([`OpenDevice::arm_guard`]),
//! which writes what it found to a state file first and puts it back on every exit path;
//! before that, its controls read and refuse changes.
//!
//! ```
//! use joulebench_device::{open, BackendKind, OpenOptions};
//!
//! let dev = open(&OpenOptions::new(BackendKind::Sim)).map_err(|e| e.to_string())?;
//! assert!(dev.backend.device().simulated);
//! # Ok::<(), String>(())
//! ```

mod device;
mod error;
mod gpu;
pub mod gpus;
mod identity;
mod options;
mod registry;
mod sim;
mod sweep;

pub use device::OpenDevice;
pub use error::{OpenError, RestoreFailed};
pub use identity::merged_identity;
pub use options::{BackendKind, OpenOptions};
pub use registry::{open, resolve_backend, BackendEntry, BACKENDS};
pub use sweep::{
    host_name, process_command_line, Change, PlannedRun, PlannedSweep, Sweep, SweepRun,
    SweepSetupError,
};

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::device::AdapterInfo;
    use joulebench_core::DeviceInfo;

    #[test]
    fn every_backend_has_one_row_and_its_name_reads_back() {
        for kind in [
            BackendKind::Sim,
            BackendKind::Wgpu,
            BackendKind::Cuda,
            BackendKind::Auto,
        ] {
            // a new variant must be added here, and (unless it is a choice like
            // `auto`) to the registry
            let rows = BACKENDS.iter().filter(|e| e.kind == kind).count();
            match kind {
                BackendKind::Auto => assert_eq!(rows, 0),
                BackendKind::Sim | BackendKind::Wgpu | BackendKind::Cuda => assert_eq!(rows, 1),
            }
            assert_eq!(kind.name().parse::<BackendKind>(), Ok(kind));
        }
        assert!("metal"
            .parse::<BackendKind>()
            .unwrap_err()
            .contains("cuda, wgpu, sim, auto"));
    }

    #[test]
    fn a_gpu_control_reads_but_changes_only_through_the_guard() {
        // the simulated device's own controls need no guard
        let mut dev = open(&OpenOptions::new(BackendKind::Sim)).unwrap();
        assert!(!dev.power_needs_permission());
        let power = dev.power_mut().unwrap();
        let limits = power.limits().unwrap();
        power.set_limit_w(limits.default_w * 0.8).unwrap();
        dev.arm_guard(false, false).unwrap();
        assert_eq!(dev.restore().unwrap(), None);
    }

    /// Run with `--no-default-features`: a backend left out of the build is a
    /// message, and `auto` falls back to the simulated device.
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    #[test]
    fn a_backend_this_build_lacks_is_a_message_and_auto_is_simulated() {
        for kind in [BackendKind::Cuda, BackendKind::Wgpu] {
            let err = open(&OpenOptions::new(kind)).err().unwrap();
            assert!(matches!(err, OpenError::Unavailable { .. }), "{err}");
            assert!(err.to_string().contains("feature"), "{err}");
        }
        assert_eq!(resolve_backend(BackendKind::Auto), BackendKind::Sim);
        let dev = open(&OpenOptions::new(BackendKind::Auto)).unwrap();
        assert!(dev.backend.device().simulated);
    }

    #[test]
    fn a_wgpu_adapter_takes_the_identity_nvml_gives_its_gpu() {
        let vulkan = DeviceInfo {
            name: "NVIDIA H200".into(),
            pci_bus_id: Some("0000:00:06.0".into()),
            adapter: Some(AdapterInfo {
                backend: "Vulkan".into(),
                ..AdapterInfo::default()
            }),
            ..DeviceInfo::default()
        };
        let nvml = DeviceInfo {
            name: "NVIDIA H200".into(),
            uuid: Some("GPU-a2b35a93-d69a-efca-a462-a1638a3ba7df".into()),
            pci_bus_id: Some("0000:00:06.0".into()),
            architecture: Some("Hopper".into()),
            compute_capability: Some("9.0".into()),
            driver: Some("580.159.04".into()),
            memory_bytes: Some(150_109_880_320),
            ..DeviceInfo::default()
        };
        let m = merged_identity(&vulkan, nvml.clone());
        assert_eq!(m.uuid, nvml.uuid);
        assert_eq!(m.architecture.as_deref(), Some("Hopper"));
        assert_eq!(m.memory_bytes, nvml.memory_bytes);
        assert_eq!(m.driver.as_deref(), Some("580.159.04"));
        assert_eq!(m.adapter.map(|a| a.backend).as_deref(), Some("Vulkan"));
        // and so the record's device key is the CUDA record's
        assert_eq!(merged_identity(&vulkan, nvml.clone()).key(), nvml.key());
    }
}
