//! The work of a busy window runs in blocks, each one `run` of the workload that
//! ends in a sync. This is how long a block should be (docs/ARCHITECTURE.md §4.2),
//! and how the work between two updates is counted from the blocks' timings: a
//! counter update falls inside a block, and the block's iterations are taken to run
//! at an even pace, so its share on either side is its share of the block's time.

/// One `run` of the work, as the host saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Block {
    pub start_s: f64,
    pub end_s: f64,
    pub iterations: u64,
    pub device_s: Option<f64>,
}

impl Block {
    /// The share of this block's work done between `a` and `b`, assuming the
    /// iterations of one block run at an even pace; with `apportion` off, all of a
    /// block that overlaps the interval at all.
    fn share(&self, a: f64, b: f64, apportion: bool) -> f64 {
        if !apportion {
            return if self.end_s > a && self.start_s < b {
                1.0
            } else {
                0.0
            };
        }
        let len = self.end_s - self.start_s;
        if len <= 0.0 {
            return if self.start_s >= a && self.start_s < b {
                1.0
            } else {
                0.0
            };
        }
        ((b.min(self.end_s) - a.max(self.start_s)) / len).clamp(0.0, 1.0)
    }
}

/// Iterations (and their device time) done between `a` and `b`.
pub(crate) fn count(blocks: &[Block], a: f64, b: f64, apportion: bool) -> (f64, Option<f64>) {
    let mut iterations = 0.0;
    let mut device = Some(0.0);
    for blk in blocks {
        let share = blk.share(a, b, apportion);
        if share > 0.0 {
            iterations += share * blk.iterations as f64;
            device = match (device, blk.device_s) {
                (Some(d), Some(x)) => Some(d + share * x),
                _ => None,
            };
        }
    }
    (iterations, device)
}

/// 2 − φ: the block's length as a share of the counter's period. Half a period
/// (what blocks were before) puts every block's sync at the same two phases of the
/// sensor's slice; an irrational share puts them at ever new ones.
const BLOCK_SHARE_OF_PERIOD: f64 = 0.381_966_011_250_105_1;

/// The length calibration aims a block at: about 0.38 of a counter period, 5–50 ms.
/// Short enough that little work runs past a window's closing update, long enough
/// that the host's sync between blocks is a negligible share of the time. Without
/// a meter, a tenth of the window.
pub fn block_seconds(update_period_s: f64, target_s: f64) -> f64 {
    let base = if update_period_s > 0.0 {
        update_period_s * BLOCK_SHARE_OF_PERIOD
    } else {
        target_s / 10.0
    };
    base.clamp(0.005, 0.05)
}

/// Ratios of a block's length to the sensor's period that repeat within four
/// periods: a block of such a length syncs at four phases of the slice or fewer.
const ALIASING_DENOMINATORS: [u32; 4] = [1, 2, 3, 4];
/// How close to such a ratio counts as on it (relative).
const ALIASING_TOLERANCE: f64 = 0.02;

/// Whether a block of `block_s` aliases with a sensor of period `period_s`: its
/// length is within 2% of p/q periods with q ≤ 4.
pub fn aliases(block_s: f64, period_s: f64) -> bool {
    if period_s <= 0.0 || block_s <= 0.0 {
        return false;
    }
    let ratio = block_s / period_s;
    ALIASING_DENOMINATORS.iter().any(|&q| {
        let p = (ratio * q as f64).round();
        p >= 1.0 && (ratio / (p / q as f64) - 1.0).abs() < ALIASING_TOLERANCE
    })
}

/// The iteration count nearest `iterations` whose block (at `seconds_per_iteration`)
/// does not alias with the period: `iterations` itself when it does not, else the
/// nearest count above or below it that does not (a block of one iteration that
/// aliases stays one iteration: phase shifts between windows are its remedy).
pub fn non_aliasing_iterations(iterations: u64, seconds_per_iteration: f64, period_s: f64) -> u64 {
    let len = |n: u64| n as f64 * seconds_per_iteration;
    if !aliases(len(iterations), period_s) {
        return iterations;
    }
    for step in 1..=iterations.max(8) {
        let up = iterations + step;
        if !aliases(len(up), period_s) {
            return up;
        }
        if step < iterations && !aliases(len(iterations - step), period_s) {
            return iterations - step;
        }
    }
    iterations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_avoid_simple_fractions_of_the_period() {
        assert!(aliases(0.05, 0.1) && aliases(0.1, 0.1) && aliases(0.075, 0.1));
        assert!(aliases(0.0334, 0.1) && aliases(0.15, 0.1));
        assert!(!aliases(block_seconds(0.1, 1.0), 0.1));
        assert!(!aliases(0.062, 0.1));
        // 10 iterations of 5 ms are half a period: 11 are not
        assert_eq!(non_aliasing_iterations(10, 0.005, 0.1), 11);
        assert_eq!(non_aliasing_iterations(12, 0.005, 0.1), 12);
        // every count of a 50 ms iteration is a multiple of half a period
        assert_eq!(non_aliasing_iterations(1, 0.05, 0.1), 1);
    }

    #[test]
    fn a_block_is_counted_by_its_share_of_time() {
        let b = [Block {
            start_s: 0.0,
            end_s: 1.0,
            iterations: 10,
            device_s: Some(0.9),
        }];
        let (n, d) = count(&b, 0.25, 2.0, true);
        assert!((n - 7.5).abs() < 1e-12 && (d.unwrap() - 0.675).abs() < 1e-12);
        assert_eq!(count(&b, 0.25, 2.0, false).0, 10.0);
    }
}
