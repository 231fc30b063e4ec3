//! A model's layout as tables: whether it fits the card — one GPU's memory estimate
//! per micro-batch (weights, gradients, optimizer states, activations with and without
//! recomputation) or per decode batch (weights, KV cache), the verdict, and the
//! smallest layout that fits; every such table says it is an estimate — and what
//! each GPU of a parallel layout computes.

use crate::table::Table;
use joulebench_model::compose::StepFigures;
use joulebench_model::layout::Layout;
use joulebench_model::memory::{MemoryEstimate, ServingMemory, USABLE_FRACTION};
use joulebench_model::step::{Category, StepOp};

fn gib(bytes: f64) -> String {
    format!("{:.1}", bytes / (1u64 << 30) as f64)
}

fn card(card_bytes: Option<u64>) -> String {
    card_bytes
        .map(|b| format!("{} GiB", gib(b as f64)))
        .unwrap_or_else(|| "unknown".into())
}

const COMMUNICATION: &str = "Communication (tensor-parallel all-reduces, pipeline sends, the \
    data-parallel gradient all-reduce) is not measured and is in no figure.";

/// How to run the smallest layout that fits, as flags.
pub fn layout_flags(l: &Layout) -> String {
    let mut f = Vec::new();
    if l.tensor_parallel > 1 {
        f.push(format!("--tensor-parallel {}", l.tensor_parallel));
    }
    if l.pipeline_parallel > 1 {
        f.push(format!("--pipeline-parallel {}", l.pipeline_parallel));
    }
    if l.data_parallel > 1 {
        f.push(format!("--data-parallel {}", l.data_parallel));
    }
    f.join(" ")
}

/// Training memory per micro-batch on `layout`, the verdict, and the smallest
/// layouts that fit (without and with recomputation) at the first micro-batch.
pub fn training_memory_table(
    model: &str,
    layout: &Layout,
    zero_stage: u8,
    card_bytes: Option<u64>,
    estimates: &[MemoryEstimate],
    smallest: (Option<Layout>, Option<Layout>),
) -> Table {
    let mut t = Table::new(
        format!(
            "Training memory of {model} per GPU on {layout}, card {} (ESTIMATE)",
            card(card_bytes)
        ),
        &[
            "micro-batch",
            "weights (GiB)",
            "gradients (GiB)",
            "optimizer (GiB)",
            "activations (GiB)",
            "recomputed (GiB)",
            "total (GiB)",
            "fits",
        ],
    );
    t.notes.push(format!(
        "An estimate, not a measurement: mixed-precision Adam (bf16 weights and gradients, fp32 master \
         weights, momentum and variance: 16 bytes per parameter{}), activations kept for the backward \
         pass with this model's widths (Korthikanti et al. 2022; tensor parallelism with sequence \
         parallelism; 1F1B: the first stage keeps one micro-batch per stage), \"recomputed\" with full \
         recomputation; {:.0}% of the card usable.",
        if zero_stage > 0 {
            format!(", ZeRO stage {zero_stage} across the data-parallel copies")
        } else {
            String::new()
        },
        USABLE_FRACTION * 100.0
    ));
    for e in estimates {
        let fits = match card_bytes.map(|b| e.fits(b)) {
            Some((true, _)) => "yes",
            Some((false, true)) => "with full recomputation",
            Some((false, false)) => "no",
            None => "unknown",
        };
        let total = match card_bytes.map(|b| e.fits(b)) {
            Some((false, true)) => e.total_bytes(true),
            _ => e.total_bytes(false),
        };
        t.push(vec![
            e.micro_batch.to_string(),
            gib(e.weights_bytes),
            gib(e.gradients_bytes),
            gib(e.optimizer_bytes),
            gib(e.activations_bytes),
            gib(e.activations_recomputed_bytes),
            gib(total),
            fits.into(),
        ]);
    }
    let fits_any = card_bytes.is_some_and(|b| estimates.iter().any(|e| e.fits(b).1));
    match (card_bytes, smallest) {
        (None, _) => t
            .notes
            .push("The card's memory is unknown: whether the layout fits is not judged.".into()),
        (Some(_), (plain, recompute)) if !fits_any => {
            let name = |l: Option<Layout>| match l {
                Some(l) => format!("{l}, {}", layout_flags(&l)),
                None => "none of up to TP 8 × PP 128".into(),
            };
            t.notes.push(format!(
                "{model} does not fit on {layout} of this card. The smallest layout that fits: {} \
                 without recomputation; {} with full recomputation. Run with those flags to measure \
                 what each GPU of that layout computes.",
                name(plain),
                name(recompute)
            ));
        }
        _ => {}
    }
    t.notes.push(COMMUNICATION.into());
    t
}

/// Serving memory per decode batch on `layout` and the smallest layout that serves
/// the largest batch.
pub fn serving_memory_table(
    model: &str,
    layout: &Layout,
    card_bytes: Option<u64>,
    rows: &[(u64, u64, ServingMemory)],
    weights_precision: &str,
    smallest: Option<Layout>,
) -> Table {
    let mut t = Table::new(
        format!(
            "Serving memory of {model} per GPU on {layout}, card {} (ESTIMATE)",
            card(card_bytes)
        ),
        &[
            "batch",
            "cached tokens",
            "weights (GiB)",
            "KV cache (GiB)",
            "total (GiB)",
            "fits",
        ],
    );
    t.notes.push(format!(
        "An estimate, not a measurement: {weights_precision} weights, a bf16 KV cache for every \
         sequence of the batch; {:.0}% of the card usable.",
        USABLE_FRACTION * 100.0
    ));
    let mut fits_all = true;
    for (batch, kv_len, m) in rows {
        let fits = card_bytes.map(|b| m.fits(b));
        fits_all &= fits != Some(false);
        t.push(vec![
            batch.to_string(),
            kv_len.to_string(),
            gib(m.weights_bytes),
            gib(m.kv_cache_bytes),
            gib(m.total_bytes()),
            match fits {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown",
            }
            .into(),
        ]);
    }
    if !fits_all {
        t.notes.push(match smallest {
            Some(l) => format!(
                "{model} does not serve the largest batch on {layout} of this card; the smallest layout \
                 that does: {l} ({})",
                layout_flags(&l)
            ),
            None => format!("{model} does not serve the largest batch on up to TP 8 × PP 128 of this card"),
        });
    }
    t.notes.push(COMMUNICATION.into());
    t
}

/// What one GPU of the busiest pipeline stage runs per step of `figure`'s setting:
/// every op at its tensor-parallel shape, the times it runs (the stage's layers; the
/// LM head on the last stage), and its FLOP.
pub fn per_gpu_ops_table(
    model: &str,
    layout: &Layout,
    layers: u64,
    ops: &[StepOp],
    figure: &StepFigures,
) -> Table {
    let stage_layers = layers.div_ceil(layout.pipeline_parallel.max(1));
    let mut t = Table::new(
        format!(
            "What each GPU of {model} on {layout} measures (the baseline's micro-batch {})",
            figure.setting.micro_batch
        ),
        &["op", "per-GPU shape", "runs per step", "GFLOP per run"],
    );
    t.notes.push(format!(
        "Tensor parallelism {} splits every GEMM and the attention heads (Megatron-LM); each of \
         the {} pipeline stages runs {stage_layers} of the {layers} layers (the last: the LM head \
         too). These shapes are what was measured; the step's energy is every GPU's.",
        layout.tensor_parallel, layout.pipeline_parallel
    ));
    if layout.data_parallel > 1 {
        t.notes.push(format!(
            "Data parallelism {} changes no GPU's work: the job runs {} such copies, {} GPUs, at {} times one copy's tokens per second (the gradient all-reduce not measured).",
            layout.data_parallel,
            layout.data_parallel,
            layout.gpus(),
            layout.data_parallel
        ));
    }
    if let (Some(j), Some(w)) = (figure.joules_per_step, figure.average_w()) {
        t.notes.push(format!(
            "Per GPU at the baseline: {:.1} J per step, {:.0} W on average over the busiest stage's time.",
            j / figure.gpus.max(1) as f64,
            w
        ));
    }
    for op in ops {
        let runs = if op.category == Category::Head {
            1
        } else {
            stage_layers
        };
        t.push(vec![
            format!("{} {}", op.layer, op.role.name()),
            op.workload.to_string(),
            runs.to_string(),
            format!("{:.1}", op.workload.flop().unwrap_or(0) as f64 / 1e9),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_model::memory::{smallest_training_layouts, training_memory, MemoryOptions};
    use joulebench_model::ModelConfig;

    #[test]
    fn a_model_too_big_for_one_gpu_is_told_how_many_it_needs() {
        let m = ModelConfig::preset("llama3-70b").unwrap();
        let card = 80u64 << 30;
        let one = Layout::single();
        let e = training_memory(&m, &one, 1, &MemoryOptions::default());
        let smallest = smallest_training_layouts(&m, 1, 1, &MemoryOptions::default(), card);
        let t = training_memory_table("llama3-70b", &one, 0, Some(card), &[e], smallest);
        assert!(t.title.contains("(ESTIMATE)"));
        assert_eq!(t.rows[0][7], "no");
        let verdict = t.notes.iter().find(|n| n.contains("does not fit")).unwrap();
        assert!(
            verdict.contains(
                "TP 8 × PP 3 (24 GPUs), --tensor-parallel 8 --pipeline-parallel 3 without"
            ) && verdict.contains("TP 8 × PP 2 (16 GPUs)"),
            "{verdict}"
        );
        assert!(t.notes.iter().any(|n| n.contains("not measured")));
        // on that layout it fits, and the verdict is gone
        let l = smallest.0.unwrap();
        let e = training_memory(&m, &l, 1, &MemoryOptions::default());
        let t = training_memory_table("llama3-70b", &l, 0, Some(card), &[e], smallest);
        assert_eq!(t.rows[0][7], "yes");
        assert!(!t.notes.iter().any(|n| n.contains("does not fit")));
    }
}
