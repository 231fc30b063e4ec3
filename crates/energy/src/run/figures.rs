//! From a run's meter tracks and the program's marks to its figures: the energy of
//! the whole run and of each phase (every span of one name added up) per meter, the
//! tokens, the steady state (warm-up left out), and the records that keep them.

use super::track::{Resolved, Track};
use super::{GpuOutcome, Mark, ProgramSpec, RunOutcome, TimedMark};
use joulebench_core::meter::{is_brake_reason, is_power_limit_reason};
use joulebench_core::run_record::{
    PhaseFigures, ProgramInfo, RunRecord, RunScope, RunSettings, RunTelemetry, SteadyState,
    RUN_RECORD_KIND, RUN_RECORD_SCHEMA,
};
use joulebench_core::{MeterSource, ValidityFlag, WindowRules};

/// What every record of a run shares that the run itself does not know.
#[derive(Clone, Debug)]
pub struct RecordContext {
    /// joulebench's command line.
    pub command: String,
    pub host: String,
}

/// One phase name, every span of it added up; `joules[i]` is track `i`'s.
#[derive(Clone, Debug)]
struct PhaseSum {
    name: String,
    occurrences: u64,
    seconds: f64,
    tokens: Option<u64>,
    joules: Vec<Option<f64>>,
    warmup: bool,
}

/// See the module comment. Tracks are the GPUs' in order, then the host's, if any.
pub(crate) struct Figures {
    gpus: usize,
    run_joules: Vec<Option<f64>>,
    extrapolated: Vec<bool>,
    telemetry: Vec<RunTelemetry>,
    peak_w: Vec<Option<f64>>,
    errors: Vec<Option<String>>,
    phases: Vec<PhaseSum>,
    tokens: Option<u64>,
    /// Tokens reported outside every phase.
    unmarked_tokens: u64,
    periods: Vec<f64>,
}

fn delta(a: Option<Resolved>, b: Option<Resolved>) -> Option<f64> {
    let d = b?.joules() - a?.joules();
    // a counter that went down between two of its own readings is no energy figure
    (d.is_finite() && d >= 0.0).then_some(d)
}

/// A warm-up phase by its name: "warmup", "warm-up", "Warmup 1".
fn is_warmup(name: &str, steady: Option<&[String]>) -> bool {
    match steady {
        Some(names) => !names.iter().any(|n| n == name),
        None => name.to_ascii_lowercase().starts_with("warm"),
    }
}

impl Figures {
    pub(crate) fn compute(
        tracks: &[Track],
        gpus: usize,
        boundaries: &[f64],
        marks: &[(TimedMark, Option<usize>)],
        spec: &ProgramSpec,
        periods: &[f64],
    ) -> Figures {
        let end_id = boundaries.len() - 1;
        let energy =
            |track: &Track, a: usize, b: usize| delta(track.energy_at(a), track.energy_at(b));
        // spans: (name, start boundary, end boundary, tokens reported in it)
        let mut spans: Vec<(String, usize, usize, Option<u64>)> = Vec::new();
        let mut open: Option<(String, usize, Option<u64>)> = None;
        let mut from_marks: Option<u64> = None;
        let mut unmarked_tokens = 0;
        for (m, id) in marks {
            match (&m.mark, id) {
                (Mark::Tokens(n), _) => {
                    from_marks = Some(from_marks.unwrap_or(0).saturating_add(*n));
                    match open.as_mut() {
                        Some((_, _, t)) => *t = Some(t.unwrap_or(0).saturating_add(*n)),
                        None => unmarked_tokens += n,
                    }
                }
                (Mark::Phase(name), Some(id)) => {
                    if let Some((n, s, t)) = open.take() {
                        spans.push((n, s, *id, t));
                    }
                    open = Some((name.clone(), *id, None));
                }
                (Mark::End, Some(id)) => {
                    if let Some((n, s, t)) = open.take() {
                        spans.push((n, s, *id, t));
                    }
                }
                _ => {}
            }
        }
        if let Some((n, s, t)) = open.take() {
            spans.push((n, s, end_id, t));
        }
        let steady = spec.steady_phases.as_deref();
        let mut phases: Vec<PhaseSum> = Vec::new();
        for (name, a, b, tokens) in spans {
            let seconds = (boundaries[b] - boundaries[a]).max(0.0);
            let joules: Vec<Option<f64>> = tracks.iter().map(|t| energy(t, a, b)).collect();
            match phases.iter_mut().find(|p| p.name == name) {
                Some(p) => {
                    p.occurrences += 1;
                    p.seconds += seconds;
                    p.tokens = match (p.tokens, tokens) {
                        (None, None) => None,
                        (x, y) => Some(x.unwrap_or(0).saturating_add(y.unwrap_or(0))),
                    };
                    for (sum, j) in p.joules.iter_mut().zip(joules) {
                        *sum = sum.zip(j).map(|(x, y)| x + y);
                    }
                }
                None => phases.push(PhaseSum {
                    warmup: is_warmup(&name, steady),
                    name,
                    occurrences: 1,
                    seconds,
                    tokens,
                    joules,
                }),
            }
        }
        Figures {
            gpus,
            run_joules: tracks.iter().map(|t| energy(t, 0, end_id)).collect(),
            extrapolated: tracks
                .iter()
                .map(|t| matches!(t.energy_at(end_id), Some(Resolved::Extrapolated(_))))
                .collect(),
            telemetry: tracks.iter().map(|t| t.telemetry().summary()).collect(),
            peak_w: tracks.iter().map(|t| t.telemetry().peak_w()).collect(),
            errors: tracks.iter().map(|t| t.error.clone()).collect(),
            phases,
            tokens: spec.tokens.or(from_marks),
            unmarked_tokens,
            periods: periods.to_vec(),
        }
    }

    fn host_index(&self) -> Option<usize> {
        (self.run_joules.len() > self.gpus).then_some(self.gpus)
    }
}

fn per(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

/// The joules of several tracks added up: `None` unless every one has a figure.
fn sum_all(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut total = 0.0;
    let mut any = false;
    for v in values {
        total += v?;
        any = true;
    }
    any.then_some(total)
}

/// Phase figures from one energy per phase (`joules(p)`), and the steady state.
fn phase_figures(
    f: &Figures,
    joules: impl Fn(&PhaseSum) -> Option<f64>,
    host: impl Fn(&PhaseSum) -> Option<f64>,
    min_window_s: f64,
) -> (Vec<PhaseFigures>, Option<SteadyState>) {
    let phases: Vec<PhaseFigures> = f
        .phases
        .iter()
        .map(|p| {
            let j = joules(p);
            let tokens = p.tokens.map(|t| t as f64);
            PhaseFigures {
                name: p.name.clone(),
                occurrences: p.occurrences,
                seconds: p.seconds,
                joules: j,
                host_joules: host(p),
                tokens: p.tokens,
                joules_per_token: per(j, tokens),
                tokens_per_second: per(tokens, Some(p.seconds)),
                warmup: p.warmup,
                flags: if p.seconds < 0.98 * min_window_s {
                    vec![ValidityFlag::ShortWindow]
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    let steady: Vec<&PhaseFigures> = phases.iter().filter(|p| !p.warmup).collect();
    let state = (!steady.is_empty()).then(|| {
        let seconds: f64 = steady.iter().map(|p| p.seconds).sum();
        let joules = sum_all(steady.iter().map(|p| p.joules));
        let tokens = steady
            .iter()
            .filter_map(|p| p.tokens)
            .reduce(|a, b| a.saturating_add(b));
        SteadyState {
            phases: steady.iter().map(|p| p.name.clone()).collect(),
            seconds,
            joules,
            tokens,
            joules_per_token: per(joules, tokens.map(|t| t as f64)),
            tokens_per_second: per(tokens.map(|t| t as f64), Some(seconds)),
        }
    });
    (phases, state)
}

/// The flags of one GPU's run.
fn gpu_flags(
    g: &GpuOutcome,
    joules: Option<f64>,
    seconds: f64,
    t: &RunTelemetry,
) -> Vec<ValidityFlag> {
    let mut flags = Vec::new();
    if joules.is_none() {
        flags.push(ValidityFlag::NoEnergy);
    }
    if WindowRules::default().is_short(seconds, g.meter_update_period_s) {
        flags.push(ValidityFlag::ShortWindow);
    }
    let share = |pred: fn(&str) -> bool| {
        t.throttle_reasons
            .iter()
            .filter(|r| pred(&r.reason))
            .map(|r| r.share)
            .fold(0.0, f64::max)
    };
    if share(is_brake_reason) > 0.0 {
        flags.push(ValidityFlag::Throttled);
    }
    let average = per(joules, Some(seconds));
    let enforced = g.enforced_limit_w.or(t.enforced_limit_w.map(|r| r.mean));
    let at_limit = matches!((average, enforced), (Some(a), Some(e)) if a >= 0.97 * e);
    if share(is_power_limit_reason) >= 0.5 || at_limit {
        flags.push(ValidityFlag::PowerLimited);
    }
    if let (Some(a), Some(e)) = (average, enforced) {
        if a > 1.03 * e {
            flags.push(ValidityFlag::AboveLimit);
        }
    }
    if let (Some(asked), Some(e)) = (g.applied_limit_w, g.enforced_limit_w) {
        if (asked - e).abs() > 1.0 {
            flags.push(ValidityFlag::CapNotEnforced);
        }
    }
    if !g.setting.changes_power() && g.found_off_default {
        flags.push(ValidityFlag::CapNotDefault);
    }
    if !g.setting.changes_clocks() && g.found_clocks_locked {
        flags.push(ValidityFlag::ClocksNotDefault);
    }
    flags.sort();
    flags.dedup();
    flags
}

impl RunOutcome {
    /// One record for the run and one per GPU, in that order (the run's first, so a
    /// reader meets the totals before the parts).
    pub fn records(&self, ctx: &RecordContext) -> Vec<RunRecord> {
        let f = &self.figures;
        let run_id = format!(
            "{}-{}-{}",
            ctx.host,
            std::process::id(),
            (self.started_unix_s * 1e3) as u64
        );
        let program = ProgramInfo {
            argv: self.argv.clone(),
            exit_code: self.exit_code,
            exit_signal: self.exit_signal,
            signals: self.signals.clone(),
        };
        let seconds = self.seconds;
        let tokens = f.tokens;
        let tokens_f = tokens.map(|t| t as f64);
        let rules = WindowRules::default();
        let base = |scope: RunScope| RunRecord {
            schema: RUN_RECORD_SCHEMA,
            kind: RUN_RECORD_KIND.into(),
            scope,
            run_id: run_id.clone(),
            tool: joulebench_core::sweep::tool_info(),
            host: ctx.host.clone(),
            unix_time_s: self.started_unix_s,
            command: ctx.command.clone(),
            program: program.clone(),
            simulated: false,
            device: None,
            gpus: Vec::new(),
            meter: None,
            meter_update_period_s: None,
            host_meter: None,
            settings: None,
            seconds,
            joules: None,
            average_w: None,
            peak_w: None,
            host_joules: None,
            telemetry: None,
            tokens,
            joules_per_token: None,
            phases: Vec::new(),
            steady: None,
            prediction: None,
            flags: Vec::new(),
            notes: Vec::new(),
        };

        let mut gpu_records = Vec::new();
        for (i, g) in self.gpus.iter().enumerate() {
            let joules = f.run_joules.get(i).copied().flatten();
            let telemetry = f.telemetry.get(i).cloned().unwrap_or_default();
            let mut r = base(RunScope::Gpu);
            r.simulated = g.simulated;
            r.device = Some(g.device.clone());
            r.meter = Some(g.meter_source);
            r.meter_update_period_s =
                (g.meter_source != MeterSource::None).then_some(g.meter_update_period_s);
            r.settings = Some(RunSettings {
                source: g.setting.source.clone(),
                power_cap: g.setting.power_cap,
                power_cap_w: g.applied_limit_w,
                found_limit_w: g.limits.map(|l| l.current_w),
                default_limit_w: g.limits.map(|l| l.default_w),
                enforced_limit_w: g.enforced_limit_w,
                sm_clock_mhz: g.setting.sm_clock_mhz,
                mem_clock_mhz: g.setting.mem_clock_mhz,
                restored: g.restored,
            });
            r.joules = joules;
            r.average_w = per(joules, Some(seconds));
            r.peak_w = f.peak_w.get(i).copied().flatten();
            r.joules_per_token = per(joules, tokens_f);
            let min_window = rules.target_s(g.meter_update_period_s);
            let (phases, steady) = phase_figures(f, |p| p.joules[i], |_| None, min_window);
            r.phases = phases;
            r.steady = steady;
            r.flags = gpu_flags(g, joules, seconds, &telemetry);
            r.telemetry = Some(telemetry);
            if let Some(e) = f.errors.get(i).cloned().flatten() {
                r.notes
                    .push(format!("the energy meter stopped during the run: {e}"));
            }
            if f.extrapolated.get(i).copied().unwrap_or(false) {
                r.notes.push(
                    "the meter did not update soon enough after the program ended: the energy at \
                     the end is extrapolated from its last updates"
                        .into(),
                );
            }
            gpu_records.push(r);
        }

        let mut run = base(RunScope::Run);
        run.simulated = self.gpus.iter().any(|g| g.simulated);
        run.gpus = self.gpus.iter().map(|g| g.device.key()).collect();
        run.host_meter = self.host_meter.clone();
        let host = f.host_index();
        run.host_joules = host.and_then(|h| f.run_joules[h]);
        let gpus_total = sum_all((0..f.gpus).map(|i| f.run_joules[i]));
        run.joules = gpus_total;
        run.average_w = per(gpus_total, Some(seconds));
        run.joules_per_token = per(gpus_total, tokens_f);
        let longest = f.periods.iter().copied().fold(0.0, f64::max);
        let (phases, steady) = phase_figures(
            f,
            |p| sum_all(p.joules[..f.gpus].iter().copied()),
            |p| host.and_then(|h| p.joules[h]),
            rules.target_s(longest),
        );
        run.phases = phases;
        run.steady = steady;
        let mut flags: Vec<ValidityFlag> = gpu_records
            .iter()
            .flat_map(|r| r.flags.iter().copied())
            .collect();
        if gpus_total.is_none() {
            flags.push(ValidityFlag::NoEnergy);
        }
        flags.sort();
        flags.dedup();
        run.flags = flags;
        run.notes = self.notes.clone();
        if self.gpus.is_empty() {
            run.notes.push(
                "no GPU with an energy meter was found: time (and the host's energy, where RAPL \
                 is readable) only"
                    .into(),
            );
        }
        if f.unmarked_tokens > 0 && !f.phases.is_empty() {
            run.notes.push(format!(
                "{} tokens were reported outside every phase: counted in the run's total, in no \
                 phase",
                f.unmarked_tokens
            ));
        }
        run.notes.extend(self.restore_errors.iter().cloned());
        let mut out = vec![run];
        out.extend(gpu_records);
        out
    }
}
