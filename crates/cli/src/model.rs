//! `joulebench model`: a transformer's training step measured on one device. The
//! model and every axis are checked before anything opens; the step's distinct op
//! shapes are measured as a sweep (with `sweep`'s device, meter, power-cap guard,
//! progress and `--resume`), then composed from the results file into joules per
//! token per setting, with a recommendation, a plot and a settings-file entry.

use crate::args::{parse_list, ModelArgs, ObjectiveChoice, SweepArgs};
use crate::error::{io, runtime, usage, CliError};
use crate::paths::{
    check_new_output, check_plot_dir, refuse_input_as_output, refuse_shared_outputs, write_output,
};
use crate::sweep::{check_results_path, parse_overrides, run_with};
use joulebench_analysis::chart::{render, slug, Chart, PlotError};
use joulebench_analysis::recommend::Objective;
use joulebench_analysis::settings_file::{SettingsFormat, SETTINGS_FORMAT, SETTINGS_VERSION};
use joulebench_analysis::step::{
    missing_notes, recommend_steps, recommendation_tables, settings_table, step_chart,
    step_settings_file, Baseline,
};
use joulebench_analysis::table::{Table, TableFormat};
use joulebench_core::record::read_records;
use joulebench_model::compose::{compose, StepFigures};
use joulebench_model::config::{ModelConfig, ModelError};
use joulebench_model::plan::{ModelPlan, PlanError, PlanOptions};
use joulebench_model::step::step_ops;
use std::path::PathBuf;

fn model_error(e: ModelError) -> CliError {
    match e {
        ModelError::Read { ref source, .. } if source.kind() != std::io::ErrorKind::NotFound => {
            io(e)
        }
        _ => usage(e),
    }
}

fn plan_error(e: PlanError) -> CliError {
    match e {
        PlanError::Model(m) => model_error(m),
        PlanError::NoKernel { .. } => runtime(e),
        _ => usage(e),
    }
}

/// The model, from `--preset` or `--config` (clap makes sure there is exactly one).
fn load_model(args: &ModelArgs) -> Result<ModelConfig, CliError> {
    match (&args.preset, &args.config) {
        (Some(name), _) => ModelConfig::preset(name).map_err(model_error),
        (None, Some(path)) => ModelConfig::from_toml_file(path).map_err(model_error),
        (None, None) => Err(usage("give --preset NAME or --config FILE.toml")),
    }
}

pub fn run(args: &ModelArgs) -> Result<(), CliError> {
    let model = load_model(args)?;
    let micro_batches = parse_list(&args.micro_batches, "micro-batch", |b| {
        match b.parse::<u64>() {
            Ok(0) | Err(_) => Err(format!("micro-batch '{b}' must be a whole number ≥ 1")),
            Ok(v) => Ok(v),
        }
    })
    .map_err(usage)?;
    for &mb in &micro_batches {
        step_ops(&model, mb).map_err(model_error)?;
    }
    let fmt: TableFormat = args.format.parse().map_err(usage)?;
    if !(0.0..=1.0).contains(&args.eta) {
        return Err(usage(format!("--eta {} must be between 0 and 1", args.eta)));
    }
    let baseline = Baseline::parse(args.baseline.as_deref().unwrap_or("")).map_err(usage)?;
    let emit = match args.emit.as_deref() {
        Some([f, path]) => {
            let format: SettingsFormat = f.parse().map_err(|e| usage(format!("--emit: {e}")))?;
            let path = PathBuf::from(path);
            check_new_output(&path, args.force, "--emit")?;
            Some((format, path))
        }
        Some(_) => return Err(usage("--emit takes a format and a file: --emit toml FILE")),
        None => None,
    };
    let sweep = SweepArgs::single(args.measure.clone());
    let ov = parse_overrides(&sweep)?;
    if sweep.resume && sweep.out.is_none() {
        return Err(usage(
            "--resume needs --out FILE: the results file whose records to reuse",
        ));
    }
    if let Some(out) = &sweep.out {
        check_results_path(out, sweep.resume)?;
    }
    // no output onto an input or onto another output, whatever --force says
    let inputs: Vec<PathBuf> = args.config.iter().cloned().collect();
    if let Some(out) = &sweep.out {
        refuse_input_as_output(out, &inputs, "--out")?;
    }
    if let Some((_, path)) = &emit {
        refuse_input_as_output(path, &inputs, "--emit")?;
        if let Some(out) = &sweep.out {
            refuse_shared_outputs(&[(out, "--out"), (path, "--emit")])?;
        }
    }
    if let Some(dir) = &args.plots {
        check_plot_dir(dir, "--plots")?;
    }
    let objective = match args.objective {
        ObjectiveChoice::WithinSlowdown => Objective::WithinSlowdown {
            max_slowdown: ov.max_slowdown,
        },
        ObjectiveChoice::LeastEnergy => Objective::LeastEnergy,
        ObjectiveChoice::EnergyDelay => Objective::EnergyDelay,
        ObjectiveChoice::Zeus => Objective::ZeusCost {
            eta: args.eta,
            max_power_w: None,
        },
    };

    eprintln!("model {}", model.describe());
    let mut planned: Option<ModelPlan> = None;
    let (_, out) = run_with(&sweep, &ov, |cfg, backend| {
        let plan = ModelPlan::new(
            &model,
            backend,
            &PlanOptions {
                precisions: cfg.precisions.clone(),
                micro_batches: micro_batches.clone(),
                caps: cfg.power_caps.clone(),
                kernels: cfg.kernels.clone(),
            },
        )
        .map_err(plan_error)?;
        let points = plan.points();
        eprintln!(
            "{} settings (precision × micro-batch × power cap × kernels) from {} distinct op points",
            plan.settings.len(),
            points.len()
        );
        planned = Some(plan);
        Ok(points)
    })?;
    let plan = planned.ok_or_else(|| runtime("no plan was made"))?;
    let records = read_records(&out)?;
    let figures = compose(&plan, &records);
    report(&figures, objective, &baseline, fmt, args, &out, emit)
}

fn report(
    figures: &[StepFigures],
    objective: Objective,
    baseline: &Baseline,
    fmt: TableFormat,
    args: &ModelArgs,
    out: &std::path::Path,
    emit: Option<(SettingsFormat, PathBuf)>,
) -> Result<(), CliError> {
    let recs = recommend_steps(figures, objective, baseline);
    let shown: std::collections::BTreeSet<(String, String)> = recs
        .iter()
        .map(|r| (r.model.clone(), r.device.clone()))
        .collect();
    // settings of a model and device with no complete setting at all
    let orphans: Vec<StepFigures> = figures
        .iter()
        .filter(|f| !shown.contains(&(f.model.clone(), f.device.clone())))
        .cloned()
        .collect();
    let mut settings = settings_table(&recs, &orphans);
    let missing = missing_notes(figures);
    if !missing.is_empty() {
        settings
            .notes
            .push("Missing ops (no per-token figure is given without them):".into());
        settings
            .notes
            .extend(missing.iter().map(|m| format!("  {m}")));
    }
    let mut tables: Vec<Table> = vec![settings];
    for r in &recs {
        tables.extend(recommendation_tables(r, objective));
    }
    match fmt {
        TableFormat::Json => {
            let parse = |t: &Table| {
                serde_json::from_str::<serde_json::Value>(&t.render(fmt)).unwrap_or_default()
            };
            let v = serde_json::json!({
                "tables": tables.iter().map(parse).collect::<Vec<_>>(),
                "settings": figures,
            });
            crate::paths::println_stdout(&serde_json::to_string_pretty(&v).unwrap_or_default())?;
        }
        _ => {
            let text: String = tables
                .iter()
                .map(|t| format!("{}\n", t.render(fmt)))
                .collect();
            crate::paths::print_stdout(&text)?;
        }
    }
    if recs.is_empty() {
        eprintln!("No recommendation: no setting has every op of the step measured with energy.");
    }
    if let Some(dir) = &args.plots {
        let mut written = 0;
        for r in &recs {
            render(
                &Chart::Xy(step_chart(r, objective)),
                dir,
                &format!("step_{}_{}", slug(&r.model), slug(&r.device)),
            )
            .map_err(|e| match e {
                PlotError::Dir { .. } => usage(e),
                _ => runtime(e),
            })?;
            written += 1;
        }
        eprintln!(
            "{written} plot(s) written to {} (each as SVG and PNG)",
            dir.display()
        );
    }
    if let Some((format, path)) = emit {
        if recs.is_empty() {
            return Err(usage(
                "--emit: nothing to write, no setting has every op measured with energy",
            ));
        }
        let file = step_settings_file(&recs, &out.display().to_string(), objective);
        let text = file.to_string(format).map_err(runtime)?;
        write_output(&path, &text, args.force, "--emit")?;
        eprintln!(
            "the chosen setting of {} written to {} ({SETTINGS_FORMAT} version {SETTINGS_VERSION}, [[model.<name>]]){}",
            file.models.keys().cloned().collect::<Vec<_>>().join(", "),
            path.display(),
            if file.simulated { "; SIMULATED data" } else { "" }
        );
    }
    eprintln!(
        "Again from the file, nothing measured twice: the same command with --resume --out {}",
        out.display()
    );
    Ok(())
}
