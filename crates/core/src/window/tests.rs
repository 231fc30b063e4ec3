//! The engine in virtual time: a device that draws 300 W while it works and 50 W
//! otherwise, and a counter that books the exact energy every period.

use super::*;
use crate::meter::MeterSource;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

/// A device in virtual time: `busy_w` while work runs, `idle_w` otherwise, a
/// counter that updates every `period_s` with the exact energy so far.
struct World {
    now: f64,
    energy: f64,
    next_tick: f64,
    period_s: f64,
    updates: Vec<CounterUpdate>,
}

impl World {
    fn advance(&mut self, dt: f64, w: f64) {
        let end = self.now + dt;
        while self.next_tick <= end {
            self.energy += w * (self.next_tick - self.now);
            self.now = self.next_tick;
            self.updates.push(CounterUpdate {
                time_s: self.now,
                joules: self.energy,
            });
            self.next_tick += self.period_s;
        }
        self.energy += w * (end - self.now);
        self.now = end;
    }
}

#[derive(Clone)]
struct Shared(Rc<RefCell<World>>);
struct FakeClock(Mutex<Shared>);
unsafe impl Send for FakeClock {}
unsafe impl Sync for FakeClock {}
impl Clock for FakeClock {
    fn now_s(&self) -> f64 {
        self.0.lock().unwrap().0.borrow().now
    }
    fn sleep(&self, d: Duration) {
        self.0
            .lock()
            .unwrap()
            .0
            .borrow_mut()
            .advance(d.as_secs_f64(), 50.0);
    }
}
struct FakeMeter(Shared);
unsafe impl Send for FakeMeter {}
impl EnergyMeter for FakeMeter {
    fn source(&self) -> MeterSource {
        MeterSource::Simulated
    }
    fn energy_j(&mut self) -> Result<f64, MeterError> {
        Ok(self.0 .0.borrow().updates.last().map_or(0.0, |u| u.joules))
    }
    fn update_period_s(&self) -> f64 {
        self.0 .0.borrow().period_s
    }
    fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
        Ok(std::mem::take(&mut self.0 .0.borrow_mut().updates))
    }
}

fn world(period_s: f64) -> Shared {
    Shared(Rc::new(RefCell::new(World {
        now: 0.0,
        energy: 0.0,
        next_tick: period_s,
        period_s,
        updates: Vec::new(),
    })))
}

/// 1 ms per iteration at 300 W, plus 20 µs of idle sync after each block.
fn work(w: &Shared) -> impl FnMut(u64) -> Result<RunTiming, std::io::Error> + '_ {
    move |n| {
        let t = 1e-3 * n as f64;
        w.0.borrow_mut().advance(t, 300.0);
        w.0.borrow_mut().advance(20e-6, 50.0);
        Ok(RunTiming {
            wall_s: t + 20e-6,
            device_s: Some(t),
        })
    }
}

#[test]
fn a_window_counts_the_work_between_two_updates_exactly() {
    let w = world(0.1);
    let clock = FakeClock(Mutex::new(w.clone()));
    let mut meter = FakeMeter(w.clone());
    let mut engine = WindowEngine::new(&mut meter, &clock, WindowRules::default());
    let mut run = work(&w);
    let win = engine.window(&mut run, 7, 0.0).unwrap();
    assert!(
        win.seconds >= 1.0 - 1e-9 && win.seconds < 1.0 + 0.1 + 1e-9,
        "{win:?}"
    );
    // 300 W × 1 ms per iteration; the idle syncs are 2% of a 7-iteration block
    let j = win.joules_per_op(None).unwrap();
    assert!((j - 0.3).abs() / 0.3 < 0.004, "{j} J per op");
    assert!(win.average_w(None).unwrap() <= 300.0 + 1e-9);
    assert!(win.lead_in_s.unwrap() >= 0.1 - 1e-9);
    assert_eq!(win.counter_updates, Some(10));
}

#[test]
fn back_to_back_windows_share_their_boundary_update() {
    let w = world(0.1);
    let clock = FakeClock(Mutex::new(w.clone()));
    let mut meter = FakeMeter(w.clone());
    let mut engine = WindowEngine::new(&mut meter, &clock, WindowRules::default());
    let mut run = work(&w);
    let a = engine.window(&mut run, 50, 0.0).unwrap();
    let b = engine.window(&mut run, 50, 0.0).unwrap();
    assert_eq!(b.lead_in_s.unwrap(), a.lead_in_s.unwrap() + a.seconds);
    engine.idle(0.003).unwrap();
    let c = engine.window(&mut run, 50, 0.0).unwrap();
    assert!(c.lead_in_s.unwrap() >= 0.1 - 1e-9 && c.lead_in_s.unwrap() < 0.25);
}

#[test]
fn a_stuck_counter_is_an_error_not_zero_joules() {
    let w = world(0.1);
    let clock = FakeClock(Mutex::new(w.clone()));
    let mut meter = crate::meter_suite::StuckMeter;
    let mut engine = WindowEngine::new(&mut meter, &clock, WindowRules::default());
    let mut run = work(&w);
    let err = engine.window(&mut run, 10, 0.0).unwrap_err();
    assert!(matches!(err, WindowError::MeterStalled { .. }), "{err}");
    assert!(err.to_string().contains("did not update"), "{err}");
}

/// The world's meter with a host beside it that draws 80 W, and a counter
/// that drops by 100 J once, at `drop_at_s`.
struct HostAndDrop(Shared, f64);
unsafe impl Send for HostAndDrop {}
impl EnergyMeter for HostAndDrop {
    fn source(&self) -> MeterSource {
        MeterSource::Simulated
    }
    fn energy_j(&mut self) -> Result<f64, MeterError> {
        Ok(0.0)
    }
    fn update_period_s(&self) -> f64 {
        0.1
    }
    fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
        let drop_at = self.1;
        let mut ups = std::mem::take(&mut self.0 .0.borrow_mut().updates);
        for u in ups.iter_mut().filter(|u| u.time_s >= drop_at) {
            u.joules -= 100.0;
        }
        Ok(ups)
    }
    fn host_energy_between(&mut self, a: f64, b: f64) -> Option<f64> {
        Some(80.0 * (b - a))
    }
    fn fault_detail(&mut self) -> Option<String> {
        Some("the test counter dropped by 100 J".into())
    }
}

#[test]
fn windows_carry_host_energy_and_a_drop_is_rejected_with_the_meters_reason() {
    let w = world(0.1);
    let clock = FakeClock(Mutex::new(w.clone()));
    let mut meter = HostAndDrop(w.clone(), 1e9);
    let mut engine = WindowEngine::new(&mut meter, &clock, WindowRules::default());
    let mut run = work(&w);
    let win = engine.window(&mut run, 7, 0.0).unwrap();
    let host = win.host_joules.unwrap();
    assert!((host - 80.0 * win.seconds).abs() < 1e-9, "{win:?}");
    drop(engine);

    let w = world(0.1);
    let clock = FakeClock(Mutex::new(w.clone()));
    let mut meter = HostAndDrop(w.clone(), 0.55);
    let mut engine = WindowEngine::new(&mut meter, &clock, WindowRules::default());
    let mut run = work(&w);
    let err = engine.window(&mut run, 7, 0.0).unwrap_err();
    assert!(matches!(err, WindowError::MeterBackwards { .. }), "{err}");
    assert!(err.to_string().contains("dropped by 100 J"), "{err}");
}

#[test]
fn rules_size_windows_for_slow_meters() {
    let r = WindowRules::default();
    assert_eq!(r.target_s(0.1), 1.0);
    assert!((r.target_s(0.25) - 2.5).abs() < 1e-12);
    assert!(r.is_short(0.9, 0.1) && !r.is_short(0.99, 0.1));
}
