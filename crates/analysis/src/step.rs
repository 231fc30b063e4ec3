//! A model's training step across its settings (precision, micro-batch, power cap,
//! kernels): the table of joules per token and where they go, the Pareto front over
//! time and energy per token, the setting an objective picks — kept only as far as
//! each lever's saving beats the noise — with energy saved and slowdown against a
//! baseline the user names and what each lever saves on its own, its plot, and its
//! entry in the settings file a training launcher reads. Selection is the same as
//! an op's (crate::objective, crate::levers, crate::baseline), per token.

use crate::attribution::{attribute, Attribution};
use crate::baseline::{BaselineCandidate, BatchDefault};
use crate::chart::{DataKind, LegendEntry, Marker, Series, XyChart};
use crate::format::{opt, pct};
use crate::levers::{settle, values_of, Lever, LeverValues, Levered, Reverted};
use crate::objective::{choose, pareto_front, Candidate, Objective};
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
const STEP_LEVERS: [Lever; 4] = [
    Lever::Precision,
    Lever::Kernel,
    Lever::Batch,
    Lever::PowerCap,
];

impl Levered for StepCandidate<'_> {
    fn lever_value(&self, lever: Lever) -> Option<String> {
        let s = &self.f.setting;
        match lever {
            Lever::Precision => Some(s.precision.to_string()),
            Lever::Kernel => Some(s.kernels.label()),
            Lever::Batch => Some(s.micro_batch.to_string()),
            Lever::PowerCap => Some(s.cap.to_string()),
            Lever::Clock => None,
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
        true
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

fn setting_cells(f: &StepFigures) -> Vec<String> {
    let s = &f.setting;
    let cap = match f.cap_w {
        Some(w) if !s.cap.is_default() => format!("{} ({w:.0} W)", s.cap),
        _ => s.cap.to_string(),
    };
    vec![
        s.precision_label(),
        format!("{} ({})", s.micro_batch, f.tokens_per_step),
        cap,
        s.kernels.label(),
    ]
}

const SETTING_HEADERS: [&str; 4] = [
    "precision",
    "micro-batch (tokens)",
    "power cap",
    "kernels (matmul + attention / backward)",
];

fn simulated_note(simulated: bool) -> Option<String> {
    simulated
        .then(|| "SIMULATED DATA: from joulebench's model device, not a measurement.".to_string())
}

/// What the figures cover, for every table's notes.
pub const STEP_SCOPE: &str = "A step is the GEMMs (forward, input and weight gradients) \
    and attention (forward and backward) of one training step, each measured back to \
    back; norms, activations, the loss, the optimizer and communication are not in it. \
    Energy is the GPU board's.";

/// Every setting of every model and device: energy and time per token and where the
/// energy goes, by op and by pass. Settings with a missing op show why instead.
pub fn settings_table(recs: &[StepRecommendation], incomplete_only: &[StepFigures]) -> Table {
    let mut headers: Vec<&str> = vec![""];
    headers.extend(SETTING_HEADERS);
    headers.extend([
        "energy (mJ/token)",
        "throughput (tokens/s)",
        "avg power (W)",
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
    let row = |mark: &str, f: &StepFigures| {
        let mut cells = vec![mark.to_string()];
        cells.extend(setting_cells(f));
        cells.push(mj(f.joules_per_token()));
        cells.push(opt(f.tokens_per_second(), 4));
        cells.push(opt(f.average_w(), 4));
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
    let mut headers: Vec<&str> = vec![""];
    headers.extend(SETTING_HEADERS);
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
        cells.extend(setting_cells(f));
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
    headers.extend(SETTING_HEADERS);
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
        cells.extend(setting_cells(f));
        cells.push(mj(f.joules_per_token()));
        cells.push(opt(f.tokens_per_second(), 4));
        cells.push(opt(f.average_w(), 4));
        front.push(cells);
    }
    [t, front]
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
) -> SettingsFile {
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
                default_power_limit_w: c.default_limit_w.map(|w| round_sig(w, 4)),
                energy_j_per_token: round_sig(j, 4),
                uncertainty_fraction: Some(round_fraction(r.uncertainties[r.chosen].energy)),
                tokens_per_second: round_sig(tps, 4),
                average_power_w: c.average_w().map(|w| round_sig(w, 4)),
                energy_saved_fraction: r.energy_saved().map(round_fraction),
                slowdown_fraction: r.slowdown().map(round_fraction),
                baseline: has_baseline.then(|| r.baseline_asked.clone()),
                flags: c.flags.clone(),
                notes: r.reverted.iter().map(|x| x.note()).collect(),
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
                precision,
                attention_precision: precision,
                micro_batch: mb,
                cap,
                kernels: kernels(if vendor { "vendor-mm" } else { "our-mm" }, vendor),
            },
            tokens_per_step: 1000,
            flop_per_step: 1e12,
            seconds_per_step: Some(seconds),
            joules_per_step: Some(joules),
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
        let file = step_settings_file(&recs, &[], "results/x.jsonl", objective);
        assert!(file.simulated && file.settings.is_empty());
        let gpt2 = &file.models["gpt2"];
        assert_eq!(gpt2.len(), 1);
        assert_eq!(gpt2[0].power_cap, "80%");
        assert_eq!(gpt2[0].energy_j_per_token, 0.46);
        assert_eq!(gpt2[0].energy_saved_fraction, Some(0.08));
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
