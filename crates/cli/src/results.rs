//! `joulebench report` and `joulebench recommend`: read results files and print
//! tables, a Markdown report with plots, or a settings file for a launcher. Both
//! refuse a corrupt or foreign-schema file, naming its line, and never overwrite
//! a file they were not told to replace. Files are read one record at a time into
//! per-setting summaries (a fleet's campaign is too large to hold); what needs a
//! row per record (the results table, a merge) reads the files a second time.

use crate::args::{
    parse_fraction, parse_list, ObjectiveChoice, RecommendArgs, ReportArgs, DEFAULT_MAX_SLOWDOWN,
};
use crate::emit::{parse_emit, write_emit};
use crate::error::{io, runtime, usage, CliError};
use crate::out::{self, WriteFail};
use crate::paths::{
    check_new_output, check_plot_dir, refuse_input_as_output, shown, write_output,
    write_output_with,
};
use joulebench_analysis::chart::{PlotError, PlotFiles};
use joulebench_analysis::device_setting::{device_settings, Mix};
use joulebench_analysis::digest::SettingsDigest;
use joulebench_analysis::document::{
    cost_table, report_recommendations, write_markdown_report, PlotLink, ReportDigest,
    ReportOptions, SourceSummary,
};
use joulebench_analysis::merge::Duplicates;
use joulebench_analysis::plots::report_plots_digest;
use joulebench_analysis::recommend::{
    make_settings, recommend_digest, recommend_made, BaselineSpec, GroupBy, Objective,
    RecommendOptions, Recommendation,
};
use joulebench_analysis::recommend_table::{
    attribution_table, device_table, pareto_table, recommendation_table_with,
};
use joulebench_analysis::repeats::{write_repeats_table, Repeats};
use joulebench_analysis::report::{flags_legend, RecordRow, RecordsTableDigest};
use joulebench_analysis::run_report::{group_runs, run_tables};
use joulebench_analysis::settings_file::{SettingsFile, SETTINGS_FORMAT, SETTINGS_VERSION};
use joulebench_analysis::significance::NoiseFloor;
use joulebench_analysis::table::TableFormat;
use joulebench_analysis::table_stream::ColumnWidths;
use joulebench_analysis::tokens::StepRecords;
use joulebench_core::record::{
    for_each_line_within, for_each_record, for_each_record_within, read_results_file,
    LinesChecksum, Record, RecordError, ResultsFile, RunRecordLine,
};
use joulebench_core::run_record::RunRecord;
use joulebench_core::Precision;
use std::io::{BufRead, Read as _, Write};
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
    if !file.runs.is_empty() {
        eprintln!("note: {}", runs_skipped(path, &file.runs));
    }
    Ok(file)
}

/// What a reader of kernel points says of the run records it skips.
fn runs_skipped(path: &Path, runs: &[RunRecordLine]) -> String {
    let lines: Vec<String> = runs.iter().map(|r| r.line_no.to_string()).collect();
    format!(
        "{}: skipped {} `joulebench run` record(s) (line {}): a whole program's energy, not a \
         kernel point; `joulebench report` shows them",
        path.display(),
        runs.len(),
        joulebench_core::text::shorten(&lines.join(", "), 80)
    )
}

/// One record as a read of results files hands it over.
pub struct Read<'a> {
    /// Which of the files read it came from.
    pub file: usize,
    /// Its place among the records of its file that were handed over.
    pub index: usize,
    pub record: &'a Record,
}

/// Which records of a file a read handed over, one bit each.
#[derive(Clone, Debug, Default)]
struct Kept {
    bits: Vec<u64>,
    len: usize,
}

impl Kept {
    fn push(&mut self, kept: bool) {
        if self.len % 64 == 0 {
            self.bits.push(0);
        }
        if kept {
            self.bits[self.len / 64] |= 1 << (self.len % 64);
        }
        self.len += 1;
    }
    fn get(&self, i: usize) -> bool {
        i < self.len && self.bits[i / 64] & (1 << (i % 64)) != 0
    }
}

/// A results file as a first read left it: what a second read needs to see the
/// same records even while a sweep appends to the file.
#[derive(Clone, Debug)]
pub struct SourceRead {
    pub path: PathBuf,
    /// Records handed over (a duplicate of one read before is not).
    pub records: usize,
    kept: Kept,
    /// Where its whole records end.
    whole_bytes: u64,
    /// Its records' lines' checksum: a second read must find the same.
    lines_crc32: u32,
    /// Its `joulebench run` records (a program's run, not a kernel point), which a
    /// second read skips.
    pub runs: Vec<RunRecordLine>,
}

impl SourceRead {
    /// Whether it holds kernel points (a file of `joulebench run` records may not).
    fn has_points(&self) -> bool {
        self.kept.len > 0
    }

    /// The lines of its run records, ascending.
    fn run_lines(&self) -> Vec<usize> {
        self.runs.iter().map(|r| r.line_no).collect()
    }
}

/// Read each file one record at a time and hand each kernel point to `each`; an
/// incomplete last record is skipped with a warning, a file without records is
/// refused like a corrupt one, and `joulebench run` records are skipped with a
/// note (a file of them alone is refused). With `dedup`, a record read twice (the
/// same point measured at the same moment: a file named twice, or copied into
/// another) is handed over once, with a note.
pub fn read_sources<E>(
    paths: &[PathBuf],
    dedup: bool,
    each: impl FnMut(Read<'_>) -> Result<(), E>,
) -> Result<Vec<SourceRead>, E>
where
    E: From<RecordError> + From<CliError>,
{
    read_sources_runs(paths, dedup, false, each)
}

/// [`read_sources`]; with `runs_shown` (`report`, which shows run records itself),
/// run records are kept without a note and a file of them alone is allowed.
fn read_sources_runs<E>(
    paths: &[PathBuf],
    dedup: bool,
    runs_shown: bool,
    mut each: impl FnMut(Read<'_>) -> Result<(), E>,
) -> Result<Vec<SourceRead>, E>
where
    E: From<RecordError> + From<CliError>,
{
    let mut duplicates = dedup.then(Duplicates::default);
    let mut dropped = 0;
    let mut sources = Vec::with_capacity(paths.len());
    for (file, path) in paths.iter().enumerate() {
        let mut kept = Kept::default();
        let mut records = 0;
        let end = for_each_record(path, |s| -> Result<(), E> {
            let keep = duplicates.as_mut().is_none_or(|d| d.first_time(&s.record));
            kept.push(keep);
            if !keep {
                dropped += 1;
                return Ok(());
            }
            records += 1;
            each(Read {
                file,
                index: records - 1,
                record: &s.record,
            })
        })?;
        if let Some(tail) = &end.tail {
            eprintln!("warning: {}", tail.describe(path));
        }
        if !runs_shown && !end.runs.is_empty() {
            eprintln!("note: {}", runs_skipped(path, &end.runs));
            if end.records == 0 {
                return Err(usage(format!(
                    "{} holds `joulebench run` records only, no kernel points: `joulebench \
                     report {}` shows them",
                    path.display(),
                    path.display()
                ))
                .into());
            }
        }
        if end.records == 0 && end.runs.is_empty() {
            return Err(RecordError::Empty { path: path.clone() }.into());
        }
        sources.push(SourceRead {
            path: path.clone(),
            records,
            kept,
            whole_bytes: end.whole_bytes,
            lines_crc32: end.lines_crc32,
            runs: end.runs,
        });
    }
    if dropped > 0 {
        eprintln!(
            "note: {dropped} record(s) appear more than once (the same point measured at the same \
             moment: a file named twice, or copied into another); each measurement counts once"
        );
    }
    Ok(sources)
}

/// A file whose second read does not see what its first did.
fn changed(path: &Path, first: usize, second: usize) -> CliError {
    changed_because(
        path,
        &format!("its first read found {first} records, its second {second}"),
    )
}

/// A file whose second read found as many records as its first, but other lines.
fn rewritten(path: &Path) -> CliError {
    changed_because(
        path,
        "its second read found other lines than its first (rewritten in between)",
    )
}

fn changed_because(path: &Path, why: &str) -> CliError {
    io(format!(
        "{} changed while it was read: {why}. Read it again once nothing \
         rewrites it",
        shown(path)
    ))
}

/// Refuse a second read that found other lines than the first, unless the check is
/// turned off (a test of the check only).
fn check_same_lines(s: &SourceRead, second: u32) -> Result<(), CliError> {
    if second != s.lines_crc32 && !same_lines_unchecked() {
        return Err(rewritten(&s.path));
    }
    Ok(())
}

thread_local! {
    /// Set by a test only, to watch the check's test fail without it.
    static SAME_LINES_UNCHECKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn same_lines_unchecked() -> bool {
    SAME_LINES_UNCHECKED.with(|c| c.get())
}

/// Hand `each` the records a first [`read_sources`] handed over, in the same order,
/// read a second time (what a sweep appended since is not read).
pub fn reread_sources<E>(
    sources: &[SourceRead],
    mut each: impl FnMut(Read<'_>) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<RecordError> + From<CliError>,
{
    for (file, s) in sources.iter().enumerate() {
        let (mut seen, mut records) = (0, 0);
        let end = for_each_record_within(&s.path, s.whole_bytes, |r| -> Result<(), E> {
            seen += 1;
            if seen > s.kept.len {
                return Err(changed(&s.path, s.kept.len, seen).into());
            }
            if !s.kept.get(seen - 1) {
                return Ok(());
            }
            records += 1;
            each(Read {
                file,
                index: records - 1,
                record: &r.record,
            })
        })?;
        if seen != s.kept.len {
            return Err(changed(&s.path, s.kept.len, seen).into());
        }
        check_same_lines(s, end.lines_crc32)?;
    }
    Ok(())
}

/// [`reread_sources`], each record read as a `T` with only the fields the caller
/// needs (the first read checked the whole record), which is quicker.
pub fn reread_as<T, E>(
    sources: &[SourceRead],
    mut each: impl FnMut(T) -> Result<(), E>,
) -> Result<(), E>
where
    T: serde::de::DeserializeOwned + Send,
    E: From<RecordError> + From<CliError>,
{
    for s in sources {
        let mut seen = 0;
        let run_lines = s.run_lines();
        let end = for_each_line_within(
            &s.path,
            s.whole_bytes,
            &run_lines,
            |r: T| -> Result<(), E> {
                seen += 1;
                if seen > s.kept.len {
                    return Err(changed(&s.path, s.kept.len, seen).into());
                }
                if s.kept.get(seen - 1) {
                    each(r)?;
                }
                Ok(())
            },
        )?;
        if seen != s.kept.len {
            return Err(changed(&s.path, s.kept.len, seen).into());
        }
        check_same_lines(s, end.lines_crc32)?;
    }
    Ok(())
}

/// Hand `each` the lines of the records a first [`read_sources`] handed over, as
/// written, without parsing them again (the first read checked them).
pub fn reread_lines<E>(
    sources: &[SourceRead],
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<RecordError> + From<CliError>,
{
    for s in sources {
        let rerr = |source| RecordError::Read {
            path: s.path.clone(),
            source,
        };
        let file = std::fs::File::open(&s.path).map_err(rerr)?;
        let mut lines = std::io::BufReader::with_capacity(1 << 20, file.take(s.whole_bytes));
        let mut line = Vec::new();
        let (mut seen, mut line_no) = (0, 0);
        let mut checksum = LinesChecksum::default();
        let run_lines = s.run_lines();
        loop {
            line.clear();
            if lines.read_until(b'\n', &mut line).map_err(rerr)? == 0 {
                break;
            }
            line_no += 1;
            let content = line.strip_suffix(b"\n").unwrap_or(&line);
            if content.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if run_lines.binary_search(&line_no).is_ok() {
                // a run record: not a kernel point, and not handed over
                checksum.line(content);
                continue;
            }
            seen += 1;
            if seen > s.kept.len {
                return Err(changed(&s.path, s.kept.len, seen).into());
            }
            checksum.line(content);
            if s.kept.get(seen - 1) {
                each(content)?;
            }
        }
        if seen != s.kept.len {
            return Err(changed(&s.path, s.kept.len, seen).into());
        }
        check_same_lines(s, checksum.value())?;
    }
    Ok(())
}

/// Refuse, before any work, inputs that cannot be read twice (a pipe, a device):
/// a command that writes a row per record reads its files twice.
pub fn refuse_single_read(paths: &[PathBuf]) -> Result<(), CliError> {
    for p in paths {
        if let Ok(meta) = std::fs::metadata(p) {
            if !meta.is_file() {
                return Err(usage(format!(
                    "{} is not a regular file; this command reads its files twice (a campaign's \
                     records are not held in memory): save it to a file first",
                    shown(p)
                )));
            }
        }
    }
    Ok(())
}

/// The results table, its rows from a second read of `sources`.
fn write_records_table(
    sources: &[SourceRead],
    table: &RecordsTableDigest,
    fmt: TableFormat,
    w: &mut dyn Write,
) -> Result<(), WriteFail> {
    let head = table.head();
    let widths = table
        .widths(&head)
        .unwrap_or_else(|| ColumnWidths::of(&head, fmt));
    let mut rows = head.write_head(fmt, &widths, w)?;
    reread_as(sources, |r: RecordRow| -> Result<(), WriteFail> {
        rows.row(&table.row_of(&r))?;
        Ok(())
    })?;
    rows.finish()?;
    Ok(())
}

/// Write a long output to `--out` (whole or not at all) or standard output.
fn write_to(
    out: Option<&Path>,
    force: bool,
    write: impl FnOnce(&mut dyn Write) -> Result<(), WriteFail>,
) -> Result<(), CliError> {
    match out {
        Some(path) => write_output_with(path, force, "--out", write),
        None => out::stream(write),
    }
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
    refuse_single_read(&args.files)?;
    // read_sources hands each record over once
    let mut digest = ReportDigest::default();
    digest.settings = SettingsDigest::of_deduplicated_reads();
    if matches!(fmt, TableFormat::Table | TableFormat::Markdown) {
        digest.table = RecordsTableDigest::measuring(fmt);
    }
    // per-token figures (Markdown only) come from `joulebench model` records
    let per_token = fmt == TableFormat::Markdown;
    let mut steps = StepRecords::default();
    let sources = read_sources_runs(&args.files, true, true, |r| -> Result<(), CliError> {
        digest.push(r.record, r.file);
        if per_token && StepRecords::from_model_command(r.record) {
            steps.push(r.record.clone());
        }
        Ok(())
    })?;
    digest.settings.shrink_to_fit();
    // a run record read twice (a file named twice) counts once
    let mut runs: Vec<RunRecord> = Vec::new();
    for r in sources.iter().flat_map(|s| &s.runs) {
        if !runs.contains(&r.record) {
            runs.push(r.record.clone());
        }
    }
    let run_text = runs_text(&runs, fmt);
    if sources.iter().all(|s| !s.has_points()) {
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
    if let Some(keys) = per_token
        .then(|| steps.looked_up(args.model.as_deref()))
        .flatten()
    {
        // the records the model runs' steps are composed from, wherever they are
        let mut picked = StepRecords::default();
        reread_sources(&sources, |r| -> Result<(), CliError> {
            if StepRecords::from_model_command(r.record) || keys.contains(&r.record.setting_key()) {
                picked.push(r.record.clone());
            }
            Ok(())
        })?;
        steps = picked;
    }
    let summaries: Vec<SourceSummary> = sources
        .iter()
        .filter(|s| s.has_points())
        .map(|s| SourceSummary {
            path: s.path.display().to_string(),
            records: s.records,
        })
        .collect();
    let plots = match &args.plots {
        Some(dir) => report_plots_digest(&digest.settings, objective, dir).map_err(plot_error)?,
        None => Vec::new(),
    };
    let priced = costs.priced() || costs.pue.is_some();
    if priced && matches!(fmt, TableFormat::Json | TableFormat::Csv) {
        eprintln!(
            "note: --format csv and json give every record; the costs are in --format table and markdown"
        );
    }
    // one table of one kind is what a CSV or JSON reader expects
    let runs_after = !runs.is_empty() && matches!(fmt, TableFormat::Table | TableFormat::Markdown);
    if !runs.is_empty() && !runs_after {
        eprintln!(
            "note: {} `joulebench run` record(s) are not in the {} output beside the kernel \
             points; report their file alone, or use --format table or markdown",
            runs.len(),
            args.format
        );
    }
    let stdout = args.out.is_none();
    // the results table's digest, apart: the document lets the settings' runs go
    let table = std::mem::take(&mut digest.table);
    write_to(args.out.as_deref(), args.force, |w| {
        match fmt {
            TableFormat::Markdown => write_markdown_report(
                &mut digest,
                &steps.records,
                &summaries,
                objective,
                &ReportOptions {
                    baseline,
                    costs,
                    model: args.model.clone(),
                },
                &links(&plots, args.out.as_deref()),
                &mut |w: &mut dyn Write| write_records_table(&sources, &table, fmt, w),
                w,
            ),
            TableFormat::Json | TableFormat::Csv => {
                write_records_table(&sources, &table, fmt, w)?;
                if fmt == TableFormat::Json {
                    w.write_all(b"\n")?;
                }
                Ok(())
            }
            TableFormat::Table => {
                // the repeats table's figures kept, the recommendations that price
                // the results are made of the runs, let go
                let repeats = Repeats::of(&digest.settings);
                let priced = priced
                    .then(|| report_recommendations(&mut digest.settings, objective, &baseline))
                    .filter(|recs| !recs.is_empty())
                    .map(|recs| format!("{}\n", cost_table(&recs, &costs).render(fmt)))
                    .unwrap_or_default();
                write!(w, "{}\n\n", digest.settings.status_line())?;
                write_records_table(&sources, &table, fmt, w)?;
                w.write_all(b"\n")?;
                write_repeats_table(&digest.settings, &repeats, fmt, w)?;
                w.write_all(priced.as_bytes())?;
                w.write_all(flags_legend().render(fmt).as_bytes())?;
                Ok(())
            }
        }?;
        if runs_after {
            w.write_all(b"\n")?;
            w.write_all(run_text.as_bytes())?;
            if stdout && !run_text.ends_with('\n') {
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    })?;
    if let Some(out) = &args.out {
        eprintln!("Report written to {}", out.display());
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
    let digest = SettingsDigest::of(records);
    let recs = recommend_digest(&digest, objective, opts);
    print_recommendations(&digest, &recs, objective, fmt, opts, mix)
}

/// [`print_recommendation`] of the recommendations made of the records a digest
/// took in.
pub fn print_recommendations(
    digest: &SettingsDigest,
    recs: &[Recommendation],
    objective: Objective,
    fmt: TableFormat,
    opts: &RecommendOptions,
    mix: &Mix,
) -> Result<(), CliError> {
    if recs.is_empty() {
        return out::line(&format!(
            "No recommendation: no measured point with an energy figure ({}).",
            digest.status_line()
        ));
    }
    let devices = device_settings(recs, mix, objective);
    // made, written and let go one at a time: a campaign's tables are long
    const NAMES: [&str; 4] = [
        "recommendations",
        "attribution",
        "one_setting_per_gpu",
        "pareto_front",
    ];
    let table = |name: &str| match name {
        "recommendations" => recommendation_table_with(recs, objective, &opts.baseline),
        "attribution" => attribution_table(recs),
        "one_setting_per_gpu" => device_table(&devices, recs),
        _ => pareto_table(recs),
    };
    match fmt {
        TableFormat::Json => {
            let parse =
                |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap_or_default();
            let v: serde_json::Map<String, serde_json::Value> = NAMES
                .iter()
                .map(|&name| (name.to_string(), parse(table(name).render(fmt))))
                .collect();
            out::line(&serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        _ => out::stream(|w| {
            for (i, &name) in NAMES.iter().enumerate() {
                if i > 0 {
                    w.write_all(b"\n")?;
                }
                table(name).write_to(fmt, w)?;
            }
            Ok(())
        }),
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

/// `--precisions`, parsed; its error waits until the files have been read (their
/// errors come first).
pub fn precision_filter(list: Option<&str>) -> Result<Option<Vec<Precision>>, CliError> {
    list.map(|list| {
        parse_list(list, "precision", |p| {
            p.parse::<Precision>().map_err(|e| e.to_string())
        })
        .map_err(usage)
    })
    .transpose()
}

/// Whether `--precisions` (as [`precision_filter`] parsed it) keeps `r`.
pub fn keeps(filter: &Result<Option<Vec<Precision>>, CliError>, r: &Record) -> bool {
    match filter {
        Ok(Some(keep)) => keep.contains(&r.precision),
        _ => true,
    }
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
    let filter = precision_filter(args.precisions.as_deref());
    // read_sources hands each record over once
    let mut digest = SettingsDigest::of_deduplicated_reads();
    let sources = read_sources(&args.files, true, |r| -> Result<(), CliError> {
        if keeps(&filter, r.record) {
            digest.push(r.record, r.file);
        }
        Ok(())
    })?;
    filter?;
    digest.shrink_to_fit();
    mix.check(&digest.workloads())
        .map_err(|e| usage(format!("--weights: {e}")))?;
    let mut opts = RecommendOptions {
        by: GroupBy::Device,
        baseline,
        noise,
    };
    // each setting made once of its runs, which are let go: grouped per GPU for the
    // tables, then per model for --emit
    let mut made = make_settings(&mut digest, opts.noise);
    let recs = recommend_made(&digest, &mut made, objective, &opts);
    let printed = print_recommendations(&digest, &recs, objective, fmt, &opts, &mix);
    made.give_back(recs);
    printed?;
    if let Some(emit) = emit {
        opts.by = GroupBy::Model;
        let recs = recommend_made(&digest, &mut made, objective, &opts);
        if recs.is_empty() {
            return Err(usage(format!(
                "--emit: nothing to write, no measured point with an energy figure ({})",
                digest.status_line()
            )));
        }
        let devices = device_settings(&recs, &mix, objective);
        let names: Vec<String> = sources
            .iter()
            .map(|s| s.path.display().to_string())
            .collect();
        let mut file =
            SettingsFile::from_digest(&devices, &recs, &digest, &names, objective, &opts.baseline);
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

    /// The committed simulated records, each line as written.
    fn lines() -> Vec<String> {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/sim/sim-h200-quick.jsonl");
        let text = std::fs::read_to_string(p).unwrap();
        text.lines().take(6).map(str::to_string).collect()
    }

    /// The three second reads of `path` after a first read of it.
    fn second_reads(sources: &[SourceRead]) -> [Result<usize, String>; 3] {
        let mut n = 0;
        let records = reread_sources(sources, |_| -> Result<(), CliError> {
            n += 1;
            Ok(())
        })
        .map(|()| n);
        let mut n = 0;
        let fields = reread_as(sources, |_: serde_json::Value| -> Result<(), CliError> {
            n += 1;
            Ok(())
        })
        .map(|()| n);
        let mut n = 0;
        let raw = reread_lines(sources, |_| -> Result<(), CliError> {
            n += 1;
            Ok(())
        })
        .map(|()| n);
        [records, fields, raw].map(|r| r.map_err(|e| format!("{} (exit {})", e, e.exit_code())))
    }

    #[test]
    fn a_file_rewritten_between_the_two_reads_is_refused_one_appended_to_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let lines = lines();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let first = || {
            read_sources(
                std::slice::from_ref(&path),
                false,
                |_| -> Result<(), CliError> { Ok(()) },
            )
            .unwrap()
        };
        // a sweep appends: the second reads see what the first did
        let sources = first();
        std::fs::write(&path, lines.join("\n") + "\n" + &lines[0] + "\n").unwrap();
        assert_eq!(second_reads(&sources), [Ok(6), Ok(6), Ok(6)]);
        // rewritten with as many records, one measured at another moment
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let sources = first();
        let mut other = lines.clone();
        // its start time's second digit changed in place: as many bytes, another moment
        let at = other[3].find("\"unix_time_s\":").unwrap() + "\"unix_time_s\":".len() + 1;
        let digit = other[3].as_bytes()[at];
        assert!(digit.is_ascii_digit(), "{}", &other[3][at - 20..at + 5]);
        let changed = if digit == b'9' {
            '0'
        } else {
            (digit + 1) as char
        };
        other[3].replace_range(at..at + 1, &changed.to_string());
        assert_ne!(other[3], lines[3]);
        std::fs::write(&path, other.join("\n") + "\n").unwrap();
        for r in second_reads(&sources) {
            let e = r.unwrap_err();
            assert!(
                e.contains("r.jsonl changed while it was read: its second read found other lines"),
                "{e}"
            );
            assert!(e.ends_with("(exit 3)"), "{e}");
        }
        // the check proves itself: without it, the rewritten lines pass
        SAME_LINES_UNCHECKED.with(|c| c.set(true));
        let unchecked = second_reads(&sources);
        SAME_LINES_UNCHECKED.with(|c| c.set(false));
        assert_eq!(unchecked, [Ok(6), Ok(6), Ok(6)]);
        // rewritten with a record fewer
        std::fs::write(&path, lines[..5].join("\n") + "\n").unwrap();
        for r in second_reads(&sources) {
            let e = r.unwrap_err();
            assert!(
                e.contains("its first read found 6 records, its second 5"),
                "{e}"
            );
        }
    }

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
