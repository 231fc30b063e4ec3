//! Where the protocol's time comes from. Real devices use the monotonic clock;
//! the simulated device supplies a virtual clock, so its sweeps take milliseconds
//! while the protocol code stays the same.

use std::time::{Duration, Instant};

pub trait Clock: Send + Sync {
    /// Seconds since an arbitrary fixed origin.
    fn now_s(&self) -> f64;
    /// Let time pass with the device idle.
    fn sleep(&self, duration: Duration);
}

/// The host's monotonic clock.
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}
