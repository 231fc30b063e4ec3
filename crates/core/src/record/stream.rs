//! Reading a results file one record at a time (docs/ARCHITECTURE.md §5), the engine
//! behind every reader: lines are read a batch at a time, parsed on every core and
//! handed over in file order, so a reader of a campaign keeps what it needs of each
//! record, never the file.

use super::error::RecordError;
use super::read::{
    parse_line, LineError, Parsed, PartialTail, RunRecordLine, MAX_RECORD_LINE_BYTES,
};
use super::schema::Record;
use rayon::prelude::*;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// About this many bytes of lines are parsed together: enough to keep every core
/// busy, little enough that the few batches in flight take a few MB.
pub(crate) const BATCH_BYTES: usize = 2 << 20;

/// One line as read, with where it was.
#[derive(Debug)]
pub struct Streamed<'a, T> {
    /// 1-based, counting blank lines.
    pub line_no: usize,
    /// The byte offset its line starts at.
    pub offset: u64,
    /// The line as written, without its line end.
    pub text: &'a str,
    pub record: T,
}

/// One record as read, with where it was.
pub type StreamedRecord<'a> = Streamed<'a, Record>;

/// What a whole read of a file found besides its records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamEnd {
    /// Records handed over.
    pub records: usize,
    /// The `joulebench run` records of the file (a program's run, not a kernel
    /// point: a few a file), which are not handed over. A read that takes each line
    /// as a `T` ([`for_each_line_within`]) is told their lines and skips them.
    pub runs: Vec<RunRecordLine>,
    /// The incomplete tail the file ended with, if any (skipped).
    pub tail: Option<PartialTail>,
    /// Where the file's whole records end: a second read limited to this many bytes
    /// ([`for_each_record_within`]) sees the same records even while a sweep
    /// appends to the file.
    pub whole_bytes: u64,
    /// A checksum of the records' lines as written (blank lines aside), in file
    /// order: a second read that finds another is reading a file rewritten in
    /// between, even one with as many records as before.
    pub lines_crc32: u32,
}

/// The checksum [`StreamEnd::lines_crc32`] is, built a line at a time.
#[derive(Clone, Default)]
pub struct LinesChecksum(crc32fast::Hasher);

impl LinesChecksum {
    /// Add a record's line, without its line end.
    pub fn line(&mut self, text: &[u8]) {
        self.0.update(text);
        // the line end too, so lines joined differently differ
        self.0.update(b"\n");
    }

    pub fn value(&self) -> u32 {
        self.0.clone().finalize()
    }
}

/// Hand every record of the results file at `path` to `each`, in file order. An
/// error of the file (a corrupt line, NUL bytes followed by more records, a line
/// longer than [`MAX_RECORD_LINE_BYTES`]) comes after every record before it was
/// handed over; an error of `each` ends the read at once.
pub fn for_each_record<E, F>(path: &Path, each: F) -> Result<StreamEnd, E>
where
    E: From<RecordError>,
    F: FnMut(StreamedRecord<'_>) -> Result<(), E>,
{
    read(path, None, &[], parse_line, each)
}

/// [`for_each_record`] over the first `bytes` bytes of the file only: a second
/// read of a file a first read ended at [`StreamEnd::whole_bytes`].
pub fn for_each_record_within<E, F>(path: &Path, bytes: u64, each: F) -> Result<StreamEnd, E>
where
    E: From<RecordError>,
    F: FnMut(StreamedRecord<'_>) -> Result<(), E>,
{
    read(path, Some(bytes), &[], parse_line, each)
}

/// Lines of one batch: their bytes one after another, and where each is.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// (line number, offset in the file, range in `bytes`)
    lines: Vec<(usize, u64, std::ops::Range<usize>)>,
}

/// Where the scan of the file's lines stands.
#[derive(Default)]
struct Scan<'a> {
    /// Lines (numbers, ascending) that are checksummed but not parsed.
    skip_lines: &'a [usize],
    offset: u64,
    line_no: usize,
    /// Where lines that are not whole records began; a tail if nothing follows them.
    suspect: Option<(u64, usize)>,
    nul_padded: bool,
    eof: bool,
    checksum: LinesChecksum,
}

/// A batch of lines parsed, and the error of the file that ended it, if any.
struct ParsedBatch<T> {
    batch: Batch,
    records: Vec<Result<Parsed<T>, RecordError>>,
    stop: Option<RecordError>,
}

/// A second read of a file a first read ([`for_each_record`]) ended at `bytes`,
/// each line read as a `T`: a type with only the fields the caller needs, quicker
/// to read than a whole record. The first read checked every record; this one
/// refuses a line that is no longer a `T`, naming it. The lines of the run records
/// the first read found ([`StreamEnd::runs`]) are `run_lines`: they are skipped.
pub fn for_each_line_within<T, E, F>(
    path: &Path,
    bytes: u64,
    run_lines: &[usize],
    mut each: F,
) -> Result<StreamEnd, E>
where
    T: serde::de::DeserializeOwned + Send,
    E: From<RecordError>,
    F: FnMut(T) -> Result<(), E>,
{
    read(path, Some(bytes), run_lines, parse_as::<T>, |s| {
        each(s.record)
    })
}

fn parse_as<T: serde::de::DeserializeOwned>(line: &str) -> Result<Parsed<T>, LineError> {
    serde_json::from_str(line)
        .map(Parsed::Point)
        .map_err(|e| LineError::Corrupt(e.to_string()))
}

fn read<T, E, F>(
    path: &Path,
    limit: Option<u64>,
    skip_lines: &[usize],
    parse: fn(&str) -> Result<Parsed<T>, LineError>,
    mut each: F,
) -> Result<StreamEnd, E>
where
    T: Send,
    E: From<RecordError>,
    F: FnMut(Streamed<'_, T>) -> Result<(), E>,
{
    let file = File::open(path).map_err(|source| RecordError::Read {
        path: path.into(),
        source,
    })?;
    let source: Box<dyn Read + Send> = match limit {
        Some(bytes) => Box::new(file.take(bytes)),
        None => Box::new(file),
    };
    let mut reader = BufReader::with_capacity(1 << 20, source);
    let mut scan = Scan {
        skip_lines,
        ..Scan::default()
    };
    // One thread reads and parses the next batch (on every core) while this one
    // hands the last over: what the caller does with a record overlaps the parsing.
    let (to_caller, batches) = std::sync::mpsc::sync_channel::<ParsedBatch<T>>(1);
    std::thread::scope(|threads| {
        let scan = &mut scan;
        threads.spawn(move || {
            while !scan.eof {
                let mut batch = Batch::default();
                let stop = fill(path, &mut reader, scan, &mut batch);
                let records = batch
                    .lines
                    .par_iter()
                    .map(|(line_no, _, range)| {
                        let text =
                            std::str::from_utf8(&batch.bytes[range.clone()]).map_err(|_| {
                                RecordError::Corrupt {
                                    path: path.into(),
                                    line: *line_no,
                                    message: "not UTF-8 text".into(),
                                }
                            })?;
                        parse(text).map_err(|e| e.at(path, *line_no))
                    })
                    .collect();
                let last = stop.is_some();
                if to_caller
                    .send(ParsedBatch {
                        batch,
                        records,
                        stop,
                    })
                    .is_err()
                    || last
                {
                    // the caller stopped, or the file's error ends the read
                    break;
                }
            }
        });
        let (mut records, mut runs) = (0, Vec::new());
        for parsed in batches {
            for ((line_no, offset, range), record) in parsed.batch.lines.iter().zip(parsed.records)
            {
                let text =
                    std::str::from_utf8(&parsed.batch.bytes[range.clone()]).unwrap_or_default();
                match record? {
                    Parsed::Point(record) => {
                        each(Streamed {
                            line_no: *line_no,
                            offset: *offset,
                            text,
                            record,
                        })?;
                        records += 1;
                    }
                    Parsed::Run(record) => runs.push(RunRecordLine {
                        line_no: *line_no,
                        text: text.to_string(),
                        record: *record,
                    }),
                }
            }
            if let Some(e) = parsed.stop {
                return Err(e.into());
            }
        }
        Ok((records, runs))
    })
    .map(|(records, runs)| {
        // the parsed batches are gone: what they held goes back to the system
        crate::memory::give_back_freed();
        let tail = scan.suspect.map(|(start, line)| PartialTail {
            offset: start,
            bytes: scan.offset - start,
            line_no: line,
            nul_padded: scan.nul_padded,
        });
        StreamEnd {
            records,
            runs,
            whole_bytes: tail.as_ref().map_or(scan.offset, |t| t.offset),
            tail,
            lines_crc32: scan.checksum.value(),
        }
    })
}

/// Read lines into `batch` (emptied first) until it holds [`BATCH_BYTES`], the file
/// ends, or a line is an error of the file: that error is returned, to be raised
/// once the lines before it are handed over.
fn fill(
    path: &Path,
    reader: &mut impl BufRead,
    scan: &mut Scan<'_>,
    batch: &mut Batch,
) -> Option<RecordError> {
    let corrupt = |line: usize, message: String| RecordError::Corrupt {
        path: path.into(),
        line,
        message,
    };
    batch.bytes.clear();
    batch.lines.clear();
    while batch.bytes.len() < BATCH_BYTES {
        let from = batch.bytes.len();
        let n = match (&mut *reader)
            .take(MAX_RECORD_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut batch.bytes)
        {
            Ok(n) => n,
            Err(e) => {
                scan.eof = true;
                return Some(corrupt(scan.line_no + 1, e.to_string()));
            }
        };
        if n == 0 {
            scan.eof = true;
            return None;
        }
        scan.line_no += 1;
        let start = scan.offset;
        scan.offset += n as u64;
        let line = &batch.bytes[from..];
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > MAX_RECORD_LINE_BYTES {
            batch.bytes.truncate(from);
            scan.eof = true;
            return Some(corrupt(
                scan.line_no,
                format!(
                    "line is longer than {MAX_RECORD_LINE_BYTES} bytes: not a joulebench record"
                ),
            ));
        }
        let content = if complete { &line[..n - 1] } else { line };
        if content.iter().all(u8::is_ascii_whitespace) {
            batch.bytes.truncate(from);
            continue;
        }
        let has_nul = content.contains(&0);
        if !complete || has_nul {
            scan.nul_padded |= has_nul;
            scan.suspect.get_or_insert((start, scan.line_no));
            batch.bytes.truncate(from);
            continue;
        }
        if let Some((_, first)) = scan.suspect {
            batch.bytes.truncate(from);
            scan.eof = true;
            return Some(corrupt(
                first,
                "an incomplete record or NUL bytes, followed by more records".into(),
            ));
        }
        let end = batch.bytes.len() - 1;
        scan.checksum.line(&batch.bytes[from..end]);
        if scan.skip_lines.binary_search(&scan.line_no).is_ok() {
            batch.bytes.truncate(from);
            continue;
        }
        batch.lines.push((scan.line_no, start, from..end));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{read_results_file, RecordLine};
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
