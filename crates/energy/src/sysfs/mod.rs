//! Sysfs as the hwmon and RAPL meters read it: every path under one root, `/` unless
//! `JOULEBENCH_SYSFS_ROOT` names another directory standing for `/` (a fixture tree
//! in tests, a copy of a machine's files), and every failed read named with its file
//! — a permission denied above all, since RAPL's `energy_uj` is root-only.

pub mod hwmon;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A directory that stands for `/` when joulebench reads `/sys`.
pub const SYSFS_ROOT_ENV: &str = "JOULEBENCH_SYSFS_ROOT";

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SysfsError {
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path}: permission denied")]
    PermissionDenied { path: PathBuf },
    #[error("{path} holds {value:?}, not a number")]
    Parse { path: PathBuf, value: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

impl SysfsError {
    fn of(path: &Path, e: io::Error) -> SysfsError {
        let path = path.to_path_buf();
        match e.kind() {
            io::ErrorKind::NotFound => SysfsError::Missing { path },
            io::ErrorKind::PermissionDenied => SysfsError::PermissionDenied { path },
            _ => SysfsError::Io {
                path,
                message: e.to_string(),
            },
        }
    }

    pub fn is_permission_denied(&self) -> bool {
        matches!(self, SysfsError::PermissionDenied { .. })
    }
}

/// Reads and writes attribute files. The real one is `std::fs`; tests may put a
/// reader in front that answers EACCES, as a non-root user meets on a real
/// machine, since a test running as root can read a file of mode 000.
pub trait AttributeIo: Send + Sync {
    fn read(&self, path: &Path) -> io::Result<String>;
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
}

struct StdIo;

/// The most an attribute file holds: the kernel serves each in one page.
pub const MAX_ATTRIBUTE_BYTES: u64 = 4096;

/// One attribute file, read without trusting what is at its path: opened without
/// blocking (a FIFO would block forever), refused unless it is a regular file (a
/// link to `/dev/zero` never ends), and read up to [`MAX_ATTRIBUTE_BYTES`] — a file
/// longer than that is refused, not cut.
pub fn read_attribute(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file (a device, a FIFO or a link to one): not a sysfs attribute",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_ATTRIBUTE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_ATTRIBUTE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {MAX_ATTRIBUTE_BYTES} bytes: not a sysfs attribute"),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "not text: not a sysfs attribute",
        )
    })
}

impl AttributeIo for StdIo {
    fn read(&self, path: &Path) -> io::Result<String> {
        read_attribute(path)
    }
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        use std::io::Write;
        // an attribute exists: never created, and only a regular file is written
        let mut options = std::fs::OpenOptions::new();
        options.write(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC);
        }
        let mut file = options.open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a regular file: not a sysfs attribute",
            ));
        }
        file.write_all(value.as_bytes())
    }
}

/// The sysfs tree the meters read (see the module comment).
#[derive(Clone)]
pub struct Sysfs {
    root: PathBuf,
    io: Arc<dyn AttributeIo>,
}

impl std::fmt::Debug for Sysfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sysfs").field("root", &self.root).finish()
    }
}

impl Sysfs {
    /// `$JOULEBENCH_SYSFS_ROOT`, else `/`.
    pub fn from_env() -> Sysfs {
        match std::env::var_os(SYSFS_ROOT_ENV).filter(|v| !v.is_empty()) {
            Some(root) => Sysfs::at(root),
            None => Sysfs::at("/"),
        }
    }

    pub fn at(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs {
            root: root.into(),
            io: Arc::new(StdIo),
        }
    }

    /// The same tree, its files read and written through `io`.
    pub fn with_io(mut self, io: Arc<dyn AttributeIo>) -> Sysfs {
        self.io = io;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is the machine's own `/sys`.
    pub fn is_real(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `/sys/class/hwmon` as a path under the root.
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    pub fn read_string(&self, path: &Path) -> Result<String, SysfsError> {
        self.io
            .read(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| SysfsError::of(path, e))
    }

    pub fn read_u64(&self, path: &Path) -> Result<u64, SysfsError> {
        let text = self.read_string(path)?;
        text.parse().map_err(|_| SysfsError::Parse {
            path: path.to_path_buf(),
            value: text,
        })
    }

    /// `Ok(None)` for a file that does not exist; other failures stay errors.
    pub fn read_u64_if_present(&self, path: &Path) -> Result<Option<u64>, SysfsError> {
        match self.read_u64(path) {
            Ok(v) => Ok(Some(v)),
            Err(SysfsError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn write_u64(&self, path: &Path, value: u64) -> Result<(), SysfsError> {
        self.io
            .write(path, &format!("{value}\n"))
            .map_err(|e| SysfsError::of(path, e))
    }

    /// The entries of a directory whose names start with `prefix`, sorted by name.
    pub fn list(&self, dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, SysfsError> {
        let entries = std::fs::read_dir(dir).map_err(|e| SysfsError::of(dir, e))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .collect();
        found.sort_by_key(|p| natural_key(p));
        Ok(found)
    }

    /// The last part of where a symbolic link points (`device` → "0000:03:00.0").
    pub fn link_name(&self, link: &Path) -> Option<String> {
        let target = std::fs::read_link(link).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }
}

/// "hwmon10" after "hwmon9", "intel-rapl:0:0" before "intel-rapl:1": numbers
/// compare as numbers, the rest as text.
fn natural_key(p: &Path) -> Vec<(String, u64)> {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut key = Vec::new();
    let (mut text, mut digits) = (String::new(), String::new());
    for c in name.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                key.push((
                    std::mem::take(&mut text),
                    digits.parse().unwrap_or(u64::MAX),
                ));
                digits.clear();
            }
            text.push(c);
        }
    }
    key.push((text, digits.parse().unwrap_or(0)));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_live_under_the_root_and_errors_name_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Sysfs::at(dir.path());
        let p = fs.path("/sys/class/hwmon/hwmon0/power1_cap");
        assert_eq!(p, dir.path().join("sys/class/hwmon/hwmon0/power1_cap"));
        let err = fs.read_u64(&p).unwrap_err();
        assert!(matches!(err, SysfsError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("hwmon0/power1_cap"), "{err}");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "250000000\n").unwrap();
        assert_eq!(fs.read_u64(&p).unwrap(), 250_000_000);
        std::fs::write(&p, "n/a\n").unwrap();
        assert!(matches!(fs.read_u64(&p), Err(SysfsError::Parse { .. })));
    }

    #[test]
    fn directories_list_in_natural_order() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["hwmon10", "hwmon9", "hwmon1", "other", "hwmon1:0"] {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        let names: Vec<String> = Sysfs::at(dir.path())
            .list(dir.path(), "hwmon")
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["hwmon1", "hwmon1:0", "hwmon9", "hwmon10"]);
    }
}
