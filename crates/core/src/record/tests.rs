//! The results file read and written back: tails, padding, limits, checks.

use super::*;
use crate::clocks::ClockRecord;
use crate::device::DeviceInfo;
use crate::inputs::InputDistribution;
use crate::meter::MeterSource;
use crate::power::PowerCap;
use crate::precision::Precision;
use crate::protocol::ProtocolConfig;
use crate::workload::{MatmulShape, Workload};
use std::path::PathBuf;

fn skipped() -> Record {
    let workload = Workload::Matmul(MatmulShape {
        batch: 1,
        m: 64,
        n: 64,
        k: 64,
    });
    Record {
        schema: SCHEMA_VERSION,
        tool: crate::sweep::tool_info(),
        host: "h".into(),
        unix_time_s: 1.7e9,
        command: "joulebench sweep".into(),
        simulated: true,
        status: PointStatus::Skipped,
        reason: Some("test".into()),
        device: DeviceInfo {
            name: "d".into(),
            ..DeviceInfo::default()
        },
        backend: "sim".into(),
        kernel: "k".into(),
        kernel_variant: None,
        vendor_kernel: false,
        precision: Precision::F32,
        workload,
        group: workload.shape_label(),
        batch_size: 1,
        seed: 1,
        inputs: Default::default(),
        flop: workload.flop().unwrap_or(0),
        min_bytes: 1,
        power_cap: PowerCapRecord {
            requested: PowerCap::Default,
            requested_w: None,
            enforced_w: None,
            default_w: None,
        },
        meter: MeterInfo {
            source: MeterSource::Simulated,
            update_period_s: 0.1,
            check: None,
            host: None,
        },
        idle: None,
        verification: None,
        measurement: None,
        flags: Vec::new(),
        protocol: ProtocolConfig::default(),
        repeat: None,
        overhead: None,
        clocks: ClockRecord::default(),
    }
}

fn line() -> String {
    serde_json::to_string(&skipped()).unwrap()
}

fn file_with(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.jsonl");
    std::fs::write(&p, bytes).unwrap();
    (dir, p)
}

#[test]
fn an_incomplete_last_line_is_a_tail_at_the_end_of_the_whole_records() {
    let whole = format!("{}\n{}\n", line(), line());
    let partial = &line()[..40];
    let (_d, p) = file_with(format!("{whole}{partial}").as_bytes());
    let f = read_results_file(&p).unwrap();
    assert_eq!(f.lines.len(), 2);
    let tail = f.tail.unwrap();
    assert_eq!(tail.offset, whole.len() as u64);
    assert_eq!(tail.bytes, 40);
    assert_eq!(tail.line_no, 3);
    assert!(!tail.nul_padded);
    assert!(tail
        .describe(&p)
        .contains(&format!("byte offset {}", whole.len())));
    // a file of whole records has no tail
    let (_d, p) = file_with(whole.as_bytes());
    assert_eq!(read_results_file(&p).unwrap().tail, None);
}

#[test]
fn nul_padding_after_a_power_loss_is_a_tail_but_nul_bytes_before_records_are_not() {
    let whole = format!("{}\n", line());
    for tail in [
        vec![0u8; 4096],
        [&line().as_bytes()[..100], &[0u8; 300][..]].concat(),
        [&[0u8; 10][..], b"\n", &[0u8; 10][..]].concat(),
    ] {
        let (_d, p) = file_with(&[whole.as_bytes(), &tail].concat());
        let f = read_results_file(&p).unwrap();
        assert_eq!(f.lines.len(), 1);
        let t = f.tail.unwrap();
        assert_eq!((t.offset, t.bytes), (whole.len() as u64, tail.len() as u64));
        assert!(t.nul_padded);
    }
    let (_d, p) = file_with(format!("{whole}\0\0\0\n{whole}").as_bytes());
    let e = read_results_file(&p).unwrap_err().to_string();
    assert!(
        e.contains("r.jsonl:2") && e.contains("followed by more records"),
        "{e}"
    );
}

#[test]
fn a_line_longer_than_the_limit_is_refused_without_reading_it_whole() {
    let mut bytes = format!("{}\n{{\"schema\": 2, \"host\": \"", line()).into_bytes();
    bytes.resize(bytes.len() + MAX_RECORD_LINE_BYTES + 10, b'x');
    bytes.extend_from_slice(b"\"}\n");
    let (_d, p) = file_with(&bytes);
    let e = read_results_file(&p).unwrap_err().to_string();
    assert!(e.contains("r.jsonl:2") && e.contains("longer than"), "{e}");
}

#[test]
fn a_record_says_how_its_inputs_were_drawn_and_older_ones_read_as_normal() {
    let mut r = skipped();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["inputs"], "normal");
    let mut old = json.clone();
    old.as_object_mut().unwrap().remove("inputs");
    let back: Record = serde_json::from_value(old).unwrap();
    assert_eq!(back.inputs, InputDistribution::Normal);
    // a point on zeros is another point for --resume
    let normal_key = r.setting_key();
    r.inputs = InputDistribution::Zeros;
    assert_eq!(r.setting_key(), format!("{normal_key}|inputs=zeros"));
    assert_eq!(serde_json::to_value(&r).unwrap()["inputs"], "zeros");
}

#[test]
fn numbers_no_measurement_produces_are_refused_with_their_line() {
    let mut measured = skipped();
    measured.status = PointStatus::Measured;
    measured.flop = 0;
    assert!(measured.check_numbers().unwrap_err().contains("0 FLOP"));
    let mut r = skipped();
    r.power_cap.enforced_w = Some(-5.0);
    assert!(r.check_numbers().unwrap_err().contains("enforced_w = -5"));
    let text = format!("{}\n{}\n", line(), serde_json::to_string(&r).unwrap());
    let (_d, p) = file_with(text.as_bytes());
    let e = read_results_file(&p).unwrap_err().to_string();
    assert!(
        e.contains("r.jsonl:2") && e.contains("cannot come from a measurement"),
        "{e}"
    );
}

#[test]
fn run_records_are_read_apart_from_points_and_checked_as_they_are() {
    let run = crate::run_record::tests::gpu_record();
    let run_line = serde_json::to_string(&run).unwrap();
    let (_d, p) = file_with(format!("{}\n{run_line}\n{}\n", line(), line()).as_bytes());
    let f = read_results_file(&p).unwrap();
    assert_eq!((f.lines.len(), f.runs.len()), (2, 1));
    assert_eq!(f.runs[0].line_no, 2);
    assert_eq!(f.runs[0].record, run);
    // readers of points alone see the points
    assert_eq!(read_records(&p).unwrap().len(), 2);
    // a run record that contradicts itself is refused with its line
    let mut bad = run.clone();
    bad.average_w = Some(1.0);
    let text = format!("{}\n{}\n", line(), serde_json::to_string(&bad).unwrap());
    let (_d, p) = file_with(text.as_bytes());
    let e = read_results_file(&p).unwrap_err().to_string();
    assert!(e.contains("r.jsonl:2") && e.contains("average_w"), "{e}");
    // a run record of a later schema says so
    let newer = run_line.replacen("\"schema\":3", "\"schema\":4", 1);
    let (_d, p) = file_with(format!("{newer}\n").as_bytes());
    let e = read_results_file(&p).unwrap_err().to_string();
    assert!(
        e.contains("schema 4") && e.contains("newer joulebench"),
        "{e}"
    );
    // and a reader that knows points alone refuses schema 3 by its number
    let mut as_point: serde_json::Value = serde_json::to_value(skipped()).unwrap();
    as_point["schema"] = 3.into();
    let (_d, p) = file_with(format!("{as_point}\n").as_bytes());
    let e = read_results_file(&p).unwrap_err().to_string();
    assert!(e.contains("schema version 3"), "{e}");
}

#[test]
fn cutting_a_tail_keeps_every_whole_record_and_a_copy_of_the_tail() {
    let whole = format!("{}\n{}\n", line(), line());
    let (d, p) = file_with(format!("{whole}{{\"schema\":2,\"ho").as_bytes());
    let f = read_results_file(&p).unwrap();
    let mut w = JsonlWriter::append_exclusive(&p).unwrap();
    let copy = w.cut_partial_tail(f.tail.as_ref().unwrap()).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), whole);
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap(),
        "{\"schema\":2,\"ho"
    );
    assert_eq!(copy.parent(), Some(d.path()));
    w.write(&skipped()).unwrap();
    assert_eq!(read_results_file(&p).unwrap().lines.len(), 3);
    // a second writer of the same file is refused while the first holds it
    #[cfg(target_os = "linux")]
    match JsonlWriter::append_exclusive(&p) {
        Err(RecordError::Locked { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
        other => panic!("{:?}", other.map(|_| ())),
    }
}
