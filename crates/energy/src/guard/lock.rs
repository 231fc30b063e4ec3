//! One lock per GPU, keyed by its UUID, held by every joulebench process that
//! changes the GPU's power limit or clocks, for as long as it may change them. It
//! lives in one place for the whole machine, whatever state directory a sweep uses,
//! so two sweeps can never interleave their changes (and leave a card capped with
//! no restore pending); the second is refused, naming the first. The operating
//! system drops the lock when its process ends, even by SIGKILL.

use super::secure::{euid, open_or_create_trusted, private_dir};
use super::state::device_file_key;
use joulebench_core::{DeviceInfo, PowerError};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Overrides where the per-GPU locks live (tests; a machine whose runtime directory
/// is elsewhere). Every joulebench that may change the same GPU must agree on it.
pub const LOCK_DIR_ENV: &str = "JOULEBENCH_LOCK_DIR";

/// `$JOULEBENCH_LOCK_DIR`, else `/run/joulebench` for root (who alone may change a
/// GPU's limits and clocks), else `$XDG_RUNTIME_DIR/joulebench`, else
/// `<temp>/joulebench-<uid>`.
pub fn default_lock_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(LOCK_DIR_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if euid() == 0 {
        return PathBuf::from("/run/joulebench");
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
    {
        return d.join("joulebench");
    }
    std::env::temp_dir().join(format!("joulebench-{}", euid()))
}

/// `<dir>/gpu-<device>.lock`, the device named as its state file names it.
pub fn lock_file_for(dir: &Path, device: &DeviceInfo) -> PathBuf {
    dir.join(format!("gpu-{}.lock", device_file_key(device)))
}

/// A held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DeviceLock {
    _file: File,
    path: PathBuf,
}

impl DeviceLock {
    /// Take the lock of `device` without waiting. Refused, naming the holder's
    /// process and command, while another process holds it.
    pub fn acquire(dir: &Path, device: &DeviceInfo) -> Result<DeviceLock, PowerError> {
        private_dir(dir, "lock directory", LOCK_DIR_ENV)?;
        let path = lock_file_for(dir, device);
        let mut file = open_or_create_trusted(&path, "GPU lock file")?;
        if !try_lock(&file) {
            let holder = read_holder(&mut file);
            return Err(PowerError::Failed(format!(
                "{} is being changed by {} now (lock {}): two processes changing one GPU's \
                 power limit or clocks would leave it changed with no restore pending; wait for \
                 that one to finish",
                device.name,
                holder.unwrap_or_else(|| "another joulebench process".into()),
                path.display()
            )));
        }
        // who holds it, for the next one to be told; the lock itself is the flock
        let me = format!(
            "joulebench process {} (`{}`)\n",
            std::process::id(),
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        let _ = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(me.as_bytes()));
        Ok(DeviceLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who holds the lock of `device` now, if anyone (for `power status`).
    pub fn holder(dir: &Path, device: &DeviceInfo) -> Option<String> {
        let path = lock_file_for(dir, device);
        if !path.exists() {
            return None;
        }
        let mut file = open_or_create_trusted(&path, "GPU lock file").ok()?;
        if try_lock(&file) {
            return None; // free: dropping the file releases it again
        }
        Some(read_holder(&mut file).unwrap_or_else(|| "another joulebench process".into()))
    }
}

fn read_holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(4096).read_to_string(&mut text).ok()?;
    let line = text.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

#[cfg(unix)]
fn try_lock(file: &File) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor this File owns.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> bool {
    true
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let gpu = DeviceInfo {
            name: "GPU A".into(),
            uuid: Some("GPU-1234".into()),
            ..DeviceInfo::default()
        };
        let first = DeviceLock::acquire(&locks, &gpu).unwrap();
        let e = DeviceLock::acquire(&locks, &gpu).unwrap_err().to_string();
        assert!(
            e.contains(&format!("joulebench process {}", std::process::id())),
            "{e}"
        );
        assert!(DeviceLock::holder(&locks, &gpu).is_some());
        drop(first);
        assert!(DeviceLock::holder(&locks, &gpu).is_none());
        DeviceLock::acquire(&locks, &gpu).unwrap();
    }
}
