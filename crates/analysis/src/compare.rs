//! Hardware comparison for selection reviews: per workload and precision, devices
//! ranked by joules per FLOP, each at its own best valid setting, with its throughput
//! and what an exaFLOP of that work costs in kWh, money and CO₂e (`cost`).

use crate::cost::{CostInputs, Unit};
use crate::digest::SettingsDigest;
use crate::format::{opt, sig};
use crate::setting::Setting;
use crate::significance::NoiseFloor;
use crate::table::Table;
use joulebench_core::record::Record;
use joulebench_core::Precision;
use std::collections::BTreeMap;

/// Which settings compete for a device's place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapChoice {
    /// Only points at the default power limit: the device as it ships.
    Default,
    /// Any cap: the device as it could be configured.
    Any,
}

/// One device's entry in a ranking.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub device: String,
    pub simulated: bool,
    /// The device's best setting for this workload and precision.
    pub best: Setting,
    /// No vendor kernel was measured on this device at this workload and precision:
    /// the entry ranks our kernel, not the device (ranked after those that have one).
    pub ours_only: bool,
}

/// Devices ranked for one workload and precision, least energy first.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranking {
    pub workload: String,
    pub precision: Precision,
    pub entries: Vec<Entry>,
}

/// Rank devices per workload and precision by J/FLOP of their best valid setting
/// (measured, with energy; flags are shown, not filtered). Ties go to the faster;
/// entries of our kernels only (no vendor kernel measured there) rank after the rest.
pub fn compare(records: &[Record], cap: CapChoice) -> Vec<Ranking> {
    compare_digest(&SettingsDigest::of(records), cap)
}

/// [`compare`] of the records a digest has taken in.
pub fn compare_digest(digest: &SettingsDigest, cap: CapChoice) -> Vec<Ranking> {
    let labels = digest.device_labels();
    // (workload, precision) → device key → best so far
    let mut best: BTreeMap<(String, Precision), BTreeMap<String, Entry>> = BTreeMap::new();
    let physical = digest.physical_keys();
    let vendor_measured: std::collections::BTreeSet<(String, Precision, String)> = digest
        .vendor_measured()
        .map(|(g, p, d)| {
            (
                digest.string(g).to_string(),
                p,
                physical[d as usize].clone(),
            )
        })
        .collect();
    for (head, runs) in digest.setting_runs() {
        let Some(s) = Setting::from_parts(digest, head, &runs, NoiseFloor::default()) else {
            continue;
        };
        let group = digest.string(head.group).to_string();
        let precision = head.precision;
        // "as it ships": the default limit and the default (unlocked) clocks
        let as_shipped = s.is_default_cap && s.sm_clock_mhz.is_none() && s.mem_clock_mhz.is_none();
        if cap == CapChoice::Default && !as_shipped {
            continue;
        }
        let key = physical[head.device as usize].clone();
        let device = labels.get(&key).cloned().unwrap_or_else(|| key.clone());
        let slot = best.entry((group.clone(), precision)).or_default();
        let better = |old: &Entry| {
            s.joules_per_flop
                .total_cmp(&old.best.joules_per_flop)
                .then(s.seconds_per_flop.total_cmp(&old.best.seconds_per_flop))
                .is_lt()
        };
        if slot.get(&key).is_none_or(better) {
            let ours_only = !vendor_measured.contains(&(group, precision, key.clone()));
            slot.insert(
                key,
                Entry {
                    device,
                    simulated: head.simulated,
                    ours_only,
                    best: s,
                },
            );
        }
    }
    best.into_iter()
        .map(|((workload, precision), devices)| {
            let mut entries: Vec<Entry> = devices.into_values().collect();
            entries.sort_by(|a, b| {
                a.ours_only
                    .cmp(&b.ours_only)
                    .then(a.best.joules_per_flop.total_cmp(&b.best.joules_per_flop))
                    .then(a.best.seconds_per_flop.total_cmp(&b.best.seconds_per_flop))
            });
            Ranking {
                workload,
                precision,
                entries,
            }
        })
        .collect()
}

/// The setting beside its kernel: power cap, locked clocks and batch where not 1.
fn setting_cell(s: &Setting) -> String {
    let mut parts = vec![s.cap_label()];
    if s.sm_clock_mhz.is_some() || s.mem_clock_mhz.is_some() {
        parts.push(s.clock_label());
    }
    if s.batch_size != 1 {
        parts.push(format!("batch {}", s.batch_size));
    }
    parts.join(" · ")
}

/// The comparison as one table; rows grouped by workload and precision, rank 1 first.
/// The columns a selection committee reads: who, at which setting, energy with its
/// throughput and power beside it, how far from the best, and what it costs.
pub fn comparison_table(rankings: &[Ranking], cap: CapChoice, costs: &CostInputs) -> Table {
    let mut headers: Vec<String> = [
        "workload",
        "precision",
        "rank",
        "device",
        "data",
        "kernel",
        "setting",
        "energy (pJ/FLOP)",
        "throughput (TFLOP/s)",
        "avg power (W)",
        "energy vs best (×)",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect();
    headers.extend(costs.headers(Unit::ExaFlop));
    headers.push("flags".into());
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut t = Table::new(
        "Devices ranked by energy per FLOP (least first)",
        &header_refs,
    );

    let any_sim = rankings
        .iter()
        .flat_map(|r| &r.entries)
        .any(|e| e.simulated);
    let any_real = rankings
        .iter()
        .flat_map(|r| &r.entries)
        .any(|e| !e.simulated);
    if any_sim && any_real {
        t.notes.push(
            "MIXED DATA: rows marked SIMULATED come from joulebench's model device, not from a measurement; \
             do not read them as a hardware comparison."
                .into(),
        );
    } else if any_sim {
        t.notes.push("SIMULATED DATA: these figures come from joulebench's model device, not from a measurement.".into());
    }
    t.notes.push(match cap {
        CapChoice::Default => {
            "Each device at its best valid setting (kernel, batch) at the default power limit; \
                               `--cap any` lets capped settings compete."
                .into()
        }
        CapChoice::Any => {
            "Each device at its best valid setting over every kernel, batch, power cap and locked clock measured."
                .into()
        }
    });
    t.notes.push(costs.note());
    if rankings
        .iter()
        .flat_map(|r| &r.entries)
        .any(|e| e.ours_only)
    {
        t.notes.push(
            "ours only: no vendor kernel was measured on that device at that precision, so the row ranks our kernel, not the device; such rows rank after the others."
                .into(),
        );
    }
    t.notes.extend(crate::recommend_table::caveat_notes(
        rankings
            .iter()
            .flat_map(|r| r.entries.iter().map(|e| &e.best)),
    ));

    for r in rankings {
        let Some(first) = r.entries.first() else {
            continue;
        };
        let best_jpf = first.best.joules_per_flop;
        for (i, e) in r.entries.iter().enumerate() {
            let s = &e.best;
            let mut row = vec![
                r.workload.clone(),
                r.precision.to_string(),
                (i + 1).to_string(),
                e.device.clone(),
                if e.simulated {
                    "SIMULATED".into()
                } else {
                    "measured".into()
                },
                if e.ours_only {
                    format!("{} (ours only)", s.kernel)
                } else {
                    s.kernel.clone()
                },
                setting_cell(s),
                sig(s.picojoules_per_flop(), 3),
                sig(s.tflops, 3),
                opt(s.average_w, 3),
                format!("{:.2}", s.joules_per_flop / best_jpf),
            ];
            row.extend(costs.cells(&costs.per_exaflop(s.joules_per_flop)));
            row.push(s.flags_label());
            t.push(row);
        }
    }
    if !(any_sim && any_real) {
        // every row is of one kind, which the first note says
        if let Some(col) = t.headers.iter().position(|h| h == "data") {
            t.headers.remove(col);
            for row in &mut t.rows {
                row.remove(col);
            }
        }
    }
    t.drop_uninformative_columns(&["setting", "flags"]);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::rec;

    fn records() -> Vec<Record> {
        vec![
            rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0),
            rec("GPU A", false, Precision::Bf16, "60%", 450.0, 0.7),
            rec("GPU B", false, Precision::Bf16, "default", 400.0, 0.8),
            rec("GPU B", false, Precision::Bf16, "60%", 300.0, 0.75),
            rec("GPU B", false, Precision::F32, "default", 50.0, 9.0),
        ]
    }

    #[test]
    fn ranks_at_the_default_cap_unless_any_cap_is_asked() {
        let r = compare(&records(), CapChoice::Default);
        assert_eq!(r.len(), 2); // bf16 and f32 of one workload
        let bf16 = r.iter().find(|x| x.precision == Precision::Bf16).unwrap();
        let order: Vec<&str> = bf16.entries.iter().map(|e| e.device.as_str()).collect();
        assert_eq!(order, ["GPU B", "GPU A"]);
        assert!(bf16.entries.iter().all(|e| e.best.is_default_cap));
        let f32 = r.iter().find(|x| x.precision == Precision::F32).unwrap();
        assert_eq!(f32.entries.len(), 1);

        let any = compare(&records(), CapChoice::Any);
        let bf16 = any.iter().find(|x| x.precision == Precision::Bf16).unwrap();
        let order: Vec<(&str, &str)> = bf16
            .entries
            .iter()
            .map(|e| (e.device.as_str(), e.best.cap.as_str()))
            .collect();
        assert_eq!(order, [("GPU A", "60%"), ("GPU B", "60%")]);
    }

    #[test]
    fn equal_energy_ranks_the_faster_first() {
        let v = vec![
            rec("GPU A", false, Precision::Bf16, "default", 300.0, 1.0),
            rec("GPU B", false, Precision::Bf16, "default", 500.0, 1.0),
        ];
        let r = compare(&v, CapChoice::Default);
        assert_eq!(r[0].entries[0].device, "GPU B");
    }

    #[test]
    fn table_shows_costs_and_marks_simulated_rows() {
        let mut v = records();
        v.push(rec(
            "sim-h100 (simulated)",
            true,
            Precision::Bf16,
            "default",
            700.0,
            0.5,
        ));
        let costs = CostInputs {
            price: Some(crate::cost::Price {
                per_kwh: 0.30,
                currency: "USD".into(),
            }),
            grid_gco2e_per_kwh: Some(400.0),
            pue: Some(1.5),
        };
        let t = comparison_table(&compare(&v, CapChoice::Default), CapChoice::Default, &costs);
        let col = |name: &str| t.headers.iter().position(|h| h == name).unwrap();
        // precisions in their canonical order: f32 first, then bf16
        assert_eq!(t.rows[0][col("precision")], "f32");
        let bf16: Vec<&Vec<String>> = t
            .rows
            .iter()
            .filter(|r| r[col("precision")] == "bf16")
            .collect();
        let ranks: Vec<&str> = bf16.iter().map(|r| r[col("rank")].as_str()).collect();
        assert_eq!(ranks, ["1", "2", "3"]);
        let first = bf16[0];
        assert_eq!(first[col("device")], "sim-h100 (simulated)");
        assert_eq!(first[col("data")], "SIMULATED");
        assert_eq!(bf16[1][col("data")], "measured");
        assert!(t.notes[0].starts_with("MIXED DATA"));
        // GPU B bf16 at default: 0.8 pJ/FLOP → 0.2222 kWh at the board, × PUE 1.5 =
        // 0.3333 kWh, 0.100 USD, 0.133 kg; 0.8 / 0.5 = 1.60 × the best
        let b = bf16[1];
        assert_eq!(b[col("device")], "GPU B");
        assert_eq!(b[col("energy (pJ/FLOP)")], "0.800");
        assert_eq!(b[col("throughput (TFLOP/s)")], "400");
        assert_eq!(b[col("energy vs best (×)")], "1.60");
        assert_eq!(b[col("energy at PUE 1.50 (kWh per 10¹⁸ FLOP)")], "0.333");
        assert_eq!(b[col("cost (USD per 10¹⁸ FLOP)")], "0.100");
        assert_eq!(b[col("CO₂e (kg per 10¹⁸ FLOP)")], "0.133");
        // one kernel and setting on every row: said once in a note, not in 17 columns
        assert!(!t
            .headers
            .iter()
            .any(|h| h == "setting" || h == "efficiency (GFLOP/J)"));
        assert!(
            t.notes.iter().any(|n| n.contains("PUE of 1.50")),
            "{:?}",
            t.notes
        );
    }
}
