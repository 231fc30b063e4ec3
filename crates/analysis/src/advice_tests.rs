//! The cases advice must get right (docs/ARCHITECTURE.md §7), each on hand-made
//! records whose answer is known before the test runs: a saving credited to the
//! lever that made it, a lock that does not bind dropped, a change within the noise
//! refused, one cap and clock per GPU, rows of our kernels only marked, and the
//! flags and known biases of the records carried into every output.

use crate::compare::{compare, comparison_table, CapChoice};
use crate::cost::CostInputs;
use crate::device_setting::{device_settings, Mix};
use crate::levers::Lever;
use crate::objective::Objective;
use crate::plots::energy_time_chart;
use crate::recommend::{recommend, recommend_by, recommend_opts, GroupBy, RecommendOptions};
use crate::recommend_table::{attribution_table, device_table, pareto_table, recommendation_table};
use crate::settings_file::{SettingsFile, SettingsFormat};
use crate::significance::NoiseFloor;
use crate::testutil::{on_workload, rec, rec_of};
use joulebench_core::meter::MeterAgreement;
use joulebench_core::protocol::WindowMethod;
use joulebench_core::record::Record;
use joulebench_core::Precision::{Bf16, Fp8E4m3, F16};
use std::path::Path;

const WITHIN_10: Objective = Objective::WithinSlowdown { max_slowdown: 0.10 };

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// bf16 and fp8 GEMMs at the default limit, each at the default clocks and locked
/// at 1260 MHz (as sim-h100 measures them: the lock saves 3.6% on fp8).
fn precision_and_clock() -> Vec<Record> {
    vec![
        rec_of("vendor", true, Bf16, "default", None, 590.0, 1.184),
        rec_of(
            "vendor",
            true,
            Bf16,
            "default",
            Some((1260, 1260.0)),
            520.0,
            1.12,
        ),
        rec_of("vendor", true, Fp8E4m3, "default", None, 1144.0, 0.611),
        rec_of(
            "vendor",
            true,
            Fp8E4m3,
            "default",
            Some((1260, 1260.0)),
            1064.0,
            0.589,
        ),
    ]
}

#[test]
fn each_lever_is_credited_with_what_it_alone_saves() {
    let recs = recommend(&precision_and_clock(), WITHIN_10);
    let r = &recs[0];
    let c = r.chosen();
    assert_eq!((c.precision, c.sm_clock_mhz), (Fp8E4m3, Some(1260)));
    let a = &r.attribution;
    let clock = a.lever(Lever::Clock).unwrap();
    // against the same fp8 setting at the default clocks: 1 − 0.589/0.611
    assert!(close(clock.energy_saved.unwrap(), 1.0 - 0.589 / 0.611));
    assert_eq!(r.settings[clock.against.unwrap()].sm_clock_mhz, None);
    assert_eq!(clock.significant(), Some(true));
    // against bf16 at the same 1260 MHz lock: 1 − 0.589/1.12
    let precision = a.lever(Lever::Precision).unwrap();
    assert!(close(precision.energy_saved.unwrap(), 1.0 - 0.589 / 1.12));
    assert_eq!(
        r.settings[precision.against.unwrap()].sm_clock_mhz,
        Some(1260)
    );
    // together, against the baseline (bf16, default clocks)
    assert!(close(a.energy_saved.unwrap(), 1.0 - 0.589 / 1.184));
    assert_eq!(a.levers.len(), 2);

    // the clock's note speaks of the clock alone, never of the precision's saving
    let t = recommendation_table(&recs, WITHIN_10);
    let note = t
        .notes
        .iter()
        .find(|n| n.contains("locked at 1260 MHz"))
        .unwrap();
    assert!(
        note.contains("the clock alone saves +3.6% energy"),
        "{note}"
    );
    assert!(!note.contains("50.3"), "{note}");
    let at = attribution_table(&recs);
    let rows: Vec<String> = at.rows.iter().map(|r| r.join("|")).collect();
    assert!(
        rows.iter()
            .any(|r| r.contains("|SM clock|default → 1260 MHz|+3.6%|")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("|precision|bf16 → fp8-e4m3|+47.4%|")),
        "{rows:?}"
    );
}

/// fp8 at the 80% cap, where the limit holds the clock at 1161 MHz: a lock at
/// 1980 MHz never binds, however its figure happens to read.
fn unbound_lock(with_twin: bool) -> Vec<Record> {
    let mut v = vec![
        rec_of("vendor", true, Fp8E4m3, "default", None, 1144.0, 0.611),
        // 5% below its unlocked twin: more than the noise, yet the lock did nothing
        rec_of(
            "vendor",
            true,
            Fp8E4m3,
            "80%",
            Some((1980, 1161.0)),
            982.0,
            0.540,
        ),
    ];
    if with_twin {
        v.push(rec_of("vendor", true, Fp8E4m3, "80%", None, 983.0, 0.571));
    }
    v
}

#[test]
fn a_lock_that_does_not_bind_is_dropped_with_a_note() {
    let recs = recommend(&unbound_lock(true), Objective::LeastEnergy);
    let r = &recs[0];
    assert_eq!(r.settings[r.best].sm_clock_mhz, Some(1980));
    let c = r.chosen();
    assert_eq!((c.cap.as_str(), c.sm_clock_mhz), ("80%", None));
    let dropped = &r.reverted[0];
    assert_eq!(
        (dropped.lever, dropped.unbound_clock_mhz),
        (Lever::Clock, Some(1161.0))
    );
    assert!(
        dropped.note().contains("did not bind"),
        "{}",
        dropped.note()
    );
    let t = recommendation_table(&recs, Objective::LeastEnergy);
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("SM clock 1980 MHz dropped")),
        "{:?}",
        t.notes
    );

    // without its unlocked twin measured the lock stays in the tables, marked, and
    // is never advised: no clock in the settings file
    let v = unbound_lock(false);
    let recs = recommend_by(&v, Objective::LeastEnergy, GroupBy::Model);
    let r = &recs[0];
    assert_eq!(r.chosen().sm_clock_mhz, Some(1980));
    assert_eq!(r.chosen().advised_sm_clock_mhz(), None);
    assert!(r.chosen().clock_cell().contains("not binding"));
    let devices = device_settings(&recs, &Mix::equal(), Objective::LeastEnergy);
    assert_eq!(devices[0].sm_clock_mhz, None);
    let file = SettingsFile::from_recommendations(
        &recs,
        &v,
        &[],
        Objective::LeastEnergy,
        &Default::default(),
    );
    assert_eq!(file.devices[0].sm_clock_mhz, None);
    assert!(file.settings.iter().all(|s| s.sm_clock_mhz.is_none()));
    let clock = file.settings[0]
        .attribution
        .iter()
        .find(|a| a.lever == "sm_clock")
        .unwrap();
    assert_eq!(clock.not_binding_ran_at_mhz, Some(1161.0));
}

#[test]
fn a_precision_change_within_the_noise_is_refused() {
    // f16 0.5% cheaper than bf16: within the ±1.4% of two figures at the 1% floor
    let v = vec![
        rec_of("vendor", true, Bf16, "default", None, 600.0, 1.116),
        rec_of("vendor", true, F16, "default", None, 601.0, 1.110),
    ];
    let recs = recommend(&v, Objective::LeastEnergy);
    let r = &recs[0];
    assert_eq!(r.settings[r.best].precision, F16);
    assert_eq!(r.chosen().precision, Bf16);
    assert_eq!(r.reverted[0].lever, Lever::Precision);
    assert!(r.attribution.levers.is_empty());
    // with no floor, the 0.1% spread within each run is all the noise there is,
    // and 0.5% beats it: the floor is what refuses the change
    let no_floor = RecommendOptions {
        noise: NoiseFloor::with_busy(0.0),
        ..RecommendOptions::default()
    };
    let recs = recommend_opts(&v, Objective::LeastEnergy, &no_floor);
    assert_eq!(recs[0].chosen().precision, F16);
    // measured repeats replace the floor with the spread between runs
    let mut repeated = v.clone();
    for (i, mut r) in v.iter().cloned().enumerate() {
        r.unix_time_s += 100.0 + i as f64;
        let j = r
            .measurement
            .as_mut()
            .unwrap()
            .summary
            .joules_per_flop
            .as_mut()
            .unwrap();
        j.median *= 1.0005;
        repeated.push(r);
    }
    let recs = recommend(&repeated, Objective::LeastEnergy);
    assert_eq!(recs[0].chosen().runs, 2);
    assert_eq!(recs[0].chosen().precision, F16);
}

/// Two workloads whose own best caps differ: 80% for the first, 60% for the second.
fn two_workloads() -> Vec<Record> {
    let a =
        |cap, tflops, pj| on_workload(rec_of("vendor", true, Bf16, cap, None, tflops, pj), 1024);
    let b =
        |cap, tflops, pj| on_workload(rec_of("vendor", true, Bf16, cap, None, tflops, pj), 2048);
    vec![
        a("default", 600.0, 1.0),
        a("80%", 560.0, 0.85),
        a("60%", 400.0, 0.80),
        b("default", 600.0, 1.0),
        b("80%", 590.0, 0.97),
        b("60%", 560.0, 0.70),
    ]
}

#[test]
fn a_gpu_gets_one_cap_for_its_mix_and_per_workload_bests_stay_in_the_tables() {
    let v = two_workloads();
    let recs = recommend_by(&v, WITHIN_10, GroupBy::Model);
    let caps: Vec<&str> = recs.iter().map(|r| r.chosen().cap.as_str()).collect();
    assert_eq!(caps, ["80%", "60%"]);
    // equal shares: at 60% the first workload is 50% slower and the mix 29% slower
    // than each at its fastest, past the 10% budget; at 80% the mix is 4.4% slower
    let devices = device_settings(&recs, &Mix::equal(), WITHIN_10);
    assert_eq!(devices.len(), 1);
    let d = &devices[0];
    assert_eq!(d.power_cap, "80%");
    assert!(d
        .entries
        .iter()
        .all(|e| recs[e.rec].settings[e.setting].cap == "80%"));
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("alone would run at cap 60%")),
        "{:?}",
        d.notes
    );
    let file = SettingsFile::from_devices(&devices, &recs, &v, &[], WITHIN_10, &Default::default());
    assert_eq!(file.devices.len(), 1);
    assert_eq!(file.settings.len(), 2);
    assert!(file.settings.iter().all(|s| s.power_cap == "80%"));
    // the second workload at 80%: against its baseline (default) 3% saved, the cap
    // lever credited with it
    let second = &file.settings[1];
    assert_eq!(second.energy_saved_fraction, Some(0.03));
    assert_eq!(second.attribution[0].lever, "power_cap");
    let t = device_table(&devices, &recs);
    assert_eq!(t.rows.len(), 2);

    // a weights file moves the mix: the second workload's time only → 60%
    let only_second = Mix::parse("\"matmul 2048x1024x1024\" = 1\n", "w.toml").unwrap();
    let d = &device_settings(&recs, &only_second, WITHIN_10)[0];
    assert_eq!(d.power_cap, "60%");
    assert_eq!(d.entries.len(), 1);
    assert!(Mix::parse("\"x\" = -1", "w").is_err());
    let typo = Mix::parse("\"matmul 4096\" = 1", "w").unwrap();
    let e = typo.check(&["matmul 1024x1024x1024"]).unwrap_err();
    assert!(
        e.contains("matmul 4096") && e.contains("matmul 1024x1024x1024"),
        "{e}"
    );
}

#[test]
fn rows_of_our_kernels_only_say_so_and_are_never_starred_over_a_vendor_row() {
    let v = vec![
        rec_of("vendor", true, Bf16, "default", None, 600.0, 1.0),
        // cheaper, but no vendor kernel ran at f16: it speaks for our kernel only
        rec_of("ours", false, F16, "default", None, 650.0, 0.8),
    ];
    let recs = recommend(&v, Objective::LeastEnergy);
    let r = &recs[0];
    assert_eq!(r.ours_only, vec![F16]);
    assert_eq!(r.chosen().precision, Bf16);
    let t = recommendation_table(&recs, Objective::LeastEnergy);
    let kernel = t.headers.iter().position(|h| h == "kernel").unwrap();
    let star = t.headers.iter().position(|h| h.is_empty()).unwrap();
    let f16 = t
        .rows
        .iter()
        .find(|row| row[kernel].starts_with("ours"))
        .unwrap();
    assert_eq!(f16[kernel], "ours (ours only)");
    assert_eq!(f16[star], "");
    // only our kernels anywhere: the row can be chosen, still marked
    let recs = recommend(&v[1..], Objective::LeastEnergy);
    assert_eq!(recs[0].chosen().precision, F16);
    assert!(recs[0].is_ours_only(recs[0].chosen));

    // compare: a device known only through our kernel ranks after one measured
    // with the vendor's, whatever its figure
    let mut a = rec_of("ours", false, Bf16, "default", None, 650.0, 0.5);
    a.device.name = "GPU B".into();
    a.device.uuid = Some("GPU-b".into());
    let ranked = compare(&[v[0].clone(), a], CapChoice::Default);
    let order: Vec<(&str, bool)> = ranked[0]
        .entries
        .iter()
        .map(|e| (e.device.as_str(), e.ours_only))
        .collect();
    assert_eq!(order, [("GPU A", false), ("GPU B", true)]);
    let t = comparison_table(&ranked, CapChoice::Default, &CostInputs::default());
    assert!(
        t.rows[1].contains(&"ours (ours only)".to_string()),
        "{:?}",
        t.rows
    );
}

#[test]
fn flags_and_known_biases_travel_and_only_real_runs_count() {
    // a schema-1 record: gapped windows, 744 W on a 700 W limit
    let mut gapped = rec("GPU A", false, Bf16, "default", 620.0, 1.2);
    gapped.schema = 1;
    gapped.measurement.as_mut().unwrap().method = WindowMethod::Gapped;
    // a point measured again by --meter check, reading 5% higher: not a second run
    let mut checked = gapped.clone();
    checked.unix_time_s += 60.0;
    checked
        .measurement
        .as_mut()
        .unwrap()
        .summary
        .joules_per_flop
        .as_mut()
        .unwrap()
        .median *= 1.05;
    checked.meter.check = Some(MeterAgreement {
        intervals: 6,
        agreement_pct: 97.2,
        median_difference_pct: 2.8,
        worst_difference_pct: 7.1,
    });
    // the same record read twice (a file given twice): not a second run either
    let v = vec![gapped.clone(), checked.clone(), gapped.clone()];
    let recs = recommend_by(&v, Objective::LeastEnergy, GroupBy::Model);
    let s = recs[0].chosen();
    assert_eq!((s.runs, s.run_to_run_spread), (1, None));
    assert!(close(s.picojoules_per_flop(), 1.2));
    assert_eq!(s.flags, ["above-limit", "gapped"]);
    // the gapped floor: 3%
    assert!(close(s.uncertainty.energy, 0.03));
    // known only from a check-mode record: it is used, and says so
    let only_check = recommend(&[checked], Objective::LeastEnergy);
    let c = only_check[0].chosen();
    assert!(c.flags.contains(&"meter-check".to_string()));
    assert_eq!(
        c.flags_label(),
        "above-limit gapped meter-check (97.2% agreement)"
    );

    // every output built from them carries the flags
    let t = recommendation_table(&recs, Objective::LeastEnergy);
    // one row: the column says it in a note
    assert!(
        t.notes
            .contains(&"flags: above-limit gapped on every row.".to_string()),
        "{:?}",
        t.notes
    );
    assert!(t
        .notes
        .iter()
        .any(|n| n.starts_with("gapped: schema-1 windows")));
    let p = pareto_table(&recs);
    assert!(p
        .notes
        .contains(&"flags: above-limit gapped on every row.".to_string()));
    assert!(energy_time_chart(&recs[0], Objective::LeastEnergy)
        .subtitle
        .contains("flagged: above-limit, gapped"));
    let file = SettingsFile::from_recommendations(
        &recs,
        &v,
        &[],
        Objective::LeastEnergy,
        &Default::default(),
    );
    assert_eq!(file.settings[0].flags, ["above-limit", "gapped"]);
    let back = SettingsFile::parse(
        &file.to_string(SettingsFormat::Toml).unwrap(),
        SettingsFormat::Toml,
        Path::new("s.toml"),
    )
    .unwrap();
    assert_eq!(back, file);
    let t = comparison_table(
        &compare(&v, CapChoice::Default),
        CapChoice::Default,
        &CostInputs::default(),
    );
    // a flag on every row is said once, in a note, instead of a column
    assert!(
        t.rows[0].contains(&"above-limit gapped".to_string())
            || t.notes
                .iter()
                .any(|n| n.contains("flags: above-limit gapped")),
        "{:?} {:?}",
        t.rows,
        t.notes
    );
}
