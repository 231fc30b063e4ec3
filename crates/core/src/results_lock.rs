//! The advisory lock a joulebench writer holds on a results file while it appends,
//! so two sweeps (or two `--resume` runs) never interleave records in one file. A
//! second writer is refused, and told which process holds the file.

use std::fs::File;

/// Take the lock on `file` without waiting; `Err(holder)` when another open file
/// holds it, with the holder's pid where the system says. A filesystem without
/// locks (some network mounts) is written unlocked, as before.
#[cfg(unix)]
pub(crate) fn try_lock(file: &File) -> Result<(), Option<u32>> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor this File owns; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EWOULDBLOCK) => Err(holder_pid(file)),
        _ => Ok(()),
    }
}

#[cfg(not(unix))]
pub(crate) fn try_lock(_file: &File) -> Result<(), Option<u32>> {
    Ok(())
}

/// Whether a writer holds the lock on the results file at `path` now: `Some` with
/// its pid where the system says, `None` when no one does (or `path` is not a
/// regular file that can be opened). Opened without blocking (a FIFO), and the
/// probe's own shared lock is released at once.
#[cfg(unix)]
pub fn holder_of(path: &std::path::Path) -> Option<Option<u32>> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    // SAFETY: flock on a descriptor this File owns; a writer holds LOCK_EX, which a
    // shared lock conflicts with.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        return None; // dropping the file releases the probe's lock
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EWOULDBLOCK) => Some(holder_pid(&file)),
        _ => None,
    }
}

#[cfg(not(unix))]
pub fn holder_of(_path: &std::path::Path) -> Option<Option<u32>> {
    None
}

/// The pid /proc/locks gives for the flock on this file (Linux).
#[cfg(target_os = "linux")]
fn holder_pid(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let (dev, ino) = (meta.dev(), meta.ino());
    let id = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF"
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, "WRITE", pid, dev_ino, ..] if *dev_ino == id => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(all(unix, not(target_os = "linux")))]
fn holder_pid(_file: &File) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_second_open_file_is_refused_and_names_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let a = File::create(&path).unwrap();
        let b = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        assert_eq!(try_lock(&a), Ok(()));
        assert_eq!(try_lock(&b), Err(Some(std::process::id())));
        assert_eq!(holder_of(&path), Some(Some(std::process::id())));
        drop(a);
        assert_eq!(holder_of(&path), None);
        assert_eq!(try_lock(&b), Ok(()));
    }
}
