//! Serving a model, as tables: energy per prompt token (prefill) and per output token
//! (decode) by setting, energy and time per request, and which lever binds where —
//! each lever (power cap, SM clock, precision, kernels) measured against the setting
//! that differs from the baseline in that lever alone, so a saving is credited to
//! the lever that made it. Decode is memory-bound: a cap above its draw never binds,
//! while a lower clock lowers the voltage without slowing it; the table says which.

use crate::format::{opt, pct};
use crate::recommend::Objective;
use crate::step::choose_step;
use crate::table::Table;
use joulebench_core::Precision;
use joulebench_model::compose::StepFigures;
use joulebench_model::inference::{InferenceOptions, Phase};
use std::collections::BTreeMap;

/// A change smaller than this fraction of the baseline is reported as none: it is
/// within what one run of the protocol repeats to.
pub const NOISE_FRACTION: f64 = 0.01;

/// The settings of one phase at one batch: what levers are compared within.
#[derive(Clone, Debug)]
pub struct PhaseGroup<'a> {
    pub phase: Phase,
    pub batch: u64,
    pub figures: Vec<&'a StepFigures>,
    /// bf16 (else the first precision), the default cap and clocks, the vendor
    /// libraries' kernels (else the first choice).
    pub baseline: Option<&'a StepFigures>,
}

/// Complete settings grouped by phase and batch, prefill first.
pub fn phase_groups(figures: &[StepFigures]) -> Vec<PhaseGroup<'_>> {
    let mut groups: BTreeMap<(Phase, u64), Vec<&StepFigures>> = BTreeMap::new();
    for f in figures.iter().filter(|f| f.is_complete()) {
        groups
            .entry((f.setting.phase, f.setting.micro_batch))
            .or_default()
            .push(f);
    }
    groups
        .into_iter()
        .map(|((phase, batch), figures)| {
            let precision = if figures
                .iter()
                .any(|f| f.setting.precision == Precision::Bf16)
            {
                Precision::Bf16
            } else {
                figures[0].setting.precision
            };
            let any_vendor = figures.iter().any(|f| f.setting.kernels.vendor);
            let baseline = figures.iter().copied().find(|f| {
                f.setting.precision == precision
                    && f.setting.cap.is_default()
                    && f.setting.sm_clock_mhz.is_none()
                    && (f.setting.kernels.vendor || !any_vendor)
            });
            PhaseGroup {
                phase,
                batch,
                figures,
                baseline,
            }
        })
        .collect()
}

fn mj(x: Option<f64>) -> String {
    opt(x.map(|j| j * 1e3), 4)
}

fn phase_name(p: &Phase) -> String {
    match p {
        Phase::Train => "training".into(),
        Phase::Prefill { prompt_len } => format!("prefill ({prompt_len} tokens)"),
        Phase::Decode { kv_len } => format!("decode ({kv_len} cached)"),
    }
}

fn simulated_note(figures: &[StepFigures]) -> Option<String> {
    figures
        .iter()
        .any(|f| f.simulated)
        .then(|| "SIMULATED DATA: from joulebench's model device, not a measurement.".to_string())
}

const SCOPE: &str = "Prefill: every layer's GEMMs over the prompt, causal attention over it, \
    the LM head for its last token. Decode: GEMMs of one row per sequence and attention of \
    each new token against the KV cache (the query heads of a KV head as the rows of one \
    attention, each cached K and V read once). Each op measured back to back with the GPU \
    100% busy; sampling, norms, the KV-cache writes, scheduling and communication are not in it.";

/// Every complete setting: energy per token (prompt token for prefill, output token
/// for decode), throughput, draw, MFU.
pub fn inference_settings_table(figures: &[StepFigures]) -> Table {
    let with_clock = figures.iter().any(|f| f.setting.sm_clock_mhz.is_some());
    let mut headers = vec!["phase", "batch", "precision", "power cap"];
    if with_clock {
        headers.push("SM clock");
    }
    headers.extend([
        "kernels (matmul + attention)",
        "energy (mJ/token)",
        "throughput (tokens/s)",
        "avg power (W)",
        "MFU",
        "flags",
    ]);
    let mut t = Table::new("Inference: energy per token by setting", &headers);
    t.notes.extend(simulated_note(figures));
    t.notes.push(SCOPE.into());
    t.notes.push(
        "Energy per token: per prompt token for prefill, per output token for decode.".into(),
    );
    for f in figures {
        let s = &f.setting;
        let mut cells = vec![
            phase_name(&s.phase),
            s.micro_batch.to_string(),
            s.precision_label(),
            cap_label(f),
        ];
        if with_clock {
            cells.push(s.clock_label());
        }
        let mut flags = f.flags.clone();
        if f.power_limited {
            flags.push("power-limited".into());
        }
        if !f.missing.is_empty() {
            flags.push(format!("missing {} op(s)", f.missing.len()));
        }
        cells.extend([
            s.kernels.label(),
            mj(f.joules_per_token()),
            opt(f.tokens_per_second(), 4),
            opt(f.average_w(), 4),
            f.mfu
                .map(|m| format!("{:.1}%", m * 100.0))
                .unwrap_or_else(|| "–".into()),
            flags.join(", "),
        ]);
        t.push(cells);
    }
    t
}

/// The caution flags of any of `figures`' records, once each.
fn flags_of<'a>(figures: impl IntoIterator<Item = &'a StepFigures>) -> String {
    let mut all: Vec<&str> = Vec::new();
    for f in figures {
        for flag in &f.flags {
            if !all.contains(&flag.as_str()) {
                all.push(flag);
            }
        }
    }
    all.join(", ")
}

fn cap_label(f: &StepFigures) -> String {
    match f.cap_w {
        Some(w) if !f.setting.cap.is_default() => format!("{} ({w:.0} W)", f.setting.cap),
        _ => f.setting.cap.to_string(),
    }
}

/// What `objective` picks among `figures`, moved to the setting that changes the
/// fewest levers from `baseline` (a cap or clock that does nothing is dropped) among
/// those within [`NOISE_FRACTION`] of its energy and time.
pub fn choose_plainest(
    figures: &[&StepFigures],
    baseline: Option<&StepFigures>,
    objective: Objective,
) -> Option<usize> {
    let owned: Vec<StepFigures> = figures.iter().map(|f| (*f).clone()).collect();
    let i = choose_step(&owned, objective)?;
    let (Some(e), Some(t)) = (
        figures[i].joules_per_token(),
        figures[i].seconds_per_token(),
    ) else {
        return Some(i);
    };
    let levers = |f: &StepFigures| -> usize {
        let s = &f.setting;
        let Some(b) = baseline.map(|b| &b.setting) else {
            return 0;
        };
        usize::from(s.cap != b.cap)
            + usize::from(s.sm_clock_mhz != b.sm_clock_mhz)
            + usize::from(s.precision != b.precision)
            + usize::from(s.kernels.attention != b.kernels.attention)
    };
    (0..figures.len())
        .filter(|&j| {
            let f = figures[j];
            match (f.joules_per_token(), f.seconds_per_token()) {
                (Some(ej), Some(tj)) => {
                    ej <= e * (1.0 + NOISE_FRACTION) && tj <= t * (1.0 + NOISE_FRACTION)
                }
                _ => false,
            }
        })
        .min_by(|&a, &b| {
            levers(figures[a]).cmp(&levers(figures[b])).then(
                figures[a]
                    .joules_per_token()
                    .unwrap_or(f64::INFINITY)
                    .total_cmp(&figures[b].joules_per_token().unwrap_or(f64::INFINITY)),
            )
        })
}

fn setting_label(f: &StepFigures) -> String {
    format!(
        "{}, cap {}, clock {}, {}",
        f.setting.precision_label(),
        cap_label(f),
        f.setting.clock_label(),
        f.setting.kernels.label()
    )
}

/// The setting of `group` that differs from its baseline in one lever alone.
fn differs_only_in<'a>(group: &PhaseGroup<'a>, lever: Lever) -> Vec<&'a StepFigures> {
    let Some(b) = group.baseline else {
        return Vec::new();
    };
    let bs = &b.setting;
    group
        .figures
        .iter()
        .copied()
        .filter(|f| {
            let s = &f.setting;
            let precision = s.precision == bs.precision;
            let cap = s.cap == bs.cap;
            let clock = s.sm_clock_mhz == bs.sm_clock_mhz;
            let kernels = s.kernels == bs.kernels;
            match lever {
                Lever::Cap => !cap && precision && clock && kernels,
                Lever::Clock => !clock && precision && cap && kernels,
                // the matmul kernel follows the precision (cuBLASLt for FP8)
                Lever::Precision => {
                    !precision
                        && cap
                        && clock
                        && s.kernels.attention == bs.kernels.attention
                        && s.kernels.vendor == bs.kernels.vendor
                }
                Lever::Kernels => !kernels && precision && cap && clock,
            }
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lever {
    Cap,
    Clock,
    Precision,
    Kernels,
}

/// "-22.3% energy, +0.1% time", or "no change (within 1%)".
fn effect(f: &StepFigures, b: &StepFigures) -> Option<(f64, f64)> {
    Some((
        1.0 - f.joules_per_token()? / b.joules_per_token()?,
        f.seconds_per_token()? / b.seconds_per_token()? - 1.0,
    ))
}

fn describe_effect(saved: f64, slower: f64) -> String {
    if saved.abs() < NOISE_FRACTION && slower.abs() < NOISE_FRACTION {
        format!("no change (within {:.0}%)", NOISE_FRACTION * 100.0)
    } else {
        format!("{} energy, {} time", pct(-saved), pct(slower))
    }
}

/// The lever's setting that saves the most energy, and what it does.
fn lever_cell(group: &PhaseGroup<'_>, lever: Lever) -> String {
    let Some(b) = group.baseline else {
        return "–".into();
    };
    let best = differs_only_in(group, lever)
        .into_iter()
        .filter_map(|f| Some((f, effect(f, b)?)))
        .max_by(|x, y| x.1 .0.total_cmp(&y.1 .0));
    let Some((f, (saved, slower))) = best else {
        return "not measured".into();
    };
    let s = &f.setting;
    let what = match lever {
        Lever::Cap => cap_label(f),
        Lever::Clock => s.clock_label(),
        Lever::Precision => s.precision_label(),
        Lever::Kernels => s.kernels.label(),
    };
    let verdict = match lever {
        Lever::Cap if !f.power_limited => match (f.average_w(), f.cap_w) {
            (Some(w), Some(cap)) => format!(" — does not bind: draws {w:.0} W under {cap:.0} W"),
            _ => " — does not bind".into(),
        },
        // some op reached the cap, but the step as a whole did not change
        Lever::Cap if saved.abs() < NOISE_FRACTION && slower.abs() < NOISE_FRACTION => {
            " — some ops reach the cap, the step does not change".into()
        }
        Lever::Cap => " — binds".into(),
        _ => String::new(),
    };
    format!("{what}: {}{verdict}", describe_effect(saved, slower))
}

/// Per phase and batch: the baseline's draw against the limit, and what each lever
/// does measured against the baseline alone; the objective's choice among all.
pub fn levers_table(figures: &[StepFigures], objective: Objective) -> Table {
    let mut t = Table::new(
        "Inference: which lever binds",
        &[
            "phase",
            "batch",
            "baseline (mJ/token)",
            "draw (W, of the limit)",
            "power cap",
            "SM clock",
            "precision",
            "kernels",
            "chosen",
            "flags",
        ],
    );
    t.notes.extend(simulated_note(figures));
    t.notes.push(format!(
        "Each lever against the baseline (bf16, the default cap and clocks, the vendor libraries' \
         kernels) changed in that lever alone; where several values were measured, the one that \
         saves the most energy. A change under {:.0}% is reported as none. A cap binds when some op \
         ran at the limit. chosen: {} among every setting of the row.",
        NOISE_FRACTION * 100.0,
        objective.describe()
    ));
    for g in phase_groups(figures) {
        let Some(b) = g.baseline else {
            continue;
        };
        let draw = match (b.average_w(), b.default_limit_w) {
            (Some(w), Some(limit)) => format!("{w:.0} ({:.0}%)", 100.0 * w / limit),
            (Some(w), None) => format!("{w:.0}"),
            _ => "–".into(),
        };
        let chosen = choose_plainest(&g.figures, Some(b), objective)
            .map(|i| {
                let f = g.figures[i];
                if std::ptr::eq(f, b) {
                    "the baseline".to_string()
                } else {
                    let (saved, slower) = effect(f, b).unwrap_or((0.0, 0.0));
                    format!("{}: {}", setting_label(f), describe_effect(saved, slower))
                }
            })
            .unwrap_or_else(|| "–".into());
        t.push(vec![
            phase_name(&g.phase),
            g.batch.to_string(),
            mj(b.joules_per_token()),
            draw,
            lever_cell(&g, Lever::Cap),
            lever_cell(&g, Lever::Clock),
            lever_cell(&g, Lever::Precision),
            lever_cell(&g, Lever::Kernels),
            chosen,
            flags_of(g.figures.iter().copied()),
        ]);
    }
    t
}

/// A request: the prefill of its prompt and `output_len` decode steps.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestFigures<'a> {
    pub decode: &'a StepFigures,
    pub prefill: &'a StepFigures,
    pub joules_per_request: f64,
    pub seconds_per_request: f64,
}

/// Every decode setting with the prefill of the same precision, kernels, cap and
/// clock: energy per request = one prompt's prefill + `output_len` × the decode
/// energy per output token; time = the prefill + `output_len` decode steps.
pub fn requests<'a>(
    figures: &'a [StepFigures],
    opts: &InferenceOptions,
) -> Vec<RequestFigures<'a>> {
    let prefills: Vec<&StepFigures> = figures
        .iter()
        .filter(|f| matches!(f.setting.phase, Phase::Prefill { .. }) && f.is_complete())
        .collect();
    figures
        .iter()
        .filter(|f| matches!(f.setting.phase, Phase::Decode { .. }) && f.is_complete())
        .filter_map(|d| {
            let p = prefills.iter().copied().find(|p| {
                let (a, b) = (&p.setting, &d.setting);
                a.precision == b.precision
                    && a.cap == b.cap
                    && a.sm_clock_mhz == b.sm_clock_mhz
                    && a.kernels == b.kernels
            })?;
            let per_prompt = p.joules_per_step? / p.setting.micro_batch as f64;
            let n = opts.output_len as f64;
            Some(RequestFigures {
                decode: d,
                prefill: p,
                joules_per_request: per_prompt + n * d.joules_per_token()?,
                seconds_per_request: p.seconds_per_step? + n * d.seconds_per_step?,
            })
        })
        .collect()
}

/// Energy per output token and per request at each decode batch: the baseline and
/// the objective's choice (every setting with `full`).
pub fn requests_table(
    figures: &[StepFigures],
    opts: &InferenceOptions,
    objective: Objective,
    full: bool,
) -> Table {
    let mut t = Table::new(
        format!(
            "Inference: energy per request ({} prompt tokens, {} output tokens)",
            opts.prompt_len, opts.output_len
        ),
        &[
            "",
            "batch",
            "cached tokens",
            "precision",
            "power cap",
            "SM clock",
            "kernels (matmul + attention)",
            "decode (mJ/output token)",
            "per request (J)",
            "request time (s)",
            "output tokens/s",
            "flags",
        ],
    );
    t.notes.extend(simulated_note(figures));
    t.notes.push(format!(
        "Per request: the prefill of one {}-token prompt, then {} decode steps costed at {} cached \
         tokens (the mean over the request when decode's cost grows linearly with the cache, as its \
         attention's does); request time counts every step of the batch, which serves `batch` \
         requests at once.",
        opts.prompt_len,
        opts.output_len,
        opts.mean_kv_len()
    ));
    let reqs = requests(figures, opts);
    let groups = phase_groups(figures);
    for g in groups
        .iter()
        .filter(|g| matches!(g.phase, Phase::Decode { .. }))
    {
        let in_group: Vec<&RequestFigures> = reqs
            .iter()
            .filter(|r| g.figures.iter().any(|f| std::ptr::eq(*f, r.decode)))
            .collect();
        let decodes: Vec<&StepFigures> = in_group.iter().map(|r| r.decode).collect();
        let chosen = choose_plainest(&decodes, g.baseline, objective);
        for (i, r) in in_group.iter().enumerate() {
            let is_base = g.baseline.is_some_and(|b| std::ptr::eq(b, r.decode));
            let is_chosen = Some(i) == chosen;
            if !full && !is_base && !is_chosen {
                continue;
            }
            let mark = match (is_base, is_chosen) {
                (true, true) => "baseline, chosen",
                (true, false) => "baseline",
                (false, true) => "chosen",
                _ => "",
            };
            let d = &r.decode.setting;
            t.push(vec![
                mark.into(),
                d.micro_batch.to_string(),
                match d.phase {
                    Phase::Decode { kv_len } => kv_len.to_string(),
                    _ => "–".into(),
                },
                d.precision_label(),
                cap_label(r.decode),
                d.clock_label(),
                d.kernels.label(),
                mj(r.decode.joules_per_token()),
                opt(Some(r.joules_per_request), 4),
                opt(Some(r.seconds_per_request), 4),
                opt(r.decode.tokens_per_second(), 4),
                flags_of([r.prefill, r.decode]),
            ]);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::PowerCap;
    use joulebench_model::compose::Share;
    use joulebench_model::plan::{KernelChoice, StepSetting};
    use joulebench_model::step::{Category, Pass};

    fn fig(
        phase: Phase,
        batch: u64,
        cap: PowerCap,
        clock: Option<u32>,
        s: f64,
        j: f64,
    ) -> StepFigures {
        StepFigures {
            model: "m".into(),
            device: "GPU".into(),
            backend: "sim".into(),
            simulated: true,
            setting: StepSetting {
                phase,
                precision: Precision::Bf16,
                attention_precision: Precision::Bf16,
                micro_batch: batch,
                cap,
                sm_clock_mhz: clock,
                kernels: KernelChoice {
                    matmul: "mm".into(),
                    attention: "attn".into(),
                    attention_backward: String::new(),
                    vendor: true,
                },
            },
            gpus: 1,
            tokens_per_step: match phase {
                Phase::Prefill { prompt_len } => prompt_len * batch,
                _ => batch,
            },
            flop_per_step: 1e9,
            seconds_per_step: Some(s),
            joules_per_step: Some(j),
            mfu: None,
            shares: vec![Share {
                category: Category::Mlp,
                pass: Pass::Forward,
                seconds_per_step: s,
                joules_per_step: Some(j),
            }],
            missing: Vec::new(),
            ops_without_energy: 0,
            flags: Vec::new(),
            power_limited: false,
            cap_w: (!cap.is_default()).then_some(420.0),
            default_limit_w: Some(700.0),
            records: Vec::new(),
        }
    }

    fn decode_figures() -> Vec<StepFigures> {
        let d = Phase::Decode { kv_len: 1152 };
        let p = Phase::Prefill { prompt_len: 100 };
        let cap = PowerCap::PercentOfDefault(60.0);
        let mut prefill_capped = fig(p, 1, cap, None, 0.013, 4.0);
        prefill_capped.power_limited = true;
        vec![
            fig(p, 1, PowerCap::Default, None, 0.010, 5.0),
            prefill_capped,
            fig(p, 1, PowerCap::Default, Some(1200), 0.012, 4.5),
            // decode, 16 sequences: 300 W; the cap is above the draw
            fig(d, 16, PowerCap::Default, None, 0.010, 3.0),
            fig(d, 16, cap, None, 0.010, 3.001),
            fig(d, 16, PowerCap::Default, Some(1200), 0.0101, 2.4),
        ]
    }

    #[test]
    fn levers_are_credited_against_the_baseline_alone_and_say_whether_they_bind() {
        let figures = decode_figures();
        let objective = Objective::WithinSlowdown { max_slowdown: 0.1 };
        let t = levers_table(&figures, objective);
        assert_eq!(t.rows.len(), 2);
        let decode = &t.rows[1];
        assert_eq!(decode[0], "decode (1152 cached)");
        assert_eq!(decode[3], "300 (43%)");
        assert_eq!(
            decode[4],
            "60% (420 W): no change (within 1%) — does not bind: draws 300 W under 420 W"
        );
        assert_eq!(decode[5], "1200 MHz: -20.0% energy, +1.0% time");
        assert_eq!(decode[6], "not measured");
        assert_eq!(
            decode[8],
            "bf16, cap default, clock 1200 MHz, mm + attn: -20.0% energy, +1.0% time"
        );
        let prefill = &t.rows[0];
        assert_eq!(
            prefill[4],
            "60% (420 W): -20.0% energy, +30.0% time — binds"
        );
    }

    /// A cap that changes nothing is not part of the choice, even where the noise
    /// makes the capped setting a hair cheaper.
    #[test]
    fn a_lever_that_does_nothing_is_dropped_from_the_choice() {
        let mut figures = decode_figures();
        let d = Phase::Decode { kv_len: 1152 };
        let cap = PowerCap::PercentOfDefault(60.0);
        figures.push(fig(d, 16, cap, Some(1200), 0.0101, 2.399));
        let objective = Objective::LeastEnergy;
        let t = levers_table(&figures, objective);
        assert!(
            t.rows[1][8].starts_with("bf16, cap default, clock 1200 MHz"),
            "{:?}",
            t.rows[1]
        );
        // without the rule the capped one would win
        let g = phase_groups(&figures);
        let owned: Vec<StepFigures> = g[1].figures.iter().map(|f| (*f).clone()).collect();
        let raw = choose_step(&owned, objective).unwrap();
        assert_eq!(g[1].figures[raw].setting.cap, cap);
    }

    #[test]
    fn a_request_is_its_prompts_prefill_and_its_decode_steps() {
        let figures = decode_figures();
        let opts = InferenceOptions {
            prompt_len: 100,
            output_len: 10,
            batches: vec![16],
            kv_lens: vec![1152],
        };
        let reqs = requests(&figures, &opts);
        assert_eq!(reqs.len(), 3);
        let base = &reqs[0];
        // 5 J for the prompt, then 10 tokens at 3 J / 16 each
        assert!((base.joules_per_request - (5.0 + 10.0 * 3.0 / 16.0)).abs() < 1e-12);
        assert!((base.seconds_per_request - (0.010 + 10.0 * 0.010)).abs() < 1e-12);
        // the capped decode pairs with the capped prefill
        assert!(reqs[1].prefill.power_limited);
        let t = requests_table(&figures, &opts, Objective::LeastEnergy, false);
        assert_eq!(t.rows.len(), 2, "{:?}", t.rows);
        assert_eq!(t.rows[0][0], "baseline");
        assert_eq!(t.rows[1][0], "chosen");
        assert_eq!(
            requests_table(&figures, &opts, Objective::LeastEnergy, true)
                .rows
                .len(),
            3
        );
    }
}
