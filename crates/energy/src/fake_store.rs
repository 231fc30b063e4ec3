//! Where the state of a fake device lives (the fake NVML and the fake amdsmi): in
//! this process's memory, or in a JSON file that several processes share, so a
//! killed `joulebench sweep` leaves the fake as a real GPU would be left, for the
//! next process to find. A file is changed under a lock file and written whole
//! before it is renamed into place: a reader sees the old state or the new one.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds: a fake's counter steps on wall time, as a GPU's does,
/// so every process that opens its file reads the same counter.
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a fake's state could not be read or written; each fake maps it onto its
/// own library's error.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub(crate) enum FakeStoreError {
    /// The file is missing or not a valid state: the fake cannot be opened.
    #[error("{0}")]
    Unavailable(String),
    /// A write or lock failed.
    #[error("{0}")]
    Failed(String),
}

enum Backing<S> {
    Memory(Box<S>),
    File(PathBuf),
}

/// A fake device's state (see the module comment). `what` names the fake in
/// messages ("fake NVML").
pub(crate) struct FakeStore<S> {
    backing: Mutex<Backing<S>>,
    what: &'static str,
}

impl<S: Clone + Serialize + DeserializeOwned> FakeStore<S> {
    pub(crate) fn in_memory(what: &'static str, state: S) -> Self {
        FakeStore {
            backing: Mutex::new(Backing::Memory(Box::new(state))),
            what,
        }
    }

    /// Writes `state` to `path` and keeps it there.
    pub(crate) fn create(
        what: &'static str,
        path: PathBuf,
        state: &S,
    ) -> Result<Self, FakeStoreError> {
        write_state(what, &path, state)?;
        Ok(Self::at(what, path))
    }

    /// A state file that exists, read once to check it is one.
    pub(crate) fn open(what: &'static str, path: PathBuf) -> Result<Self, FakeStoreError> {
        read_state::<S>(what, &path)?;
        Ok(Self::at(what, path))
    }

    fn at(what: &'static str, path: PathBuf) -> Self {
        FakeStore {
            backing: Mutex::new(Backing::File(path)),
            what,
        }
    }

    /// The state file, for a file-backed fake.
    pub(crate) fn path(&self) -> Option<PathBuf> {
        match &*self.lock() {
            Backing::File(p) => Some(p.clone()),
            Backing::Memory(_) => None,
        }
    }

    /// The state now (re-read from the file for a file-backed fake).
    pub(crate) fn state(&self) -> Result<S, FakeStoreError> {
        match &*self.lock() {
            Backing::Memory(s) => Ok(s.as_ref().clone()),
            Backing::File(p) => read_state(self.what, p),
        }
    }

    /// Changes the state; across processes the change is atomic.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut S) -> R) -> Result<R, FakeStoreError> {
        match &mut *self.lock() {
            Backing::Memory(s) => Ok(f(s)),
            Backing::File(p) => {
                let _lock = FileLock::acquire(self.what, p)?;
                let mut s = read_state(self.what, p)?;
                let r = f(&mut s);
                write_state(self.what, p, &s)?;
                Ok(r)
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Backing<S>> {
        self.backing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_state<S: DeserializeOwned>(what: &str, path: &Path) -> Result<S, FakeStoreError> {
    let text = fs::read_to_string(path).map_err(|e| {
        FakeStoreError::Unavailable(format!("{what} state file {}: {e}", path.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        FakeStoreError::Unavailable(format!(
            "{what} state file {} is not valid: {e}",
            path.display()
        ))
    })
}

fn write_state<S: Serialize>(what: &str, path: &Path, state: &S) -> Result<(), FakeStoreError> {
    let io = |e: std::io::Error| {
        FakeStoreError::Failed(format!("writing {what} state file {}: {e}", path.display()))
    };
    let text = serde_json::to_string_pretty(state)
        .map_err(|e| FakeStoreError::Failed(format!("encoding {what} state: {e}")))?;
    let tmp = sibling(path, &format!("tmp-{}", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

/// Serialises read-modify-write of a state file between processes. A lock left by
/// a killed process is broken after two seconds: updates take microseconds.
struct FileLock(PathBuf);

impl FileLock {
    fn acquire(what: &str, path: &Path) -> Result<FileLock, FakeStoreError> {
        let lock = sibling(path, "lock");
        let start = Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => return Ok(FileLock(lock)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if start.elapsed() > Duration::from_secs(2) {
                        let _ = fs::remove_file(&lock);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    return Err(FakeStoreError::Failed(format!(
                        "locking {what} state {}: {e}",
                        lock.display()
                    )))
                }
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The grid a fake's energy counter steps on: whole `period_ms` steps since
/// `epoch_unix_ms`, each adding the energy drawn over it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepGrid {
    pub epoch_unix_ms: u64,
    pub period_ms: u64,
}

impl StepGrid {
    /// Whole steps by `now_ms`, and the length of one.
    pub(crate) fn steps_at(self, now_ms: u64) -> (u64, u64) {
        let period = self.period_ms.max(1);
        (now_ms.saturating_sub(self.epoch_unix_ms) / period, period)
    }

    /// The epoch moved to the last step at or before `now_ms`: where a counter whose
    /// energy so far was folded into its base starts again, on the same grid.
    pub(crate) fn folded_epoch(self, now_ms: u64) -> u64 {
        let (steps, period) = self.steps_at(now_ms);
        self.epoch_unix_ms + steps * period
    }
}
