//! Writing a results file (docs/ARCHITECTURE.md §5): each record appended as one whole
//! line and synced before the next, under an advisory lock that keeps a second
//! writer out, and an incomplete tail cut off (after a copy) before `--resume` appends.

use super::error::RecordError;
use super::read::PartialTail;
use super::schema::Record;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Whether a writer (a sweep) holds the results file at `path` now: `Some` with
/// its pid where the system says. Outputs are never written onto such a file.
pub fn results_file_holder(path: &Path) -> Option<Option<u32>> {
    crate::results_lock::holder_of(path)
}

/// Anything that takes records as they are produced.
pub trait RecordSink {
    fn write(&mut self, record: &Record) -> Result<(), RecordError>;
}

/// Appends one line per record and flushes it to disk before returning.
pub struct JsonlWriter {
    path: PathBuf,
    file: File,
}

impl JsonlWriter {
    /// Open for appending, creating the file (and its directory) if needed.
    pub fn append(path: &Path) -> Result<Self, RecordError> {
        let werr = |source| RecordError::Write {
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(werr)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(werr)?;
        Ok(JsonlWriter {
            path: path.into(),
            file,
        })
    }

    /// [`JsonlWriter::append`], holding the advisory lock every joulebench writer
    /// takes for as long as the writer lives: a second writer of the same file is
    /// refused with [`RecordError::Locked`], naming the first one's process.
    pub fn append_exclusive(path: &Path) -> Result<Self, RecordError> {
        let w = Self::append(path)?;
        match crate::results_lock::try_lock(&w.file) {
            Ok(()) => Ok(w),
            Err(holder) => Err(RecordError::Locked {
                path: path.into(),
                holder,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Cut an incomplete tail off the file, after copying it to a file beside it
    /// (`<name>.incomplete-<offset>`), whose path is returned. Only the tail goes:
    /// the file keeps its first `tail.offset` bytes, every complete record.
    pub fn cut_partial_tail(&mut self, tail: &PartialTail) -> Result<PathBuf, RecordError> {
        let werr = |source| RecordError::Write {
            path: self.path.clone(),
            source,
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut copy_path = self
            .path
            .with_file_name(format!("{name}.incomplete-{}", tail.offset));
        let mut copy = None;
        for n in 1..100 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&copy_path)
            {
                Ok(f) => {
                    copy = Some(f);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    copy_path = self
                        .path
                        .with_file_name(format!("{name}.incomplete-{}.{n}", tail.offset));
                }
                Err(e) => return Err(werr(e)),
            }
        }
        let mut copy = copy.ok_or_else(|| werr(std::io::ErrorKind::AlreadyExists.into()))?;
        let mut from = File::open(&self.path).map_err(werr)?;
        from.seek(std::io::SeekFrom::Start(tail.offset))
            .map_err(werr)?;
        std::io::copy(&mut from.take(tail.bytes), &mut copy).map_err(werr)?;
        copy.sync_all().map_err(werr)?;
        self.file.set_len(tail.offset).map_err(werr)?;
        self.file.sync_all().map_err(werr)?;
        Ok(copy_path)
    }

    /// Append one line (a record as another writer wrote it), flushed to disk.
    pub fn write_line(&mut self, line: &str) -> Result<(), RecordError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.write_whole(&bytes)
    }

    /// One write call per line, synced. A write that fails half-way (a full disk)
    /// is cut back off, so the file keeps whole lines; where even that fails,
    /// readers skip the incomplete tail.
    fn write_whole(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        let before = self.file.metadata().map(|m| m.len()).ok();
        let written = self
            .file
            .write_all(bytes)
            .and_then(|_| self.file.sync_data());
        if let Err(source) = written {
            if let Some(len) = before {
                let _ = self.file.set_len(len);
            }
            return Err(RecordError::Write {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }
}

impl JsonlWriter {
    /// Append a `joulebench run` record, flushed to disk as a point's is.
    pub fn write_run(&mut self, record: &crate::run_record::RunRecord) -> Result<(), RecordError> {
        let mut line = serde_json::to_vec(record).map_err(|e| RecordError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.write_whole(&line)
    }
}

impl RecordSink for JsonlWriter {
    fn write(&mut self, record: &Record) -> Result<(), RecordError> {
        let mut line = serde_json::to_vec(record).map_err(|e| RecordError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.write_whole(&line)
    }
}

/// Records kept in memory, for a program that reads them itself.
impl RecordSink for Vec<Record> {
    fn write(&mut self, record: &Record) -> Result<(), RecordError> {
        self.push(record.clone());
        Ok(())
    }
}
