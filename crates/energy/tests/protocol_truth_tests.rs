//! The protocol's error, measured, on a simulated H200 as imperfect as the card
//! (stamps late by the polling thread, a jittering period, a sensor that averages a
//! quarter of each period at a phase of its own, a limiter that steps the clock in
//! bins and oscillates around the limit, host gaps, a gain error). The device knows
//! its true energy over each window's own interval, so each figure here is the
//! protocol's error against the truth; the gain error, which no protocol can
//! remove, is divided out and checked on its own.
//!
//! Each safeguard of the protocol has a test that runs the same measurement with
//! the safeguard on and off: on, the error is within its bound; off, it is not.
//! `SAFEGUARD_OFF=<name>` runs the "on" half with that safeguard off too, to watch
//! the test fail. The figures docs/protocol.md quotes are checked against these tests.

#[path = "common/sim_truth.rs"]
mod sim_truth;

use joulebench_core::protocol::{ProtocolConfig, ValidityFlag};
use joulebench_core::stop::{StopReason, StopRuleKind};
use joulebench_core::window::{UpdateTimes, WindowEngine};
use joulebench_core::{
    AttentionShape, Backend, Clock, EnergyMeter, MatmulShape, Precision, Safeguards, Workload,
};
use joulebench_energy::sim::{self, HostGaps, Imperfections, SimDevice, ThermalSlowdown};
use sim_truth::{median, pct, preheat, window_truth, Outcome, Point};
use std::time::Duration;

fn square(n: u64) -> Workload {
    Workload::Matmul(MatmulShape {
        batch: 1,
        m: n,
        n,
        k: n,
    })
}

/// The safeguards of an "on" run: all, unless `SAFEGUARD_OFF` names one to drop.
fn safeguards_on() -> Safeguards {
    let mut s = Safeguards::default();
    match std::env::var("SAFEGUARD_OFF").as_deref() {
        Ok("busy-lead-in") => s.busy_lead_in = false,
        Ok("exact-counting") => s.exact_counting = false,
        Ok("no-idle-inside") => s.no_idle_inside = false,
        Ok("telemetry-during-work") => s.telemetry_during_work = false,
        Ok("grid-fit") => s.grid_fit = false,
        Ok("non-aliasing-blocks") => s.non_aliasing_blocks = false,
        Ok("settle-by-power-and-pace") => s.settle_by_power_and_pace = false,
        _ => {}
    }
    s
}

/// Whether `SAFEGUARD_OFF` names a protocol setting's safeguard.
fn setting_off(name: &str) -> bool {
    std::env::var("SAFEGUARD_OFF").as_deref() == Ok(name)
}

/// docs/protocol.md quotes this test's figure exactly, so the two cannot drift apart.
fn readme_quotes(text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    assert!(
        readme.contains(text),
        "docs/protocol.md should quote this test's figure; put this in it:\n{text}"
    );
}

/// A row of one of docs/protocol.md's tables of the protocol's error.
fn readme_row(cells: &[&str]) {
    readme_quotes(&format!("| {} |", cells.join(" | ")));
}

#[test]
fn busy_windows_are_within_half_a_percent_on_large_gemms() {
    let cfg = ProtocolConfig::default();
    let mut rows = Vec::new();
    for (kernel, precision, n, at_limit) in [
        ("sim-vendor", Precision::Bf16, 8192, true),
        ("sim-vendor", Precision::Fp8E4m3, 8192, true),
        ("sim-vendor", Precision::Tf32, 8192, true),
        ("sim-ours", Precision::Bf16, 8192, true),
        ("sim-vendor", Precision::F32, 8192, false),
        ("sim-ours", Precision::F32, 4096, false),
    ] {
        let o = Point::new(kernel, precision, square(n)).measure(&cfg, safeguards_on());
        let avg = o.m.summary.average_w.unwrap();
        let true_avg = median(o.true_w.clone());
        eprintln!(
            "{kernel} {precision} {n}³: error {} ({} with the board's gain), {avg:.1} W read, {true_avg:.1} W true, {} windows",
            pct(o.error()),
            pct(o.error_with_gain()),
            o.m.windows.len()
        );
        assert!(
            o.error().abs() < 0.005,
            "{kernel} {precision}: {}",
            pct(o.error())
        );
        rows.push([
            format!("{kernel} {precision} {n}³"),
            format!("{true_avg:.0} W"),
            pct(o.error()),
            pct(o.error_with_gain()),
        ]);
        // the counter reads the true power × the gain, window by window
        assert!(
            (avg / (true_avg * o.gain) - 1.0).abs() < 0.005,
            "{avg} W vs {true_avg} W"
        );
        if at_limit {
            // the limiter holds the board at 700 W: a window with idle in it, or
            // with its work miscounted, would not read so
            assert!((true_avg - 700.0).abs() < 3.5, "{true_avg} W");
            assert!(
                o.flags().contains(&ValidityFlag::PowerLimited),
                "{:?}",
                o.flags()
            );
        } else {
            assert!(true_avg < 690.0, "{true_avg} W");
        }
        assert!(
            !o.flags().contains(&ValidityFlag::Throttled),
            "{:?}",
            o.flags()
        );
        assert!(
            !o.flags().contains(&ValidityFlag::AboveLimit),
            "{:?}",
            o.flags()
        );
    }
    for row in &rows {
        eprintln!("| {} |", row.join(" | "));
    }
    for row in &rows {
        readme_row(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

#[test]
fn the_boards_gain_error_passes_through_every_protocol() {
    // no window can tell a sensor that reads 2.5% high from a board that draws 2.5%
    // more: the figure carries the board's gain error, and only that
    let o = Point::new("sim-vendor", Precision::Bf16, square(8192))
        .measure(&ProtocolConfig::default(), safeguards_on());
    assert_eq!(o.gain, 1.025);
    assert!(
        (o.error_with_gain() - 0.025).abs() < 0.005,
        "{}",
        pct(o.error_with_gain())
    );
    readme_quotes("sim-h200's counter reads 2.5% above the power its limiter holds");
}

/// Per-window errors of windows that each follow an idle rest, as EnergyMonitor's
/// and criterion's windows do (a sweep's follow a warm-up instead).
fn windows_after_rests(seed: u64, safeguards: Safeguards) -> Vec<f64> {
    let mut dev = SimDevice::open("sim-h200", 0, seed).unwrap();
    let truth = dev.truth();
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &square(8192), 1)
        .unwrap();
    preheat(k.as_mut(), 60.0);
    truth.start_trace();
    let gain = truth.counter_gain();
    let mut engine = WindowEngine::new(&mut dev.meter, dev.clock.as_ref(), Default::default());
    engine.set_safeguards(safeguards);
    let mut run = |n: u64| k.run(n);
    let cal = engine.calibrate(&mut run, 0.05).unwrap();
    let mut errors = Vec::new();
    for i in 0..12 {
        // rests of 0.3 s and a little more each time: the work restarts at every
        // phase of the counter's period
        engine.idle(0.3 + 0.0173 * i as f64).unwrap();
        let w = engine.window(&mut run, cal.block_iterations, 0.0).unwrap();
        let t = window_truth(&truth, &w);
        errors.push(w.joules_per_op(None).unwrap() / (t.joules_per_op() * gain) - 1.0);
    }
    errors
}

fn worst(errors: &[f64]) -> f64 {
    errors
        .iter()
        .cloned()
        .fold(0.0, |a: f64, e| if e.abs() > a.abs() { e } else { a })
}

#[test]
fn the_busy_lead_in_keeps_idle_out_of_the_first_update_of_a_window() {
    // six boards, each with its own sensor phase and latency
    let boards = |s: Safeguards| -> Vec<f64> {
        (1..=6)
            .flat_map(|seed| windows_after_rests(seed, s))
            .collect()
    };
    let on = boards(safeguards_on());
    let off = boards(Safeguards {
        busy_lead_in: false,
        ..Safeguards::default()
    });
    for seed in 1..=6 {
        let w = |v: &[f64]| worst(&v[(seed - 1) * 12..seed * 12]);
        eprintln!(
            "board {seed}: with {} without {}",
            pct(w(&on)),
            pct(w(&off))
        );
    }
    eprintln!(
        "windows after a rest, bf16 8192³: worst error with the lead-in {}, without {}",
        pct(worst(&on)),
        pct(worst(&off))
    );
    assert!(worst(&on).abs() < 0.005, "with: {on:?}");
    assert!(worst(&off) < -0.02, "without: {off:?}");
    readme_row(&[
        "busy lead-in before the opening update",
        "72 windows of bf16 8192³, each after a rest of 0.3 s or more, on 6 boards: the worst window",
        &pct(worst(&on)),
        &pct(worst(&off)),
    ]);
}

#[test]
fn exact_counting_of_the_work_between_updates() {
    let point = Point::new("sim-vendor", Precision::Bf16, square(8192));
    let cfg = ProtocolConfig::default();
    let on = point.measure(&cfg, safeguards_on());
    let off = point.measure(
        &cfg,
        Safeguards {
            exact_counting: false,
            ..Safeguards::default()
        },
    );
    eprintln!(
        "bf16 8192³: error with exact counting {}, counting whole blocks {}",
        pct(on.error()),
        pct(off.error())
    );
    assert!(on.error().abs() < 0.005, "{}", pct(on.error()));
    assert!(off.error() < -0.02, "{}", pct(off.error()));
    readme_row(&[
        "work between updates apportioned by time inside its block",
        "bf16 8192³ at the limit",
        &pct(on.error()),
        &format!("{} (whole blocks counted)", pct(off.error())),
    ]);
}

#[test]
fn no_idle_inside_a_window() {
    let point = Point::new("sim-vendor", Precision::Bf16, square(8192));
    let cfg = ProtocolConfig::default();
    let on = point.measure(&cfg, safeguards_on());
    let off = point.measure(
        &cfg,
        Safeguards {
            no_idle_inside: false,
            ..Safeguards::default()
        },
    );
    // against what the work alone cost: the windows' time is all work, or not
    eprintln!(
        "bf16 8192³: error with busy windows {}, with sleeps between blocks {}",
        pct(on.error_vs_work()),
        pct(off.error_vs_work())
    );
    assert!(
        on.error_vs_work().abs() < 0.005,
        "{}",
        pct(on.error_vs_work())
    );
    assert!(off.error_vs_work() > 0.05, "{}", pct(off.error_vs_work()));
    readme_row(&[
        "no idle inside a window",
        "bf16 8192³ at the limit, against what the work alone cost",
        &pct(on.error_vs_work()),
        &format!(
            "{} (10–30 ms sleeps between blocks)",
            pct(off.error_vs_work())
        ),
    ]);
}

#[test]
fn telemetry_taken_during_the_work() {
    let point = Point::new("sim-vendor", Precision::Bf16, square(8192));
    let cfg = ProtocolConfig::default();
    let summary = |o: &Outcome| {
        let t = &o.m.telemetry;
        format!(
            "{:.0} MHz (truly {:.0}){}",
            t.sm_clock_mhz_median.unwrap_or(0.0),
            median(o.true_clock_mhz.clone()),
            if t.throttle_reasons.iter().any(|r| r == "sw-power-cap") {
                ", sw-power-cap"
            } else {
                ", no throttle reason"
            }
        )
    };
    let check = |o: &Outcome| -> Result<(), String> {
        let t = &o.m.telemetry;
        let clock = t.sm_clock_mhz_median.ok_or("no clock")?;
        let true_clock = median(o.true_clock_mhz.clone());
        let power = t.power_w_median.ok_or("no power")?;
        let true_power = median(o.true_w.clone()) * o.gain;
        let limited = t.throttle_reasons.iter().any(|r| r == "sw-power-cap");
        eprintln!(
            "  {}, power {power:.0} W (truly {true_power:.0})",
            summary(o)
        );
        if (clock - true_clock).abs() > 30.0 {
            return Err(format!("clock {clock} MHz, truly {true_clock:.0}"));
        }
        if (power / true_power - 1.0).abs() > 0.03 {
            return Err(format!("power {power:.0} W, truly {true_power:.0}"));
        }
        if !limited {
            return Err("no sw-power-cap reason".into());
        }
        Ok(())
    };
    eprintln!("bf16 8192³, telemetry during the work:");
    let on = point.measure(&cfg, safeguards_on());
    let on_result = check(&on);
    eprintln!("bf16 8192³, one reading after each window's work:");
    let off = point.measure(
        &cfg,
        Safeguards {
            telemetry_during_work: false,
            ..Safeguards::default()
        },
    );
    assert_eq!(on_result, Ok(()));
    assert!(check(&off).is_err());
    readme_row(&[
        "telemetry taken during the work",
        "bf16 8192³ at the limit: the SM clock a record reports",
        &summary(&on),
        &summary(&off),
    ]);
}

/// Unfused attention (a GEMM phase, then a softmax pass over the scores) with an
/// iteration of exactly half the counter's period at a locked 1200 MHz: the
/// sensor's slices see the same phase of the work every period, so a window reads
/// the power of whichever phase its slices fall in.
fn resonant_attention() -> Point {
    let p = sim::profile("sim-h200").unwrap();
    let k = sim::kernel("sim-unfused").unwrap();
    let phi = 1200.0 / p.max_sm_clock_mhz as f64;
    let shape = |seq_kv: u64| {
        Workload::Attention(AttentionShape {
            batch: 1,
            heads: 32,
            seq_q: 16384,
            seq_kv,
            head_dim: 128,
            causal: false,
        })
    };
    let target_s = p.counter_period_s / 2.0;
    let spo = |kv: u64| {
        p.at_clock(k, Precision::Bf16, &shape(kv), phi)
            .seconds_per_op
    };
    let (mut lo, mut hi) = (1024u64, 1 << 20);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if spo(mid) < target_s {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut point = Point::new("sim-unfused", Precision::Bf16, shape(lo));
    point.locked_mhz = Some(1200);
    point.preheat_s = 30.0;
    point
}

#[test]
fn phase_shifts_between_windows_keep_a_resonance_from_biasing_a_point_silently() {
    let cfg = ProtocolConfig {
        phase_shift: !setting_off("phase-shift"),
        ..ProtocolConfig::default()
    };
    let (mut worst_off, mut worst_on, mut flagged_on): (f64, f64, usize) = (0.0, 0.0, 0);
    for seed in 1..=4 {
        let mut point = resonant_attention();
        point.seed = seed;
        let on = point.measure(&cfg, safeguards_on());
        let off = point.measure(
            &ProtocolConfig {
                phase_shift: false,
                ..cfg.clone()
            },
            safeguards_on(),
        );
        let flagged = |o: &Outcome| o.flags().contains(&ValidityFlag::HighSpread);
        let spread = |o: &Outcome| o.m.summary.joules_per_op.unwrap().rel_spread;
        eprintln!(
            "board {seed}: with phase shifts {} over {} windows, spread {}{}, without {} over {}, spread {}{}",
            pct(on.error()),
            on.m.windows.len(),
            pct(spread(&on)),
            if flagged(&on) { " (high-spread)" } else { "" },
            pct(off.error()),
            off.m.windows.len(),
            pct(spread(&off)),
            if flagged(&off) { " (high-spread)" } else { "" },
        );
        assert!(
            on.error().abs() < 0.005 || flagged(&on),
            "board {seed}: {} and not flagged",
            pct(on.error())
        );
        if flagged(&on) {
            flagged_on += 1;
        } else if on.error().abs() > worst_on.abs() {
            worst_on = on.error();
        }
        if !flagged(&off) && off.error().abs() > worst_off.abs() {
            worst_off = off.error();
        }
    }
    eprintln!("worst silent error without phase shifts {}", pct(worst_off));
    assert!(worst_off.abs() > 0.05, "{}", pct(worst_off));
    let on_cell = match flagged_on {
        4 => "4 of 4 boards flagged `high-spread`".to_string(),
        n => format!(
            "{n} of 4 boards flagged `high-spread`, the others within {}",
            pct(worst_on)
        ),
    };
    readme_row(&[
        "phase shifts between windows",
        "unfused attention with a 50 ms iteration (half the counter's period) at a locked 1200 MHz, 4 boards: the worst error no flag warns of",
        &on_cell,
        &pct(worst_off),
    ]);
}

#[test]
fn the_warm_up_waits_for_the_die_to_settle_from_cold() {
    let measure = |cfg: &ProtocolConfig| {
        let mut point = Point::new("sim-vendor", Precision::Bf16, square(8192));
        point.preheat_s = 0.0;
        point.seed = 5;
        point.measure(cfg, safeguards_on())
    };
    // six windows each: the drift is the last three's mean J/op against the first three's
    let six = ProtocolConfig {
        stop_rule: StopRuleKind::FixedCount,
        min_windows: 6,
        ..ProtocolConfig::default()
    };
    let settling = if setting_off("settling-warm-up") {
        ProtocolConfig {
            warmup_max_s: 1.0,
            ..six.clone()
        }
    } else {
        six.clone()
    };
    // as schema-1 records did: one second of warm-up, whatever the temperature
    let one_second = ProtocolConfig {
        warmup_max_s: 1.0,
        ..six
    };
    let drift = |o: &Outcome| {
        let t = &o.m.telemetry;
        let temp = t.temperature_end_c.unwrap() - t.temperature_start_c.unwrap();
        let j: Vec<f64> = o.windows.iter().map(|w| w.0).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        (temp, mean(&j[3..]) / mean(&j[..3]) - 1.0)
    };
    let on = measure(&settling);
    let off = measure(&one_second);
    let (on_t, on_j) = drift(&on);
    let (off_t, off_j) = drift(&off);
    eprintln!(
        "bf16 8192³ from cold: settling warm-up {:.1} s, then {on_t:+.0} °C and {} J/op across the windows; a 1 s warm-up, then {off_t:+.0} °C and {}",
        on.m.warmup_s,
        pct(on_j),
        pct(off_j)
    );
    assert_eq!(on.m.warmup_settled, Some(true));
    assert!(!on.flags().contains(&ValidityFlag::Unsettled));
    // the windows of a point agree: the die no longer warms under them
    assert!(
        on_t.abs() <= 1.0 && on_j.abs() < 0.0015,
        "{on_t} °C, {}",
        pct(on_j)
    );
    assert!(off_t >= 3.0 && off_j > 0.0025, "{off_t} °C, {}", pct(off_j));
    readme_row(&[
        "settling warm-up",
        "bf16 8192³ from cold, six windows: how far the temperature and the J/op (the last three windows against the first three) drift",
        &format!("{on_t:+.0} °C, {} (after {:.1} s of warm-up)", pct(on_j), on.m.warmup_s),
        &format!("{off_t:+.0} °C, {} (after 1 s)", pct(off_j)),
    ]);
}

/// The protocol of schema-1 records: four blocks per window with 10–30 ms sleeps
/// between them, a window started on a counter update after an idle wait for it,
/// an idle wait for the closing update, idle power subtracted for every gap and the
/// rest divided by the busy time. Returns its error against what the work alone
/// cost, and its average power against the board's true power at the limit.
fn gapped_protocol() -> (f64, f64) {
    let mut dev = SimDevice::open("sim-h200", 0, 3).unwrap();
    let truth = dev.truth();
    let clock = dev.clock.clone();
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &square(8192), 1)
        .unwrap();
    preheat(k.as_mut(), 120.0);
    truth.start_trace();
    let idle_w = 125.0;
    let spi = k.run(20).unwrap().device_s.unwrap() / 20.0;
    let block = ((1.0 / 4.0) / spi).ceil() as u64;
    let await_update = |meter: &mut dyn EnergyMeter| {
        let first = meter.energy_j().unwrap();
        loop {
            clock.sleep(Duration::from_millis(1));
            let e = meter.energy_j().unwrap();
            if e != first {
                return e;
            }
        }
    };
    let (mut errors, mut watts) = (Vec::new(), Vec::new());
    for window in 0..3 {
        let e0 = await_update(&mut dev.meter);
        let t0 = clock.now_s();
        let (mut busy, mut gaps) = (0.0, 0.0);
        for b in 0..4 {
            busy += k.run(block).unwrap().wall_s;
            if b < 3 {
                let g = 0.02 * (0.5 + ((window * 3 + b) as f64 * 0.618).fract());
                clock.sleep(Duration::from_secs_f64(g));
                gaps += g;
            }
        }
        let work_end = clock.now_s();
        let e1 = await_update(&mut dev.meter);
        gaps += clock.now_s() - work_end;
        let span = truth.between(t0, clock.now_s()).unwrap();
        let jpo = (e1 - e0 - idle_w * gaps) / (4 * block) as f64;
        errors.push(jpo / (span.busy_joules_per_op() * truth.counter_gain()) - 1.0);
        watts.push(jpo * (4 * block) as f64 / busy / truth.counter_gain());
    }
    (median(errors), median(watts))
}

#[test]
fn gapped_windows_overstate_energy_and_read_above_the_limit() {
    let (error, watts) = gapped_protocol();
    eprintln!(
        "gapped windows, bf16 8192³ at the 700 W limit: error {}, {watts:.1} W (true power, gain removed)",
        pct(error)
    );
    assert!(error > 0.01, "{}", pct(error));
    assert!(watts > 700.0 * 1.01, "{watts} W");
    readme_quotes(&format!(
        "read {} high, with the board truly at {watts:.1} W on its 700 W limit",
        pct(error)
    ));
}

fn rms(v: &[f64]) -> f64 {
    (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
}

/// bf16 8192³ on 8 boards whose meter thread sees each counter update up to
/// `late_s` late (and later when a telemetry query holds it): every window's error,
/// and each board's point error.
fn late_stamps(late_s: f64, safeguards: Safeguards) -> (Vec<f64>, Vec<f64>) {
    let (mut windows, mut points) = (Vec::new(), Vec::new());
    for seed in 1..=8 {
        let mut p = Point::new("sim-vendor", Precision::Bf16, square(8192));
        p.seed = seed;
        p.preheat_s = 60.0;
        p.imperfections = Some(Imperfections {
            poll_interval_s: late_s,
            ..sim::profile("sim-h200").unwrap().imperfections
        });
        let cfg = ProtocolConfig {
            stop_rule: StopRuleKind::FixedCount,
            min_windows: 10,
            ..ProtocolConfig::default()
        };
        let o = p.measure(&cfg, safeguards);
        let expected = if safeguards.grid_fit {
            UpdateTimes::GridFit
        } else {
            UpdateTimes::AsObserved
        };
        assert_eq!(o.m.update_times, expected);
        windows.extend(o.windows.iter().map(|(m, t)| m / t - 1.0));
        points.push(o.error());
    }
    (windows, points)
}

#[test]
fn update_times_fitted_to_the_counters_period_take_the_lateness_out_of_windows() {
    let off = Safeguards {
        grid_fit: false,
        ..Safeguards::default()
    };
    let cell = |(w, p): &(Vec<f64>, Vec<f64>)| {
        format!(
            "{} (rms {:.2}%); points {}",
            pct(worst(w)),
            100.0 * rms(w),
            pct(worst(p))
        )
    };
    let mut at_20 = None;
    for late_ms in [1.0, 5.0, 20.0] {
        let on = late_stamps(late_ms / 1e3, safeguards_on());
        let as_seen = late_stamps(late_ms / 1e3, off);
        eprintln!(
            "stamps up to {late_ms} ms late: fitted {}, as seen {}",
            cell(&on),
            cell(&as_seen)
        );
        readme_row(&[
            &format!("up to {late_ms:.0} ms late"),
            &cell(&on),
            &cell(&as_seen),
        ]);
        if late_ms == 20.0 {
            at_20 = Some((on, as_seen));
        }
    }
    let (on, as_seen) = at_20.unwrap();
    // seen up to 20 ms late, a 1 s window's own time is off by up to 2%: trusting
    // each stamp errs by more than 1% in a window; fitted, under half a percent,
    // and a point's median within 0.3%
    assert!(worst(&as_seen.0).abs() > 0.01, "{}", pct(worst(&as_seen.0)));
    assert!(worst(&on.0).abs() < 0.005, "{}", pct(worst(&on.0)));
    assert!(
        rms(&on.0) < 0.4 * rms(&as_seen.0),
        "{} vs {}",
        rms(&on.0),
        rms(&as_seen.0)
    );
    assert!(worst(&on.1).abs() < 0.003, "{}", pct(worst(&on.1)));
}

/// Every window's error, on 6 boards, of a kernel whose block — 4 iterations and
/// its 3 ms sync — lasts exactly half the counter's period at a locked 1200 MHz.
fn half_period_blocks(safeguards: Safeguards) -> Vec<f64> {
    let p = sim::profile("sim-h200").unwrap();
    let k = sim::kernel("sim-vendor").unwrap();
    let shape = |m: u64| {
        Workload::Matmul(MatmulShape {
            batch: 1,
            m,
            n: 8192,
            k: 8192,
        })
    };
    let phi = 1200.0 / p.max_sm_clock_mhz as f64;
    let sync_s = 0.003;
    let target_s = (p.counter_period_s / 2.0 - sync_s) / 4.0;
    let spo = |m: u64| {
        p.at_clock(k, Precision::Bf16, &shape(m), phi)
            .seconds_per_op
    };
    let (mut lo, mut hi) = (1024u64, 1 << 20);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if spo(mid) < target_s {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut errors = Vec::new();
    for seed in 1..=6 {
        let mut point = Point::new("sim-vendor", Precision::Bf16, shape(lo));
        point.locked_mhz = Some(1200);
        point.preheat_s = 30.0;
        point.seed = seed;
        point.imperfections = Some(Imperfections {
            host_gaps: HostGaps {
                per_block_s: sync_s,
                per_iteration_s: 0.0,
            },
            ..p.imperfections
        });
        let cfg = ProtocolConfig {
            stop_rule: StopRuleKind::FixedCount,
            min_windows: 8,
            ..ProtocolConfig::default()
        };
        let o = point.measure(&cfg, safeguards);
        errors.extend(o.windows.iter().map(|(m, t)| m / t - 1.0));
    }
    errors
}

#[test]
fn blocks_kept_off_simple_fractions_of_the_period_do_not_alias_with_the_sensor() {
    let on = half_period_blocks(safeguards_on());
    let off = half_period_blocks(Safeguards {
        non_aliasing_blocks: false,
        ..Safeguards::default()
    });
    let cell = |v: &[f64]| format!("{} (rms {:.2}%)", pct(worst(v)), 100.0 * rms(v));
    eprintln!(
        "blocks of half a period: kept off it {}, on it {}",
        cell(&on),
        cell(&off)
    );
    assert!(
        rms(&on) < 0.6 * rms(&off),
        "{} vs {}",
        cell(&on),
        cell(&off)
    );
    assert!(worst(&off).abs() > 0.005, "{}", cell(&off));
    readme_row(&[
        "blocks kept off simple fractions of the counter's period",
        "a 50 ms block (4 iterations and a 3 ms sync) at a locked 1200 MHz, 48 windows on 6 boards: the worst window",
        &cell(&on),
        &format!("{} (every block half a period)", cell(&off)),
    ]);
}

/// The die's true temperature slope, °C/s, after `seconds` of bf16 8192³ from cold
/// on board `seed` (as the warm-up ran it).
fn true_slope_after(seconds: f64, seed: u64) -> f64 {
    let mut dev = SimDevice::open("sim-h200", 0, seed).unwrap();
    let truth = dev.truth();
    let mut k = dev
        .backend
        .prepare("sim-vendor", Precision::Bf16, &square(8192), 1)
        .unwrap();
    preheat(k.as_mut(), seconds - 1.0);
    let before = truth.temperature_c();
    preheat(k.as_mut(), 1.0);
    truth.temperature_c() - before
}

#[test]
fn the_settling_check_is_not_fooled_by_whole_degree_temperatures() {
    let measure = |safeguards: Safeguards| {
        let mut point = Point::new("sim-vendor", Precision::Bf16, square(8192));
        point.preheat_s = 0.0;
        point.seed = 5;
        let o = point.measure(&ProtocolConfig::default(), safeguards);
        assert_eq!(o.m.warmup_settled, Some(true), "{}", o.m.warmup_s);
        (o.m.warmup_s, true_slope_after(o.m.warmup_s, 5))
    };
    let (on_s, on_slope) = measure(safeguards_on());
    let (off_s, off_slope) = measure(Safeguards {
        settle_by_power_and_pace: false,
        ..Safeguards::default()
    });
    eprintln!(
        "from cold: settled after {on_s:.1} s at a true {on_slope:.2} °C/s; judged on a 3 s temperature slope, after {off_s:.1} s at {off_slope:.2} °C/s"
    );
    let target = ProtocolConfig::default().settle_temp_c_per_s;
    // whole degrees over 3 s read as flat while the die still warms faster than
    // the target; over the settle window at load they do not
    assert!(off_slope > 1.5 * target, "{off_slope}");
    assert!(on_slope <= 1.2 * target, "{on_slope}");
    readme_row(&[
        "settling judged over 10 s at load (power, pace, whole-degree temperature)",
        "bf16 8192³ from cold: the die's true temperature slope when the warm-up calls it settled (target 0.1 °C/s)",
        &format!("{on_slope:.2} °C/s (after {on_s:.1} s)"),
        &format!("{off_slope:.2} °C/s (after {off_s:.1} s, a 3 s temperature slope)"),
    ]);
}

/// bf16 8192³ on a board that slows its clock when its die reaches 60 °C.
fn hot_board(drop_throttled: bool) -> Outcome {
    let mut point = Point::new("sim-vendor", Precision::Bf16, square(8192));
    point.imperfections = Some(Imperfections {
        thermal_slowdown: Some(ThermalSlowdown {
            at_c: 60.0,
            release_c: 59.0,
            clock_fraction: 0.7,
        }),
        ..sim::profile("sim-h200").unwrap().imperfections
    });
    let cfg = ProtocolConfig {
        drop_throttled,
        ..ProtocolConfig::default()
    };
    point.measure(&cfg, safeguards_on())
}

#[test]
fn throttled_windows_are_dropped_with_a_growing_cool_down_where_asked() {
    let cool = Point::new("sim-vendor", Precision::Bf16, square(8192))
        .measure(&ProtocolConfig::default(), safeguards_on());
    let reference = cool.m.summary.joules_per_op.unwrap().median;
    let dropped = hot_board(!setting_off("drop-throttled"));
    let kept = hot_board(false);
    let off_by = |o: &Outcome| o.m.summary.joules_per_op.unwrap().median / reference - 1.0;
    eprintln!(
        "a board that slows at 60 °C: {} windows dropped, {:.1} s of cool-down, J/op {} from an unthrottled board's; kept: {}, flags {:?}",
        dropped.m.throttled_windows_dropped,
        dropped.m.cooldown_s,
        pct(off_by(&dropped)),
        pct(off_by(&kept)),
        kept.flags()
    );
    assert!(dropped.m.throttled_windows_dropped >= 1);
    assert!(dropped.m.cooldown_s >= ProtocolConfig::default().throttle_cooldown_s);
    assert!(
        !dropped.flags().contains(&ValidityFlag::Throttled),
        "{:?}",
        dropped.flags()
    );
    assert!(dropped
        .m
        .windows
        .iter()
        .all(|w| !w.during.as_ref().unwrap().braked()));
    assert!(off_by(&dropped).abs() < 0.002, "{}", pct(off_by(&dropped)));
    assert!(kept.flags().contains(&ValidityFlag::Throttled));
    assert_eq!(kept.m.throttled_windows_dropped, 0);
    assert!(off_by(&kept).abs() > 0.005, "{}", pct(off_by(&kept)));
    readme_row(&[
        "throttled windows dropped, with a growing cool-down (`drop_throttled`)",
        "bf16 8192³ on a board that slows its clock at 60 °C: J/op against an unthrottled board's",
        &format!(
            "{} ({} dropped, {:.0} s of cool-down)",
            pct(off_by(&dropped)),
            dropped.m.throttled_windows_dropped,
            dropped.m.cooldown_s
        ),
        &format!("{} (flagged `throttled`)", pct(off_by(&kept))),
    ]);
}

#[test]
fn a_noisy_point_ends_early_when_its_estimate_stops_moving_and_says_so() {
    let cfg = ProtocolConfig {
        stop_when_stable: !setting_off("stop-when-stable"),
        ..ProtocolConfig::default()
    };
    let point = resonant_attention();
    let early = point.measure(&cfg, safeguards_on());
    let full = point.measure(
        &ProtocolConfig {
            stop_when_stable: false,
            ..cfg.clone()
        },
        safeguards_on(),
    );
    let stop = |o: &Outcome| o.m.stop.as_ref().unwrap().reason;
    eprintln!(
        "resonant attention: {} windows ({:?}), {} without the stability check ({:?})",
        early.m.windows.len(),
        stop(&early),
        full.m.windows.len(),
        stop(&full)
    );
    assert_eq!(stop(&early), StopReason::EstimateStable);
    assert!(early.flags().contains(&ValidityFlag::HighSpread));
    assert!(early.m.windows.len() < full.m.windows.len());
    assert_ne!(stop(&full), StopReason::EstimateStable);
    let cell = |o: &Outcome| {
        format!(
            "{} windows (`{}`), flagged `high-spread`",
            o.m.windows.len(),
            stop(o).name()
        )
    };
    readme_row(&[
        "a noisy point ends once its estimate stops moving",
        "the resonant attention above (board 3): how many windows it takes",
        &cell(&early),
        &cell(&full),
    ]);
}

#[test]
fn the_work_between_updates_is_interpolated_within_its_bound() {
    // exact stamps, so the counted work is compared with the truth at the very
    // moments the counter changed; the limiter still moves the clock in every block
    let mut errors = Vec::new();
    for seed in 1..=6 {
        let mut p = Point::new("sim-vendor", Precision::Bf16, square(8192));
        p.seed = seed;
        p.preheat_s = 60.0;
        p.imperfections = Some(Imperfections {
            poll_interval_s: 0.0,
            telemetry_call_s: 0.0,
            ..sim::profile("sim-h200").unwrap().imperfections
        });
        let cfg = ProtocolConfig {
            stop_rule: StopRuleKind::FixedCount,
            min_windows: 10,
            ..ProtocolConfig::default()
        };
        let o = p.measure(&cfg, safeguards_on());
        let truth = o.truth_spans.clone();
        errors.extend(
            o.m.windows
                .iter()
                .zip(&truth)
                .map(|(w, t)| w.iterations / t.iterations - 1.0),
        );
    }
    let bound = worst(&errors);
    eprintln!(
        "iterations counted against truly run, worst of {}: {}",
        errors.len(),
        pct(bound)
    );
    assert!(bound.abs() < 0.001, "{}", pct(bound));
    readme_quotes(&format!(
        "truly ran between its updates differ by {} at worst over {} windows of bf16",
        pct(bound),
        errors.len()
    ));
}
