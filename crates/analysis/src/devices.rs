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

/// The distinct device descriptions of `records` in the order they first appear,
/// and which of them each record has.
fn distinct_devices(records: &[Record]) -> (Vec<&DeviceInfo>, Vec<usize>) {
    let mut devices: Vec<&DeviceInfo> = Vec::new();
    let mut of = Vec::with_capacity(records.len());
    for r in records {
        match devices.iter().position(|d| **d == r.device) {
            Some(i) => of.push(i),
            None => {
                of.push(devices.len());
                devices.push(&r.device);
            }
        }
    }
    (devices, of)
}

/// One key per physical GPU for every record: records of one GPU made through
/// several backends (CUDA names it by UUID, Vulkan by PCI address) share it; the
/// key chosen is the one with a UUID where any record has it.
pub fn physical_keys(records: &[Record]) -> Vec<String> {
    let (devices, of) = distinct_devices(records);
    let keys = physical_keys_of(&devices);
    of.into_iter().map(|i| keys[i].clone()).collect()
}

/// [`physical_keys`] of each distinct device description, given in the order the
/// records first show them.
pub(crate) fn physical_keys_of(seen: &[&DeviceInfo]) -> Vec<String> {
    let mut devices: Vec<&DeviceInfo> = Vec::new();
    for d in seen {
        if !devices.iter().any(|x| x.key() == d.key()) {
            devices.push(d);
        }
    }
    // devices with a UUID first, so they name their group
    devices.sort_by_key(|d| d.uuid.is_none());
    seen.iter()
        .map(|r| {
            devices
                .iter()
                .find(|d| same_physical_device(d, r))
                .map(|d| d.key())
                .unwrap_or_else(|| r.key())
        })
        .collect()
}

/// How tables name a device: its name, or name and UUID where two physical devices
/// share a name. Every record's own key and its physical device's key map to the
/// label, so one GPU seen through two backends has one label.
pub fn device_labels(records: &[Record]) -> BTreeMap<String, String> {
    let (devices, _) = distinct_devices(records);
    let physical = physical_keys_of(&devices);
    let keys: Vec<String> = devices.iter().map(|d| d.key()).collect();
    label_devices(
        devices
            .iter()
            .zip(&keys)
            .zip(&physical)
            .map(|((d, k), p)| (d.name.as_str(), k.as_str(), p.as_str())),
    )
}

/// [`device_labels`] from each device description's (name, own key, physical key).
/// A device's own key always has one physical key, so the order does not matter.
pub(crate) fn label_devices<'a>(
    devices: impl Iterator<Item = (&'a str, &'a str, &'a str)> + Clone,
) -> BTreeMap<String, String> {
    let mut by_name: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, _, physical) in devices.clone() {
        by_name.entry(name).or_default().insert(physical);
    }
    let mut labels = BTreeMap::new();
    for (name, keys) in by_name {
        let unique = keys.len() == 1;
        for key in keys {
            labels.insert(
                key.to_string(),
                if unique {
                    name.to_string()
                } else {
                    key.to_string()
                },
            );
        }
    }
    for (_, own, physical) in devices {
        if let Some(label) = labels.get(physical).cloned() {
            labels.insert(own.to_string(), label);
        }
    }
    labels
}
