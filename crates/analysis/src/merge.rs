//! Joining results from several machines (docs/ARCHITECTURE.md §10: one JSONL per task, then
//! merge). Exact duplicates — a file copied twice — are dropped; simulated and real
//! records are not mixed unless the caller says so, because a model's numbers next
//! to measurements invite a comparison they cannot support.

use joulebench_core::record::Record;
use std::collections::HashSet;
use std::path::PathBuf;

/// The records of one results file, in file order.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub records: Vec<Record>,
    /// Each record's line as written, where the reader kept them (a merge copies
    /// these, so fields this version does not know survive).
    pub lines: Vec<String>,
}

/// Simulated and real records in one set of files.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{simulated} holds records from joulebench's simulated device (\"simulated\": true) and {real} holds \
     measurements from a real device; modelled numbers beside measured ones would read as a comparison \
     of hardware that was never made"
)]
pub struct MixedDataError {
    /// The first file with a simulated record, and which record.
    pub simulated: String,
    /// The first file with a real record, and which record.
    pub real: String,
}

/// Refuse a set of files that holds both simulated and real records.
pub fn check_not_mixed(files: &[SourceFile]) -> Result<(), MixedDataError> {
    let first = |want: bool| {
        files.iter().find_map(|f| {
            f.records
                .iter()
                .position(|r| r.simulated == want)
                .map(|i| format!("{} (record {})", f.path.display(), i + 1))
        })
    };
    match (first(true), first(false)) {
        (Some(simulated), Some(real)) => Err(MixedDataError { simulated, real }),
        _ => Ok(()),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    pub records: Vec<Record>,
    /// Where each kept record came from: (index of its file, index in that file), so
    /// a caller can copy the line as it was written.
    pub origin: Vec<(usize, usize)>,
    /// Records read, over all files.
    pub read: usize,
    /// Exact duplicates dropped: same point and same `unix_time_s` as a kept record.
    pub duplicates: usize,
    /// Points measured more than once at different times: all kept.
    pub repeated_points: usize,
    pub simulated: usize,
    pub real: usize,
}

/// Join the files in order, dropping exact duplicates. With `allow_mixed` false,
/// simulated and real records together are an error.
pub fn merge(files: &[SourceFile], allow_mixed: bool) -> Result<Merged, MixedDataError> {
    if !allow_mixed {
        check_not_mixed(files)?;
    }
    let mut seen_exact = HashSet::new();
    let mut seen_point = HashSet::new();
    let mut out = Vec::new();
    let mut origin = Vec::new();
    let (mut read, mut duplicates, mut repeated_points) = (0, 0, 0);
    for (fi, f) in files.iter().enumerate() {
        for (ri, r) in f.records.iter().enumerate() {
            read += 1;
            let key = r.point_key();
            if !seen_exact.insert((key.clone(), r.unix_time_s.to_bits())) {
                duplicates += 1;
                continue;
            }
            if !seen_point.insert(key) {
                repeated_points += 1;
            }
            out.push(r.clone());
            origin.push((fi, ri));
        }
    }
    let simulated = out.iter().filter(|r| r.simulated).count();
    Ok(Merged {
        real: out.len() - simulated,
        simulated,
        records: out,
        origin,
        read,
        duplicates,
        repeated_points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::rec;
    use joulebench_core::Precision;

    fn file(name: &str, records: Vec<Record>) -> SourceFile {
        SourceFile {
            lines: Vec::new(),
            path: name.into(),
            records,
        }
    }

    #[test]
    fn exact_duplicates_are_dropped_and_repeats_kept() {
        let a = rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0);
        let b = rec("GPU B", false, Precision::Bf16, "default", 500.0, 1.2);
        let mut a_later = a.clone();
        a_later.unix_time_s += 60.0;
        let m = merge(
            &[
                file("1.jsonl", vec![a.clone(), b.clone()]),
                file("2.jsonl", vec![a.clone(), a_later]),
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            (m.read, m.duplicates, m.repeated_points, m.records.len()),
            (4, 1, 1, 3)
        );
        assert_eq!(m.records[0], a);
        assert_eq!(m.records[1], b);
        // the later copy of `a` in file 2 is the repeat kept, its exact copy dropped
        assert_eq!(m.origin, vec![(0, 0), (0, 1), (1, 1)]);
        assert_eq!((m.simulated, m.real), (0, 3));
    }

    #[test]
    fn simulated_and_real_are_refused_unless_allowed() {
        let real = rec("GPU A", false, Precision::Bf16, "default", 600.0, 1.0);
        let sim = rec(
            "sim-h100 (simulated)",
            true,
            Precision::Bf16,
            "default",
            600.0,
            1.0,
        );
        let files = [
            file("real.jsonl", vec![real.clone()]),
            file("sim.jsonl", vec![real, sim]),
        ];
        let e = merge(&files, false).unwrap_err();
        assert_eq!(e.simulated, "sim.jsonl (record 2)");
        assert_eq!(e.real, "real.jsonl (record 1)");
        assert!(e.to_string().contains("simulated device"), "{e}");
        let m = merge(&files, true).unwrap();
        assert_eq!((m.simulated, m.real, m.duplicates), (1, 1, 1));
        // all simulated is not mixed
        let sims = [file(
            "s.jsonl",
            vec![rec("sim", true, Precision::F32, "default", 1.0, 1.0)],
        )];
        assert!(merge(&sims, false).is_ok());
    }
}
