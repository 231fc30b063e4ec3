//! What can go wrong reading or writing a results file, each case a variant a
//! caller can act on (a held lock, a schema from a newer joulebench, a corrupt line).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: corrupt results line: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: record has schema version {found}, this joulebench reads versions 1 to {expected} (and {} for `joulebench run` records); use a newer joulebench or write to a new file", crate::run_record::RUN_RECORD_SCHEMA)]
    Schema {
        path: PathBuf,
        line: usize,
        found: u64,
        expected: u32,
    },
    #[error("{path}: no records")]
    Empty { path: PathBuf },
    #[error("{path} is being written by another joulebench{}; two writers would interleave their records: wait for it to finish, or choose another file", holder.map(|p| format!(" (process {p})")).unwrap_or_default())]
    Locked { path: PathBuf, holder: Option<u32> },
}
