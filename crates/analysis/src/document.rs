//! The Markdown report a review pastes as it is: what was measured on which devices
//! under which protocol, the recommendations, what the work costs (facility energy,
//! money, CO₂e; per token where `model` records are there), the plots, every result
//! with its validity flags explained, and the commands that produced the data as the
//! user typed them.

use crate::cost::{CostInputs, Unit};
use crate::format::{opt, sig};
use crate::recommend::{
    device_labels, recommend_with, BaselineSpec, GroupBy, Objective, Recommendation,
};
use crate::recommend_table::{pareto_table, recommendation_table_with};
use crate::report::{records_table, status_line};
use crate::step::StepRecommendation;
use crate::table::{Table, TableFormat};
use joulebench_core::protocol::{ValidityFlag, WindowMethod};
use joulebench_core::record::Record;
use joulebench_core::ProtocolConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// A plot as the document links it: paths as they should appear in the Markdown.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotLink {
    pub title: String,
    pub png: String,
    pub svg: String,
}

/// A results file and how many records it gave.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSummary {
    pub path: String,
    pub records: usize,
}

fn join_set(items: impl IntoIterator<Item = String>) -> String {
    let set: BTreeSet<String> = items.into_iter().filter(|s| !s.is_empty()).collect();
    if set.is_empty() {
        "–".into()
    } else {
        set.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// One row per device: identity, meter, idle power and the caps that were swept.
pub fn devices_table(records: &[Record]) -> Table {
    let mut t = Table::new(
        "Devices",
        &[
            "device",
            "data",
            "architecture",
            "compute capability",
            "driver",
            "memory (GiB)",
            "backends",
            "hosts",
            "energy meter",
            "meter update (s)",
            "idle power (W)",
            "default power limit (W)",
            "power caps swept",
        ],
    );
    let labels = device_labels(records);
    let physical = crate::recommend::physical_keys(records);
    let mut by_device: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for (r, key) in records.iter().zip(physical) {
        by_device.entry(key).or_default().push(r);
    }
    for (key, rs) in by_device {
        // the fullest description of the device among its records (CUDA's, where
        // a wgpu record of the same GPU lacks the architecture and memory)
        let d = &rs
            .iter()
            .max_by_key(|r| {
                [
                    r.device.uuid.is_some(),
                    r.device.architecture.is_some(),
                    r.device.memory_bytes.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count()
            })
            .unwrap_or(&rs[0])
            .device;
        let data = if rs.iter().any(|r| r.simulated) {
            "SIMULATED"
        } else if d.cpu_emulation {
            "CPU emulation"
        } else {
            "measured"
        };
        t.push(vec![
            labels.get(&key).cloned().unwrap_or(key),
            data.into(),
            d.architecture.clone().unwrap_or_else(|| "–".into()),
            d.compute_capability.clone().unwrap_or_else(|| "–".into()),
            driver_label(d.driver.as_deref(), &rs),
            opt(d.memory_bytes.map(|b| b as f64 / (1u64 << 30) as f64), 3),
            join_set(rs.iter().map(|r| r.backend.clone())),
            join_set(rs.iter().map(|r| r.host.clone())),
            join_set(rs.iter().map(|r| r.meter.source.name().to_string())),
            join_set(rs.iter().map(|r| sig(r.meter.update_period_s, 3))),
            join_set(rs.iter().filter_map(|r| r.idle.map(|i| sig(i.watts, 3)))),
            join_set(
                rs.iter()
                    .filter_map(|r| r.power_cap.default_w.map(|w| sig(w, 3))),
            ),
            join_set(rs.iter().map(|r| r.power_cap.requested.to_string())),
        ]);
    }
    t
}

/// A dotted version number ("580.159.04"), with its surrounding punctuation trimmed.
fn dotted_version(word: &str) -> Option<&str> {
    let w = word.trim_matches(|c: char| !c.is_ascii_digit());
    let parts: Vec<&str> = w.split('.').collect();
    (parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
    .then_some(w)
}

/// The driver a device row shows. Records of an older joulebench read the CUDA
/// driver's version from the wrong word of its kernel-module line ("for (CUDA
/// 13.0)"): there the version comes from another record of the same GPU (a wgpu
/// record says "NVIDIA (580.159.04)"), else only the CUDA version is shown.
fn driver_label(driver: Option<&str>, records: &[&Record]) -> String {
    let Some(d) = driver else {
        return "–".into();
    };
    let Some((before, cuda)) = d.split_once("(CUDA ") else {
        return d.to_string();
    };
    let cuda = format!("CUDA {}", cuda.trim_end_matches(')').trim());
    if dotted_version(before.trim()).is_some() {
        return d.to_string();
    }
    let sibling = records
        .iter()
        .filter_map(|r| r.device.driver.as_deref())
        .filter(|other| !other.contains("(CUDA "))
        .find_map(|other| other.split_whitespace().find_map(dotted_version));
    match sibling {
        Some(v) => format!("{v} ({cuda})"),
        None => cuda,
    }
}

/// The measurement protocol of each distinct configuration and window method, and
/// the devices it ran on. Records of schema 1 show their gapped windows as such.
pub fn protocol_table(records: &[Record]) -> Table {
    let mut t = Table::new(
        "Measurement protocol",
        &[
            "devices",
            "windows",
            "idle baseline (s)",
            "warm-up (s, min–max)",
            "settled over (s at load): °C/s, power/s, pace/s",
            "min window (s)",
            "min counter updates",
            "phase shift",
            "stop rule",
            "target spread",
            "windows (min–max)",
            "budget per point (s)",
        ],
    );
    let labels = device_labels(records);
    type Config<'a> = (&'a ProtocolConfig, Option<WindowMethod>);
    let mut configs: Vec<(Config<'_>, BTreeSet<String>)> = Vec::new();
    for r in records {
        let label = labels
            .get(&r.device.key())
            .cloned()
            .unwrap_or_else(|| r.device.name.clone());
        let key = (&r.protocol, r.window_method());
        match configs.iter_mut().find(|(c, _)| *c == key) {
            Some((_, devices)) => {
                devices.insert(label);
            }
            None => configs.push((key, BTreeSet::from([label]))),
        }
    }
    for ((c, method), devices) in configs {
        t.push(vec![
            join_set(devices),
            method.map_or("–".into(), |m| m.name().to_string()),
            sig(c.idle_baseline_s, 3),
            format!("{}–{}", sig(c.warmup_s, 3), sig(c.warmup_max_s, 3)),
            format!(
                "{}: {}, {}%, {}%",
                sig(c.settle_window_s, 3),
                sig(c.settle_temp_c_per_s, 3),
                sig(c.settle_power_per_s * 100.0, 3),
                sig(c.settle_pace_per_s * 100.0, 3)
            ),
            sig(c.min_window_s, 3),
            c.min_counter_updates.to_string(),
            if c.phase_shift { "yes" } else { "no" }.into(),
            c.stop_rule.name().into(),
            format!("{}%", sig(c.target_rel_spread * 100.0, 3)),
            format!("{}–{}", c.min_windows, c.max_windows),
            sig(c.point_budget_s, 3),
        ]);
    }
    t
}

/// What each flag means and how many records carry it.
pub fn flags_table(records: &[Record]) -> Table {
    let mut t = Table::new(
        "Validity flags",
        &["flag", "kind", "meaning", "records flagged"],
    );
    for f in ValidityFlag::ALL {
        let n = records
            .iter()
            .filter(|r| r.flags_now().contains(&f))
            .count();
        t.push(vec![
            f.name().into(),
            f.kind().into(),
            f.meaning().into(),
            n.to_string(),
        ]);
    }
    t
}

/// A command as its user typed it. Workers of a `--devices` sweep recorded their own
/// command line before they recorded their parent's; the flags of the parent-worker
/// protocol (no user types them) are taken out of such records.
fn as_typed(command: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut words = command.split(' ').peekable();
    while let Some(w) = words.next() {
        match w {
            "--progress-lines" => {}
            "--sim-index" => {
                words.next();
            }
            w if w.starts_with("--sim-index=") => {}
            w => out.push(w),
        }
    }
    out.join(" ")
}

/// The commands that wrote the records, with where and by which joulebench.
fn commands_block(records: &[Record]) -> String {
    let mut seen: Vec<(String, String, String, usize)> = Vec::new();
    for r in records {
        let command = as_typed(&r.command);
        let tool = match &r.tool.git_commit {
            Some(c) => format!("{} {} ({c})", r.tool.name, r.tool.version),
            None => format!("{} {}", r.tool.name, r.tool.version),
        };
        match seen
            .iter_mut()
            .find(|(c, h, t, _)| c == &command && h == &r.host && t == &tool)
        {
            Some(e) => e.3 += 1,
            None => seen.push((command, r.host.clone(), tool, 1)),
        }
    }
    let mut body = String::new();
    for (command, host, tool, n) in seen {
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        let _ = writeln!(
            body,
            "# on {}, {}: {n} records",
            one_line(&host),
            one_line(&tool)
        );
        let _ = writeln!(body, "{command}");
    }
    // a fence longer than any run of backticks inside: no command can end the block
    let fence = "`".repeat(longest_run(&body, '`').max(2) + 1);
    format!("{fence}sh\n{body}{fence}\n")
}

/// What each precision's best setting costs, per device and workload: energy per
/// FLOP with its throughput and power, and 10¹⁸ FLOP of it in facility kWh, money
/// and CO₂e. `*` marks the objective's choice over every precision.
pub fn cost_table(recs: &[Recommendation], costs: &CostInputs) -> Table {
    let mut headers: Vec<String> = [
        "device",
        "workload",
        "",
        "precision",
        "kernel",
        "setting",
        "energy (pJ/FLOP)",
        "throughput (TFLOP/s)",
        "avg power (W)",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect();
    headers.extend(costs.headers(Unit::ExaFlop));
    headers.push("flags".into());
    let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut t = Table::new(
        "What 10¹⁸ FLOP cost at each precision's recommended setting",
        &refs,
    );
    if recs.iter().any(|r| r.simulated) {
        t.notes.push(
            "SIMULATED DATA: rows of a simulated device come from joulebench's model device, not from a measurement."
                .into(),
        );
    }
    t.notes.push(costs.note());
    for r in recs {
        for &i in &r.per_precision {
            let s = &r.settings[i];
            let mut setting = vec![s.cap_label()];
            if s.sm_clock_mhz.is_some() || s.mem_clock_mhz.is_some() {
                setting.push(s.clock_label());
            }
            if s.batch_size != 1 {
                setting.push(format!("batch {}", s.batch_size));
            }
            let mut row = vec![
                r.device.clone(),
                r.workload.clone(),
                if i == r.chosen { "*" } else { "" }.to_string(),
                s.precision.to_string(),
                s.kernel.clone(),
                setting.join(" · "),
                sig(s.picojoules_per_flop(), 3),
                sig(s.tflops, 3),
                opt(s.average_w, 3),
            ];
            row.extend(costs.cells(&costs.per_exaflop(s.joules_per_flop)));
            row.push(s.flags.join(" "));
            t.push(row);
        }
    }
    t.drop_uninformative_columns(&["setting", "flags"]);
    t
}

/// Per model and device: each precision's least-energy complete setting of the
/// training step, per token, with what 10⁶ tokens cost. `*` marks the objective's choice.
pub fn per_token_table(steps: &[StepRecommendation], costs: &CostInputs) -> Table {
    let mut headers: Vec<String> = [
        "model",
        "device",
        "",
        "precision",
        "micro-batch (tokens)",
        "power cap",
        "kernels (matmul + attention / backward)",
        "energy (mJ/token)",
        "throughput (tokens/s)",
        "avg power (W)",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect();
    headers.extend(costs.headers(Unit::MillionTokens));
    headers.push("flags".into());
    let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut t = Table::new(
        "Energy per token of a training step, at each precision's least-energy setting",
        &refs,
    );
    if steps.iter().any(|r| r.simulated) {
        t.notes
            .push("SIMULATED DATA: from joulebench's model device, not from a measurement.".into());
    }
    t.notes.push(crate::step::STEP_SCOPE.into());
    t.notes.push(costs.note().replace(
        "kWh per 10¹⁸ FLOP = J/FLOP × 10¹⁸ / 3.6×10⁶",
        "kWh per 10⁶ tokens = J/token × 10⁶ / 3.6×10⁶",
    ));
    for r in steps {
        let mut best: BTreeMap<joulebench_core::Precision, usize> = BTreeMap::new();
        for (i, f) in r.figures.iter().enumerate() {
            let e = f.joules_per_token().unwrap_or(f64::INFINITY);
            let slot = best.entry(f.setting.precision).or_insert(i);
            let current = r.figures[*slot].joules_per_token().unwrap_or(f64::INFINITY);
            if e < current {
                *slot = i;
            }
        }
        // the objective's choice stands in for its precision
        best.insert(r.chosen().setting.precision, r.chosen);
        for (_, i) in best {
            let f = &r.figures[i];
            let s = &f.setting;
            let cap = match f.cap_w {
                Some(w) if !s.cap.is_default() => format!("{} ({w:.0} W)", s.cap),
                _ => s.cap.to_string(),
            };
            let mut row = vec![
                r.model.clone(),
                r.device.clone(),
                if i == r.chosen { "*" } else { "" }.to_string(),
                s.precision_label(),
                format!("{} ({})", s.micro_batch, f.tokens_per_step),
                cap,
                s.kernels.label(),
                opt(f.joules_per_token().map(|j| j * 1e3), 4),
                opt(f.tokens_per_second(), 4),
                opt(f.average_w(), 4),
            ];
            match f.joules_per_token() {
                Some(j) => row.extend(costs.cells(&costs.per_million_tokens(j))),
                None => row.extend(
                    costs
                        .headers(Unit::MillionTokens)
                        .iter()
                        .map(|_| "–".to_string()),
                ),
            }
            row.push(f.flags.join(" "));
            t.push(row);
        }
    }
    t.drop_uninformative_columns(&["flags"]);
    t
}

/// The longest run of `c` in `s`.
fn longest_run(s: &str, c: char) -> usize {
    s.split(|x| x != c).map(str::len).max().unwrap_or(0)
}

/// `s` as inline code that nothing in it can end: delimited by more backticks
/// than it holds in a row, on one line.
fn inline_code(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    let ticks = "`".repeat(longest_run(&s, '`') + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{s}{pad}{ticks}")
}

/// Text inside a Markdown link's brackets, or a link target: brackets,
/// parentheses, angle brackets and line breaks escaped.
fn link_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '[' | ']' | '(' | ')' | '<' | '>' | '*' | '_' | '`' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A link target as a URL path: spaces and anything that could end it percent-encoded.
fn link_target(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What a report is built from besides the records.
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    pub baseline: BaselineSpec,
    pub costs: CostInputs,
    /// The model of `joulebench model` records (a preset or a model file); `None`:
    /// the one each record's command names.
    pub model: Option<String>,
}

/// The whole document. `plots` are linked in order; `sources` list the files read.
pub fn markdown_report(
    records: &[Record],
    sources: &[SourceSummary],
    objective: Objective,
    options: &ReportOptions,
    plots: &[PlotLink],
) -> String {
    let baseline = &options.baseline;
    let md = TableFormat::Markdown;
    let mut out = String::from("# joulebench report\n\n");
    let sim = records.iter().filter(|r| r.simulated).count();
    if sim == records.len() && sim > 0 {
        out.push_str("> **SIMULATED DATA**: every figure here comes from joulebench's model device, not from a measurement. It shows the format, not a finding.\n\n");
    } else if sim > 0 {
        out.push_str(&format!(
            "> **MIXED DATA**: {sim} of {} records come from joulebench's model device (marked SIMULATED / simulated); they are not measurements.\n\n",
            records.len()
        ));
    }
    let _ = writeln!(out, "{}.\n", status_line(records));
    out.push_str("Results files:\n\n");
    for s in sources {
        let _ = writeln!(out, "- {} ({} records)", inline_code(&s.path), s.records);
    }
    out.push('\n');

    out.push_str("## Devices and protocol\n\n");
    out.push_str(&devices_table(records).render(md));
    out.push('\n');
    out.push_str(&protocol_table(records).render(md));
    out.push_str(
        "\nEach point: an idle baseline once per device, a warm-up until power, pace and temperature settle (within \
         its bound), then measurement windows from one energy-counter update to another at least the minimum window \
         apart, with the GPU busy throughout and the work between the two updates interpolated from the timings of \
         the blocks of work around them, repeated until the stop rule is met. Energy, time and power are over each \
         window's own interval. Windows \"gapped\" (schema-1 records) had idle gaps inside and read high.\n\n",
    );

    out.push_str("## Recommendations\n\n");
    let recs = recommend_with(records, objective, GroupBy::Device, baseline);
    if recs.is_empty() {
        out.push_str("No recommendation: no measured point with an energy figure.\n\n");
    } else {
        out.push_str(&recommendation_table_with(&recs, objective, baseline).render(md));
        out.push('\n');
        out.push_str(&pareto_table(&recs).render(md));
        out.push('\n');
    }

    out.push_str("## Cost and carbon\n\n");
    if recs.is_empty() {
        out.push_str("Nothing to price: no measured point with an energy figure.\n\n");
    } else {
        out.push_str(&cost_table(&recs, &options.costs).render(md));
        out.push('\n');
    }
    let (figures, token_notes) = crate::tokens::step_figures(records, options.model.as_deref());
    let steps = crate::step::recommend_steps(
        &figures,
        records,
        objective,
        &crate::step::Baseline::default(),
        crate::significance::NoiseFloor::default(),
    );
    if !steps.is_empty() || !token_notes.is_empty() {
        let mut t = per_token_table(&steps, &options.costs);
        t.notes.extend(token_notes);
        let missing = crate::step::missing_notes(&figures);
        if !missing.is_empty() {
            t.notes.push(format!(
                "Settings without a per-token figure: {}",
                missing.join("; ")
            ));
        }
        out.push_str(&t.render(md));
        out.push('\n');
    }

    if !plots.is_empty() {
        out.push_str("## Plots\n\n");
        for p in plots {
            let _ = writeln!(
                out,
                "![{}]({})\n\n[SVG]({})\n",
                link_text(&p.title),
                link_target(&p.png),
                link_target(&p.svg)
            );
        }
    }

    out.push_str("## Validity and all results\n\n");
    out.push_str(&flags_table(records).render(md));
    out.push_str("\nA flagged figure is shown, never hidden: read it with its flag.\n\n");

    out.push_str(&records_table(records).render(md));
    out.push('\n');
    if let Some(t) = crate::repeats::repeats_table(records) {
        out.push_str(&t.render(md));
        out.push('\n');
    }

    out.push_str("## Commands that produced the data\n\n");
    out.push_str(&commands_block(records));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::rec;
    use joulebench_core::Precision;

    #[test]
    fn document_has_every_section_and_links_plots() {
        let mut v = vec![
            rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0),
            rec("GPU A", false, Precision::Bf16, "80%", 560.0, 0.9),
        ];
        v[1].flags.push(ValidityFlag::HighSpread);
        let plots = [PlotLink {
            title: "Energy vs time".into(),
            png: "plots/a.png".into(),
            svg: "plots/a.svg".into(),
        }];
        let sources = [SourceSummary {
            path: "a.jsonl".into(),
            records: 2,
        }];
        let doc = markdown_report(
            &v,
            &sources,
            Objective::LeastEnergy,
            &ReportOptions::default(),
            &plots,
        );
        for s in [
            "## Devices and protocol",
            "### Measurement protocol",
            "### Recommended settings",
            "### Pareto front",
            "![Energy vs time](plots/a.png)",
            "[SVG](plots/a.svg)",
            "| high-spread",
            "joulebench sweep --device GPU A",
            "`a.jsonl` (2 records)",
        ] {
            assert!(doc.contains(s), "missing {s:?} in:\n{doc}");
        }
        assert!(!doc.contains("SIMULATED DATA"));
        // the flag count: one record carries high-spread
        let flags = flags_table(&v);
        let row = flags.rows.iter().find(|r| r[0] == "high-spread").unwrap();
        assert_eq!(row[3], "1");
    }

    #[test]
    fn nothing_in_a_record_or_a_path_breaks_out_of_the_document() {
        let mut v = vec![rec(
            "GPU | A\n# injected heading",
            false,
            Precision::Bf16,
            "default",
            600.0,
            1.0,
        )];
        v[0].command = "joulebench sweep --out 'x\n```\n# escaped heading\n```'".into();
        v[0].host = "h\n## injected".into();
        let sources = [SourceSummary {
            path: "weird`name`.jsonl".into(),
            records: 1,
        }];
        let plots = [PlotLink {
            title: "t](javascript:alert(1))".into(),
            png: "plots/a b.png".into(),
            svg: "plots/a).svg".into(),
        }];
        let doc = markdown_report(
            &v,
            &sources,
            Objective::LeastEnergy,
            &ReportOptions::default(),
            &plots,
        );
        for bad in ["\n# injected", "\n## injected"] {
            assert!(!doc.contains(bad), "{bad:?} broke out in:\n{doc}");
        }
        // the commands block opens with a fence longer than the command's own, and
        // the command's heading stays inside it
        let open = doc.find("````sh\n").expect("a longer fence");
        let close = open + 7 + doc[open + 7..].find("\n````\n").expect("closed");
        let heading = doc.find("\n# escaped heading").unwrap();
        assert!(open < heading && heading < close, "{doc}");
        assert!(doc.contains("- ``weird`name`.jsonl`` (1 records)"), "{doc}");
        assert!(
            doc.contains("(plots/a%20b.png)") && doc.contains("(plots/a%29.svg)"),
            "{doc}"
        );
        assert!(!doc.contains("](javascript"), "{doc}");
    }

    #[test]
    fn simulated_and_mixed_data_are_announced() {
        let sim = vec![rec(
            "sim-x (simulated)",
            true,
            Precision::Bf16,
            "default",
            600.0,
            1.0,
        )];
        assert!(markdown_report(
            &sim,
            &[],
            Objective::LeastEnergy,
            &ReportOptions::default(),
            &[]
        )
        .contains("**SIMULATED DATA**"));
        let mut mixed = sim.clone();
        mixed.push(rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0));
        let doc = markdown_report(
            &mixed,
            &[],
            Objective::LeastEnergy,
            &ReportOptions::default(),
            &[],
        );
        assert!(doc.contains("**MIXED DATA**: 1 of 2 records"), "{doc}");
        let devices = devices_table(&mixed);
        let data: Vec<&str> = devices.rows.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(data, ["measured", "SIMULATED"]);
    }

    #[test]
    fn the_driver_column_repairs_the_old_cuda_reading_from_a_sibling_record() {
        let mut cuda = rec("NVIDIA H200", false, Precision::Bf16, "default", 600.0, 1.0);
        cuda.device.driver = Some("for (CUDA 13.0)".into());
        cuda.device.architecture = Some("Hopper".into());
        let mut vulkan = cuda.clone();
        vulkan.device.driver = Some("NVIDIA (580.159.04)".into());
        vulkan.device.architecture = None;
        vulkan.backend = "wgpu".into();
        let col = |t: &Table| t.headers.iter().position(|h| h == "driver").unwrap();
        let t = devices_table(&[cuda.clone(), vulkan]);
        assert_eq!(t.rows[0][col(&t)], "580.159.04 (CUDA 13.0)");
        // alone, the CUDA version is all that is known
        let t = devices_table(std::slice::from_ref(&cuda));
        assert_eq!(t.rows[0][col(&t)], "CUDA 13.0");
        // a reading that was right stays as it is
        cuda.device.driver = Some("580.65.06 (CUDA 13.0)".into());
        let t = devices_table(&[cuda]);
        assert_eq!(t.rows[0][col(&t)], "580.65.06 (CUDA 13.0)");
    }

    #[test]
    fn the_report_prices_energy_with_currency_pue_and_carbon_beside_throughput() {
        let v = vec![
            rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0),
            rec("GPU A", false, Precision::Fp8E4m3, "default", 900.0, 0.5),
        ];
        let options = ReportOptions {
            costs: CostInputs {
                price: Some(crate::cost::Price {
                    per_kwh: 0.30,
                    currency: "EUR".into(),
                }),
                grid_gco2e_per_kwh: Some(400.0),
                pue: Some(1.2),
            },
            ..Default::default()
        };
        let doc = markdown_report(&v, &[], Objective::LeastEnergy, &options, &[]);
        assert!(doc.contains("## Cost and carbon"), "{doc}");
        let recs = recommend_with(
            &v,
            Objective::LeastEnergy,
            GroupBy::Device,
            &options.baseline,
        );
        let t = cost_table(&recs, &options.costs);
        let col = |name: &str| {
            t.headers
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("{name} in {:?}", t.headers))
        };
        // bf16: 1 pJ/FLOP → 0.2778 kWh at the board, 0.3333 at PUE 1.2, 0.100 EUR, 0.133 kg
        let bf16 = t
            .rows
            .iter()
            .find(|r| r[col("precision")] == "bf16")
            .unwrap();
        assert_eq!(bf16[col("throughput (TFLOP/s)")], "600");
        assert_eq!(bf16[col("energy at PUE 1.20 (kWh per 10¹⁸ FLOP)")], "0.333");
        assert_eq!(bf16[col("cost (EUR per 10¹⁸ FLOP)")], "0.100");
        assert_eq!(bf16[col("CO₂e (kg per 10¹⁸ FLOP)")], "0.133");
        let fp8 = t
            .rows
            .iter()
            .find(|r| r[col("precision")] == "fp8-e4m3")
            .unwrap();
        assert_eq!(fp8[col("")], "*", "the choice is marked");
        assert!(t
            .notes
            .iter()
            .any(|n| n.contains("PUE of 1.20") && n.contains("0.3 EUR per kWh")));
    }

    #[test]
    fn commands_are_shown_as_the_user_typed_them() {
        let mut v = vec![rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0)];
        v[0].command =
            "joulebench sweep --devices all --out r.jsonl --sim-index 0 --progress-lines".into();
        let block = commands_block(&v);
        assert!(
            block.contains("joulebench sweep --devices all --out r.jsonl\n"),
            "{block}"
        );
        assert!(
            !block.contains("--progress-lines") && !block.contains("--sim-index"),
            "{block}"
        );
    }
}
