//! What a plan will cost before it runs, from the protocol's own bounds: shown before
//! a sweep starts and by `--dry-run`, and what the progress bar's first estimate is.

use super::points::PlanPoint;
use crate::backend::{Backend, Support};
use crate::protocol::ProtocolConfig;

/// What a plan will cost before it runs: how many points it has, how many the
/// backend can run (the rest are recorded as skipped at once), and their device
/// time by the protocol's settings — typical (shortest warm-up, fewest windows)
/// and at most (longest warm-up, every window the budget allows).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanEstimate {
    pub points: usize,
    pub runnable: usize,
    pub skipped: usize,
    pub typical_s: f64,
    pub bound_s: f64,
}

/// Preparing and checking one point (inputs, compilation, the correctness run),
/// seconds: what the estimate adds per runnable point.
pub const POINT_OVERHEAD_S: f64 = 1.0;

impl PlanEstimate {
    /// Estimate `points` run `repeat` times on `backend` under `protocol`, with a
    /// meter updating every `update_period_s` (0 without a meter).
    pub fn of(
        points: &[PlanPoint],
        backend: &dyn Backend,
        protocol: &ProtocolConfig,
        update_period_s: f64,
        repeat: u32,
    ) -> PlanEstimate {
        let runnable = points
            .iter()
            .filter(|p| backend.support(&p.kernel, p.precision, &p.workload) == Support::Supported)
            .count()
            * repeat.max(1) as usize;
        let total = points.len() * repeat.max(1) as usize;
        let idle = if update_period_s > 0.0 {
            protocol.idle_baseline_s
        } else {
            0.0
        };
        let per = |point_s: f64| point_s + POINT_OVERHEAD_S;
        PlanEstimate {
            points: total,
            runnable,
            skipped: total - runnable,
            typical_s: idle + runnable as f64 * per(protocol.point_typical_s(update_period_s)),
            bound_s: idle + runnable as f64 * per(protocol.point_bound_s(update_period_s)),
        }
    }
}
