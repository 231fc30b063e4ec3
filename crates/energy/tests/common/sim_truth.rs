//! Measuring a point on the simulated device against its truth: shared by the
//! protocol's truth tests and the H200 fidelity tests.
#![allow(dead_code)]

use joulebench_core::protocol::{
    measure_with_safeguards, IdleBaseline, MeasureContext, Measurement, ProtocolConfig,
    ValidityFlag,
};
use joulebench_core::window::Window;
use joulebench_core::{Backend, Precision, PreparedKernel, Safeguards, Workload};
use joulebench_energy::sim::{self, Imperfections, SimDevice, SimTruthProbe, TruthSpan};

/// Run the kernel for `seconds` of device time, so the die reaches the thermal
/// state the measurement runs at (as in a sweep, where points follow each other).
pub fn preheat(k: &mut dyn PreparedKernel, seconds: f64) {
    let mut t = 0.0;
    while t < seconds {
        t += k.run(50).unwrap().wall_s;
    }
}

/// The truth over a window's own interval: between the moments the counter really
/// changed at the two updates whose difference the window reports (however late
/// the meter's thread saw them, and wherever the window placed them).
pub fn window_truth(truth: &SimTruthProbe, w: &Window) -> TruthSpan {
    let ups = truth.update_ticks();
    let joules = w.joules.expect("a window with energy");
    let inside = w.counter_updates.expect("a window between counter updates") as usize;
    // the pair with the window's energy whose span is nearest the window's own
    // (stamped or fitted), should two pairs share an energy to the millijoule
    let best = ups
        .iter()
        .zip(ups.iter().skip(inside))
        .filter(|((_, a), (_, b))| b.joules - a.joules == joules)
        .map(|((ta, a), (tb, b))| {
            let off = ((tb - ta) - w.seconds)
                .abs()
                .min(((b.time_s - a.time_s) - w.seconds).abs());
            (off, *ta, *tb)
        })
        .min_by(|x, y| x.0.total_cmp(&y.0));
    match best {
        Some((off, ta, tb)) if off < 0.05 => truth.between(ta, tb).expect("traced"),
        _ => panic!("no pair of counter updates makes window {w:?}"),
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// One measured point against the truth.
pub struct Outcome {
    pub m: Measurement,
    /// Per window: measured J/op and true J/op × the board's gain.
    pub windows: Vec<(f64, f64)>,
    /// Per window: what the work alone truly cost per op × the gain.
    pub work: Vec<f64>,
    /// The true average power over each window's interval.
    pub true_w: Vec<f64>,
    pub true_clock_mhz: Vec<f64>,
    pub gain: f64,
    /// The truth over each window's own interval.
    pub truth_spans: Vec<TruthSpan>,
}

impl Outcome {
    pub fn of(m: Measurement, truth: &SimTruthProbe) -> Outcome {
        let gain = truth.counter_gain();
        let spans: Vec<TruthSpan> = m.windows.iter().map(|w| window_truth(truth, w)).collect();
        Outcome {
            windows: m
                .windows
                .iter()
                .zip(&spans)
                .map(|(w, s)| (w.joules_per_op(None).unwrap(), s.joules_per_op() * gain))
                .collect(),
            work: spans
                .iter()
                .map(|s| s.busy_joules_per_op() * gain)
                .collect(),
            true_w: spans.iter().map(|s| s.average_w()).collect(),
            true_clock_mhz: spans.iter().map(|s| s.clock_mhz).collect(),
            gain,
            truth_spans: spans,
            m,
        }
    }

    /// The protocol's error: its median J/op against the truth × the gain.
    pub fn error(&self) -> f64 {
        let measured = self.m.summary.joules_per_op.unwrap().median;
        let truth = median(self.windows.iter().map(|w| w.1).collect());
        measured / truth - 1.0
    }

    /// The error against what the work alone cost: no idle counted.
    pub fn error_vs_work(&self) -> f64 {
        self.m.summary.joules_per_op.unwrap().median / median(self.work.clone()) - 1.0
    }

    /// The error against the board's true energy, gain error included.
    pub fn error_with_gain(&self) -> f64 {
        (1.0 + self.error()) * self.gain - 1.0
    }

    pub fn flags(&self) -> &[ValidityFlag] {
        &self.m.flags
    }
}

/// A point measured as `joulebench sweep` measures it, on a preheated sim-h200.
pub struct Point {
    pub profile: &'static str,
    pub kernel: &'static str,
    pub precision: Precision,
    pub workload: Workload,
    pub locked_mhz: Option<u32>,
    pub preheat_s: f64,
    pub seed: u64,
    /// Other imperfections than the profile's (stamps later, say).
    pub imperfections: Option<Imperfections>,
}

impl Point {
    pub fn new(kernel: &'static str, precision: Precision, workload: Workload) -> Point {
        Point {
            profile: "sim-h200",
            kernel,
            precision,
            workload,
            locked_mhz: None,
            preheat_s: 120.0,
            seed: 3,
            imperfections: None,
        }
    }

    pub fn measure(&self, cfg: &ProtocolConfig, safeguards: Safeguards) -> Outcome {
        let profile = sim::profile(self.profile).unwrap();
        let profile = match self.imperfections {
            Some(imperfections) => profile.with_imperfections(imperfections),
            None => profile.clone(),
        };
        let mut dev = SimDevice::open_profile(profile, 0, self.seed);
        if let Some(mhz) = self.locked_mhz {
            dev.clocks.lock_sm_mhz(mhz, mhz).unwrap();
        }
        let truth = dev.truth();
        let flop = self.workload.flop().unwrap();
        let mut k = dev
            .backend
            .prepare(self.kernel, self.precision, &self.workload, 1)
            .unwrap();
        preheat(k.as_mut(), self.preheat_s);
        truth.start_trace();
        let mut ctx = MeasureContext {
            meter: &mut dev.meter,
            clock: dev.clock.as_ref(),
            config: cfg,
            idle: Some(IdleBaseline {
                watts: 125.0,
                seconds: 3.0,
            }),
            cap_requested: self.locked_mhz.is_some(),
            stop: None,
        };
        let m = measure_with_safeguards(k.as_mut(), flop, &mut ctx, safeguards).unwrap();
        Outcome::of(m, &truth)
    }
}

pub fn pct(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
}
