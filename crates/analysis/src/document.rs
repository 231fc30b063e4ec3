//! The Markdown report a review pastes as it is: what was measured on which devices
//! under which protocol, the recommendations, the plots, every result with its
//! validity flags explained, and the exact commands that produced the data.

use crate::format::{opt, sig};
use crate::recommend::{device_labels, recommend_with, BaselineSpec, GroupBy, Objective};
use crate::recommend_table::{pareto_table, recommendation_table_with};
use crate::report::{records_table, status_line};
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
            d.driver.clone().unwrap_or_else(|| "–".into()),
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
            "settled when (°C/s, power/s)",
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
                "{}, {}%",
                sig(c.settle_temp_c_per_s, 3),
                sig(c.settle_power_per_s * 100.0, 3)
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

/// The commands that wrote the records, with where and by which joulebench.
fn commands_block(records: &[Record]) -> String {
    let mut seen: Vec<(String, String, String, usize)> = Vec::new();
    for r in records {
        let tool = match &r.tool.git_commit {
            Some(c) => format!("{} {} ({c})", r.tool.name, r.tool.version),
            None => format!("{} {}", r.tool.name, r.tool.version),
        };
        match seen
            .iter_mut()
            .find(|(c, h, t, _)| c == &r.command && h == &r.host && t == &tool)
        {
            Some(e) => e.3 += 1,
            None => seen.push((r.command.clone(), r.host.clone(), tool, 1)),
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

/// The whole document. `plots` are linked in order; `sources` list the files read.
pub fn markdown_report(
    records: &[Record],
    sources: &[SourceSummary],
    objective: Objective,
    baseline: &BaselineSpec,
    plots: &[PlotLink],
) -> String {
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
        "\nEach point: an idle baseline once per device, a warm-up until power and temperature settle (within its \
         bound), then measurement windows from one energy-counter update to another at least the minimum window \
         apart, with the GPU busy throughout and the work between the two updates counted exactly, repeated until \
         the stop rule is met. Windows \"gapped\" (schema-1 records) had idle gaps inside and read high.\n\n",
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
            &BaselineSpec::default(),
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
            &BaselineSpec::default(),
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
            &BaselineSpec::default(),
            &[]
        )
        .contains("**SIMULATED DATA**"));
        let mut mixed = sim.clone();
        mixed.push(rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0));
        let doc = markdown_report(
            &mixed,
            &[],
            Objective::LeastEnergy,
            &BaselineSpec::default(),
            &[],
        );
        assert!(doc.contains("**MIXED DATA**: 1 of 2 records"), "{doc}");
        let devices = devices_table(&mixed);
        let data: Vec<&str> = devices.rows.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(data, ["measured", "SIMULATED"]);
    }
}
