//! `joulebench model`: a transformer's training step — or its prefill and decode —
//! measured on one device. The model, the layout and every axis are checked before
//! anything opens; the distinct op shapes are measured as a sweep (with `sweep`'s
//! device, meter, power-cap and clock guard, progress and `--resume`), then composed
//! from the results file into joules per token per setting, beside an estimate of
//! whether the layout fits the card, with a recommendation, a plot and a
//! settings-file entry.

use crate::args::{parse_list, ModelArgs, SweepArgs};
use crate::emit::{parse_emit, write_emit, Emit};
use crate::error::{io, runtime, usage, CliError};
use crate::paths::{check_plot_dir, refuse_input_as_output, refuse_shared_outputs};
use crate::results::{noise_floor, objective_from};
use crate::sweep::{check_out, parse_overrides, run_with};
use joulebench_analysis::chart::{render, slug, Chart, PlotError};
use joulebench_analysis::inference::{inference_settings_table, levers_table, requests_table};
use joulebench_analysis::memory::{
    layout_flags, per_gpu_ops_table, serving_memory_table, training_memory_table,
};
use joulebench_analysis::recommend::Objective;
use joulebench_analysis::settings_file::{SETTINGS_FORMAT, SETTINGS_VERSION};
use joulebench_analysis::significance::NoiseFloor;
use joulebench_analysis::step::{
    missing_notes, recommend_steps, recommendation_tables, settings_table, step_chart,
    step_settings_file, summary_table, Baseline,
};
use joulebench_analysis::table::{Table, TableFormat};
use joulebench_core::record::{read_records, Record};
use joulebench_core::{Backend, ClockSpec, Precision};
use joulebench_model::compose::{compose, StepFigures};
use joulebench_model::config::{ModelConfig, ModelError};
use joulebench_model::inference::{phase_ops, InferenceOptions, Phase};
use joulebench_model::layout::Layout;
use joulebench_model::memory::{
    serving_memory, smallest_serving_layout, smallest_training_layouts, MemoryOptions,
};
use joulebench_model::peak::published_dense_peaks;
use joulebench_model::plan::{ModelPlan, PlanError, PlanOptions};
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

fn whole_numbers(list: &str, what: &str) -> Result<Vec<u64>, CliError> {
    parse_list(list, what, |b| match b.parse::<u64>() {
        Ok(0) | Err(_) => Err(format!("{what} '{b}' must be a whole number ≥ 1")),
        Ok(v) => Ok(v),
    })
    .map_err(usage)
}

/// The card's published dense peaks; a simulated profile is named after its card
/// ("sim-h200"), so MFU is against the same datasheet figure the card would use.
fn card_peaks(backend: &dyn Backend) -> Vec<(Precision, f64)> {
    published_dense_peaks(&backend.device().name)
}

/// Whether the full table was asked for.
fn full_table(args: &ModelArgs) -> Result<bool, CliError> {
    match args.table.as_str() {
        "summary" => Ok(false),
        "full" => Ok(true),
        other => Err(usage(format!(
            "--table '{other}': expected summary or full"
        ))),
    }
}

pub fn run(args: &ModelArgs) -> Result<(), CliError> {
    let model = load_model(args)?;
    let layout = Layout {
        tensor_parallel: args.tensor_parallel,
        pipeline_parallel: args.pipeline_parallel,
        data_parallel: args.data_parallel,
    };
    layout.validate(&model).map_err(model_error)?;
    if args.zero_stage > 3 {
        return Err(usage(format!(
            "--zero-stage {} must be 0, 1, 2 or 3",
            args.zero_stage
        )));
    }
    let memory = MemoryOptions {
        zero_stage: args.zero_stage,
    };
    let micro_batches = args
        .micro_batches
        .as_deref()
        .map(|l| whole_numbers(l, "micro-batch"))
        .transpose()?
        .unwrap_or_default();
    let inference = if args.inference {
        if args.micro_batches.is_some() {
            return Err(usage(
                "--micro-batches is for training; with --inference give --decode-batches",
            ));
        }
        let opts = InferenceOptions {
            prompt_len: args.prompt_len,
            output_len: args.output_len,
            batches: whole_numbers(&args.decode_batches, "decode batch")?,
            kv_lens: args
                .kv_lens
                .as_deref()
                .map(|l| whole_numbers(l, "KV-cache length"))
                .transpose()?
                .unwrap_or_default(),
        };
        opts.validate(&model).map_err(model_error)?;
        Some(opts)
    } else {
        None
    };
    // every shape checked before anything opens
    match &inference {
        Some(inf) => {
            phase_ops(
                &model,
                Phase::Prefill {
                    prompt_len: inf.prompt_len,
                },
                1,
                &layout,
            )
            .map_err(model_error)?;
            for kv_len in inf.kv_lens() {
                for &b in &inf.batches {
                    phase_ops(&model, Phase::Decode { kv_len }, b, &layout).map_err(model_error)?;
                }
            }
        }
        None => {
            for &mb in &micro_batches {
                phase_ops(&model, Phase::Train, mb, &layout).map_err(model_error)?;
            }
        }
    }
    let full = full_table(args)?;
    let fmt: TableFormat = args.format.parse().map_err(usage)?;
    let objective = objective_from(
        args.objective,
        args.measure.max_slowdown.as_deref(),
        args.eta,
        None,
    )?;
    let noise = noise_floor(&args.noise_floor)?;
    let asked_baseline = args
        .baseline
        .as_deref()
        .map(Baseline::parse)
        .transpose()
        .map_err(usage)?;
    if args.emit.is_some() && inference.is_some() {
        return Err(usage(
            "--emit writes a training step's setting; with --inference read the tables",
        ));
    }
    let emit = parse_emit(args.emit.as_deref(), args.force, &[])?;
    let mut sweep = SweepArgs::single(args.measure.clone());
    sweep.sm_clocks = args.sm_clocks.clone();
    sweep.allow_clock_changes = args.allow_clock_changes;
    let ov = parse_overrides(&sweep)?;
    // no output onto an input or onto another output, whatever --force says
    let inputs: Vec<PathBuf> = args.config.iter().cloned().collect();
    check_out(&sweep, &inputs, "the results file whose records to reuse")?;
    if let Some(e) = &emit {
        refuse_input_as_output(&e.path, &inputs, "--emit")?;
        if let Some(out) = &sweep.out {
            refuse_shared_outputs(&[(out, "--out"), (&e.path, "--emit")])?;
        }
    }
    if let Some(dir) = &args.plots {
        check_plot_dir(dir, "--plots")?;
    }

    eprintln!("model {}", model.describe());
    if !layout.is_single() {
        eprintln!("layout {layout}: each GPU's share of the ops is measured");
    }
    let mut planned: Option<ModelPlan> = None;
    // the axes come from the flags alone: a sweep preset's axes are for its own shapes
    let (precisions, caps, kernels) = (
        ov.precisions.clone().unwrap_or_default(),
        ov.power_caps.clone().unwrap_or_default(),
        ov.kernels.clone().unwrap_or_default(),
    );
    let clocks_asked = ov.sm_clocks.is_some();
    let measured = run_with(&sweep, &ov, |sweep, dev| {
        // resolved against the clocks the GPU supports
        let sweep = sweep.resolve_clocks(dev)?;
        let sm_clocks = if clocks_asked {
            sweep
                .config()
                .sm_clocks
                .iter()
                .map(|c| match c {
                    ClockSpec::Mhz(m) => Some(*m),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        let backend = dev.backend.as_ref();
        let mut plan = ModelPlan::new(
            &model,
            backend,
            &PlanOptions {
                precisions: precisions.clone(),
                micro_batches: micro_batches.clone(),
                caps: caps.clone(),
                sm_clocks,
                kernels: kernels.clone(),
                all: args.all,
                layout,
                memory,
                inference: inference.clone(),
            },
        )
        .map_err(plan_error)?;
        plan.peak_tflops = card_peaks(backend);
        for n in &plan.notes {
            eprintln!("plan: {n}");
        }
        warn_if_too_big(&plan);
        let points = plan.points();
        eprintln!(
            "{} settings ({}) from {} distinct op points",
            plan.settings.len(),
            if args.all {
                "every combination of the axes"
            } else {
                "the baseline and the settings most likely to matter; every combination: --all"
            },
            points.len()
        );
        planned = Some(plan);
        Ok(sweep.with_points(dev, points)?)
    })?;
    // --dry-run: the plan was shown, nothing measured
    let Some((_, out)) = measured else {
        return Ok(());
    };
    let plan = planned.ok_or_else(|| runtime("no plan was made"))?;
    let records = read_records(&out)?;
    let figures = compose(&plan, &records);
    if plan.inference.is_some() {
        return report_inference(&plan, &figures, objective, fmt, full, &out);
    }
    let baseline = match asked_baseline {
        Some(b) => b,
        None => plan
            .baseline
            .as_ref()
            .map(|b| Baseline {
                precision: Some(b.precision),
                batch: Some(b.micro_batch),
                cap: Some(b.cap),
                kernels: Some(vec![
                    b.kernels.matmul.clone(),
                    b.kernels.attention.clone(),
                    b.kernels.attention_backward.clone(),
                ]),
            })
            .unwrap_or_default(),
    };
    let step = StepInputs {
        figures: &figures,
        records: &records,
        objective,
        baseline: &baseline,
        noise,
    };
    report_training(&plan, &step, fmt, full, args, &out, emit)
}

/// Before anything is measured: a training layout that does not fit the card even at
/// micro-batch 1 with full recomputation, and the smallest one that does.
fn warn_if_too_big(plan: &ModelPlan) {
    let Some(card) = plan.device.memory_bytes.filter(|&b| b > 0) else {
        return;
    };
    if plan.inference.is_some() {
        return;
    }
    let e = plan.training_memory(1);
    if e.fits(card).1 {
        return;
    }
    let (_, smallest) = smallest_training_layouts(
        &plan.model,
        1,
        plan.layout.data_parallel,
        &plan.memory_options,
        card,
    );
    eprintln!(
        "warning: {} does not fit on {} of this card ({:.0} GiB per GPU at micro-batch 1 with \
         full recomputation, estimated; the card has {:.0} GiB){}; what follows measures this \
         layout's per-GPU work as if it did",
        plan.model.name,
        plan.layout,
        e.total_bytes(true) / (1u64 << 30) as f64,
        card as f64 / (1u64 << 30) as f64,
        match smallest {
            Some(l) => format!(
                "; the smallest layout that fits: {l} ({})",
                layout_flags(&l)
            ),
            None => String::new(),
        }
    );
}

/// One GPU's training memory per micro-batch, the verdict and the smallest layout.
fn memory_table(plan: &ModelPlan, figures: &[StepFigures]) -> Table {
    let mut mbs: Vec<u64> = figures.iter().map(|f| f.setting.micro_batch).collect();
    mbs.sort_unstable();
    mbs.dedup();
    let estimates: Vec<_> = mbs.iter().map(|&mb| plan.training_memory(mb)).collect();
    let card = plan.device.memory_bytes.filter(|&b| b > 0);
    let smallest = match card {
        Some(c) => smallest_training_layouts(
            &plan.model,
            mbs.first().copied().unwrap_or(1),
            plan.layout.data_parallel,
            &plan.memory_options,
            c,
        ),
        None => (None, None),
    };
    training_memory_table(
        &plan.model.name,
        &plan.layout,
        plan.memory_options.zero_stage,
        card,
        &estimates,
        smallest,
    )
}

fn print_tables(
    tables: &[Table],
    figures: &[StepFigures],
    fmt: TableFormat,
) -> Result<(), CliError> {
    match fmt {
        TableFormat::Json => {
            let parse = |t: &Table| {
                serde_json::from_str::<serde_json::Value>(&t.render(fmt)).unwrap_or_default()
            };
            let v = serde_json::json!({
                "tables": tables.iter().map(|t| serde_json::json!({
                    "title": t.title,
                    "notes": t.notes,
                    "rows": parse(t),
                })).collect::<Vec<_>>(),
                "settings": figures,
            });
            crate::out::line(&serde_json::to_string_pretty(&v).unwrap_or_default())?;
        }
        _ => {
            for t in tables {
                crate::out::line(&t.render(fmt))?;
            }
        }
    }
    Ok(())
}

/// What a step's advice is made from.
struct StepInputs<'a> {
    figures: &'a [StepFigures],
    records: &'a [Record],
    objective: Objective,
    baseline: &'a Baseline,
    noise: NoiseFloor,
}

fn report_training(
    plan: &ModelPlan,
    step: &StepInputs,
    fmt: TableFormat,
    full: bool,
    args: &ModelArgs,
    out: &std::path::Path,
    emit: Option<Emit>,
) -> Result<(), CliError> {
    let (figures, objective) = (step.figures, step.objective);
    let recs = recommend_steps(figures, step.records, objective, step.baseline, step.noise);
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
    let mut tables: Vec<Table> = vec![memory_table(plan, figures)];
    if !plan.layout.is_single() {
        let base = plan
            .baseline
            .as_ref()
            .and_then(|b| figures.iter().find(|f| &f.setting == b))
            .or(figures.first());
        if let Some(f) = base {
            if let Ok(ops) = plan.ops(&f.setting) {
                tables.push(per_gpu_ops_table(
                    &plan.model.name,
                    &plan.layout,
                    plan.model.layers,
                    &ops,
                    f,
                ));
            }
        }
    }
    let missing = missing_notes(figures);
    let add_missing = |t: &mut Table| {
        if !missing.is_empty() {
            t.notes
                .push("Missing ops (no per-token figure is given without them):".into());
            t.notes.extend(missing.iter().map(|m| format!("  {m}")));
        }
    };
    if full || recs.is_empty() {
        let mut settings = settings_table(&recs, &orphans);
        add_missing(&mut settings);
        tables.push(settings);
        for r in &recs {
            tables.extend(recommendation_tables(r, objective));
        }
    } else {
        for r in &recs {
            let mut t = summary_table(r, objective);
            add_missing(&mut t);
            tables.push(t);
        }
    }
    // the planner's choices go with the first table of figures
    let planner: Vec<String> = plan.notes.iter().map(|n| format!("plan: {n}")).collect();
    let first_figures = if plan.layout.is_single() { 1 } else { 2 };
    if let Some(t) = tables.get_mut(first_figures) {
        t.notes.extend(planner);
    }
    print_tables(&tables, figures, fmt)?;
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
    if let Some(emit) = emit {
        if recs.is_empty() {
            return Err(usage(
                "--emit: nothing to write, no setting has every op measured with energy",
            ));
        }
        let mut file = step_settings_file(
            &recs,
            step.records,
            &out.display().to_string(),
            objective,
            &plan.layout.to_string(),
        );
        file.noise_floor_fraction = Some(step.noise.busy);
        let said = write_emit(&emit, &file, args.force)?;
        if said.is_empty() {
            eprintln!(
                "the chosen setting of {} written to {} ({SETTINGS_FORMAT} version {SETTINGS_VERSION}, [[model.<name>]]){}",
                file.models.keys().cloned().collect::<Vec<_>>().join(", "),
                emit.path.display(),
                if file.simulated { "; SIMULATED data" } else { "" }
            );
        } else {
            eprintln!("{said}");
        }
    }
    eprintln!(
        "Again from the file, nothing measured twice: the same command with --resume --out {}",
        out.display()
    );
    Ok(())
}

fn report_inference(
    plan: &ModelPlan,
    figures: &[StepFigures],
    objective: Objective,
    fmt: TableFormat,
    full: bool,
    out: &std::path::Path,
) -> Result<(), CliError> {
    let Some(inf) = &plan.inference else {
        return Ok(());
    };
    let card = plan.device.memory_bytes.filter(|&b| b > 0);
    let weight_bytes = if figures
        .iter()
        .all(|f| f.setting.precision == Precision::Fp8E4m3)
    {
        1.0
    } else {
        2.0
    };
    let mut rows = Vec::new();
    for kv_len in inf.kv_lens() {
        for &b in &inf.batches {
            rows.push((
                b,
                kv_len,
                serving_memory(&plan.model, &plan.layout, b, kv_len, weight_bytes),
            ));
        }
    }
    let largest = rows
        .iter()
        .max_by(|a, b| a.2.kv_cache_bytes.total_cmp(&b.2.kv_cache_bytes))
        .map(|r| (r.0, r.1));
    let smallest = match (card, largest) {
        (Some(c), Some((b, l))) => smallest_serving_layout(&plan.model, b, l, weight_bytes, c),
        _ => None,
    };
    let mut tables = vec![serving_memory_table(
        &plan.model.name,
        &plan.layout,
        card,
        &rows,
        if weight_bytes == 1.0 { "fp8" } else { "bf16" },
        smallest,
    )];
    tables.push(levers_table(figures, objective));
    tables.push(requests_table(figures, inf, objective, full));
    if full || figures.iter().any(|f| !f.is_complete()) {
        let mut t = inference_settings_table(figures);
        let missing = missing_notes(figures);
        if !missing.is_empty() {
            t.notes
                .push("Missing ops (no per-token figure is given without them):".into());
            t.notes.extend(missing.iter().map(|m| format!("  {m}")));
        }
        tables.push(t);
    }
    if let Some(t) = tables.get_mut(1) {
        t.notes
            .extend(plan.notes.iter().map(|n| format!("plan: {n}")));
    }
    print_tables(&tables, figures, fmt)?;
    eprintln!(
        "Again from the file, nothing measured twice: the same command with --resume --out {}",
        out.display()
    );
    Ok(())
}
