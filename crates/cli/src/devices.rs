//! `joulebench devices`: every backend, device, energy meter and power control
//! found, and for each one not found, why.

use crate::args::DevicesArgs;
use crate::error::{runtime, CliError};
use joulebench_core::Backend;
use joulebench_energy::sim::{SimDevice, PROFILES};
use serde::Serialize;

/// One backend (or meter) and what it found.
#[derive(Serialize, Debug)]
pub struct Section {
    pub name: String,
    pub available: bool,
    /// Why it is not available.
    pub reason: Option<String>,
    pub entries: Vec<Entry>,
}

#[derive(Serialize, Debug)]
pub struct Entry {
    pub id: String,
    pub name: String,
    pub details: Vec<(String, String)>,
}

fn sim_section() -> Section {
    let entries = PROFILES
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let dev = SimDevice::open(p.name, i, 0).ok()?;
            let kernels = dev.backend.kernels();
            Some(Entry {
                id: p.name.to_string(),
                name: format!("{} (simulated)", p.name),
                details: vec![
                    ("model".into(), p.description.into()),
                    ("power limit".into(), format!("{:.0}–{:.0} W, default {:.0} W", p.min_cap_w, p.max_cap_w, p.default_cap_w)),
                    (
                        "kernels".into(),
                        kernels
                            .iter()
                            .map(|k| format!("{} ({})", k.name, k.precisions.iter().map(|p| p.name()).collect::<Vec<_>>().join(",")))
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                    ("energy meter".into(), "simulated counter (1 mJ, 100 ms updates)".into()),
                    ("power control".into(), "simulated (needs no rights)".into()),
                ],
            })
        })
        .collect();
    Section { name: "sim".into(), available: true, reason: None, entries }
}

pub fn sections() -> Vec<Section> {
    vec![sim_section()]
}

pub fn run(args: &DevicesArgs) -> Result<(), CliError> {
    let sections = sections();
    if args.json {
        let text = serde_json::to_string_pretty(&sections).map_err(runtime)?;
        println!("{text}");
        return Ok(());
    }
    for s in &sections {
        match (&s.available, &s.reason) {
            (true, _) => println!("{}: available", s.name),
            (false, Some(r)) => println!("{}: not available — {r}", s.name),
            (false, None) => println!("{}: not available", s.name),
        }
        for e in &s.entries {
            println!("  [{}] {}", e.id, e.name);
            for (k, v) in &e.details {
                println!("      {k}: {v}");
            }
        }
    }
    Ok(())
}
