//! How far a figure can be trusted, and when a difference between two settings is
//! real (docs/ARCHITECTURE.md §7, "Significance"). Every energy and time figure
//! carries a relative uncertainty: the run-to-run spread where `--repeat` measured
//! one, else the spread within its run raised to a documented floor, because the
//! spread across one run's windows understates how much a second run differs.
//! Advice moves a lever away from the baseline only when the saving beats the
//! combined uncertainty of the two figures compared.

use joulebench_core::protocol::WindowMethod;

/// The least relative uncertainty a figure without repeats is given: the spread
/// between runs that one run's windows cannot show.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseFloor {
    /// Windows with the GPU busy throughout (schema 2 and later): 1% by default,
    /// the stop rule's own target, which repeats of one point on a settled GPU stay within.
    pub busy: f64,
    /// Schema-1 windows with idle gaps inside: 3% by default. On the H200 records
    /// one point read 1.054 and 1.086 pJ/FLOP in two runs, and 1.096–1.136 with gaps
    /// of 0.06–0.19 s (results/h200-2026-11-29/README.md).
    pub gapped: f64,
}

impl Default for NoiseFloor {
    fn default() -> Self {
        NoiseFloor {
            busy: DEFAULT_FLOOR,
            gapped: DEFAULT_GAPPED_FLOOR,
        }
    }
}

pub const DEFAULT_FLOOR: f64 = 0.01;
pub const DEFAULT_GAPPED_FLOOR: f64 = 0.03;

impl NoiseFloor {
    /// The floor for records taken with `method`. A floor set by the user
    /// (`--noise-floor`) replaces the busy one and never lowers the gapped one below it.
    pub fn for_method(&self, method: Option<WindowMethod>) -> f64 {
        match method {
            Some(WindowMethod::Gapped) => self.gapped.max(self.busy),
            _ => self.busy,
        }
    }

    pub fn with_busy(busy: f64) -> NoiseFloor {
        NoiseFloor {
            busy,
            ..NoiseFloor::default()
        }
    }
}

/// Where an uncertainty came from, as tables say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UncertaintySource {
    /// The spread between `runs` repeats of the setting.
    RunToRun { runs: usize },
    /// The spread across one run's windows, above the floor.
    WithinRun,
    /// The floor: the spread within the run was smaller.
    Floor,
}

/// Relative (1σ-like) uncertainty of a setting's energy and time per unit of work.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Uncertainty {
    pub energy: f64,
    pub time: f64,
    pub source: UncertaintySource,
}

impl Uncertainty {
    /// From spreads: `run_to_run` (energy, time) where repeats measured it, else the
    /// within-run spreads raised to `floor`.
    pub fn from_spreads(
        within_run: (f64, f64),
        run_to_run: Option<(f64, f64)>,
        runs: usize,
        floor: f64,
    ) -> Uncertainty {
        match run_to_run {
            // never below what one run's windows already show
            Some((e, t)) => Uncertainty {
                energy: e.max(within_run.0),
                time: t.max(within_run.1),
                source: UncertaintySource::RunToRun { runs },
            },
            None => Uncertainty {
                energy: within_run.0.max(floor),
                time: within_run.1.max(floor),
                source: if within_run.0 > floor {
                    UncertaintySource::WithinRun
                } else {
                    UncertaintySource::Floor
                },
            },
        }
    }

    /// The larger of two (a composite of figures with correlated errors is at most
    /// as uncertain as its most uncertain part).
    pub fn max(self, other: Uncertainty) -> Uncertainty {
        let source = if other.energy > self.energy {
            other.source
        } else {
            self.source
        };
        Uncertainty {
            energy: self.energy.max(other.energy),
            time: self.time.max(other.time),
            source,
        }
    }

    /// "±1.0% (floor)", "±0.4% (3 runs)", "±1.6% (within run)".
    pub fn label(&self) -> String {
        let how = match self.source {
            UncertaintySource::RunToRun { runs } => format!("{runs} runs"),
            UncertaintySource::WithinRun => "within run".into(),
            UncertaintySource::Floor => "floor".into(),
        };
        format!("±{:.1}% ({how})", self.energy * 100.0)
    }
}

/// The uncertainty of a ratio of two independent figures of relative
/// uncertainties `a` and `b`.
pub fn combined(a: f64, b: f64) -> f64 {
    (a * a + b * b).sqrt()
}

/// A relative saving that beats `uncertainty`: larger than it, not merely positive.
pub fn beats(saving: f64, uncertainty: f64) -> bool {
    saving.is_finite() && saving > uncertainty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_without_repeats_is_never_surer_than_the_floor() {
        let u = Uncertainty::from_spreads((0.002, 0.001), None, 1, 0.01);
        assert_eq!((u.energy, u.time), (0.01, 0.01));
        assert_eq!(u.source, UncertaintySource::Floor);
        let u = Uncertainty::from_spreads((0.02, 0.001), None, 1, 0.01);
        assert_eq!(u.source, UncertaintySource::WithinRun);
        assert_eq!(u.energy, 0.02);
        // repeats: the run-to-run spread, never below the spread within a run
        let u = Uncertainty::from_spreads((0.002, 0.001), Some((0.004, 0.0005)), 3, 0.01);
        assert_eq!((u.energy, u.time), (0.004, 0.001));
        assert_eq!(u.label(), "±0.4% (3 runs)");
        assert!((combined(0.03, 0.04) - 0.05).abs() < 1e-12);
        assert!(beats(0.051, 0.05) && !beats(0.05, 0.05) && !beats(f64::NAN, 0.0));
        // gapped schema-1 windows get the larger floor
        let f = NoiseFloor::default();
        assert_eq!(f.for_method(Some(WindowMethod::Gapped)), 0.03);
        assert_eq!(f.for_method(Some(WindowMethod::Busy)), 0.01);
        assert_eq!(
            NoiseFloor::with_busy(0.05).for_method(Some(WindowMethod::Gapped)),
            0.05
        );
    }
}
