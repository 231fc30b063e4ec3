//! Joining results from several machines (docs/ARCHITECTURE.md §10: one JSONL per task, then
//! merge). Exact duplicates — a file copied twice — are dropped; simulated and real
//! records are not mixed unless the caller says so, because a model's numbers next
//! to measurements invite a comparison they cannot support.

use crate::digest::PointKeys;
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
    let mut check = MixedCheck::default();
    for (fi, f) in files.iter().enumerate() {
        for (ri, r) in f.records.iter().enumerate() {
            check.push(r, fi, ri);
        }
    }
    let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    check.result(&paths)
}

/// The first simulated and the first real record of files read one record at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MixedCheck {
    /// (file, record in it)
    simulated: Option<(usize, usize)>,
    real: Option<(usize, usize)>,
}

impl MixedCheck {
    /// Record `index` (from 0) of file `file`.
    pub fn push(&mut self, r: &Record, file: usize, index: usize) {
        let slot = if r.simulated {
            &mut self.simulated
        } else {
            &mut self.real
        };
        slot.get_or_insert((file, index));
    }

    /// Refuse what [`check_not_mixed`] refuses; `paths[i]` names file `i`.
    pub fn result(&self, paths: &[PathBuf]) -> Result<(), MixedDataError> {
        let name = |(file, index): (usize, usize)| {
            let path = paths.get(file).map(|p| p.display().to_string());
            format!("{} (record {})", path.unwrap_or_default(), index + 1)
        };
        match (self.simulated, self.real) {
            (Some(simulated), Some(real)) => Err(MixedDataError {
                simulated: name(simulated),
                real: name(real),
            }),
            _ => Ok(()),
        }
    }
}

/// Which records were read before: the same point (and repeat) measured at the
/// same moment — a file named twice, or copied into another. A point's key is
/// kept once per setting, not per record, and a setting's first runs in one table
/// of all settings: a campaign's million records cost a few bytes each.
#[derive(Clone, Debug, Default)]
pub struct Duplicates {
    keys: PointKeys,
    /// By setting key number.
    seen: Vec<SeenRuns>,
}

/// A run as a duplicate is told: its repeat and its start time's bits.
type RunKey = (Option<u32>, u64);

/// Runs of a setting kept in place; a setting with more keeps them in sets.
const FEW_RUNS: usize = 5;

/// The runs of one setting read so far.
#[derive(Clone, Debug)]
enum SeenRuns {
    Few {
        len: u8,
        runs: [RunKey; FEW_RUNS],
    },
    /// Every run, and every repeat.
    Many(Box<(HashSet<RunKey>, HashSet<Option<u32>>)>),
}

impl SeenRuns {
    const NONE: SeenRuns = SeenRuns::Few {
        len: 0,
        runs: [(None, 0); FEW_RUNS],
    };

    /// Remember `run`: whether it is new, and whether a run of its repeat was
    /// read before.
    fn insert(&mut self, run: RunKey) -> (bool, bool) {
        match self {
            SeenRuns::Few { len, runs } => {
                let read = &runs[..*len as usize];
                let repeat_before = read.iter().any(|k| k.0 == run.0);
                if read.contains(&run) {
                    return (false, repeat_before);
                }
                if (*len as usize) < FEW_RUNS {
                    runs[*len as usize] = run;
                    *len += 1;
                } else {
                    let all: HashSet<RunKey> = runs.iter().copied().chain([run]).collect();
                    let repeats = all.iter().map(|k| k.0).collect();
                    *self = SeenRuns::Many(Box::new((all, repeats)));
                }
                (true, repeat_before)
            }
            SeenRuns::Many(sets) => {
                let repeat_before = sets.1.contains(&run.0);
                let new = sets.0.insert(run);
                sets.1.insert(run.0);
                (new, repeat_before)
            }
        }
    }
}

impl Duplicates {
    /// Whether `r` is read for the first time (it is remembered).
    pub fn first_time(&mut self, r: &Record) -> bool {
        self.first_time_of(r).0
    }

    /// [`Duplicates::first_time`], and whether a record of its point and repeat
    /// was read before (at another moment, where it is read for the first time).
    fn first_time_of(&mut self, r: &Record) -> (bool, bool) {
        let setting = self.keys.setting(r) as usize;
        if setting == self.seen.len() {
            self.seen.push(SeenRuns::NONE);
        }
        self.seen[setting].insert((r.repeat, r.unix_time_s.to_bits()))
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

/// A merge of files read one record at a time: which records it keeps, and its counts.
#[derive(Clone, Debug, Default)]
pub struct MergeDigest {
    exact: Duplicates,
    pub mixed: MixedCheck,
    /// Records read, over all files.
    pub read: usize,
    /// Exact duplicates dropped.
    pub duplicates: usize,
    /// Points measured more than once at different times: all kept.
    pub repeated_points: usize,
    /// Kept records, simulated and real.
    pub simulated: usize,
    pub real: usize,
    /// Whether each record read was kept, one bit each, in the order read.
    kept: Vec<u64>,
}

impl MergeDigest {
    /// Take in record `index` of file `file`: whether the merge keeps it.
    pub fn push(&mut self, r: &Record, file: usize, index: usize) -> bool {
        let keep = self.keep(r, file, index);
        if self.read % 64 == 1 {
            self.kept.push(0);
        }
        if keep {
            let i = self.read - 1;
            self.kept[i / 64] |= 1 << (i % 64);
        }
        keep
    }

    /// Whether each record read was kept, in the order read.
    pub fn kept(&self) -> impl Iterator<Item = bool> + '_ {
        (0..self.read).map(|i| self.kept[i / 64] & (1 << (i % 64)) != 0)
    }

    fn keep(&mut self, r: &Record, file: usize, index: usize) -> bool {
        self.read += 1;
        self.mixed.push(r, file, index);
        let (first, point_before) = self.exact.first_time_of(r);
        if !first {
            self.duplicates += 1;
            return false;
        }
        if point_before {
            self.repeated_points += 1;
        }
        if r.simulated {
            self.simulated += 1;
        } else {
            self.real += 1;
        }
        true
    }
}

/// Join the files in order, dropping exact duplicates. With `allow_mixed` false,
/// simulated and real records together are an error.
pub fn merge(files: &[SourceFile], allow_mixed: bool) -> Result<Merged, MixedDataError> {
    if !allow_mixed {
        check_not_mixed(files)?;
    }
    let mut digest = MergeDigest::default();
    let mut out = Vec::new();
    let mut origin = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        for (ri, r) in f.records.iter().enumerate() {
            if digest.push(r, fi, ri) {
                out.push(r.clone());
                origin.push((fi, ri));
            }
        }
    }
    Ok(Merged {
        records: out,
        origin,
        read: digest.read,
        duplicates: digest.duplicates,
        repeated_points: digest.repeated_points,
        simulated: digest.simulated,
        real: digest.real,
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
