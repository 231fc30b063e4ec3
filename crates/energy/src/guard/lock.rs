//! One lock per GPU, keyed by its UUID, held by every joulebench process that
//! changes the GPU's power limit or clocks — or restores them — for as long as it
//! may. It lives in one place for the whole machine, whatever state directory a
//! sweep uses, so two processes can never interleave their changes (and leave a
//! card capped with no restore pending); the second is refused, naming the first.
//! The operating system drops the lock when its process ends, even by SIGKILL. The
//! lock file also says which state file owes a restore for the GPU, so a run with
//! another state directory learns of it instead of taking a changed GPU as found.

use super::secure::{euid, open_or_create_trusted, private_dir};
use super::state::device_file_key;
use joulebench_core::{DeviceInfo, PowerError};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Overrides where the per-GPU locks live (tests; a machine whose runtime directory
/// is elsewhere). Every joulebench that may change the same GPU must agree on it.
pub const LOCK_DIR_ENV: &str = "JOULEBENCH_LOCK_DIR";

/// The line of a lock file that names the state file owing a restore.
const OWES: &str = "owes: ";

/// `$JOULEBENCH_LOCK_DIR`, else `/run/joulebench` for root (who alone may change a
/// GPU's limits and clocks), else `$XDG_RUNTIME_DIR/joulebench`, else
/// `<temp>/joulebench-<uid>`.
pub fn default_lock_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(LOCK_DIR_ENV).filter(|v| !v.is_empty()) {
        let d = PathBuf::from(d);
        return match std::env::current_dir() {
            Ok(cwd) if d.is_relative() => cwd.join(d),
            _ => d,
        };
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
    file: File,
    path: PathBuf,
    /// Who we are, the first line of the file.
    me: String,
    /// The state file a previous holder left owing a restore, as the file said
    /// when the lock was taken.
    found_owed: Option<PathBuf>,
}

impl DeviceLock {
    /// Take the lock of `device` without waiting. Refused with
    /// [`PowerError::Locked`], naming the holder's process and command, while
    /// another process holds it.
    pub fn acquire(dir: &Path, device: &DeviceInfo) -> Result<DeviceLock, PowerError> {
        private_dir(dir, "lock directory", LOCK_DIR_ENV)?;
        let path = lock_file_for(dir, device);
        let mut file = open_or_create_trusted(&path, "GPU lock file")?;
        if !try_lock(&file) {
            let holder = read_lines(&mut file)
                .and_then(|l| l.into_iter().next())
                .unwrap_or_else(|| "another joulebench process".into());
            return Err(PowerError::Locked {
                device: device.name.clone(),
                holder,
                lock: path,
            });
        }
        let found_owed = read_lines(&mut file).and_then(|lines| owed_line(&lines));
        let me = format!(
            "joulebench process {} (`{}`)",
            std::process::id(),
            joulebench_core::text::shorten(&std::env::args().collect::<Vec<_>>().join(" "), 300)
        );
        let mut lock = DeviceLock {
            file,
            path,
            me,
            found_owed: found_owed.clone(),
        };
        // who holds it, for the next one to be told; what is owed stays said
        lock.write(found_owed.as_deref());
        Ok(lock)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state file the lock file named as owing a restore when it was taken.
    pub fn found_owed(&self) -> Option<&Path> {
        self.found_owed.as_deref()
    }

    /// Say in the lock file that `state_file` owes a restore (`None`: nothing owed).
    pub fn set_owed(&mut self, state_file: Option<&Path>) {
        self.found_owed = state_file.map(Path::to_path_buf);
        self.write(state_file);
    }

    fn write(&mut self, owed: Option<&Path>) {
        let mut text = format!("{}\n", self.me);
        if let Some(p) = owed {
            text.push_str(&format!("{OWES}{}\n", p.display()));
        }
        let file = &mut self.file;
        let _ = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|_| file.sync_data());
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
        Some(
            read_lines(&mut file)
                .and_then(|l| l.into_iter().next())
                .unwrap_or_else(|| "another joulebench process".into()),
        )
    }

    /// The state file the lock file of `device` names as owing a restore, if any
    /// (for `power status`; read without taking the lock).
    pub fn owed_state_file(dir: &Path, device: &DeviceInfo) -> Option<PathBuf> {
        let path = lock_file_for(dir, device);
        if !path.exists() {
            return None;
        }
        let mut file = open_or_create_trusted(&path, "GPU lock file").ok()?;
        read_lines(&mut file).and_then(|l| owed_line(&l))
    }
}

fn owed_line(lines: &[String]) -> Option<PathBuf> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(OWES))
        .map(|p| PathBuf::from(p.trim_end()))
        .filter(|p| p.is_absolute())
}

fn read_lines(file: &mut File) -> Option<Vec<String>> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(8192).read_to_string(&mut text).ok()?;
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    (!lines.is_empty()).then_some(lines)
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
        let mut first = DeviceLock::acquire(&locks, &gpu).unwrap();
        let e = DeviceLock::acquire(&locks, &gpu).unwrap_err();
        assert!(
            matches!(&e, PowerError::Locked { holder, .. }
                if holder.contains(&format!("joulebench process {}", std::process::id()))),
            "{e}"
        );
        assert!(DeviceLock::holder(&locks, &gpu).is_some());
        // what is owed outlives the holder
        let state = dir.path().join("state/power-state-x.json");
        first.set_owed(Some(&state));
        drop(first);
        assert!(DeviceLock::holder(&locks, &gpu).is_none());
        assert_eq!(
            DeviceLock::owed_state_file(&locks, &gpu).as_deref(),
            Some(state.as_path())
        );
        let mut again = DeviceLock::acquire(&locks, &gpu).unwrap();
        assert_eq!(again.found_owed(), Some(state.as_path()));
        again.set_owed(None);
        drop(again);
        assert!(DeviceLock::owed_state_file(&locks, &gpu).is_none());
    }
}
