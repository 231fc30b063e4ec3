//! Which records come from one GPU, and how tables name it. Every grouping of
//! the analysis (recommendations, repeats, comparisons, reports) keys devices the
//! same way, so it lives here rather than in any one of them.

use joulebench_core::identity::same_physical_device;
use joulebench_core::record::Record;
use joulebench_core::DeviceInfo;
use std::collections::{BTreeMap, BTreeSet};

/// Two records measured on one physical (or simulated) GPU.
pub fn same_device(a: &Record, b: &Record) -> bool {
    same_physical_device(&a.device, &b.device)
}

/// One key per physical GPU for every record: records of one GPU made through
/// several backends (CUDA names it by UUID, Vulkan by PCI address) share it; the
/// key chosen is the one with a UUID where any record has it.
pub fn physical_keys(records: &[Record]) -> Vec<String> {
    let mut devices: Vec<&DeviceInfo> = Vec::new();
    for r in records {
        if !devices.iter().any(|d| d.key() == r.device.key()) {
            devices.push(&r.device);
        }
    }
    // devices with a UUID first, so they name their group
    devices.sort_by_key(|d| d.uuid.is_none());
    records
        .iter()
        .map(|r| {
            devices
                .iter()
                .find(|d| same_physical_device(d, &r.device))
                .map(|d| d.key())
                .unwrap_or_else(|| r.device.key())
        })
        .collect()
}

/// How tables name a device: its name, or name and UUID where two physical devices
/// share a name. Every record's own key and its physical device's key map to the
/// label, so one GPU seen through two backends has one label.
pub fn device_labels(records: &[Record]) -> BTreeMap<String, String> {
    let physical = physical_keys(records);
    let mut by_name: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (r, key) in records.iter().zip(&physical) {
        by_name
            .entry(r.device.name.clone())
            .or_default()
            .insert(key.clone());
    }
    let mut labels = BTreeMap::new();
    for (name, keys) in by_name {
        let unique = keys.len() == 1;
        for key in keys {
            labels.insert(key.clone(), if unique { name.clone() } else { key });
        }
    }
    for (r, key) in records.iter().zip(&physical) {
        if let Some(label) = labels.get(key).cloned() {
            labels.insert(r.device.key(), label);
        }
    }
    labels
}
