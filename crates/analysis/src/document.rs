//! The Markdown report a review pastes as it is: what was measured on which devices
//! under which protocol, the recommendations, what the work costs (facility energy,
//! money, CO₂e; per token where `model` records are there), the plots, every result
//! with its validity flags explained, and the commands that produced the data as the
//! user typed them.

use crate::cost::{CostInputs, Unit};
use crate::digest::SettingsDigest;
use crate::document_digest::longest_run;
pub use crate::document_digest::ReportDigest;
use crate::format::{opt, sig};
use crate::recommend::{
    recommend_taking, BaselineSpec, GroupBy, Objective, RecommendOptions, Recommendation,
};
use crate::recommend_table::{pareto_table, recommendation_table_with};
use crate::repeats::{write_repeats_table, Repeats};
use crate::report::records_table;
use crate::step::StepRecommendation;
use crate::table::{Table, TableFormat};
use joulebench_core::record::Record;
use std::collections::BTreeMap;

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

/// One row per device: identity, meter, idle power and the caps that were swept.
pub fn devices_table(records: &[Record]) -> Table {
    ReportDigest::of(records).devices_table()
}

/// The measurement protocol of each distinct configuration and window method, and
/// the devices it ran on. Records of schema 1 show their gapped windows as such.
pub fn protocol_table(records: &[Record]) -> Table {
    ReportDigest::of(records).protocol_table()
}

/// What each flag means and how many records carry it.
pub fn flags_table(records: &[Record]) -> Table {
    ReportDigest::of(records).flags_table()
}

/// The commands that wrote the records, with where and by which joulebench.
#[cfg(test)]
fn commands_block(records: &[Record]) -> String {
    ReportDigest::of(records).commands_block()
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
    let mut digest = ReportDigest::of(records);
    let mut out = Vec::new();
    let written = write_markdown_report(
        &mut digest,
        records,
        sources,
        objective,
        options,
        plots,
        &mut |w: &mut dyn std::io::Write| {
            w.write_all(
                records_table(records)
                    .render(TableFormat::Markdown)
                    .as_bytes(),
            )
        },
        &mut out,
    );
    if written.is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// What a report recommends: per GPU and workload, against `baseline`. It lets the
/// digest's runs go as it makes the settings ([`recommend_taking`]): what else of
/// the report needs them takes it first (the repeats table:
/// [`crate::repeats::Repeats::of`]).
pub fn report_recommendations(
    settings: &mut SettingsDigest,
    objective: Objective,
    baseline: &BaselineSpec,
) -> Vec<Recommendation> {
    recommend_taking(
        settings,
        objective,
        &RecommendOptions {
            by: GroupBy::Device,
            baseline: baseline.clone(),
            ..RecommendOptions::default()
        },
    )
}

/// [`markdown_report`] of the records a digest took in, written as it goes. The
/// results table, a row per record, is written by `records_table` (a second read
/// of the files, for a campaign too large to hold); `model_records` are the records
/// per-token figures are composed from (all of them, or those
/// `crate::tokens::StepRecords` picks). The digest's runs are let go as the
/// recommendations are made: it is read, not reported again, afterwards.
#[allow(clippy::too_many_arguments)]
pub fn write_markdown_report<E: From<std::io::Error>>(
    digest: &mut ReportDigest,
    model_records: &[Record],
    sources: &[SourceSummary],
    objective: Objective,
    options: &ReportOptions,
    plots: &[PlotLink],
    records_table: &mut dyn FnMut(&mut dyn std::io::Write) -> Result<(), E>,
    out: &mut dyn std::io::Write,
) -> Result<(), E> {
    let baseline = &options.baseline;
    let md = TableFormat::Markdown;
    out.write_all(b"# joulebench report\n\n")?;
    let (records, sim) = digest.records();
    if sim == records && sim > 0 {
        out.write_all("> **SIMULATED DATA**: every figure here comes from joulebench's model device, not from a measurement. It shows the format, not a finding.\n\n".as_bytes())?;
    } else if sim > 0 {
        write!(
            out,
            "> **MIXED DATA**: {sim} of {records} records come from joulebench's model device (marked SIMULATED / simulated); they are not measurements.\n\n",
        )?;
    }
    writeln!(out, "{}.\n", digest.settings.status_line())?;
    out.write_all(b"Results files:\n\n")?;
    for s in sources {
        writeln!(out, "- {} ({} records)", inline_code(&s.path), s.records)?;
    }
    out.write_all(b"\n")?;

    out.write_all(b"## Devices and protocol\n\n")?;
    digest.devices_table().write_to(md, out)?;
    out.write_all(b"\n")?;
    digest.protocol_table().write_to(md, out)?;
    out.write_all(
        "\nEach point: an idle baseline once per device, a warm-up until power, pace and temperature settle (within \
         its bound), then measurement windows from one energy-counter update to another at least the minimum window \
         apart, with the GPU busy throughout and the work between the two updates interpolated from the timings of \
         the blocks of work around them, repeated until the stop rule is met. Energy, time and power are over each \
         window's own interval. Windows \"gapped\" (schema-1 records) had idle gaps inside and read high.\n\n"
            .as_bytes(),
    )?;

    out.write_all(b"## Recommendations\n\n")?;
    // the repeats table's figures kept, the settings are made of the runs, let go
    let repeats = Repeats::of(&digest.settings);
    let recs = report_recommendations(&mut digest.settings, objective, baseline);
    if recs.is_empty() {
        out.write_all(b"No recommendation: no measured point with an energy figure.\n\n")?;
    } else {
        recommendation_table_with(&recs, objective, baseline).write_to(md, out)?;
        out.write_all(b"\n")?;
        pareto_table(&recs).write_to(md, out)?;
        out.write_all(b"\n")?;
    }

    out.write_all(b"## Cost and carbon\n\n")?;
    if recs.is_empty() {
        out.write_all(b"Nothing to price: no measured point with an energy figure.\n\n")?;
    } else {
        cost_table(&recs, &options.costs).write_to(md, out)?;
        out.write_all(b"\n")?;
    }
    drop(recs);
    let (figures, token_notes) =
        crate::tokens::step_figures(model_records, options.model.as_deref());
    let steps = crate::step::recommend_steps(
        &figures,
        model_records,
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
        t.write_to(md, out)?;
        out.write_all(b"\n")?;
    }

    if !plots.is_empty() {
        out.write_all(b"## Plots\n\n")?;
        for p in plots {
            writeln!(
                out,
                "![{}]({})\n\n[SVG]({})\n",
                link_text(&p.title),
                link_target(&p.png),
                link_target(&p.svg)
            )?;
        }
    }

    out.write_all(b"## Validity and all results\n\n")?;
    digest.flags_table().write_to(md, out)?;
    out.write_all(b"\nA flagged figure is shown, never hidden: read it with its flag.\n\n")?;

    records_table(out)?;
    out.write_all(b"\n")?;
    write_repeats_table(&digest.settings, &repeats, md, out)?;

    out.write_all(b"## Commands that produced the data\n\n")?;
    out.write_all(digest.commands_block().as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::recommend_with;
    use crate::testutil::rec;
    use joulebench_core::protocol::ValidityFlag;
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
    fn repeats_are_reported_although_the_recommendations_let_their_runs_go() {
        // three runs of one setting, two of another, one of a third
        let mut v = Vec::new();
        for (cap, runs) in [("default", 3), ("80%", 2), ("60%", 1)] {
            for i in 0..runs {
                let mut r = rec(
                    "GPU A",
                    false,
                    Precision::Bf16,
                    cap,
                    600.0,
                    1.0 + i as f64 / 10.0,
                );
                r.repeat = Some(i + 1);
                v.push(r);
            }
        }
        let doc = markdown_report(
            &v,
            &[],
            Objective::LeastEnergy,
            &ReportOptions::default(),
            &[],
        );
        let at = doc
            .find("### Run-to-run spread")
            .unwrap_or_else(|| panic!("no repeats table in:\n{doc}"));
        let table = &doc[at..doc[at..].find("\n\n## ").map_or(doc.len(), |e| at + e)];
        let rows: Vec<Vec<&str>> = table
            .lines()
            .filter(|l| l.starts_with("| GPU A"))
            .map(|l| l.split('|').map(str::trim).collect())
            .collect();
        // cells: "", device, kernel, precision, workload, batch, cap, runs, energy…
        let caps_runs: Vec<(&str, &str)> = rows.iter().map(|r| (r[6], r[7])).collect();
        assert_eq!(caps_runs, [("default", "3"), ("80%", "2")], "{table}");
        // the recommendations were made of the same runs
        assert!(doc.contains("### Recommended settings"), "{doc}");
        // the figures are the slice's own
        let whole = crate::repeats::repeats_table(&v).unwrap();
        assert_eq!(whole.rows.len(), 2);
        assert_eq!(rows[0][8], whole.rows[0][7], "{table}");
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
