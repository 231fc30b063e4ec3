//! `joulebench report` and `joulebench recommend`: read results files and print
//! tables, a Markdown report with plots, or a settings file for a launcher. Both
//! refuse a corrupt or foreign-schema file, naming its line, and never overwrite
//! a file they were not told to replace.

use crate::args::{
    parse_fraction, parse_list, ObjectiveChoice, RecommendArgs, ReportArgs, DEFAULT_MAX_SLOWDOWN,
};
use crate::emit::{parse_emit, write_emit};
use crate::error::{io, runtime, usage, CliError};
use crate::out;
use crate::paths::{check_new_output, check_plot_dir, refuse_input_as_output, write_output};
use joulebench_analysis::chart::{PlotError, PlotFiles};
use joulebench_analysis::device_setting::{device_settings, Mix};
use joulebench_analysis::document::{
    cost_table, markdown_report, PlotLink, ReportOptions, SourceSummary,
};
use joulebench_analysis::merge::SourceFile;
use joulebench_analysis::plots::report_plots;
use joulebench_analysis::recommend::{
    recommend_opts, recommend_with, BaselineSpec, GroupBy, Objective, RecommendOptions,
};
use joulebench_analysis::recommend_table::{
    attribution_table, device_table, pareto_table, recommendation_table_with,
};
use joulebench_analysis::repeats::repeats_table;
use joulebench_analysis::report::{flags_legend, records_table, status_line};
use joulebench_analysis::run_report::{group_runs, run_tables};
use joulebench_analysis::settings_file::{SettingsFile, SETTINGS_FORMAT, SETTINGS_VERSION};
use joulebench_analysis::significance::NoiseFloor;
use joulebench_analysis::table::TableFormat;
use joulebench_core::record::{read_results_file, Record, RecordError, ResultsFile};
use joulebench_core::run_record::RunRecord;
use joulebench_core::Precision;
use std::path::{Component, Path, PathBuf};

fn format(s: &str) -> Result<TableFormat, CliError> {
    s.parse().map_err(usage)
}

/// Read a results file; an incomplete last record (a crash, a full disk, a power
/// loss while writing) is skipped with a warning that says where it starts.
pub fn read_results_warn(path: &Path) -> Result<ResultsFile, CliError> {
    let file = read_results_tail_warn(path)?;
    if !file.runs.is_empty() {
        eprintln!("note: {}", runs_skipped(path, &file));
    }
    Ok(file)
}

/// [`read_results_warn`] for a reader that shows run records itself (`report`).
fn read_results_tail_warn(path: &Path) -> Result<ResultsFile, CliError> {
    let file = read_results_file(path)?;
    if let Some(tail) = &file.tail {
        eprintln!("warning: {}", tail.describe(path));
    }
    Ok(file)
}

/// What a reader of kernel points says of the run records it skips.
fn runs_skipped(path: &Path, file: &ResultsFile) -> String {
    let lines: Vec<String> = file.runs.iter().map(|r| r.line_no.to_string()).collect();
    format!(
        "{}: skipped {} `joulebench run` record(s) (line {}): a whole program's energy, not a \
         kernel point; `joulebench report` shows them",
        path.display(),
        file.runs.len(),
        joulebench_core::text::shorten(&lines.join(", "), 80)
    )
}

/// Read each file whole, a record read twice (the same point measured at the same
/// moment: a file named twice, or copied into another) counted once, with a note;
/// a file without records is refused like a corrupt one.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>, CliError> {
    let mut sources = read_sources_raw(paths)?;
    count_once(&mut sources);
    Ok(sources)
}

/// `report`'s inputs: the kernel points of each file (as [`read_sources`] reads
/// them) and its `joulebench run` records, a file of either kind alone allowed; a
/// run record read twice counts once.
fn read_report_inputs(paths: &[PathBuf]) -> Result<(Vec<SourceFile>, Vec<RunRecord>), CliError> {
    let mut sources = Vec::new();
    let mut runs: Vec<RunRecord> = Vec::new();
    for p in paths {
        let file = read_results_tail_warn(p)?;
        if file.lines.is_empty() && file.runs.is_empty() {
            return Err(RecordError::Empty { path: p.clone() }.into());
        }
        for r in file.runs {
            if !runs.contains(&r.record) {
                runs.push(r.record);
            }
        }
        if !file.lines.is_empty() {
            let (records, lines) = file.lines.into_iter().map(|l| (l.record, l.text)).unzip();
            sources.push(SourceFile {
                path: p.clone(),
                records,
                lines,
            });
        }
    }
    count_once(&mut sources);
    Ok((sources, runs))
}

/// A point read twice (the same point measured at the same moment) counts once.
fn count_once(sources: &mut [SourceFile]) {
    let mut seen = std::collections::HashSet::new();
    let mut dropped = 0;
    for s in sources.iter_mut() {
        let keep: Vec<bool> = s
            .records
            .iter()
            .map(|r| seen.insert((r.point_key(), r.unix_time_s.to_bits())))
            .collect();
        dropped += keep.iter().filter(|k| !**k).count();
        let mut it = keep.iter();
        s.records.retain(|_| *it.next().unwrap_or(&true));
        let mut it = keep.iter();
        s.lines.retain(|_| *it.next().unwrap_or(&true));
    }
    if dropped > 0 {
        eprintln!(
            "note: {dropped} record(s) appear more than once (the same point measured at the same \
             moment: a file named twice, or copied into another); each measurement counts once"
        );
    }
}

/// [`read_sources`] keeping every record as read (`merge` reports duplicates itself).
pub fn read_sources_raw(paths: &[PathBuf]) -> Result<Vec<SourceFile>, CliError> {
    paths
        .iter()
        .map(|p| {
            let file = read_results_warn(p)?;
            let lines = file.lines;
            if lines.is_empty() && !file.runs.is_empty() {
                return Err(usage(format!(
                    "{} holds `joulebench run` records only, no kernel points: `joulebench \
                     report {}` shows them",
                    p.display(),
                    p.display()
                )));
            }
            if lines.is_empty() {
                return Err(RecordError::Empty { path: p.clone() }.into());
            }
            let (records, lines) = lines.into_iter().map(|l| (l.record, l.text)).unzip();
            Ok(SourceFile {
                path: p.clone(),
                records,
                lines,
            })
        })
        .collect()
}

/// All records of the sources, and the file each came from.
fn flatten(sources: Vec<SourceFile>) -> (Vec<Record>, Vec<String>) {
    let mut records = Vec::new();
    let mut from = Vec::new();
    for s in sources {
        let name = s.path.display().to_string();
        from.extend(std::iter::repeat_n(name, s.records.len()));
        records.extend(s.records);
    }
    (records, from)
}

fn plot_error(e: PlotError) -> CliError {
    match e {
        PlotError::Dir { .. } => usage(e),
        _ => runtime(e),
    }
}

/// How a document in `base_dir` links to `target`: a relative path with `/`.
pub fn link_from(base_dir: &Path, target: &Path) -> String {
    let (base, target) = (
        crate::paths::lexical(base_dir),
        crate::paths::lexical(target),
    );
    let b: Vec<Component> = base.components().collect();
    let t: Vec<Component> = target.components().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".to_string(); b.len() - common];
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

fn links(plots: &[PlotFiles], out: Option<&Path>) -> Vec<PlotLink> {
    let href = |p: &Path| match out {
        Some(o) => link_from(o.parent().unwrap_or(Path::new("")), p),
        None => p.display().to_string().replace('\\', "/"),
    };
    plots
        .iter()
        .map(|p| PlotLink {
            title: p.title.clone(),
            png: href(&p.png),
            svg: href(&p.svg),
        })
        .collect()
}

pub fn report(args: &ReportArgs) -> Result<(), CliError> {
    let fmt = format(&args.format)?;
    let baseline = baseline_spec(args.baseline.as_deref())?;
    let max_slowdown = parse_fraction(&args.max_slowdown, "--max-slowdown").map_err(usage)?;
    let objective = Objective::WithinSlowdown { max_slowdown };
    let costs = crate::cost::cost_inputs(&args.cost)?;
    if let Some(m) = &args.model {
        joulebench_analysis::tokens::load_model(m)
            .map_err(|e| usage(format!("--model {m}: {e}")))?;
    }
    if let Some(out) = &args.out {
        check_new_output(out, args.force, "--out")?;
        refuse_input_as_output(out, &args.files, "--out")?;
    }
    if let Some(dir) = &args.plots {
        check_plot_dir(dir, "--plots")?;
    }
    let (sources, runs) = read_report_inputs(&args.files)?;
    let run_text = runs_text(&runs, fmt);
    if sources.is_empty() {
        // a file of program runs alone: their tables are the report
        return match &args.out {
            Some(out) => {
                write_output(out, &run_text, args.force, "--out")?;
                eprintln!("Report written to {}", out.display());
                Ok(())
            }
            None => out::print(&format!("{}\n", run_text.trim_end())),
        };
    }
    let summaries: Vec<SourceSummary> = sources
        .iter()
        .map(|s| SourceSummary {
            path: s.path.display().to_string(),
            records: s.records.len(),
        })
        .collect();
    let (records, _) = flatten(sources);
    let plots = match &args.plots {
        Some(dir) => report_plots(&records, objective, dir).map_err(plot_error)?,
        None => Vec::new(),
    };

    let text = match fmt {
        TableFormat::Markdown => markdown_report(
            &records,
            &summaries,
            objective,
            &ReportOptions {
                baseline,
                costs,
                model: args.model.clone(),
            },
            &links(&plots, args.out.as_deref()),
        ),
        TableFormat::Json | TableFormat::Csv => {
            if costs.priced() || costs.pue.is_some() {
                eprintln!(
                    "note: --format csv and json give every record; the costs are in --format table and markdown"
                );
            }
            records_table(&records).render(fmt)
        }
        TableFormat::Table => {
            // priced: what the recommended settings cost, after the results
            let priced = (costs.priced() || costs.pue.is_some())
                .then(|| recommend_with(&records, objective, GroupBy::Device, &baseline))
                .filter(|recs| !recs.is_empty())
                .map(|recs| format!("{}\n", cost_table(&recs, &costs).render(fmt)))
                .unwrap_or_default();
            format!(
                "{}\n\n{}\n{}{priced}{}",
                status_line(&records),
                records_table(&records).render(fmt),
                repeats_table(&records)
                    .map(|t| format!("{}\n", t.render(fmt)))
                    .unwrap_or_default(),
                flags_legend().render(fmt)
            )
        }
    };
    let text = match fmt {
        // one table of one kind is what a CSV or JSON reader expects
        TableFormat::Csv | TableFormat::Json if !runs.is_empty() => {
            eprintln!(
                "note: {} `joulebench run` record(s) are not in the {} output beside the kernel \
                 points; report their file alone, or use --format table or markdown",
                runs.len(),
                args.format
            );
            text
        }
        _ if !runs.is_empty() => format!("{text}\n{run_text}"),
        _ => text,
    };
    match &args.out {
        Some(out) => {
            write_output(out, &text, args.force, "--out")?;
            eprintln!("Report written to {}", out.display());
        }
        None => out::print(&format!(
            "{}{}",
            text,
            if text.ends_with('\n') { "" } else { "\n" }
        ))?,
    }
    if let Some(dir) = &args.plots {
        eprintln!(
            "{} plots written to {} (each as SVG and PNG)",
            plots.len(),
            dir.display()
        );
    }
    Ok(())
}

/// Every run's tables, run by run.
fn runs_text(runs: &[RunRecord], fmt: TableFormat) -> String {
    group_runs(runs)
        .iter()
        .flat_map(|g| run_tables(g))
        .map(|t| t.render(fmt))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `--baseline` parsed; unset is the default baseline.
pub fn baseline_spec(arg: Option<&str>) -> Result<BaselineSpec, CliError> {
    arg.map(BaselineSpec::parse)
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|e| usage(format!("--baseline: {e}")))
}

/// The objective `--objective` names, with the flags that tune it; a flag the
/// objective would ignore is refused rather than silently dropped.
pub fn objective_from(
    choice: ObjectiveChoice,
    max_slowdown: Option<&str>,
    eta: Option<f64>,
    max_power_w: Option<f64>,
) -> Result<Objective, CliError> {
    let named = match choice {
        ObjectiveChoice::WithinSlowdown => "within-slowdown",
        ObjectiveChoice::LeastEnergy => "least-energy",
        ObjectiveChoice::EnergyDelay => "energy-delay",
        ObjectiveChoice::Zeus => "zeus",
    };
    let ignored = |flag: &str, wants: &str| {
        usage(format!(
            "{flag} applies to --objective {wants} only; --objective {named} does not use it (drop {flag}, or choose --objective {wants})"
        ))
    };
    if choice != ObjectiveChoice::Zeus {
        if eta.is_some() {
            return Err(ignored("--eta", "zeus"));
        }
        if max_power_w.is_some() {
            return Err(ignored("--max-power-w", "zeus"));
        }
    }
    if choice != ObjectiveChoice::WithinSlowdown && max_slowdown.is_some() {
        return Err(ignored("--max-slowdown", "within-slowdown"));
    }
    Ok(match choice {
        ObjectiveChoice::WithinSlowdown => Objective::WithinSlowdown {
            max_slowdown: parse_fraction(
                max_slowdown.unwrap_or(DEFAULT_MAX_SLOWDOWN),
                "--max-slowdown",
            )
            .map_err(usage)?,
        },
        ObjectiveChoice::LeastEnergy => Objective::LeastEnergy,
        ObjectiveChoice::EnergyDelay => Objective::EnergyDelay,
        ObjectiveChoice::Zeus => {
            let eta = eta.unwrap_or(0.5);
            if !(0.0..=1.0).contains(&eta) {
                return Err(usage(format!("--eta {eta} must be between 0 and 1")));
            }
            if let Some(w) = max_power_w.filter(|w| !(w.is_finite() && *w > 0.0)) {
                return Err(usage(format!(
                    "--max-power-w {w} must be a number of watts > 0"
                )));
            }
            Objective::ZeusCost { eta, max_power_w }
        }
    })
}

/// `--noise-floor`: a fraction below 1 (a floor of 100% or more would refuse every lever).
pub fn noise_floor(arg: &str) -> Result<NoiseFloor, CliError> {
    let f = parse_fraction(arg, "--noise-floor").map_err(usage)?;
    if f >= 1.0 {
        return Err(usage(format!("--noise-floor {arg} must be under 100%")));
    }
    Ok(NoiseFloor::with_busy(f))
}

/// The recommendation tables: the best setting per precision, where the saving comes
/// from, one setting per GPU for `mix`, and the Pareto front.
pub fn print_recommendation(
    records: &[Record],
    objective: Objective,
    fmt: TableFormat,
    opts: &RecommendOptions,
    mix: &Mix,
) -> Result<(), CliError> {
    let recs = recommend_opts(records, objective, opts);
    if recs.is_empty() {
        return out::line(&format!(
            "No recommendation: no measured point with an energy figure ({}).",
            status_line(records)
        ));
    }
    let devices = device_settings(&recs, mix, objective);
    let tables = [
        (
            "recommendations",
            recommendation_table_with(&recs, objective, &opts.baseline),
        ),
        ("attribution", attribution_table(&recs)),
        ("one_setting_per_gpu", device_table(&devices, &recs)),
        ("pareto_front", pareto_table(&recs)),
    ];
    match fmt {
        TableFormat::Json => {
            let parse =
                |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap_or_default();
            let v: serde_json::Map<String, serde_json::Value> = tables
                .iter()
                .map(|(k, t)| (k.to_string(), parse(t.render(fmt))))
                .collect();
            out::line(&serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        _ => {
            let text: Vec<String> = tables.iter().map(|(_, t)| t.render(fmt)).collect();
            out::print(&text.join("\n"))
        }
    }
}

/// `--weights FILE`, read and parsed (its names are checked against the records later).
fn read_weights(path: Option<&Path>) -> Result<Mix, CliError> {
    let Some(path) = path else {
        return Ok(Mix::equal());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        let m = format!("--weights {}: {e}", path.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            usage(m)
        } else {
            io(m)
        }
    })?;
    Mix::parse(&text, &path.display().to_string())
        .map_err(|e| usage(format!("--weights {}: {e}", path.display())))
}

pub fn recommend(args: &RecommendArgs) -> Result<(), CliError> {
    let fmt = format(&args.format)?;
    let objective = objective_from(
        args.objective,
        args.max_slowdown.as_deref(),
        args.eta,
        args.max_power_w,
    )?;
    let noise = noise_floor(&args.noise_floor)?;
    let baseline = baseline_spec(args.baseline.as_deref())?;
    let emit = parse_emit(args.emit.as_deref(), args.force, &args.files)?;
    let mix = read_weights(args.weights.as_deref())?;
    let (mut records, mut from) = flatten(read_sources(&args.files)?);
    if let Some(list) = &args.precisions {
        let keep = parse_list(list, "precision", |p| {
            p.parse::<Precision>().map_err(|e| e.to_string())
        })
        .map_err(usage)?;
        let kept: Vec<(Record, String)> = records
            .into_iter()
            .zip(from)
            .filter(|(r, _)| keep.contains(&r.precision))
            .collect();
        (records, from) = kept.into_iter().unzip();
    }
    let mut workloads: Vec<&str> = records.iter().map(|r| r.group.as_str()).collect();
    workloads.sort();
    workloads.dedup();
    mix.check(&workloads)
        .map_err(|e| usage(format!("--weights: {e}")))?;
    let mut opts = RecommendOptions {
        by: GroupBy::Device,
        baseline,
        noise,
    };
    print_recommendation(&records, objective, fmt, &opts, &mix)?;
    if let Some(emit) = emit {
        opts.by = GroupBy::Model;
        let recs = recommend_opts(&records, objective, &opts);
        if recs.is_empty() {
            return Err(usage(format!(
                "--emit: nothing to write, no measured point with an energy figure ({})",
                status_line(&records)
            )));
        }
        let devices = device_settings(&recs, &mix, objective);
        let mut file =
            SettingsFile::from_devices(&devices, &recs, &records, &from, objective, &opts.baseline);
        file.noise_floor_fraction = Some(noise.busy);
        let said = write_emit(&emit, &file, args.force)?;
        if said.is_empty() {
            eprintln!(
                "{} device setting(s) and {} workload setting(s) written to {} ({SETTINGS_FORMAT} version {SETTINGS_VERSION}){}",
                file.devices.len(),
                file.settings.len(),
                emit.path.display(),
                if file.simulated { "; SIMULATED data" } else { "" }
            );
        } else {
            eprintln!("{said}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_to_the_document() {
        assert_eq!(
            link_from(Path::new("/r/report"), Path::new("/r/report/plots/a.png")),
            "plots/a.png"
        );
        assert_eq!(
            link_from(Path::new("/r/docs"), Path::new("/r/plots/a.svg")),
            "../plots/a.svg"
        );
        assert_eq!(
            link_from(Path::new("/r/./docs/x/.."), Path::new("/r/docs/a.png")),
            "a.png"
        );
    }
}
