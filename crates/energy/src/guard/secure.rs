//! The files joulebench trusts while it may run as root: power state files and the
//! per-GPU locks. A directory another user can write lets them plant links or files
//! there, so a directory must belong to the running user and be writable by no one
//! else (its parents may be shared only with the sticky bit, as /tmp is), files are
//! created exclusively and never through a link, and a file is trusted only when
//! the running user owns it and no one else can write it.

use joulebench_core::PowerError;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// The effective user id (0 for root).
#[cfg(unix)]
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
pub(crate) fn euid() -> u32 {
    0
}

/// Create `dir` (mode 0700) if it is missing, then refuse it unless it is a
/// directory of this user that no one else can write, under parents that no one
/// else can rename it out of. `what` names it in messages ("state directory"),
/// `env` is the variable that moves it.
pub(crate) fn private_dir(dir: &Path, what: &str, env: &str) -> Result<(), PowerError> {
    check_links(dir, what, env)?;
    create_dir(dir).map_err(|e| {
        PowerError::Failed(format!("cannot create the {what} {}: {e}", dir.display()))
    })?;
    check_dir(dir, what, env)
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

/// Refuse a symbolic link on the way to `dir` (the directory itself included) that
/// belongs to another user than this one or root: it decides where joulebench's
/// files go, so it is never followed — not even to create the directory.
#[cfg(unix)]
pub(crate) fn check_links(dir: &Path, what: &str, env: &str) -> Result<(), PowerError> {
    use std::os::unix::fs::MetadataExt;
    let shown = dir.display();
    let me = euid();
    let absolute = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(dir)
    };
    for step in absolute.ancestors() {
        let Ok(m) = fs::symlink_metadata(step) else {
            continue;
        };
        if m.file_type().is_symlink() && m.uid() != me && m.uid() != 0 {
            return Err(PowerError::Failed(format!(
                "{} on the way to the {what} {shown} is a symbolic link of user {}, not of this \
                 user ({me}) or root: it decides where joulebench's files go, so it is not \
                 followed; set {env} to a directory of yours (`mkdir -m 700 DIR`)",
                step.display(),
                m.uid()
            )));
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn check_links(_dir: &Path, _what: &str, _env: &str) -> Result<(), PowerError> {
    Ok(())
}

#[cfg(unix)]
fn check_dir(dir: &Path, what: &str, env: &str) -> Result<(), PowerError> {
    use std::os::unix::fs::MetadataExt;
    let shown = dir.display();
    let me = euid();
    check_links(dir, what, env)?;
    let meta = fs::metadata(dir)
        .map_err(|e| PowerError::Failed(format!("cannot read the {what} {shown}: {e}")))?;
    if !meta.is_dir() {
        return Err(PowerError::Failed(format!(
            "the {what} {shown} is not a directory"
        )));
    }
    if meta.uid() != me {
        return Err(PowerError::Failed(format!(
            "the {what} {shown} belongs to user {}, not to this user ({me}): joulebench keeps \
             these files only in a directory of the user that runs it; set {env} to a directory \
             of yours (`mkdir -m 700 DIR`)",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(PowerError::Failed(format!(
            "the {what} {shown} is writable by other users (mode {:o}), who could plant files or \
             links in it: `chmod go-w {shown}`, or set {env} to a private directory (`mkdir -m 700 DIR`)",
            meta.mode() & 0o7777
        )));
    }
    let real = fs::canonicalize(dir)
        .map_err(|e| PowerError::Failed(format!("cannot resolve the {what} {shown}: {e}")))?;
    for parent in real.ancestors().skip(1) {
        let Ok(m) = fs::metadata(parent) else {
            continue;
        };
        let shared = m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0;
        if (m.uid() != me && m.uid() != 0) || shared {
            return Err(PowerError::Failed(format!(
                "{} above the {what} {shown} {}: another user could move the {what} aside and \
                 put their own in its place; set {env} to a directory under parents only you and \
                 root can write",
                parent.display(),
                if shared {
                    format!(
                        "is writable by other users without the sticky bit (mode {:o})",
                        m.mode() & 0o7777
                    )
                } else {
                    format!("belongs to user {}", m.uid())
                }
            )));
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_dir(_dir: &Path, _what: &str, _env: &str) -> Result<(), PowerError> {
    Ok(())
}

/// Open `path` for reading only if it is a regular file of this user that no one
/// else can write, never through a symbolic link (nor blocking on a FIFO).
pub(crate) fn open_trusted(path: &Path, what: &str) -> Result<File, PowerError> {
    let shown = path.display();
    let file = open_no_follow(path, false).map_err(|e| {
        if is_link_error(&e) {
            PowerError::Failed(format!(
                "the {what} {shown} is a symbolic link; joulebench never follows one there \
                 (someone else may have planted it): remove it"
            ))
        } else {
            PowerError::Unavailable(format!("{what} {shown}: {e}"))
        }
    })?;
    check_file(&file, path, what)?;
    Ok(file)
}

#[cfg(unix)]
fn check_file(file: &File, path: &Path, what: &str) -> Result<(), PowerError> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = file
        .metadata()
        .map_err(|e| PowerError::Failed(format!("cannot read the {what} {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(PowerError::Failed(format!(
            "the {what} {shown} is not a regular file: remove it"
        )));
    }
    if meta.uid() != euid() {
        return Err(PowerError::Failed(format!(
            "the {what} {shown} belongs to user {}, not to this user ({}): joulebench did not \
             write it as you and will not act on it; look at where it came from, then remove it",
            meta.uid(),
            euid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(PowerError::Failed(format!(
            "the {what} {shown} is writable by other users (mode {:o}), so its contents cannot be \
             trusted; look at it, then remove it (or `chmod go-w {shown}` if you wrote it)",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_file(_file: &File, _path: &Path, _what: &str) -> Result<(), PowerError> {
    Ok(())
}

#[cfg(unix)]
fn open_no_follow(path: &Path, write_create: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = fs::OpenOptions::new();
    o.read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    if write_create {
        o.write(true).create(true).mode(0o600);
    }
    o.open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path, write_create: bool) -> std::io::Result<File> {
    let mut o = fs::OpenOptions::new();
    o.read(true);
    if write_create {
        o.write(true).create(true);
    }
    o.open(path)
}

fn is_link_error(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Open (creating it 0600 if missing, never truncating, never through a link) a
/// file this user owns and no one else can write: a lock file.
pub(crate) fn open_or_create_trusted(path: &Path, what: &str) -> Result<File, PowerError> {
    let file = open_no_follow(path, true).map_err(|e| {
        if is_link_error(&e) {
            PowerError::Failed(format!(
                "the {what} {} is a symbolic link; joulebench never follows one there: remove it",
                path.display()
            ))
        } else {
            PowerError::Failed(format!("cannot open the {what} {}: {e}", path.display()))
        }
    })?;
    check_file(&file, path, what)?;
    Ok(file)
}

/// A new file beside `target`, created exclusively (O_EXCL, never through a link,
/// mode 0600) under a name no one can predict: the file written, then renamed over
/// `target`.
pub(crate) fn create_temp_beside(target: &Path) -> std::io::Result<(File, PathBuf)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = None;
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = target.with_file_name(format!(
            ".{name}.{}-{nanos:x}-{attempt}.tmp",
            std::process::id()
        ));
        match create_new(&tmp) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::AlreadyExists.into()))
}

#[cfg(unix)]
fn create_new(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_new(path: &Path) -> std::io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn shared_directories_and_links_are_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        private_dir(&dir, "state directory", "X").unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&dir, "state directory", "X")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("writable by other users") && e.contains("chmod go-w"),
            "{e}"
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();

        let target = base.path().join("target");
        fs::write(&target, "x").unwrap();
        let link = dir.join("f.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_trusted(&link, "state file").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = open_or_create_trusted(&link, "lock file")
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "x");

        let loose = dir.join("loose.json");
        fs::write(&loose, "{}").unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o666)).unwrap();
        let e = open_trusted(&loose, "state file").unwrap_err().to_string();
        assert!(e.contains("writable by other users"), "{e}");

        let (_, tmp) = create_temp_beside(&dir.join("a.json")).unwrap();
        assert_eq!(
            fs::metadata(&tmp).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
