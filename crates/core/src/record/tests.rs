//! The results file read and written back: tails, padding, limits, checks.

use super::read::{parse_line, parse_line_value, LineError, Parsed};
use super::*;
use crate::clocks::ClockRecord;
use crate::device::DeviceInfo;
use crate::inputs::InputDistribution;
use crate::meter::MeterSource;
use crate::power::PowerCap;
use crate::precision::Precision;
use crate::protocol::ProtocolConfig;
use crate::workload::{MatmulShape, Workload};
use std::path::{Path, PathBuf};

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

/// A parsed line that must be a point record.
fn point(parsed: Result<Parsed<Record>, LineError>) -> Result<Record, LineError> {
    match parsed? {
        Parsed::Point(r) => Ok(r),
        Parsed::Run(_) => Err(LineError::Corrupt("a run record".into())),
    }
}

/// How protocol settings were read before they were read field by field.
fn protocol_through_a_value(value: serde_json::Value) -> Result<ProtocolConfig, String> {
    let mut value = value;
    let known = serde_json::to_value(ProtocolConfig::default()).unwrap();
    if let (Some(map), Some(known)) = (value.as_object_mut(), known.as_object()) {
        map.retain(|k, _| known.contains_key(k));
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[test]
fn protocol_settings_read_as_they_were_read_through_a_value() {
    let line = serde_json::to_value(skipped()).unwrap();
    let cases = [
        serde_json::json!({"warmup_s": 2.5, "dropped_setting": [1, {"x": 2}], "min_windows": 4}),
        serde_json::json!({}),
        serde_json::json!({"warmup_s": "slow"}),
        serde_json::json!({"stop_rule": "no-such-rule", "gone": 1}),
        serde_json::json!({"min_windows": -1}),
        serde_json::json!(5),
        serde_json::json!("x"),
        serde_json::json!(null),
        serde_json::json!(true),
        serde_json::json!(2.5),
        serde_json::json!([1.0, 2.0]),
        serde_json::json!([]),
    ];
    for protocol in cases {
        let mut v = line.clone();
        v["protocol"] = protocol.clone();
        let text = serde_json::to_string(&v).unwrap();
        let via_value = match protocol_through_a_value(protocol.clone()) {
            Ok(p) => Ok(p),
            Err(e) => Err(LineError::Corrupt(e).at(Path::new("f"), 1).to_string()),
        };
        let now = point(parse_line(&text))
            .map(|r| r.protocol)
            .map_err(|e| e.at(Path::new("f"), 1).to_string());
        assert_eq!(now, via_value, "{protocol}");
    }
}

#[test]
fn the_direct_parse_accepts_and_refuses_the_lines_the_general_one_does() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/sim/sim-h200-quick.jsonl"),
    )
    .unwrap();
    let good = text.lines().next().unwrap().to_string();
    let object: serde_json::Value = serde_json::from_str(&good).unwrap();
    let with = |key: &str, v: serde_json::Value| {
        let mut o = object.clone();
        o[key] = v;
        serde_json::to_string(&o).unwrap()
    };
    // the fields in order as an array fill a Record too: the general parse
    // refuses it (no "schema" field), so the direct one must not take it
    let order = "schema tool host unix_time_s command simulated status reason device backend \
                 kernel kernel_variant vendor_kernel precision workload group batch_size seed \
                 inputs flop min_bytes power_cap meter idle verification measurement flags \
                 protocol repeat overhead clocks";
    let fields: Vec<serde_json::Value> = order
        .split_whitespace()
        .map(|k| object.get(k).cloned().unwrap_or_default())
        .collect();
    let array = serde_json::to_string(&fields).unwrap();
    assert!(serde_json::from_str::<Record>(&array).is_ok());
    let mut windows = object.clone();
    windows["measurement"]["windows"][0]["seconds"] = serde_json::json!(-1.0);
    let lines = [
        good.clone(),
        format!("  {good}"),
        array,
        with("schema", serde_json::json!(7)),
        with("schema", serde_json::json!(2.0)),
        with("schema", serde_json::json!(5_000_000_000u64)),
        good.replacen("{", "{\"schema\":1,", 1),
        with("flop", serde_json::json!(12)),
        with("precision", serde_json::json!("f64")),
        serde_json::to_string(&windows).unwrap(),
        format!("{good} x"),
        "{\"schema\": 2}".into(),
    ];
    let outcome = |r: Result<Parsed<Record>, LineError>| match point(r) {
        Ok(r) => Ok(r),
        Err(e) => Err(e.at(Path::new("f"), 1).to_string()),
    };
    for l in &lines {
        assert_eq!(outcome(parse_line(l)), outcome(parse_line_value(l)), "{l}");
    }
    assert!(point(parse_line(&good)).is_ok());
}
