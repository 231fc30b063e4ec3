//! A model's training step across its settings (precision, micro-batch, power cap,
//! SM clock, kernels): the table of joules per token, MFU and where the energy goes
//! (every setting, or the short one: the baseline, each precision's best and the
//! Pareto front), the Pareto front over time and energy per token, the setting an
//! objective picks — kept only as far as each lever's saving beats the noise — with
//! energy saved and slowdown against a baseline the user names and what each lever
//! saves on its own, its plot, and its entry in the settings file a training
//! launcher reads. Selection is the same as an op's (crate::objective, crate::levers,
//! crate::baseline), per token.

use crate::attribution::{attribute, Attribution};
use crate::baseline::{BaselineCandidate, BatchDefault};
use crate::chart::{DataKind, LegendEntry, Marker, Series, XyChart};
use crate::format::{opt, pct};
use crate::levers::{settle, values_of, Lever, LeverValues, Levered, Reverted};
use crate::objective::{choose, choose_in, pareto_front, Candidate, Objective};
use crate::plots::precision_color;
use crate::repeats::RunSpread;
use crate::settings_file::{device_entry, lever_figures, round_fraction, round_sig, SettingsFile};
use crate::significance::{NoiseFloor, Uncertainty, UncertaintySource};
use crate::table::Table;
use joulebench_core::record::Record;
use joulebench_core::{PowerCap, Precision};
use joulebench_model::compose::StepFigures;
use joulebench_model::plan::KernelChoice;
use joulebench_model::step::{Category, Pass};
use std::collections::{BTreeMap, BTreeSet};

pub use crate::baseline::BaselineSpec;
pub use crate::settings_file::ModelSetting;

/// The setting energy saved and slowdown are measured against: `model --baseline`,
/// the same spec (and parser) as `recommend --baseline`. Unset parts: bf16 where
/// measured, the largest micro-batch measured, the default power limit, the vendor
/// libraries' kernels where measured.
pub type Baseline = BaselineSpec;

/// A step setting as the selection sees it: per token, with its uncertainty.
struct StepCandidate<'a> {
    f: &'a StepFigures,
    u: Uncertainty,
}

impl Candidate for StepCandidate<'_> {
    fn seconds_per_unit(&self) -> f64 {
        self.f.seconds_per_token().unwrap_or(f64::INFINITY)
    }
    fn joules_per_unit(&self) -> f64 {
        self.f.joules_per_token().unwrap_or(f64::INFINITY)
    }
    fn zeus_max_power_w(&self) -> Option<f64> {
        self.f.default_limit_w.or(self.f.average_w())
    }
    fn uncertainty(&self) -> Uncertainty {
        self.u
    }
}

/// The levers of a step: the micro-batch is its batch, the kernel choice (every
/// op's) its kernel.
const STEP_LEVERS: [Lever; 5] = [
    Lever::Precision,
    Lever::Kernel,
    Lever::Batch,
    Lever::PowerCap,
    Lever::Clock,
];

impl Levered for StepCandidate<'_> {
    fn lever_value(&self, lever: Lever) -> Option<String> {
        let s = &self.f.setting;
        match lever {
            Lever::Precision => Some(s.precision.to_string()),
            Lever::Kernel => Some(s.kernels.label()),
            Lever::Batch => Some(s.micro_batch.to_string()),
            Lever::PowerCap => Some(s.cap.to_string()),
            Lever::Clock => Some(
                s.sm_clock_mhz
                    .map_or_else(|| "default".to_string(), |m| format!("{m} MHz")),
            ),
        }
    }
    fn board(&self) -> &str {
        &self.f.device
    }
}

impl BaselineCandidate for StepCandidate<'_> {
    fn precision(&self) -> Precision {
        self.f.setting.precision
    }
    fn batch(&self) -> u64 {
        self.f.setting.micro_batch
    }
    fn cap(&self) -> Option<PowerCap> {
        Some(self.f.setting.cap)
    }
    fn kernel_names(&self) -> Vec<&str> {
        let k = &self.f.setting.kernels;
        vec![&k.matmul, &k.attention, &k.attention_backward]
    }
    fn all_vendor(&self) -> bool {
        self.f.setting.kernels.vendor
    }
    fn at_default_clocks(&self) -> bool {
        self.f.setting.sm_clock_mhz.is_none()
    }
}

/// A step's uncertainty: the largest of its ops' (their errors, measured on one
/// GPU in one sweep, move together, so the step is at most as uncertain as its most
/// uncertain op). An op's is its run-to-run spread where repeated, else its
/// within-run spread raised to the floor.
pub fn step_uncertainty(f: &StepFigures, records: &[Record], floor: NoiseFloor) -> Uncertainty {
    let mut by_setting: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for &i in &f.records {
        if let Some(r) = records.get(i).filter(|r| r.has_energy()) {
            by_setting.entry(r.setting_key()).or_default().push(r);
        }
    }
    by_setting
        .values()
        .filter_map(|runs| {
            let method = runs[0].window_method();
            RunSpread::of(runs).map(|s| s.uncertainty(floor.for_method(method)))
        })
        .reduce(Uncertainty::max)
        .unwrap_or(Uncertainty {
            energy: floor.busy,
            time: floor.busy,
            source: UncertaintySource::Floor,
        })
}

/// The settings of one model on one device, and the one an objective picks.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecommendation {
    pub model: String,
    pub device: String,
    pub backend: String,
    pub simulated: bool,
    /// Settings with every op measured, energy included.
    pub figures: Vec<StepFigures>,
    /// Each figure's uncertainty, as `figures`.
    pub uncertainties: Vec<Uncertainty>,
    /// Settings with an op missing (or no energy): shown, never chosen.
    pub incomplete: Vec<StepFigures>,
    /// Indices into `figures` of the Pareto front, fastest first.
    pub front: Vec<usize>,
    /// The advice: the objective's best with every lever that does not beat the
    /// noise put back to the baseline's value.
    pub chosen: usize,
    /// The objective's best before that.
    pub best: usize,
    pub baseline: Option<usize>,
    pub baseline_asked: String,
    pub baseline_values: LeverValues,
    pub reverted: Vec<Reverted>,
    pub attribution: Attribution,
}

impl StepRecommendation {
    pub fn chosen(&self) -> &StepFigures {
        &self.figures[self.chosen]
    }

    pub fn baseline(&self) -> Option<&StepFigures> {
        self.baseline.map(|i| &self.figures[i])
    }

    /// 1 − E_chosen / E_baseline, per token.
    pub fn energy_saved(&self) -> Option<f64> {
        Some(1.0 - self.chosen().joules_per_token()? / self.baseline()?.joules_per_token()?)
    }

    /// T_chosen / T_baseline − 1, per token.
    pub fn slowdown(&self) -> Option<f64> {
        Some(self.chosen().seconds_per_token()? / self.baseline()?.seconds_per_token()? - 1.0)
    }

    /// Levers put back (significance) and what each lever kept saves on its own.
    pub fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.reverted.iter().map(|r| r.note()).collect();
        for e in &self.attribution.levers {
            notes.push(e.describe());
        }
        notes
    }
}

/// The setting `objective` picks among `figures`, per token, each figure at the
/// default noise floor: for tables whose levers are judged elsewhere (inference).
pub fn choose_step(figures: &[StepFigures], objective: Objective) -> Option<usize> {
    let floor = NoiseFloor::default().busy;
    let u = Uncertainty {
        energy: floor,
        time: floor,
        source: UncertaintySource::Floor,
    };
    choose(&candidates(figures, &vec![u; figures.len()]), objective)
}

fn candidates<'a>(
    figures: &'a [StepFigures],
    uncertainties: &[Uncertainty],
) -> Vec<StepCandidate<'a>> {
    figures
        .iter()
        .zip(uncertainties)
        .map(|(f, &u)| StepCandidate { f, u })
        .collect()
}

/// One recommendation per model and device; none where no setting is complete.
/// `records` are those the figures were composed from (for their uncertainty).
pub fn recommend_steps(
    figures: &[StepFigures],
    records: &[Record],
    objective: Objective,
    baseline: &Baseline,
    floor: NoiseFloor,
) -> Vec<StepRecommendation> {
    let mut groups: BTreeMap<(String, String), Vec<&StepFigures>> = BTreeMap::new();
    for f in figures {
        groups
            .entry((f.model.clone(), f.device.clone()))
            .or_default()
            .push(f);
    }
    groups
        .into_iter()
        .filter_map(|((model, device), all)| {
            let (complete, incomplete): (Vec<StepFigures>, Vec<StepFigures>) =
                all.into_iter().cloned().partition(|f| f.is_complete());
            let uncertainties: Vec<Uncertainty> = complete
                .iter()
                .map(|f| step_uncertainty(f, records, floor))
                .collect();
            let items = candidates(&complete, &uncertainties);
            let every: Vec<usize> = (0..items.len()).collect();
            let best = choose(&items, objective)?;
            let found = baseline.find(&items, &every, BatchDefault::Largest);
            let values = match found {
                Some(b) => values_of(&items[b], &STEP_LEVERS),
                None => {
                    let mut v = LeverValues::new();
                    v.insert(
                        Lever::Precision,
                        baseline.precision.unwrap_or(Precision::Bf16).to_string(),
                    );
                    v.insert(
                        Lever::PowerCap,
                        baseline.cap.unwrap_or(PowerCap::Default).to_string(),
                    );
                    if let Some(b) = baseline.batch {
                        v.insert(Lever::Batch, b.to_string());
                    }
                    v
                }
            };
            let settled = settle(&items, &every, best, &values, &STEP_LEVERS, objective);
            let attribution =
                attribute(&items, &every, settled.chosen, found, &values, &STEP_LEVERS);
            let front = pareto_front(&items);
            drop(items);
            Some(StepRecommendation {
                model,
                device,
                backend: complete[settled.chosen].backend.clone(),
                simulated: complete.iter().any(|f| f.simulated),
                front,
                baseline: found,
                baseline_asked: baseline.describe("micro-batch", BatchDefault::Largest),
                baseline_values: values,
                chosen: settled.chosen,
                best,
                reverted: settled.reverted,
                attribution,
                uncertainties,
                figures: complete,
                incomplete,
            })
        })
        .collect()
}

fn mj(x: Option<f64>) -> String {
    opt(x.map(|j| j * 1e3), 4)
}

fn share(x: Option<f64>) -> String {
    x.map(|s| format!("{:.0}%", s * 100.0))
        .unwrap_or_else(|| "–".into())
}

fn setting_cells(f: &StepFigures, with_clock: bool) -> Vec<String> {
    let s = &f.setting;
    let cap = match f.cap_w {
        Some(w) if !s.cap.is_default() => format!("{} ({w:.0} W)", s.cap),
        _ => s.cap.to_string(),
    };
    let mut cells = vec![
        s.precision_label(),
        format!("{} ({})", s.micro_batch, f.tokens_per_step),
        cap,
    ];
    if with_clock {
        cells.push(s.clock_label());
    }
    cells.push(s.kernels.label());
    cells
}

fn setting_headers(with_clock: bool) -> Vec<&'static str> {
    let mut h = vec!["precision", "micro-batch (tokens)", "power cap"];
    if with_clock {
        h.push("SM clock");
    }
    h.push("kernels (matmul + attention / backward)");
    h
}

/// A clock column only where some setting locks the clock.
fn any_clock<'a>(figures: impl IntoIterator<Item = &'a StepFigures>) -> bool {
    figures
        .into_iter()
        .any(|f| f.setting.sm_clock_mhz.is_some())
}

/// "41%", or "–" where the card's peak is unknown.
fn mfu(f: &StepFigures) -> String {
    f.mfu
        .map(|m| format!("{:.0}%", m * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// What MFU, FLOP per token and the GPUs are, once per table.
fn figures_note(figures: &[&StepFigures]) -> Option<String> {
    let f = figures.first()?;
    let per_gpu = if f.gpus > 1 {
        format!(
            " Each setting's ops are one GPU's share; energy is that of the {} GPUs of one model copy, throughput that of one copy (its busiest pipeline stage); communication and pipeline bubbles are not measured.",
            f.gpus
        )
    } else {
        String::new()
    };
    Some(format!(
        "{:.3} GFLOP per token (the model's, {}). MFU: model FLOP per second over the dense peak of the card{} at the matmuls' precision{}.{per_gpu}",
        f.flop_per_token() / 1e9,
        if f.setting.phase.is_inference() {
            "this phase"
        } else {
            "forward and backward"
        },
        if f.gpus > 1 { "s" } else { "" },
        if figures.iter().all(|f| f.mfu.is_none()) {
            " (not known for this card: no MFU)"
        } else {
            ""
        },
    ))
}

fn simulated_note(simulated: bool) -> Option<String> {
    simulated
        .then(|| "SIMULATED DATA: from joulebench's model device, not a measurement.".to_string())
}

/// What the figures cover, for every table's notes.
pub const STEP_SCOPE: &str = "A step is the GEMMs (forward, input and weight gradients) \
    and attention (forward and backward) of one training step, each measured back to \
    back with the GPU 100% busy; norms, activations, the loss, the optimizer and \
    communication are not in it. Energy is the GPU board's.";

/// What a settings-file entry's figures cover, in a launcher's words.
pub const STEP_COVERAGE: &str = "GEMMs and attention, forward and backward, measured back to \
    back with the GPU 100% busy; norms, activations, the loss, the optimizer, \
    communication and pipeline bubbles not included";

/// Every setting of every model and device: energy and time per token and where the
/// energy goes, by op and by pass. Settings with a missing op show why instead.
pub fn settings_table(recs: &[StepRecommendation], incomplete_only: &[StepFigures]) -> Table {
    let all: Vec<&StepFigures> = recs
        .iter()
        .flat_map(|r| r.figures.iter().chain(&r.incomplete))
        .chain(incomplete_only)
        .collect();
    let with_clock = any_clock(all.iter().copied());
    let mut headers: Vec<&str> = vec![""];
    headers.extend(setting_headers(with_clock));
    headers.extend([
        "energy (mJ/token)",
        "throughput (tokens/s)",
        "avg power (W)",
        "MFU",
        "MLP",
        "attention",
        "projections",
        "head",
        "backward",
        "flags",
    ]);
    let simulated = recs.iter().any(|r| r.simulated) || incomplete_only.iter().any(|f| f.simulated);
    let mut t = Table::new("Training step: energy per token by setting", &headers);
    t.notes.extend(simulated_note(simulated));
    t.notes.push(STEP_SCOPE.into());
    t.notes.push(
        "MLP … head: shares of the step's energy by op (both passes); backward: the share of the backward pass."
            .into(),
    );
    t.notes.extend(figures_note(&all));
    let row = |mark: &str, f: &StepFigures| {
        let mut cells = vec![mark.to_string()];
        cells.extend(setting_cells(f, with_clock));
        cells.push(mj(f.joules_per_token()));
        cells.push(opt(f.tokens_per_second(), 4));
        cells.push(opt(f.average_w(), 4));
        cells.push(mfu(f));
        for c in Category::ALL {
            cells.push(share(f.energy_share(c)));
        }
        cells.push(share(f.pass_share(Pass::Backward)));
        let mut flags = f.flags.clone();
        if !f.missing.is_empty() {
            flags.push(format!("missing {} op(s)", f.missing.len()));
        } else if f.ops_without_energy > 0 {
            flags.push(format!("no energy for {} op(s)", f.ops_without_energy));
        }
        cells.push(flags.join(", "));
        cells
    };
    for r in recs {
        for (i, f) in r.figures.iter().enumerate() {
            let mark = if i == r.chosen {
                "chosen"
            } else if Some(i) == r.baseline {
                "baseline"
            } else {
                ""
            };
            t.push(row(mark, f));
        }
        for f in &r.incomplete {
            t.push(row("", f));
        }
    }
    for f in incomplete_only {
        t.push(row("", f));
    }
    t
}

/// One line per missing op (and why), with how many settings it leaves without a
/// per-token figure.
pub fn missing_notes(figures: &[StepFigures]) -> Vec<String> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for f in figures {
        for m in &f.missing {
            *count
                .entry(format!(
                    "{} with {} at {}: {}",
                    m.op, m.kernel, m.precision, m.reason
                ))
                .or_default() += 1;
        }
    }
    count
        .into_iter()
        .map(|(what, n)| {
            format!(
                "{what} ({n} setting{} without a per-token figure)",
                if n == 1 { "" } else { "s" }
            )
        })
        .collect()
}

/// The chosen setting beside its baseline, and the Pareto front.
pub fn recommendation_tables(rec: &StepRecommendation, objective: Objective) -> [Table; 2] {
    let with_clock = any_clock(&rec.figures);
    let mut headers: Vec<&str> = vec![""];
    headers.extend(setting_headers(with_clock));
    headers.extend([
        "energy (mJ/token)",
        "throughput (tokens/s)",
        "avg power (W)",
        "energy saved",
        "slowdown",
    ]);
    let mut t = Table::new(
        format!(
            "Recommended setting for {} on {} ({})",
            rec.model,
            rec.device,
            objective.describe()
        ),
        &headers,
    );
    t.notes.extend(simulated_note(rec.simulated));
    let row = |mark: &str, f: &StepFigures, saved: Option<f64>, slower: Option<f64>| {
        let mut cells = vec![mark.to_string()];
        cells.extend(setting_cells(f, with_clock));
        cells.push(mj(f.joules_per_token()));
        cells.push(opt(f.tokens_per_second(), 4));
        cells.push(opt(f.average_w(), 4));
        cells.push(saved.map(pct).unwrap_or_else(|| "–".into()));
        cells.push(slower.map(pct).unwrap_or_else(|| "–".into()));
        cells
    };
    t.push(row(
        "chosen",
        rec.chosen(),
        rec.energy_saved(),
        rec.slowdown(),
    ));
    match rec.baseline() {
        Some(b) => {
            t.push(row("baseline", b, None, None));
            t.notes.push(format!(
                "Energy saved and slowdown per token against the baseline ({}).",
                rec.baseline_asked
            ));
        }
        None => t.notes.push(format!(
            "No baseline: {} was not measured with every op.",
            rec.baseline_asked
        )),
    }
    if rec.chosen().power_limited {
        t.notes.push(
            "power-limited: some ops ran at the GPU's power limit (information, not a caution)."
                .into(),
        );
    }
    t.notes.push(format!(
        "Energy per token of the chosen setting: ±{:.1}% (the largest uncertainty of its ops). A lever moves away from the baseline only when its own saving beats the combined uncertainty of the two settings compared.",
        rec.uncertainties[rec.chosen].energy * 100.0
    ));
    for n in rec.notes() {
        t.notes.push(format!("{n}."));
    }

    let mut headers: Vec<&str> = vec![""];
    headers.extend(setting_headers(with_clock));
    headers.extend([
        "energy (mJ/token)",
        "throughput (tokens/s)",
        "avg power (W)",
    ]);
    let mut front = Table::new(
        format!(
            "Pareto front for {} on {}: no other setting is both faster and cheaper per token",
            rec.model, rec.device
        ),
        &headers,
    );
    if !rec.front.contains(&rec.chosen) {
        front.notes.push(
            "The chosen setting is not on the front: a setting on it beats it by less than the noise, in a lever the advice keeps at the baseline's value."
                .into(),
        );
    }
    for &i in &rec.front {
        let f = &rec.figures[i];
        let mut cells = vec![if i == rec.chosen { "*" } else { "" }.to_string()];
        cells.extend(setting_cells(f, with_clock));
        cells.push(mj(f.joules_per_token()));
        cells.push(opt(f.tokens_per_second(), 4));
        cells.push(opt(f.average_w(), 4));
        front.push(cells);
    }
    [t, front]
}

/// The short table: the baseline, each precision's best (what `objective` picks among
/// that precision's settings) and the Pareto front, with energy saved and slowdown
/// against the baseline. The full table is [`settings_table`].
pub fn summary_table(rec: &StepRecommendation, objective: Objective) -> Table {
    let with_clock = any_clock(&rec.figures);
    let mut headers: Vec<&str> = vec![""];
    headers.extend(setting_headers(with_clock));
    headers.extend([
        "energy (mJ/token)",
        "throughput (tokens/s)",
        "avg power (W)",
        "MFU",
        "energy saved",
        "slowdown",
        "flags",
    ]);
    let mut t = Table::new(
        format!(
            "{} on {}: the baseline, each precision's best and the Pareto front",
            rec.model, rec.device
        ),
        &headers,
    );
    t.notes.extend(simulated_note(rec.simulated));
    t.notes.push(STEP_SCOPE.into());
    let all: Vec<&StepFigures> = rec.figures.iter().collect();
    t.notes.extend(figures_note(&all));
    let mut roles: Vec<(usize, Vec<String>)> = Vec::new();
    let mut add = |i: usize, role: String| match roles.iter_mut().find(|(j, _)| *j == i) {
        Some((_, r)) => r.push(role),
        None => roles.push((i, vec![role])),
    };
    if let Some(b) = rec.baseline {
        add(b, "baseline".into());
    }
    let precisions: BTreeSet<Precision> = rec.figures.iter().map(|f| f.setting.precision).collect();
    for p in precisions {
        let of_p: Vec<usize> = (0..rec.figures.len())
            .filter(|&i| rec.figures[i].setting.precision == p)
            .collect();
        let items = candidates(&rec.figures, &rec.uncertainties);
        if let Some(k) = choose_in(&items, &of_p, objective) {
            add(k, format!("best {p}"));
        }
    }
    for &i in &rec.front {
        add(i, "front".into());
    }
    add(rec.chosen, "chosen".into());
    // fastest first, as the front is
    roles.sort_by(|a, b| {
        let t = |i: usize| rec.figures[i].seconds_per_token().unwrap_or(f64::INFINITY);
        t(a.0).total_cmp(&t(b.0))
    });
    let base = rec.baseline();
    for (i, r) in &roles {
        let f = &rec.figures[*i];
        let vs = |x: Option<f64>, b: Option<f64>, saved: bool| -> String {
            match (x, b) {
                (_, _) if Some(*i) == rec.baseline => "–".into(),
                (Some(x), Some(b)) if b > 0.0 => pct(if saved { 1.0 - x / b } else { x / b - 1.0 }),
                _ => "–".into(),
            }
        };
        let mut cells = vec![r.join(", ")];
        cells.extend(setting_cells(f, with_clock));
        cells.push(mj(f.joules_per_token()));
        cells.push(opt(f.tokens_per_second(), 4));
        cells.push(opt(f.average_w(), 4));
        cells.push(mfu(f));
        cells.push(vs(
            f.joules_per_token(),
            base.and_then(|b| b.joules_per_token()),
            true,
        ));
        cells.push(vs(
            f.seconds_per_token(),
            base.and_then(|b| b.seconds_per_token()),
            false,
        ));
        cells.push(f.flags.join(", "));
        t.push(cells);
    }
    match base {
        Some(_) => t.notes.push(format!(
            "Energy saved and slowdown per token against the baseline ({}). chosen: {}.",
            rec.baseline_asked,
            objective.describe()
        )),
        None => t.notes.push(format!(
            "No baseline: {} was not measured with every op.",
            rec.baseline_asked
        )),
    }
    let shown = roles.len();
    if shown < rec.figures.len() + rec.incomplete.len() {
        t.notes.push(format!(
            "{} of {} settings shown; every setting: --table full.",
            shown,
            rec.figures.len() + rec.incomplete.len()
        ));
    }
    t
}

const KERNEL_MARKERS: [Marker; 4] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Cross,
];

/// Energy per token against tokens per second, every complete setting: colour by
/// precision, marker by kernel choice, the Pareto front joined, the choice ringed.
pub fn step_chart(rec: &StepRecommendation, objective: Objective) -> XyChart {
    let point = |f: &StepFigures| {
        (
            f.tokens_per_second().unwrap_or(0.0),
            f.joules_per_token().unwrap_or(0.0) * 1e3,
        )
    };
    let choices: Vec<String> = rec
        .figures
        .iter()
        .map(|f| f.setting.kernels.label())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let marker_of = |k: &str| {
        KERNEL_MARKERS[choices.iter().position(|x| x == k).unwrap_or(0) % KERNEL_MARKERS.len()]
    };
    let precisions: Vec<Precision> = rec
        .figures
        .iter()
        .map(|f| f.setting.precision)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut series = Vec::new();
    for (i, &p) in precisions.iter().enumerate() {
        for k in &choices {
            let points: Vec<(f64, f64)> = rec
                .figures
                .iter()
                .filter(|f| f.setting.precision == p && &f.setting.kernels.label() == k)
                .map(point)
                .collect();
            if !points.is_empty() {
                series.push(Series {
                    points,
                    color: precision_color(p),
                    marker: marker_of(k),
                    marker_px: 5 + 2 * (precisions.len() - i - 1) as i32,
                    line: false,
                });
            }
        }
    }
    let black = plotters::style::RGBColor(0, 0, 0);
    series.push(Series {
        points: rec.front.iter().map(|&i| point(&rec.figures[i])).collect(),
        color: black,
        marker: Marker::None,
        marker_px: 0,
        line: true,
    });
    series.push(Series {
        points: vec![point(rec.chosen())],
        color: black,
        marker: Marker::Ring,
        marker_px: 13,
        line: false,
    });
    let mut legend: Vec<LegendEntry> = precisions
        .iter()
        .map(|&p| LegendEntry {
            label: p.to_string(),
            color: precision_color(p),
            marker: Marker::Circle,
            line: false,
        })
        .collect();
    if choices.len() > 1 {
        // only the ops whose kernel differs between choices, so labels fit the legend
        let all: Vec<&KernelChoice> = rec.figures.iter().map(|f| &f.setting.kernels).collect();
        let parts = |k: &KernelChoice| {
            [
                k.matmul.clone(),
                k.attention.clone(),
                k.attention_backward.clone(),
            ]
        };
        let varies: Vec<bool> = (0..3)
            .map(|i| all.iter().any(|k| parts(k)[i] != parts(all[0])[i]))
            .collect();
        for k in &choices {
            let short = all
                .iter()
                .find(|c| &c.label() == k)
                .map(|c| {
                    parts(c)
                        .into_iter()
                        .zip(&varies)
                        .filter(|(_, v)| **v)
                        .map(|(p, _)| p)
                        .collect::<Vec<_>>()
                        .join(" / ")
                })
                .unwrap_or_else(|| k.clone());
            legend.push(LegendEntry {
                label: short,
                color: plotters::style::RGBColor(90, 90, 90),
                marker: marker_of(k),
                line: false,
            });
        }
    }
    legend.push(LegendEntry {
        label: "Pareto front".into(),
        color: black,
        marker: Marker::None,
        line: true,
    });
    legend.push(LegendEntry {
        label: "recommended".into(),
        color: black,
        marker: Marker::Ring,
        line: false,
    });
    XyChart {
        title: "Energy per token vs throughput of a training step".into(),
        subtitle: format!("{} · {}", rec.model, rec.device),
        data: DataKind::of(rec.simulated, !rec.simulated),
        x_label: "throughput (tokens/s)".into(),
        y_label: "energy (mJ/token)".into(),
        series,
        legend,
        x_categories: None,
        footnote: Some(format!(
            "Every complete setting (precision, micro-batch, power cap, kernels); lower right is better. Ringed: {}.",
            objective.describe()
        )),
    }
}

/// A settings file with the chosen step setting per model and device model, and
/// each device's power cap (`[[device]]`: a step's setting already is one cap for
/// the step's own mix of ops). `records` are those the figures were composed from
/// (they name the boards).
pub fn step_settings_file(
    recs: &[StepRecommendation],
    records: &[Record],
    source: &str,
    objective: Objective,
    layout: &str,
) -> SettingsFile {
    let layout = layout.to_string();
    let mut models: BTreeMap<String, Vec<ModelSetting>> = BTreeMap::new();
    let mut file = SettingsFile::new(
        format!("{}, per token", objective.describe()),
        String::new(),
    );
    for r in recs {
        let c = r.chosen();
        let (Some(j), Some(tps)) = (c.joules_per_token(), c.tokens_per_second()) else {
            continue;
        };
        let has_baseline = r.baseline.is_some();
        let label = |k: usize| {
            let f = &r.figures[k];
            format!(
                "{}, micro-batch {}, cap {}, {}",
                f.setting.precision_label(),
                f.setting.micro_batch,
                f.setting.cap,
                f.setting.kernels.label()
            )
        };
        models
            .entry(r.model.clone())
            .or_default()
            .push(ModelSetting {
                device_model: r.device.clone(),
                simulated: c.simulated,
                backend: c.backend.clone(),
                precision: c.setting.precision,
                attention_precision: c.setting.attention_precision,
                micro_batch: c.setting.micro_batch,
                tokens_per_step: c.tokens_per_step,
                power_cap: c.setting.cap.to_string(),
                power_cap_w: c.cap_w.map(|w| round_sig(w, 4)),
                sm_clock_mhz: c.setting.sm_clock_mhz,
                layout: layout.clone(),
                default_power_limit_w: c.default_limit_w.map(|w| round_sig(w, 4)),
                energy_j_per_token: round_sig(j, 4),
                uncertainty_fraction: Some(round_fraction(r.uncertainties[r.chosen].energy)),
                tokens_per_second: round_sig(tps, 4),
                flop_per_token: round_sig(c.flop_per_token(), 6),
                mfu: c.mfu.map(round_fraction),
                average_power_w: c.average_w().map(|w| round_sig(w, 4)),
                energy_saved_fraction: r.energy_saved().map(round_fraction),
                slowdown_fraction: r.slowdown().map(round_fraction),
                baseline: has_baseline.then(|| r.baseline_asked.clone()),
                flags: c.flags.clone(),
                notes: r.reverted.iter().map(|x| x.note()).collect(),
                coverage: STEP_COVERAGE.into(),
                source: source.to_string(),
                attribution: lever_figures(&r.attribution, &label),
                kernels: c.setting.kernels.clone(),
            });
        if !file.devices.iter().any(|d| d.device_model == r.device) {
            let boards: Vec<&Record> = c.records.iter().filter_map(|&i| records.get(i)).collect();
            let mut d = device_entry(&r.device, &boards);
            d.simulated |= c.simulated;
            d.power_cap = c.setting.cap.to_string();
            d.power_cap_w = c.cap_w.map(|w| round_sig(w, 4));
            d.default_power_limit_w = c.default_limit_w.map(|w| round_sig(w, 4));
            // the GPU's one clock too: what `run --settings` and the launcher script apply
            d.sm_clock_mhz = c.setting.sm_clock_mhz;
            d.mix = format!("the ops of a {} training step", r.model);
            d.energy_saved_fraction = r
                .attribution
                .lever(Lever::PowerCap)
                .and_then(|e| e.energy_saved)
                .map(round_fraction);
            d.notes = r
                .reverted
                .iter()
                .filter(|x| x.lever == Lever::PowerCap)
                .map(|x| x.note())
                .collect();
            file.devices.push(d);
        }
    }
    // the per-model entries name their own baselines
    file.simulated = models.values().flatten().any(|m| m.simulated);
    file.models = models;
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings_file::SettingsFormat;
    use joulebench_model::compose::Share;
    use joulebench_model::plan::StepSetting;

    fn kernels(matmul: &str, vendor: bool) -> KernelChoice {
        KernelChoice {
            matmul: matmul.into(),
            attention: "attn".into(),
            attention_backward: "attn-bwd".into(),
            vendor,
        }
    }

    /// One setting: `seconds` and `joules` per step of 1000 tokens.
    fn fig(
        precision: Precision,
        mb: u64,
        cap: PowerCap,
        vendor: bool,
        seconds: f64,
        joules: f64,
    ) -> StepFigures {
        StepFigures {
            model: "gpt2".into(),
            device: "GPU A".into(),
            backend: "sim".into(),
            simulated: true,
            setting: StepSetting {
                phase: Default::default(),
                precision,
                attention_precision: precision,
                micro_batch: mb,
                cap,
                sm_clock_mhz: None,
                kernels: kernels(if vendor { "vendor-mm" } else { "our-mm" }, vendor),
            },
            gpus: 1,
            tokens_per_step: 1000,
            flop_per_step: 1e12,
            seconds_per_step: Some(seconds),
            joules_per_step: Some(joules),
            mfu: Some(1e12 / seconds / 989e12),
            shares: vec![Share {
                category: Category::Mlp,
                pass: Pass::Forward,
                seconds_per_step: seconds,
                joules_per_step: Some(joules),
            }],
            missing: Vec::new(),
            ops_without_energy: 0,
            flags: Vec::new(),
            power_limited: false,
            cap_w: None,
            default_limit_w: Some(700.0),
            records: Vec::new(),
        }
    }

    fn figures() -> Vec<StepFigures> {
        let pct = PowerCap::PercentOfDefault;
        vec![
            fig(Precision::Bf16, 4, PowerCap::Default, true, 1.00, 500.0),
            fig(Precision::Bf16, 4, pct(80.0), true, 1.08, 460.0),
            fig(Precision::Bf16, 4, pct(60.0), true, 1.40, 440.0),
            fig(Precision::Bf16, 1, PowerCap::Default, true, 1.30, 620.0),
            // dominated by the first: slower and dearer
            fig(Precision::Bf16, 4, PowerCap::Default, false, 1.10, 540.0),
        ]
    }

    #[test]
    fn the_cheapest_setting_within_the_slowdown_is_chosen_against_the_named_baseline() {
        let all = figures();
        let objective = Objective::WithinSlowdown { max_slowdown: 0.1 };
        let recs = recommend_steps(
            &all,
            &[],
            objective,
            &Baseline::default(),
            NoiseFloor::default(),
        );
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        // 80% is within 10% of the fastest; 60% is not
        assert_eq!(r.chosen().setting.cap, PowerCap::PercentOfDefault(80.0));
        // default baseline: bf16, the largest micro-batch, default cap, vendor kernels
        assert_eq!(r.baseline, Some(0));
        assert!((r.energy_saved().unwrap() - 0.08).abs() < 1e-12);
        assert!((r.slowdown().unwrap() - 0.08).abs() < 1e-12);
        assert_eq!(r.front, vec![0, 1, 2]);
        // a named baseline: micro-batch 1
        let b = Baseline::parse("micro-batch=1, cap=default, kernels=vendor").unwrap();
        let r = &recommend_steps(&all, &[], objective, &b, NoiseFloor::default())[0];
        assert_eq!(r.baseline, Some(3));
        assert!((r.energy_saved().unwrap() - (1.0 - 460.0 / 620.0)).abs() < 1e-12);
        // least energy ignores time
        let r = &recommend_steps(&all, &[], Objective::LeastEnergy, &b, NoiseFloor::default())[0];
        assert_eq!(r.chosen().setting.cap, PowerCap::PercentOfDefault(60.0));
        // a baseline that was not measured is absent, not invented
        let b = Baseline::parse("precision=fp8-e4m3").unwrap();
        let r = &recommend_steps(&all, &[], objective, &b, NoiseFloor::default())[0];
        assert_eq!((r.baseline, r.energy_saved()), (None, None));
    }

    #[test]
    fn incomplete_settings_are_shown_never_chosen() {
        let mut all = figures();
        all[2].joules_per_step = None;
        all[2].missing.push(joulebench_model::compose::MissingOp {
            op: "attention backward (x)".into(),
            kernel: "attn".into(),
            precision: Precision::Bf16,
            reason: "skipped: no backward kernel".into(),
        });
        let r = &recommend_steps(
            &all,
            &[],
            Objective::LeastEnergy,
            &Baseline::default(),
            NoiseFloor::default(),
        )[0];
        assert_eq!(r.incomplete.len(), 1);
        assert_eq!(r.chosen().setting.cap, PowerCap::PercentOfDefault(80.0));
        let t = settings_table(&recs_of(r), &[]).render(crate::TableFormat::Csv);
        assert!(t.contains("missing 1 op(s)"), "{t}");
        let notes = missing_notes(&all);
        assert_eq!(
            notes,
            vec!["attention backward (x) with attn at bf16: skipped: no backward kernel (1 setting without a per-token figure)"]
        );
    }

    #[test]
    fn the_short_table_shows_the_baseline_each_precisions_best_and_the_front() {
        let mut all = figures();
        all.push(fig(
            Precision::Fp8E4m3,
            4,
            PowerCap::Default,
            true,
            0.7,
            350.0,
        ));
        let objective = Objective::WithinSlowdown { max_slowdown: 0.1 };
        let r = &recommend_steps(
            &all,
            &[],
            objective,
            &Baseline::default(),
            NoiseFloor::default(),
        )[0];
        let table = summary_table(r, objective);
        assert!(
            table
                .notes
                .contains(&"3 of 6 settings shown; every setting: --table full.".to_string()),
            "{:?}",
            table.notes
        );
        let t = table.render(crate::TableFormat::Csv);
        let rows: Vec<&str> = t.lines().collect();
        // header, then fastest first: fp8 (front, its precision's best, chosen), the
        // baseline, bf16's best (the 80% cap, within 10% of bf16's fastest)
        assert_eq!(rows.len(), 4, "{t}");
        assert!(
            rows[1].starts_with("\"best fp8-e4m3, front, chosen\",fp8-e4m3"),
            "{t}"
        );
        assert!(rows[1].ends_with("+30.0%,-30.0%,"), "{t}");
        assert!(
            rows[2].starts_with("baseline,bf16") && rows[2].ends_with("–,–,"),
            "{t}"
        );
        assert!(rows[3].starts_with("best bf16,bf16,4 (1000),80%"), "{t}");
        assert!(rows[3].ends_with("+8.0%,+8.0%,"), "{t}");
        // no clock column unless a setting locks the clock
        assert!(!t.contains("SM clock"), "{t}");
        all[1].setting.sm_clock_mhz = Some(1200);
        let r = &recommend_steps(
            &all,
            &[],
            objective,
            &Baseline::default(),
            NoiseFloor::default(),
        )[0];
        let t = summary_table(r, objective).render(crate::TableFormat::Csv);
        assert!(t.contains("SM clock") && t.contains("1200 MHz"), "{t}");
    }

    fn recs_of(r: &StepRecommendation) -> Vec<StepRecommendation> {
        vec![r.clone()]
    }

    #[test]
    fn the_settings_file_keys_the_step_setting_by_model_name() {
        let objective = Objective::WithinSlowdown { max_slowdown: 0.1 };
        let recs = recommend_steps(
            &figures(),
            &[],
            objective,
            &Baseline::default(),
            NoiseFloor::default(),
        );
        let file = step_settings_file(&recs, &[], "results/x.jsonl", objective, "1 GPU");
        assert!(file.simulated && file.settings.is_empty());
        let gpt2 = &file.models["gpt2"];
        assert_eq!(gpt2.len(), 1);
        assert_eq!(gpt2[0].power_cap, "80%");
        assert_eq!(gpt2[0].energy_j_per_token, 0.46);
        assert_eq!(gpt2[0].energy_saved_fraction, Some(0.08));
        assert!(gpt2[0]
            .coverage
            .contains("norms, activations, the loss, the optimizer"));
        assert_eq!(
            (gpt2[0].flop_per_token, gpt2[0].layout.as_str()),
            (1e9, "1 GPU")
        );
        for format in [SettingsFormat::Toml, SettingsFormat::Json] {
            let text = file.to_string(format).unwrap();
            if format == SettingsFormat::Toml {
                assert!(
                    text.contains("[[model.gpt2]]") && text.contains("[model.gpt2.kernels]"),
                    "{text}"
                );
                assert!(!text.contains("[[setting]]"), "{text}");
            }
            let back = SettingsFile::parse(&text, format, std::path::Path::new("s")).unwrap();
            assert_eq!(back, file);
        }
    }

    #[test]
    fn a_precision_within_the_noise_of_bf16_is_not_chosen() {
        // as sim-a100 measures a Llama 3 8B step: f16 111.5 against bf16 111.6 mJ/token
        let all = vec![
            fig(Precision::F16, 4, PowerCap::Default, true, 1.000, 111.5),
            fig(Precision::Bf16, 4, PowerCap::Default, true, 1.001, 111.6),
        ];
        let r = &recommend_steps(
            &all,
            &[],
            Objective::LeastEnergy,
            &Baseline::default(),
            NoiseFloor::default(),
        )[0];
        assert_eq!(r.figures[r.best].setting.precision, Precision::F16);
        assert_eq!(r.chosen().setting.precision, Precision::Bf16);
        assert_eq!(r.reverted[0].lever, Lever::Precision);
        assert_eq!(r.baseline, Some(r.chosen));
        let [t, _] = recommendation_tables(r, Objective::LeastEnergy);
        assert!(
            t.notes
                .iter()
                .any(|n| n.contains("precision f16 not taken, bf16 kept")),
            "{:?}",
            t.notes
        );
        // with no floor (and no records to give a spread) the 0.09% would decide
        let r = &recommend_steps(
            &all,
            &[],
            Objective::LeastEnergy,
            &Baseline::default(),
            NoiseFloor::with_busy(0.0),
        )[0];
        assert_eq!(r.chosen().setting.precision, Precision::F16);
    }
}
