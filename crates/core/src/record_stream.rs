//! Reading a results file one record at a time (docs/ARCHITECTURE.md §5), so a
//! reader of a fleet's campaign — hundreds of thousands of records, gigabytes —
//! keeps what it needs of each record, never the file. Every check of
//! [`crate::record::read_results_file`] (which is built on this) applies, in line
//! order; lines are parsed on every core, a batch at a time, and handed over in order.
//! The reader lives beside the record it parses (`crate::record`); these are its
//! names for callers.

pub use crate::record::{
    for_each_line_within, for_each_record, for_each_record_within, LinesChecksum, StreamEnd,
    Streamed, StreamedRecord,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{read_results_file, RecordError, RecordLine, BATCH_BYTES};
    use std::path::Path;

    fn line(i: u64) -> String {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/sim/sim-h200-quick.jsonl"),
        )
        .unwrap();
        let first = text.lines().next().unwrap();
        let mut v: serde_json::Value = serde_json::from_str(first).unwrap();
        v["unix_time_s"] = serde_json::json!(1.7e9 + i as f64);
        serde_json::to_string(&v).unwrap()
    }

    fn streamed(path: &Path, limit: Option<u64>) -> Result<(Vec<RecordLine>, StreamEnd), String> {
        let mut lines = Vec::new();
        let each = |r: StreamedRecord<'_>| -> Result<(), RecordError> {
            lines.push(RecordLine {
                line_no: r.line_no,
                text: r.text.to_string(),
                record: r.record,
            });
            Ok(())
        };
        let end = match limit {
            Some(b) => for_each_record_within(path, b, each),
            None => for_each_record(path, each),
        }
        .map_err(|e| e.to_string())?;
        Ok((lines, end))
    }

    #[test]
    fn batches_hand_over_every_record_in_order_and_a_second_read_stops_where_the_first_did() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        // more than one batch, blank lines, and an incomplete tail
        let n = BATCH_BYTES / line(0).len() * 2 + 7;
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&line(i as u64));
            text.push('\n');
            if i % 1000 == 0 {
                text.push_str("  \n");
            }
        }
        let whole = text.len() as u64;
        text.push_str("{\"schema\":2,\"ho");
        std::fs::write(&p, &text).unwrap();
        let (lines, end) = streamed(&p, None).unwrap();
        assert_eq!((lines.len(), end.records), (n, n));
        assert_eq!(end.whole_bytes, whole);
        assert_eq!(end.tail.as_ref().map(|t| t.offset), Some(whole));
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l.record.unix_time_s, 1.7e9 + i as f64);
        }
        assert_eq!(read_results_file(&p).unwrap().lines, lines);
        // a sweep appends while a second read runs: it reads what the first did
        let mut more = text.clone();
        more.push_str("st\":\"x\"}\n");
        more.push_str(&line(99));
        more.push('\n');
        std::fs::write(&p, more).unwrap();
        let (again, end2) = streamed(&p, Some(end.whole_bytes)).unwrap();
        assert_eq!(again, lines);
        assert_eq!(
            (end2.records, end2.whole_bytes, end2.tail),
            (n, whole, None)
        );
        assert_eq!(end2.lines_crc32, end.lines_crc32, "the same lines read");
    }

    #[test]
    fn an_error_comes_after_the_records_before_it_and_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        let good = format!("{}\n{}\n", line(0), line(1));
        std::fs::write(&p, format!("{good}{{\"schema\": 2}}\n{}\n", line(2))).unwrap();
        let mut seen = 0;
        let e = for_each_record(&p, |_| -> Result<(), RecordError> {
            seen += 1;
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert_eq!(seen, 2);
        assert!(e.contains("r.jsonl:3"), "{e}");
        // an error of the callback ends the read there
        std::fs::write(&p, &good).unwrap();
        let mut calls = 0;
        let e = for_each_record(&p, |_| {
            calls += 1;
            Err(RecordError::Empty {
                path: "stop".into(),
            })
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(matches!(e, RecordError::Empty { .. }));
    }

    #[test]
    fn run_records_are_kept_aside_and_a_second_read_by_fields_skips_their_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        let run = serde_json::to_string(&crate::run_record::tests::gpu_record()).unwrap();
        std::fs::write(&p, format!("{}\n\n{run}\n{}\n{run}\n", line(0), line(1))).unwrap();
        let (lines, end) = streamed(&p, None).unwrap();
        assert_eq!(lines.iter().map(|l| l.line_no).collect::<Vec<_>>(), [1, 4]);
        let run_lines: Vec<usize> = end.runs.iter().map(|r| r.line_no).collect();
        assert_eq!((end.records, run_lines.as_slice()), (2, &[3, 5][..]));
        assert_eq!(read_results_file(&p).unwrap().runs, end.runs);
        // the fields of a point: a run record is not one, so its lines are skipped
        #[derive(serde::Deserialize)]
        struct Time {
            unix_time_s: f64,
        }
        let second = |skip: &[usize]| {
            let mut times = Vec::new();
            for_each_line_within(
                &p,
                end.whole_bytes,
                skip,
                |t: Time| -> Result<(), RecordError> {
                    times.push(t.unix_time_s);
                    Ok(())
                },
            )
            .map(|e| (times, e.lines_crc32))
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            second(&run_lines),
            Ok((vec![1.7e9, 1.7e9 + 1.0], end.lines_crc32))
        );
        // without the skip, a run record (which has a start time too) reads as a point
        assert_eq!(second(&[]).unwrap().0.len(), 4);
    }
}
