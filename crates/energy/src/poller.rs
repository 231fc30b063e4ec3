//! A meter's background thread: it reads a cumulative energy source every
//! millisecond or so and telemetry every 50 ms, stamps each change with the
//! process-wide monotonic clock (`joulebench_core::clock::monotonic_s`, the time
//! line the protocol's `SystemClock` reads), and keeps what it saw until the
//! window engine takes it. That is how a window can open and close exactly on
//! counter updates while the host thread is busy launching work.

use joulebench_core::clock::monotonic_s;
use joulebench_core::meter::{CounterUpdate, MeterError, Telemetry, TelemetrySample};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the poller reads.
pub trait PolledSource: Send + 'static {
    /// The cumulative energy now, joules (`None`: this source reads no energy).
    fn energy_j(&mut self) -> Result<Option<f64>, MeterError>;
    /// Clocks, temperature, power, throttle reasons now.
    fn telemetry(&mut self) -> Result<Telemetry, MeterError>;
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PollConfig {
    /// How often the energy reading is polled: well under its update period, so a
    /// change is stamped within this long of when it happened.
    pub energy_every: Duration,
    /// How often telemetry is read.
    pub telemetry_every: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            energy_every: Duration::from_millis(1),
            telemetry_every: Duration::from_millis(50),
        }
    }
}

/// Readings kept until taken; older ones are dropped (a minute of 1 ms changes).
const KEEP: usize = 1 << 16;

#[derive(Default)]
struct Seen {
    updates: VecDeque<CounterUpdate>,
    telemetry: VecDeque<TelemetrySample>,
    latest: Option<CounterUpdate>,
    error: Option<MeterError>,
}

struct Shared {
    seen: Mutex<Seen>,
    stop: AtomicBool,
}

impl Shared {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        // the thread never panics holding the lock; if it did, the data is whole
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Poller {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    /// Start polling `source` in a thread of its own (named `name`).
    pub fn start(
        name: &str,
        source: Box<dyn PolledSource>,
        config: PollConfig,
    ) -> Result<Poller, MeterError> {
        if config.energy_every.is_zero() || config.telemetry_every.is_zero() {
            return Err(MeterError::Unavailable(
                "polling intervals must be greater than zero".into(),
            ));
        }
        let shared = Arc::new(Shared {
            seen: Mutex::new(Seen::default()),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || poll_loop(source, &shared, config))
                .map_err(|e| {
                    MeterError::Unavailable(format!("cannot start the meter's polling thread: {e}"))
                })?
        };
        Ok(Poller {
            shared,
            thread: Some(thread),
        })
    }

    /// Every change of the reading since the last call, oldest first; the error
    /// that stopped the thread, if one did.
    pub fn take_updates(&self) -> Result<Vec<CounterUpdate>, MeterError> {
        let mut seen = self.shared.seen();
        if let Some(e) = &seen.error {
            return Err(e.clone());
        }
        Ok(seen.updates.drain(..).collect())
    }

    /// The error that stopped the thread, if one did, without taking any reading.
    pub fn error(&self) -> Option<MeterError> {
        self.shared.seen().error.clone()
    }

    pub fn take_telemetry(&self) -> Vec<TelemetrySample> {
        self.shared.seen().telemetry.drain(..).collect()
    }

    /// The latest reading and when it changed to it.
    pub fn latest(&self) -> Option<CounterUpdate> {
        self.shared.seen().latest
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn poll_loop(mut source: Box<dyn PolledSource>, shared: &Shared, config: PollConfig) {
    let origin = Instant::now();
    let mut tick: u32 = 0;
    let mut next_telemetry = 0.0;
    let mut last: Option<f64> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let t = monotonic_s();
        match source.energy_j() {
            Ok(Some(j)) if last != Some(j) => {
                last = Some(j);
                let u = CounterUpdate {
                    time_s: t,
                    joules: j,
                };
                let mut seen = shared.seen();
                seen.latest = Some(u);
                push(&mut seen.updates, u);
            }
            Ok(_) => {}
            Err(e) => {
                // the error is the meter's answer from now on (a lost GPU)
                shared.seen().error = Some(e);
                return;
            }
        }
        if t >= next_telemetry {
            next_telemetry = t + config.telemetry_every.as_secs_f64();
            match source.telemetry() {
                Ok(telemetry) => push(
                    &mut shared.seen().telemetry,
                    TelemetrySample {
                        time_s: t,
                        telemetry,
                    },
                ),
                Err(e) => {
                    shared.seen().error = Some(e);
                    return;
                }
            }
        }
        // a fixed grid, so a slow call does not stretch every later interval
        tick = tick.saturating_add(1);
        let due = origin + config.energy_every.saturating_mul(tick);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn push<T>(q: &mut VecDeque<T>, item: T) {
    if q.len() >= KEEP {
        q.pop_front();
    }
    q.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Energy that steps by 1 J every 5 ms of real time.
    struct Steps(Instant);
    impl PolledSource for Steps {
        fn energy_j(&mut self) -> Result<Option<f64>, MeterError> {
            Ok(Some((self.0.elapsed().as_millis() / 5) as f64))
        }
        fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
            Ok(Telemetry {
                power_w: Some(200.0),
                ..Telemetry::default()
            })
        }
    }

    #[test]
    fn changes_are_stamped_on_the_shared_time_line() {
        let before = monotonic_s();
        let p = Poller::start(
            "test-poller",
            Box::new(Steps(Instant::now())),
            PollConfig::default(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(120));
        let after = monotonic_s();
        let ups = p.take_updates().unwrap();
        assert!(ups.len() >= 10, "{} updates", ups.len());
        assert!(ups.iter().all(|u| u.time_s >= before && u.time_s <= after));
        assert!(ups
            .windows(2)
            .all(|w| w[1].joules > w[0].joules && w[1].time_s > w[0].time_s));
        let tel = p.take_telemetry();
        assert!(!tel.is_empty() && tel.len() <= 4, "{} readings", tel.len());
        assert!(
            p.take_updates().unwrap().len() < ups.len(),
            "taken ones are gone"
        );
    }

    struct Failing;
    impl PolledSource for Failing {
        fn energy_j(&mut self) -> Result<Option<f64>, MeterError> {
            Err(MeterError::Read("the GPU is lost".into()))
        }
        fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
            Ok(Telemetry::default())
        }
    }

    #[test]
    fn an_error_in_the_thread_is_the_meters_answer() {
        let p = Poller::start("test-poller", Box::new(Failing), PollConfig::default()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let err = p.take_updates().unwrap_err();
        assert!(err.to_string().contains("lost"), "{err}");
    }
}
