//! One spelling for the identities every vendor's tools give a GPU — a PCI address
//! (sysfs, NVML, CUDA, wgpu, amdsmi) and a UUID — so a meter, a power control or a
//! state file is matched to its device by what it is, never by an index, and the
//! records of one GPU made through several backends are known to be one GPU.

use crate::device::DeviceInfo;
use std::fmt;

/// A PCI address: domain, bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciBusId {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciBusId {
    /// Accepts "00000000:65:00.0", "0000:65:00.0" and "65:00.0" (domain 0), any case.
    pub fn parse(s: &str) -> Option<PciBusId> {
        let s = s.trim();
        let (head, function) = s.rsplit_once('.')?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, dev] => (*d, *b, *dev),
            [b, dev] => ("0", *b, *dev),
            _ => return None,
        };
        let hex = |x: &str, max_len: usize| -> Option<u32> {
            if x.is_empty() || x.len() > max_len {
                return None;
            }
            u32::from_str_radix(x, 16).ok()
        };
        let device = hex(device, 2)?;
        let function = hex(function, 1)?;
        if device > 0x1f || function > 7 {
            return None;
        }
        Some(PciBusId {
            domain: hex(domain, 8)?,
            bus: u8::try_from(hex(bus, 2)?).ok()?,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciBusId {
    /// The sysfs form, "0000:65:00.0" (a wider domain where it needs one).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// One spelling for every PCI bus id: "0000:65:00.0". `None` if it is not one.
pub fn normalize_pci_bus_id(s: &str) -> Option<String> {
    PciBusId::parse(s).map(|p| p.to_string())
}

/// One spelling for a GPU UUID: lower-case hex digits, without the "GPU-" prefix or
/// dashes, so "GPU-8ba3…" (NVML, nvidia-smi) equals the bare form CUDA's 16 bytes print
/// as. MIG UUIDs keep their "mig-" prefix: a MIG instance is not its parent GPU.
pub fn normalize_uuid(s: &str) -> String {
    let t = s.trim().to_ascii_lowercase();
    let (prefix, rest) = if let Some(r) = t.strip_prefix("mig-") {
        ("mig-", r)
    } else {
        ("", t.strip_prefix("gpu-").unwrap_or(&t))
    };
    let digits: String = rest.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    format!("{prefix}{digits}")
}

/// Whether two records' devices are one physical GPU: the same UUID, or the same
/// PCI address where their UUIDs (if both have one) do not disagree. The simulated
/// device's PCI-like ids are compared the same way.
pub fn same_physical_device(a: &DeviceInfo, b: &DeviceInfo) -> bool {
    match (&a.uuid, &b.uuid) {
        (Some(x), Some(y)) if normalize_uuid(x) == normalize_uuid(y) => return true,
        (Some(_), Some(_)) => return false,
        _ => {}
    }
    let pci = |d: &DeviceInfo| {
        d.pci_bus_id
            .as_deref()
            .map(|p| normalize_pci_bus_id(p).unwrap_or_else(|| p.to_ascii_lowercase()))
    };
    match (pci(a), pci(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.key() == b.key(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_bus_ids_in_every_spelling_are_one_device() {
        let nvml = PciBusId::parse("00000000:65:00.0").unwrap();
        let cuda = PciBusId::parse("0000:65:00.0").unwrap();
        let short = PciBusId::parse("65:00.0").unwrap();
        let upper = PciBusId::parse("0000:B3:00.0").unwrap();
        assert_eq!(nvml, cuda);
        assert_eq!(cuda, short);
        assert_eq!(upper.bus, 0xb3);
        assert_eq!(nvml.to_string(), "0000:65:00.0");
        assert_eq!(
            normalize_pci_bus_id("00000001:65:1f.7").as_deref(),
            Some("0001:65:1f.7")
        );
        for bad in [
            "",
            "65",
            "0000:65:00",
            "zz:00.0",
            "0000:165:00.0",
            "0000:65:20.0",
            "0000:65:00.8",
        ] {
            assert!(PciBusId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn one_gpu_through_two_backends_is_one_device() {
        let cuda = DeviceInfo {
            name: "NVIDIA H200".into(),
            uuid: Some("GPU-a2b35a93-d69a-efca-a462-a1638a3ba7df".into()),
            pci_bus_id: Some("0000:00:06.0".into()),
            ..DeviceInfo::default()
        };
        let vulkan = DeviceInfo {
            name: "NVIDIA H200".into(),
            pci_bus_id: Some("00000000:00:06.0".into()),
            ..DeviceInfo::default()
        };
        let other = DeviceInfo {
            pci_bus_id: Some("0000:00:07.0".into()),
            ..vulkan.clone()
        };
        assert!(same_physical_device(&cuda, &vulkan));
        assert!(!same_physical_device(&cuda, &other));
        let twin = DeviceInfo {
            uuid: Some("GPU-ffff".into()),
            ..cuda.clone()
        };
        assert!(
            !same_physical_device(&cuda, &twin),
            "UUIDs that differ are two GPUs"
        );
    }

    #[test]
    fn uuids_compare_without_prefix_case_or_dashes() {
        assert_eq!(
            normalize_uuid("GPU-8BA3C2E1-0a1b-2c3d-4e5f-60718293a4b5"),
            normalize_uuid("8ba3c2e10a1b2c3d4e5f60718293a4b5")
        );
        assert_ne!(
            normalize_uuid("MIG-8ba3c2e1-0a1b-2c3d-4e5f-60718293a4b5"),
            normalize_uuid("GPU-8ba3c2e1-0a1b-2c3d-4e5f-60718293a4b5")
        );
    }
}
