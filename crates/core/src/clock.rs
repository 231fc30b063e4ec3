//! Where the protocol's time comes from. Real devices use the host's monotonic
//! clock, with one origin for the whole process so that a meter's background
//! thread and the protocol stamp events on the same time line; the simulated
//! device supplies a virtual clock, so its sweeps take milliseconds while the
//! protocol code stays the same.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub trait Clock: Send + Sync {
    /// Seconds since an arbitrary fixed origin.
    fn now_s(&self) -> f64;
    /// Let time pass with the device idle.
    fn sleep(&self, duration: Duration);
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Seconds on the process-wide monotonic time line that [`SystemClock`] reads.
/// Meters that poll in a thread of their own stamp what they see with it.
pub fn monotonic_s() -> f64 {
    origin().elapsed().as_secs_f64()
}

/// The host's monotonic clock ([`monotonic_s`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_s(&self) -> f64 {
        monotonic_s()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_system_clock_shares_the_process_time_line() {
        let a = SystemClock;
        let t0 = a.now_s();
        let b = SystemClock;
        let t1 = b.now_s();
        let t2 = monotonic_s();
        assert!(t0 <= t1 && t1 <= t2, "{t0} {t1} {t2}");
    }
}
