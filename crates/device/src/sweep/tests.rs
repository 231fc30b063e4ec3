//! A sweep through the library on the simulated device: it plans, runs into a sink,
//! and a second plan of the same sweep finds every run in those records — inputs,
//! clocks and repeats in the key as the records write them, so a point on other
//! inputs is never taken for one already measured — and measures nothing; records of
//! another seed are refused unless asked for.

use crate::{open, BackendKind, OpenDevice, OpenOptions, Sweep};
use joulebench_core::plan::SweepConfig;
use joulebench_core::record::{Record, RecordLine, ResultsFile};
use joulebench_core::sweep::SilentObserver;
use joulebench_core::InputDistribution;
use std::path::Path;
use std::sync::atomic::AtomicBool;

fn config() -> SweepConfig {
    let mut cfg = SweepConfig::from_toml_str(
        r#"
        kernels = ["sim-vendor"]
        precisions = ["bf16"]
        inputs = ["normal", "zeros"]
        sm_clocks = ["default", "1200"]
        [[matmul]]
        m = 1024
        n = 1024
        k = 1024
        [protocol]
        idle_baseline_s = 0.0
        min_windows = 2
        max_windows = 2
        "#,
    )
    .unwrap();
    cfg.seed = 7;
    cfg
}

fn results(records: Vec<&Record>) -> ResultsFile {
    ResultsFile {
        lines: records
            .into_iter()
            .enumerate()
            .map(|(i, r)| RecordLine {
                line_no: i + 1,
                text: String::new(),
                record: r.clone(),
            })
            .collect(),
        ..ResultsFile::default()
    }
}

fn sim() -> OpenDevice {
    open(&OpenOptions::new(BackendKind::Sim)).unwrap()
}

#[test]
fn a_second_plan_finds_every_run_in_the_first_ones_records() {
    let mut dev = sim();
    let planned = Sweep::new(config()).repeat(2).plan(&mut dev).unwrap();
    assert_eq!(planned.points().len(), 4);
    let mut records = Vec::new();
    let stop = AtomicBool::new(false);
    let run = planned
        .run(&mut dev, &mut records, &mut SilentObserver, &stop)
        .unwrap();
    assert_eq!(run.outcome.unwrap().measured, 8);
    assert_eq!(run.restored.unwrap(), None);
    let file = results(records.iter().collect());
    let path = Path::new("r.jsonl");

    // a file of the normal-input runs only: the zeros runs are still to measure
    let normal = results(
        records
            .iter()
            .filter(|r| r.inputs == InputDistribution::Normal)
            .collect(),
    );
    let mut half = Sweep::new(config()).repeat(2).plan(&mut dev).unwrap();
    assert_eq!(half.resume_from(&normal, path, false).unwrap(), 4);
    for r in half.runs(dev.backend.as_ref()) {
        let expected = match r.point.inputs {
            InputDistribution::Normal => 2,
            _ => 0,
        };
        assert_eq!(r.in_file, expected, "{:?}", r.point);
    }
    let mut zeros = Vec::new();
    let run = half
        .run(&mut dev, &mut zeros, &mut SilentObserver, &stop)
        .unwrap();
    assert_eq!(run.outcome.unwrap().measured, 4);
    assert!(zeros.iter().all(|r| r.inputs == InputDistribution::Zeros));

    let mut again = Sweep::new(config()).repeat(2).plan(&mut dev).unwrap();
    assert_eq!(again.resume_from(&file, path, false).unwrap(), 8);
    let runs = again.runs(dev.backend.as_ref());
    assert!(runs.iter().all(|r| r.in_file == r.runs), "a run not found");
    let mut more = Vec::new();
    let run = again
        .run(&mut dev, &mut more, &mut SilentObserver, &stop)
        .unwrap();
    assert_eq!(run.outcome.unwrap().resumed, 8);
    assert!(more.is_empty());

    // another seed: refused, naming the line; allowed when asked
    let mut other = config();
    other.seed = 8;
    let mut refused = Sweep::new(other.clone()).repeat(2).plan(&mut dev).unwrap();
    let e = refused.resume_from(&file, path, false).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("r.jsonl:1 was measured with another seed"),
        "{e}"
    );
    let mut told = Sweep::new(other).repeat(2).plan(&mut dev).unwrap();
    assert!(told.resume_from(&file, path, true).is_ok());
}
