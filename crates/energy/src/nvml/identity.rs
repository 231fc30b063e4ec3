//! Which GPU is which. NVML, CUDA and wgpu number devices differently (CUDA orders by
//! speed unless CUDA_DEVICE_ORDER=PCI_BUS_ID; CUDA_VISIBLE_DEVICES renumbers), so a
//! device is matched by UUID or PCI bus id, never by index, and both are normalised
//! first: "00000000:65:00.0" (NVML) and "0000:65:00.0" (CUDA, sysfs) are one device.

use crate::identity::{normalize_pci_bus_id, normalize_uuid, PciBusId};
use joulebench_core::DeviceInfo;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What NVML says a device is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    pub name: String,
    pub uuid: Option<String>,
    /// As NVML writes it, e.g. "00000000:65:00.0".
    pub pci_bus_id: Option<String>,
    pub architecture: Option<String>,
    pub compute_capability: Option<String>,
    pub driver_version: Option<String>,
    pub memory_bytes: Option<u64>,
    /// The fake device of the tests, not a GPU.
    #[serde(default)]
    pub fake: bool,
}

impl DeviceIdentity {
    pub fn to_device_info(&self) -> DeviceInfo {
        DeviceInfo {
            name: self.name.clone(),
            uuid: self.uuid.clone(),
            pci_bus_id: self
                .pci_bus_id
                .as_deref()
                .map(|p| normalize_pci_bus_id(p).unwrap_or_else(|| p.to_string())),
            architecture: self.architecture.clone(),
            compute_capability: self.compute_capability.clone(),
            driver: self.driver_version.clone(),
            memory_bytes: self.memory_bytes,
            adapter: None,
            cpu_emulation: false,
            simulated: false,
        }
    }

    /// "NVIDIA H100 80GB HBM3 (GPU-…, 0000:65:00.0)".
    pub fn describe(&self) -> String {
        let ids: Vec<&str> = [self.uuid.as_deref(), self.pci_bus_id.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if ids.is_empty() {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, ids.join(", "))
        }
    }

    pub fn device_kind(&self) -> &'static str {
        if self.fake {
            super::DEVICE_KIND_FAKE
        } else {
            super::DEVICE_KIND_NVML
        }
    }
}

/// What is known about a CUDA or wgpu device that the NVML device must share.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceMatch {
    pub uuid: Option<String>,
    pub pci_bus_id: Option<String>,
}

impl DeviceMatch {
    pub fn uuid(uuid: impl Into<String>) -> Self {
        DeviceMatch {
            uuid: Some(uuid.into()),
            pci_bus_id: None,
        }
    }

    pub fn pci_bus_id(id: impl Into<String>) -> Self {
        DeviceMatch {
            uuid: None,
            pci_bus_id: Some(id.into()),
        }
    }

    /// From a backend's device; `None` if it carries neither a UUID nor a PCI bus id
    /// (then there is no safe way to find its NVML device).
    pub fn from_device_info(info: &DeviceInfo) -> Option<Self> {
        let m = DeviceMatch {
            uuid: info.uuid.clone().filter(|u| !u.trim().is_empty()),
            pci_bus_id: info.pci_bus_id.clone().filter(|p| !p.trim().is_empty()),
        };
        (m.uuid.is_some() || m.pci_bus_id.is_some()).then_some(m)
    }

    /// The UUID decides where both sides have one (it is unique; a PCI address is
    /// only unique within one host); else the PCI bus id.
    pub fn matches(&self, id: &DeviceIdentity) -> bool {
        if let (Some(a), Some(b)) = (&self.uuid, &id.uuid) {
            return normalize_uuid(a) == normalize_uuid(b);
        }
        if let (Some(a), Some(b)) = (&self.pci_bus_id, &id.pci_bus_id) {
            return match (PciBusId::parse(a), PciBusId::parse(b)) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            };
        }
        false
    }
}

impl fmt::Display for DeviceMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.uuid, &self.pci_bus_id) {
            (Some(u), Some(p)) => write!(f, "UUID {u} / PCI {p}"),
            (Some(u), None) => write!(f, "UUID {u}"),
            (None, Some(p)) => write!(f, "PCI {p}"),
            (None, None) => f.write_str("(no UUID or PCI bus id)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_prefers_uuid_and_never_falls_back_past_a_uuid_mismatch() {
        let id = DeviceIdentity {
            name: "gpu".into(),
            uuid: Some("GPU-aaaa".into()),
            pci_bus_id: Some("00000000:65:00.0".into()),
            ..Default::default()
        };
        assert!(DeviceMatch::uuid("aaaa").matches(&id));
        assert!(DeviceMatch::pci_bus_id("0000:65:00.0").matches(&id));
        assert!(!DeviceMatch::pci_bus_id("0000:66:00.0").matches(&id));
        let wrong_uuid_same_pci = DeviceMatch {
            uuid: Some("GPU-bbbb".into()),
            pci_bus_id: Some("0000:65:00.0".into()),
        };
        assert!(!wrong_uuid_same_pci.matches(&id));
        assert!(!DeviceMatch::default().matches(&id));
    }

    #[test]
    fn a_device_without_uuid_or_pci_id_cannot_be_matched() {
        let info = DeviceInfo {
            name: "llvmpipe".into(),
            ..Default::default()
        };
        assert!(DeviceMatch::from_device_info(&info).is_none());
        let info = DeviceInfo {
            name: "cuda".into(),
            pci_bus_id: Some("0000:65:00.0".into()),
            ..Default::default()
        };
        assert_eq!(
            DeviceMatch::from_device_info(&info),
            Some(DeviceMatch::pci_bus_id("0000:65:00.0"))
        );
    }
}
