//! `joulebench report` and `joulebench recommend`: read results files and print
//! tables, a Markdown report with plots, or a settings file for a launcher. Both
//! refuse a corrupt or foreign-schema file, naming its line, and never overwrite
//! a file they were not told to replace.

use crate::args::{parse_fraction, parse_list, ObjectiveChoice, RecommendArgs, ReportArgs};
use crate::error::{runtime, usage, CliError};
use crate::paths::{check_new_output, check_plot_dir, refuse_input_as_output, write_output};
use joulebench_analysis::chart::{PlotError, PlotFiles};
use joulebench_analysis::document::{markdown_report, PlotLink, SourceSummary};
use joulebench_analysis::merge::SourceFile;
use joulebench_analysis::plots::report_plots;
use joulebench_analysis::recommend::{
    pareto_table, recommend_with, recommendation_table_with, BaselineSpec, GroupBy, Objective,
};
use joulebench_analysis::repeats::repeats_table;
use joulebench_analysis::report::{flags_legend, records_table, status_line};
use joulebench_analysis::settings_file::{
    SettingsFile, SettingsFormat, SETTINGS_FORMAT, SETTINGS_VERSION,
};
use joulebench_analysis::table::TableFormat;
use joulebench_core::record::{read_results_file, Record, RecordError, ResultsFile};
use joulebench_core::Precision;
use std::path::{Component, Path, PathBuf};

fn format(s: &str) -> Result<TableFormat, CliError> {
    s.parse().map_err(usage)
}

/// Read a results file; an incomplete last record (a crash, a full disk, a power
/// loss while writing) is skipped with a warning that says where it starts.
pub fn read_results_warn(path: &Path) -> Result<ResultsFile, CliError> {
    let file = read_results_file(path)?;
    if let Some(tail) = &file.tail {
        eprintln!("warning: {}", tail.describe(path));
    }
    Ok(file)
}

/// Read each file whole, a record read twice (the same point measured at the same
/// moment: a file named twice, or copied into another) counted once, with a note;
/// a file without records is refused like a corrupt one.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>, CliError> {
    let mut sources = read_sources_raw(paths)?;
    let mut seen = std::collections::HashSet::new();
    let mut dropped = 0;
    for s in &mut sources {
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
    Ok(sources)
}

/// [`read_sources`] keeping every record as read (`merge` reports duplicates itself).
pub fn read_sources_raw(paths: &[PathBuf]) -> Result<Vec<SourceFile>, CliError> {
    paths
        .iter()
        .map(|p| {
            let lines = read_results_warn(p)?.lines;
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

/// `path` lexically absolute: joined to the working directory, `.` and `..` resolved.
fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// How a document in `base_dir` links to `target`: a relative path with `/`.
pub fn link_from(base_dir: &Path, target: &Path) -> String {
    let (base, target) = (absolute(base_dir), absolute(target));
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
    if let Some(out) = &args.out {
        check_new_output(out, args.force, "--out")?;
        refuse_input_as_output(out, &args.files, "--out")?;
    }
    if let Some(dir) = &args.plots {
        check_plot_dir(dir, "--plots")?;
    }
    let sources = read_sources(&args.files)?;
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
            &baseline,
            &links(&plots, args.out.as_deref()),
        ),
        TableFormat::Json | TableFormat::Csv => records_table(&records).render(fmt),
        TableFormat::Table => format!(
            "{}\n\n{}\n{}{}",
            status_line(&records),
            records_table(&records).render(fmt),
            repeats_table(&records)
                .map(|t| format!("{}\n", t.render(fmt)))
                .unwrap_or_default(),
            flags_legend().render(fmt)
        ),
    };
    match &args.out {
        Some(out) => {
            write_output(out, &text, args.force, "--out")?;
            eprintln!("Report written to {}", out.display());
        }
        None => crate::paths::println_stdout(&text)?,
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

/// `--max-power-w`: the P_max of Zeus's cost, a positive, finite number of watts, and
/// only with the objective that uses it.
pub fn check_max_power_w(w: f64, objective: ObjectiveChoice) -> Result<(), CliError> {
    if !(w.is_finite() && w > 0.0) {
        return Err(usage(format!(
            "--max-power-w {} must be a positive number of watts (the most the GPU may draw)",
            joulebench_core::text::shorten(&w.to_string(), 40)
        )));
    }
    if objective != ObjectiveChoice::Zeus {
        return Err(usage(
            "--max-power-w is the P_max of --objective zeus; the chosen objective does not use it",
        ));
    }
    Ok(())
}

/// `--baseline` parsed; unset is the default baseline.
pub fn baseline_spec(arg: Option<&str>) -> Result<BaselineSpec, CliError> {
    arg.map(BaselineSpec::parse)
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|e| usage(format!("--baseline: {e}")))
}

pub fn print_recommendation(
    records: &[Record],
    objective: Objective,
    fmt: TableFormat,
    baseline: &BaselineSpec,
) -> Result<(), CliError> {
    let recs = recommend_with(records, objective, GroupBy::Device, baseline);
    if recs.is_empty() {
        return crate::paths::println_stdout(&format!(
            "No recommendation: no measured point with an energy figure ({}).",
            status_line(records)
        ));
    }
    let main = recommendation_table_with(&recs, objective, baseline);
    let front = pareto_table(&recs);
    match fmt {
        TableFormat::Json => {
            let parse =
                |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap_or_default();
            let v = serde_json::json!({ "recommendations": parse(main.render(fmt)), "pareto_front": parse(front.render(fmt)) });
            crate::paths::println_stdout(&serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        _ => crate::paths::print_stdout(&format!("{}\n{}", main.render(fmt), front.render(fmt))),
    }
}

pub fn recommend(args: &RecommendArgs) -> Result<(), CliError> {
    let fmt = format(&args.format)?;
    let max_slowdown = parse_fraction(&args.max_slowdown, "--max-slowdown").map_err(usage)?;
    if !(0.0..=1.0).contains(&args.eta) {
        return Err(usage(format!("--eta {} must be between 0 and 1", args.eta)));
    }
    let baseline = baseline_spec(args.baseline.as_deref())?;
    if let Some(w) = args.max_power_w {
        check_max_power_w(w, args.objective)?;
    }
    let objective = match args.objective {
        ObjectiveChoice::WithinSlowdown => Objective::WithinSlowdown { max_slowdown },
        ObjectiveChoice::LeastEnergy => Objective::LeastEnergy,
        ObjectiveChoice::EnergyDelay => Objective::EnergyDelay,
        ObjectiveChoice::Zeus => Objective::ZeusCost {
            eta: args.eta,
            max_power_w: args.max_power_w,
        },
    };
    let emit = match args.emit.as_deref() {
        Some([f, path]) => {
            let format: SettingsFormat = f.parse().map_err(|e| usage(format!("--emit: {e}")))?;
            let path = PathBuf::from(path);
            check_new_output(&path, args.force, "--emit")?;
            refuse_input_as_output(&path, &args.files, "--emit")?;
            Some((format, path))
        }
        Some(_) => return Err(usage("--emit takes a format and a file: --emit toml FILE")),
        None => None,
    };
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
    print_recommendation(&records, objective, fmt, &baseline)?;
    if let Some((format, path)) = emit {
        let recs = recommend_with(&records, objective, GroupBy::Model, &baseline);
        if recs.is_empty() {
            return Err(usage(format!(
                "--emit: nothing to write, no measured point with an energy figure ({})",
                status_line(&records)
            )));
        }
        let file = SettingsFile::from_recommendations(&recs, &records, &from, objective, &baseline);
        let text = file.to_string(format).map_err(runtime)?;
        write_output(&path, &text, args.force, "--emit")?;
        eprintln!(
            "{} settings (device model × workload) written to {} ({SETTINGS_FORMAT} version {SETTINGS_VERSION}){}",
            file.settings.len(),
            path.display(),
            if file.simulated { "; SIMULATED data" } else { "" }
        );
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
