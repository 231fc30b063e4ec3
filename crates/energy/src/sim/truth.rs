//! What the simulated device really did, for tests that measure a protocol's error:
//! totals since it was opened, and, once asked for, a trace from which the energy,
//! the work and the clock of any interval are read — a window's own interval, not
//! the whole measurement around it.

use std::collections::VecDeque;

/// What the simulated device really consumed and did, since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SimTruth {
    /// Exact energy since the device was opened.
    pub energy_j: f64,
    /// Energy while kernels ran (not during host gaps or idle).
    pub busy_energy_j: f64,
    pub busy_seconds: f64,
    pub busy_iterations: f64,
    /// The SM clock integrated over busy time, MHz·s.
    pub busy_clock_mhz_s: f64,
    pub time_s: f64,
}

/// The truth over one interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TruthSpan {
    pub seconds: f64,
    pub energy_j: f64,
    pub iterations: f64,
    pub busy_seconds: f64,
    /// Energy while kernels ran: without host gaps or idle.
    pub busy_energy_j: f64,
    /// The mean SM clock while busy, MHz.
    pub clock_mhz: f64,
}

impl TruthSpan {
    /// Energy over the interval per iteration done in it.
    pub fn joules_per_op(&self) -> f64 {
        self.energy_j / self.iterations
    }

    /// What the work alone cost per iteration: energy while kernels ran.
    pub fn busy_joules_per_op(&self) -> f64 {
        self.busy_energy_j / self.iterations
    }

    pub fn average_w(&self) -> f64 {
        self.energy_j / self.seconds
    }
}

/// The running totals after each step, once a test asks for them.
#[derive(Default)]
pub(crate) struct Trace {
    points: VecDeque<SimTruth>,
}

/// Steps kept in a trace: minutes of virtual time at the limiter's 2 ms steps.
const KEEP_STEPS: usize = 1 << 18;

impl Trace {
    pub fn push(&mut self, t: SimTruth) {
        if self.points.len() >= KEEP_STEPS {
            self.points.pop_front();
        }
        self.points.push_back(t);
    }

    /// The totals at `time_s`, interpolated between the steps around it.
    fn at(&self, time_s: f64) -> Option<SimTruth> {
        let i = self.points.partition_point(|p| p.time_s < time_s);
        let hi = *self.points.get(i)?;
        if i == 0 {
            return (hi.time_s == time_s).then_some(hi);
        }
        let lo = self.points[i - 1];
        let f = if hi.time_s > lo.time_s {
            (time_s - lo.time_s) / (hi.time_s - lo.time_s)
        } else {
            1.0
        };
        let mix = |a: f64, b: f64| a + f * (b - a);
        Some(SimTruth {
            energy_j: mix(lo.energy_j, hi.energy_j),
            busy_energy_j: mix(lo.busy_energy_j, hi.busy_energy_j),
            busy_seconds: mix(lo.busy_seconds, hi.busy_seconds),
            busy_iterations: mix(lo.busy_iterations, hi.busy_iterations),
            busy_clock_mhz_s: mix(lo.busy_clock_mhz_s, hi.busy_clock_mhz_s),
            time_s,
        })
    }

    /// The truth between two moments the trace covers.
    pub fn between(&self, from_s: f64, to_s: f64) -> Option<TruthSpan> {
        let (a, b) = (self.at(from_s)?, self.at(to_s)?);
        let busy = b.busy_seconds - a.busy_seconds;
        Some(TruthSpan {
            seconds: to_s - from_s,
            energy_j: b.energy_j - a.energy_j,
            iterations: b.busy_iterations - a.busy_iterations,
            busy_seconds: busy,
            busy_energy_j: b.busy_energy_j - a.busy_energy_j,
            clock_mhz: if busy > 0.0 {
                (b.busy_clock_mhz_s - a.busy_clock_mhz_s) / busy
            } else {
                0.0
            },
        })
    }
}
