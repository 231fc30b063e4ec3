//! Recommendations (docs/ARCHITECTURE.md §7), the rendering half: the table of the
//! best setting per precision, where each saving comes from (attribution), and the
//! Pareto front — each carrying the flags and known biases of the records behind
//! it, and what is simulated.

use crate::attribution::Against;
use crate::baseline::BatchDefault;
use crate::format::{opt, pct, sig};
use crate::levers::Lever;
use crate::recommend::{BaselineSpec, Objective, Recommendation, Setting};
use crate::setting::{GAPPED_FLAG, METER_CHECK_FLAG};
use crate::table::Table;
use joulebench_core::protocol::{ValidityFlag, WindowMethod};

pub const SIMULATED_NOTE: &str =
    "SIMULATED DATA: these figures come from joulebench's model device, not from a measurement.";

/// How the uncertainty column and the significance rule read, for notes.
pub const SIGNIFICANCE_NOTE: &str = "± is each figure's uncertainty: the run-to-run spread where --repeat measured it, else the spread within its run raised to the noise floor (1% by default, 3% for schema-1 gapped windows). A lever moves away from the baseline's value only when its own saving beats the combined uncertainty of the two figures compared; ties keep the baseline (no lock, no cap, the same precision).";

/// The default baseline named as tables say it.
pub fn describe_baseline(baseline: &BaselineSpec) -> String {
    baseline.describe("batch", BatchDefault::Near(1))
}

/// Notes on the flags of `settings` that a reader cannot look up in the record
/// table: the known biases of how the records were taken.
pub fn caveat_notes<'a>(settings: impl Iterator<Item = &'a Setting>) -> Vec<String> {
    let mut seen: Vec<&str> = Vec::new();
    for s in settings {
        for f in &s.flags {
            if !seen.contains(&f.as_str()) {
                seen.push(f);
            }
        }
    }
    let mut notes = Vec::new();
    if seen.contains(&GAPPED_FLAG) {
        notes.push(format!(
            "{GAPPED_FLAG}: {}; these figures read high, so compare them only with each other.",
            WindowMethod::Gapped.meaning()
        ));
    }
    if seen.contains(&ValidityFlag::AboveLimit.name()) {
        notes.push(format!(
            "{}: {}.",
            ValidityFlag::AboveLimit.name(),
            ValidityFlag::AboveLimit.meaning()
        ));
    }
    if seen.contains(&METER_CHECK_FLAG) {
        notes.push(format!(
            "{METER_CHECK_FLAG}: known only from --meter check records (the energy counter and integrated power over the same windows, their agreement given); such records are a check of the meter, never counted as extra runs."
        ));
    }
    notes
}

/// The recommendation table: per device and workload, the best setting of each
/// precision (the objective's overall choice marked `*`), each against the
/// baseline. Columns that would say the same on every row (no power caps swept,
/// one batch size, no flags, no repeats) are left out, and a note says what they
/// would have said.
pub fn recommendation_table(recs: &[Recommendation], objective: Objective) -> Table {
    recommendation_table_with(recs, objective, &BaselineSpec::default())
}

/// [`recommendation_table`], naming `baseline` in its notes.
pub fn recommendation_table_with(
    recs: &[Recommendation],
    objective: Objective,
    baseline: &BaselineSpec,
) -> Table {
    let mut t = Table::new(
        format!("Recommended settings ({})", objective.describe()),
        &[
            "device",
            "workload",
            "",
            "precision",
            "kernel",
            "batch",
            "power cap",
            "energy (pJ/FLOP)",
            "±",
            "throughput (TFLOP/s)",
            "avg power (W)",
            "energy saved",
            "slowdown",
            "baseline",
            "runs",
            "run-to-run spread",
            "flags",
        ],
    );
    if recs.iter().any(|r| r.simulated) {
        t.notes.push(SIMULATED_NOTE.into());
    }
    t.notes.push(format!(
        "One row per precision: its best setting by the objective; * marks the objective's choice over every precision. Energy saved and slowdown are against the baseline, {}; where the saving comes from is in the attribution table.",
        describe_baseline(baseline)
    ));
    t.notes.push(SIGNIFICANCE_NOTE.into());
    if recs.iter().any(|r| !r.ours_only.is_empty()) {
        t.notes.push(
            "ours only: no vendor kernel was measured at this precision, so its row speaks for our kernel, not for the precision; it is never starred over a precision the vendor's kernels were measured at."
                .into(),
        );
    }
    for r in recs {
        for n in r.significance_notes() {
            t.notes
                .push(format!("{} on {}: {n}.", r.workload, r.device));
        }
    }
    let clock_notes: Vec<String> = recs.iter().filter_map(clock_note).collect();
    if !clock_notes.is_empty() {
        t.notes.extend(clock_notes);
        t.notes.push(
            "Why a lower clock: dynamic power grows as f·V², and above the voltage knee V rises with f, so energy per FLOP falls as the clock comes down, until the fixed (idle and static) power of the longer run outweighs it."
                .into(),
        );
    }
    if recs
        .iter()
        .any(|r| r.per_precision.iter().any(|&i| r.settings[i].power_limited))
    {
        t.notes.push(
            "flags list cautions only. Settings that ran at the GPU's power limit (power-limited, with the clock it settled at) are the normal operating point of heavy work, not a caution."
                .into(),
        );
    }
    t.notes
        .extend(caveat_notes(recs.iter().flat_map(|r| {
            r.per_precision.iter().map(move |&i| &*r.settings[i])
        })));
    for r in recs {
        let base = r.baseline().map(|b| {
            format!(
                "{}: {} pJ/FLOP, {} TFLOP/s",
                b.label(),
                sig(b.picojoules_per_flop(), 3),
                sig(b.tflops, 3)
            )
        });
        for &i in &r.per_precision {
            let c = &r.settings[i];
            t.push(vec![
                r.device.clone(),
                r.workload.clone(),
                if i == r.chosen { "*".into() } else { "".into() },
                c.precision.to_string(),
                if r.is_ours_only(i) {
                    format!("{} (ours only)", c.kernel)
                } else {
                    c.kernel.clone()
                },
                c.batch_size.to_string(),
                c.cap_label(),
                sig(c.picojoules_per_flop(), 3),
                format!("{:.1}%", c.uncertainty.energy * 100.0),
                sig(c.tflops, 3),
                opt(c.average_w, 3),
                r.energy_saved_of(i).map(pct).unwrap_or_else(|| "–".into()),
                r.slowdown_of(i).map(pct).unwrap_or_else(|| "–".into()),
                if r.baseline == Some(i) {
                    "(this is the baseline)".into()
                } else {
                    base.clone().unwrap_or_else(|| "not measured".into())
                },
                c.runs.to_string(),
                c.run_to_run_spread
                    .map(|s| pct(s).trim_start_matches('+').to_string())
                    .unwrap_or_else(|| "–".into()),
                c.flags_label(),
            ]);
        }
    }
    let clock_rows: Vec<&Setting> = recs
        .iter()
        .flat_map(|r| r.per_precision.iter().map(move |&i| &*r.settings[i]))
        .collect();
    add_clock_column(&mut t, 7, clock_rows.into_iter());
    t.drop_uninformative_columns(&[
        "batch",
        "power cap",
        "runs",
        "run-to-run spread",
        "flags",
        "",
    ]);
    t
}

/// Where any setting locked a clock, an "SM clock" column at `at` (after the power
/// cap), `settings` giving each row's.
fn add_clock_column<'a>(t: &mut Table, at: usize, settings: impl Iterator<Item = &'a Setting>) {
    let settings: Vec<&Setting> = settings.collect();
    if !settings
        .iter()
        .any(|s| s.sm_clock_mhz.is_some() || s.mem_clock_mhz.is_some())
    {
        return;
    }
    t.headers.insert(at, "SM clock".into());
    for (row, s) in t.rows.iter_mut().zip(settings) {
        row.insert(at, s.clock_cell());
    }
}

/// Why a locked clock below the maximum was chosen: what the clock alone saves and
/// costs, against the same setting at the default clocks — nothing else.
fn clock_note(r: &Recommendation) -> Option<String> {
    let c = r.chosen();
    let locked = c.advised_sm_clock_mhz()?;
    let max = c.sm_clock_max_mhz.filter(|&m| locked < m)?;
    let effect = r
        .attribution
        .lever(Lever::Clock)
        .filter(|e| e.how == Against::ChosenWithout);
    let against = match effect {
        Some(e) => format!(
            "; the clock alone saves {} energy (±{:.1}%) at {} time against the same setting at the default clocks",
            pct(e.energy_saved?),
            e.uncertainty? * 100.0,
            pct(e.slowdown?)
        ),
        None => "; the same setting at the default clocks was not measured, so what the clock alone saves is not known".into(),
    };
    Some(format!(
        "{} on {}: the SM clock locked at {locked} MHz, below the maximum {max} MHz{against}.",
        r.workload, r.device
    ))
}

/// Where each recommendation's saving comes from: per lever that differs from the
/// baseline, what it alone saves and costs (against the setting that differs in
/// that lever alone), and all of them together.
pub fn attribution_table(recs: &[Recommendation]) -> Table {
    let mut t = Table::new(
        "Where the saving comes from: each lever on its own, against the setting that differs in that lever alone",
        &[
            "device",
            "workload",
            "lever",
            "change",
            "energy saved",
            "±",
            "slowdown",
            "beats the noise",
            "measured against",
        ],
    );
    if recs.iter().any(|r| r.simulated) {
        t.notes.push(SIMULATED_NOTE.into());
    }
    t.notes.push(
        "Each lever is measured with the others as chosen, so their savings do not add up; \"all together\" is the chosen setting against the baseline. Where the setting that differs in one lever alone was not measured, the baseline with that lever alone changed stands in."
            .into(),
    );
    for r in recs {
        let a = &r.attribution;
        for e in &a.levers {
            let against = match (e.how, e.against) {
                (_, Some(j)) => {
                    let s = &r.settings[j];
                    let what = match e.how {
                        Against::BaselineWith => "the baseline with this lever changed: ",
                        _ => "",
                    };
                    format!(
                        "{what}{}, {}, clock {}",
                        s.label(),
                        s.cap_label(),
                        s.clock_label()
                    )
                }
                (_, None) => "not measured".into(),
            };
            t.push(vec![
                r.device.clone(),
                r.workload.clone(),
                e.lever.name().into(),
                match e.unbound_clock_mhz {
                    Some(seen) => {
                        format!("{} → {} (not binding: ran at {seen:.0} MHz)", e.from, e.to)
                    }
                    None => format!("{} → {}", e.from, e.to),
                },
                e.energy_saved.map(pct).unwrap_or_else(|| "–".into()),
                e.uncertainty
                    .map(|u| format!("{:.1}%", u * 100.0))
                    .unwrap_or_else(|| "–".into()),
                e.slowdown.map(pct).unwrap_or_else(|| "–".into()),
                match e.significant() {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "–".into(),
                },
                against,
            ]);
        }
        let (saved, slower) = match r.baseline {
            Some(_) => (a.energy_saved, a.slowdown),
            None => (None, None),
        };
        t.push(vec![
            r.device.clone(),
            r.workload.clone(),
            "all together".into(),
            if a.levers.is_empty() {
                "none: the baseline is kept".into()
            } else {
                a.levers
                    .iter()
                    .map(|e| e.lever.name())
                    .collect::<Vec<_>>()
                    .join(" + ")
            },
            saved.map(pct).unwrap_or_else(|| "–".into()),
            a.uncertainty
                .map(|u| format!("{:.1}%", u * 100.0))
                .unwrap_or_else(|| "–".into()),
            slower.map(pct).unwrap_or_else(|| "–".into()),
            a.uncertainty
                .zip(saved)
                .map(|(u, s)| if s > u { "yes" } else { "no" }.to_string())
                .unwrap_or_else(|| "–".into()),
            r.baseline()
                .map(|b| {
                    format!(
                        "the baseline: {}, {}, clock {}",
                        b.label(),
                        b.cap_label(),
                        b.clock_label()
                    )
                })
                .unwrap_or_else(|| "the baseline was not measured".into()),
        ]);
    }
    t
}

/// The Pareto front of each device and workload, fastest first; `*` marks the choice.
pub fn pareto_table(recs: &[Recommendation]) -> Table {
    let mut t = Table::new(
        "Pareto front over (time, energy): no other setting is both faster and cheaper",
        &[
            "device",
            "workload",
            "",
            "kernel",
            "precision",
            "batch",
            "power cap",
            "energy (pJ/FLOP)",
            "±",
            "throughput (TFLOP/s)",
            "avg power (W)",
            "flags",
        ],
    );
    if recs.iter().any(|r| r.simulated) {
        t.notes.push(SIMULATED_NOTE.into());
    }
    t.notes.extend(caveat_notes(
        recs.iter()
            .flat_map(|r| r.front.iter().map(move |&i| &*r.settings[i])),
    ));
    if recs.iter().any(|r| !r.front.contains(&r.chosen)) {
        t.notes.push(
            "A * row off the front is the advice: the setting on the front that beats it does so by less than the noise, in a lever the advice keeps at the baseline's value."
                .into(),
        );
    }
    let rows_of = |r: &Recommendation| -> Vec<usize> {
        let mut rows = r.front.clone();
        if !rows.contains(&r.chosen) {
            rows.push(r.chosen);
            rows.sort_by(|&a, &b| {
                r.settings[a]
                    .seconds_per_flop
                    .total_cmp(&r.settings[b].seconds_per_flop)
            });
        }
        rows
    };
    for r in recs {
        for i in rows_of(r) {
            let s = &r.settings[i];
            t.push(vec![
                r.device.clone(),
                r.workload.clone(),
                if i == r.chosen { "*".into() } else { "".into() },
                if r.is_ours_only(i) {
                    format!("{} (ours only)", s.kernel)
                } else {
                    s.kernel.clone()
                },
                s.precision.to_string(),
                s.batch_size.to_string(),
                s.cap_label(),
                sig(s.picojoules_per_flop(), 3),
                format!("{:.1}%", s.uncertainty.energy * 100.0),
                sig(s.tflops, 3),
                opt(s.average_w, 3),
                s.flags_label(),
            ]);
        }
    }
    let rows: Vec<&Setting> = recs
        .iter()
        .flat_map(|r| rows_of(r).into_iter().map(move |i| &*r.settings[i]))
        .collect();
    add_clock_column(&mut t, 7, rows.into_iter());
    t.drop_uninformative_columns(&["flags"]);
    t
}

/// One cap and one clock per device, for its mix of workloads, with each
/// workload's setting under them.
pub fn device_table(
    devices: &[crate::device_setting::DeviceSetting],
    recs: &[Recommendation],
) -> Table {
    let mut t = Table::new(
        "One setting per GPU: a power cap and a clock for the device's mix of workloads",
        &[
            "device",
            "power cap",
            "SM clock",
            "mix",
            "energy saved (mix)",
            "±",
            "slowdown (mix)",
            "workload",
            "precision",
            "kernel",
            "batch",
            "energy (pJ/FLOP)",
            "energy saved",
            "slowdown",
            "flags",
        ],
    );
    if devices.iter().any(|d| d.simulated) {
        t.notes.push(SIMULATED_NOTE.into());
    }
    t.notes.push(
        "A GPU has one power limit and one clock: the settings file gives each device these, chosen by the same objective and significance rule over the mix; energy saved (mix) is against the mix at the baseline's cap and clocks, each workload at its chosen precision, kernel and batch. Energy saved per workload is against its baseline. Each workload's own best stays in the recommendation table."
            .into(),
    );
    for d in devices {
        for r in &d.reverted {
            t.notes.push(format!("{}: {}.", d.device, r.note()));
        }
        for n in &d.notes {
            t.notes.push(format!("{}: {n}.", d.device));
        }
        for (k, e) in d.entries.iter().enumerate() {
            let r = &recs[e.rec];
            let s = &r.settings[e.setting];
            let head = |v: String| if k == 0 { v } else { String::new() };
            t.push(vec![
                head(d.device.clone()),
                head(d.cap_label()),
                head(d.clock_label()),
                head(d.mix.clone()),
                head(d.energy_saved.map(pct).unwrap_or_else(|| "–".into())),
                head(
                    d.uncertainty
                        .map(|u| format!("{:.1}%", u * 100.0))
                        .unwrap_or_else(|| "–".into()),
                ),
                head(d.slowdown.map(pct).unwrap_or_else(|| "–".into())),
                r.workload.clone(),
                s.precision.to_string(),
                if r.is_ours_only(e.setting) {
                    format!("{} (ours only)", s.kernel)
                } else {
                    s.kernel.clone()
                },
                s.batch_size.to_string(),
                sig(s.picojoules_per_flop(), 3),
                e.attribution
                    .energy_saved
                    .map(pct)
                    .unwrap_or_else(|| "–".into()),
                e.attribution
                    .slowdown
                    .map(pct)
                    .unwrap_or_else(|| "–".into()),
                s.flags_label(),
            ]);
        }
    }
    t.drop_uninformative_columns(&["batch", "flags"]);
    t
}

/// What a plot's subtitle adds so the flags and known biases of its points travel
/// with it: " · flagged: gapped, above-limit · ours only: f16", or nothing.
pub fn plot_caveat<'a>(
    settings: impl Iterator<Item = &'a Setting>,
    ours_only: &[joulebench_core::Precision],
) -> String {
    let mut flags: Vec<&str> = Vec::new();
    for s in settings {
        for f in &s.flags {
            if !flags.contains(&f.as_str()) {
                flags.push(f);
            }
        }
    }
    let mut out = String::new();
    if !flags.is_empty() {
        out.push_str(&format!(" · flagged: {}", flags.join(", ")));
    }
    if !ours_only.is_empty() {
        let names: Vec<String> = ours_only.iter().map(|p| p.to_string()).collect();
        out.push_str(&format!(" · ours only: {}", names.join(", ")));
    }
    out
}
