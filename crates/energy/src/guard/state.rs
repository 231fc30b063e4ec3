//! The power state file: written (and fsynced) before the first change to a device's
//! power limit, removed after the original limit is back. Its presence means "a limit
//! may still need restoring": after a SIGKILL or a power loss, `joulebench power
//! restore` reads it. One file per device, so one worker process per GPU never clash.

use super::secure;
use joulebench_core::{DeviceInfo, PowerError};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Overrides where state files live (tests, shared machines with odd homes).
pub const STATE_DIR_ENV: &str = "JOULEBENCH_STATE_DIR";

/// Schema 2 adds `locked_clocks`, schema 3 `limit_owed`; files of schemas 1 and 2
/// are read (their limit is always owed).
pub const STATE_FILE_SCHEMA: u32 = 3;

/// Which of a device's clocks a sweep locked: each is reset to the device's
/// default on restore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedClocks {
    pub sm: bool,
    pub mem: bool,
}

impl LockedClocks {
    pub fn any(&self) -> bool {
        self.sm || self.mem
    }
}

/// Which device a state file is about: enough to find it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateDevice {
    pub name: String,
    pub uuid: Option<String>,
    pub pci_bus_id: Option<String>,
}

impl StateDevice {
    pub fn of(info: &DeviceInfo) -> Self {
        StateDevice {
            name: info.name.clone(),
            uuid: info.uuid.clone(),
            pci_bus_id: info.pci_bus_id.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerStateFile {
    pub schema: u32,
    pub device: StateDevice,
    /// How to open the device again: "nvml", "fake-nvml", or another control's name.
    pub device_kind: String,
    /// The limit as found before the first change: what every exit path restores.
    pub original_limit_w: f64,
    pub default_limit_w: f64,
    pub min_limit_w: f64,
    pub max_limit_w: f64,
    /// The process that changed the limit, and how to tell it from a later process
    /// that happens to reuse its pid.
    pub pid: u32,
    pub process_start_ticks: Option<u64>,
    pub boot_id: Option<String>,
    pub host: Option<String>,
    pub written_unix_s: f64,
    /// Clocks locked since the file was written (schema 2; none in schema 1).
    #[serde(default)]
    pub locked_clocks: LockedClocks,
    /// Whether the power limit was changed and is still owed (schema 3; a run that
    /// locked only clocks never touches the limit on restore).
    #[serde(default = "owed_by_default")]
    pub limit_owed: bool,
}

fn owed_by_default() -> bool {
    true
}

impl PowerStateFile {
    /// Whether anything is still owed.
    pub fn owes_anything(&self) -> bool {
        self.limit_owed || self.locked_clocks.any()
    }

    /// "the power limit (to restore to 300 W) and the SM clock (to reset)".
    pub fn describe_owed(&self) -> String {
        let mut parts = Vec::new();
        if self.limit_owed {
            parts.push(format!(
                "the power limit (to restore to {:.0} W)",
                self.original_limit_w
            ));
        }
        match (self.locked_clocks.sm, self.locked_clocks.mem) {
            (true, true) => parts.push("the SM and memory clocks (to reset)".into()),
            (true, false) => parts.push("the SM clock (to reset)".into()),
            (false, true) => parts.push("the memory clock (to reset)".into()),
            _ => {}
        }
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(" and ")
        }
    }

    /// The device as the guard and the per-GPU lock name it.
    pub fn device_info(&self) -> DeviceInfo {
        DeviceInfo {
            name: self.device.name.clone(),
            uuid: self.device.uuid.clone(),
            pci_bus_id: self.device.pci_bus_id.clone(),
            ..DeviceInfo::default()
        }
    }
}

/// The command that restores what a state file in `dir` owes: `joulebench power
/// restore`, with the state directory named where it is not the default one.
pub fn restore_command(state_file: &Path) -> String {
    let dir = state_file.parent().unwrap_or(Path::new(""));
    match default_state_dir() {
        Some(d) if d == dir => "joulebench power restore".into(),
        _ => format!(
            "{STATE_DIR_ENV}={} joulebench power restore",
            shell_word(&dir.display().to_string())
        ),
    }
}

/// `s` as one word of a POSIX shell command line.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `$JOULEBENCH_STATE_DIR`, else `$XDG_STATE_HOME/joulebench`, else
/// `~/.local/state/joulebench`; `None` without an absolute home directory.
pub fn default_state_dir() -> Option<PathBuf> {
    let env_dir = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env_dir(STATE_DIR_ENV) {
        // made absolute: the file must be found again from any directory
        return Some(if d.is_absolute() {
            d
        } else {
            std::env::current_dir().ok()?.join(d)
        });
    }
    if let Some(d) = env_dir("XDG_STATE_HOME").filter(|d| d.is_absolute()) {
        return Some(d.join("joulebench"));
    }
    // a relative HOME would put the state file wherever the command runs, where the
    // next `power restore` (from another directory) never finds it
    env_dir("HOME")
        .filter(|h| h.is_absolute())
        .map(|h| h.join(".local").join("state").join("joulebench"))
}

/// `<dir>/power-state-<device>.json`, the device named by its UUID (else PCI bus id,
/// else name) in characters safe for a file name.
pub fn state_file_for(dir: &Path, device: &DeviceInfo) -> PathBuf {
    dir.join(format!("power-state-{}.json", device_file_key(device)))
}

/// A device's name in file names: its UUID, else PCI bus id, else name, in
/// characters safe for a file name.
pub(crate) fn device_file_key(device: &DeviceInfo) -> String {
    let key = device
        .uuid
        .as_deref()
        .map(crate::identity::normalize_uuid)
        .or_else(|| {
            device
                .pci_bus_id
                .as_deref()
                .map(|p| crate::identity::normalize_pci_bus_id(p).unwrap_or_else(|| p.to_string()))
        })
        .unwrap_or_else(|| device.name.clone());
    let safe: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    safe
}

/// Refuse a state directory another user owns or can write (where they could plant
/// a state file for `power restore`, or links for the next write), before any
/// state file in it is read. A missing directory holds nothing and passes.
pub fn check_state_dir(dir: &Path) -> Result<(), PowerError> {
    secure::check_links(dir, "state directory", STATE_DIR_ENV)?;
    if !dir.exists() {
        return Ok(());
    }
    secure::private_dir(dir, "state directory", STATE_DIR_ENV)
}

/// Reads a state file only if this user wrote it and no one else can change it,
/// never through a symbolic link.
pub fn read_state_file(path: &Path) -> Result<PowerStateFile, PowerError> {
    let mut text = String::new();
    secure::open_trusted(path, "power state file")?
        .take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| {
            PowerError::Unavailable(format!("power state file {}: {e}", path.display()))
        })?;
    let state: PowerStateFile = serde_json::from_str(&text).map_err(|e| {
        PowerError::Failed(format!(
            "power state file {} is damaged ({e}); the original limit it held is unknown — \
             set it by hand with `nvidia-smi -pl` if needed, then delete the file",
            path.display()
        ))
    })?;
    if !(1..=STATE_FILE_SCHEMA).contains(&state.schema) {
        return Err(PowerError::Failed(format!(
            "power state file {} has schema {}, this joulebench reads 1 to {STATE_FILE_SCHEMA}",
            path.display(),
            state.schema
        )));
    }
    Ok(state)
}

/// Written to a new file created exclusively (O_EXCL, never through a link, mode
/// 0600, an unpredictable name) in a directory of this user that no one else can
/// write, fsynced, renamed over the target, and the directory fsynced: after a
/// power loss the file is either whole or absent, never half.
pub fn write_state_file(path: &Path, state: &PowerStateFile) -> Result<(), PowerError> {
    let io = |what: &str, e: std::io::Error| {
        PowerError::Failed(format!(
            "cannot {what} the power state file {} ({e}); no limit was changed",
            path.display()
        ))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        secure::private_dir(dir, "state directory", STATE_DIR_ENV)?;
    }
    let text = serde_json::to_string_pretty(state)
        .map_err(|e| PowerError::Failed(format!("encoding the power state file: {e}")))?;
    let (mut f, tmp) = secure::create_temp_beside(path).map_err(|e| io("write", e))?;
    let written = f
        .write_all(text.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|_| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(io("write", e));
    }
    sync_dir(path);
    Ok(())
}

/// Removing an absent file is success: restore is idempotent.
pub fn remove_state_file(path: &Path) -> Result<(), PowerError> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(path);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PowerError::Failed(format!(
            "the limit is restored but the power state file {} could not be removed: {e}",
            path.display()
        ))),
    }
}

fn sync_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Every state file in `dir`, with its contents or why it cannot be read.
pub fn pending_restores(dir: &Path) -> Vec<(PathBuf, Result<PowerStateFile, PowerError>)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("power-state-") && n.ends_with(".json"))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|p| {
            let s = read_state_file(&p);
            (p, s)
        })
        .collect()
}

/// Whether the process that wrote a state file still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OwnerStatus {
    /// This process.
    Us,
    Alive,
    /// Gone: killed, crashed, or the machine rebooted since.
    Gone,
    /// Cannot tell on this platform.
    Unknown,
    /// Written on another host (a shared home directory): only that host can tell.
    OtherHost,
}

pub fn owner_status(state: &PowerStateFile) -> OwnerStatus {
    if let (Some(theirs), Some(ours)) = (&state.host, hostname()) {
        if *theirs != ours {
            return OwnerStatus::OtherHost;
        }
    }
    if let (Some(theirs), Some(ours)) = (&state.boot_id, boot_id()) {
        if *theirs != ours {
            return OwnerStatus::Gone;
        }
    }
    if state.pid == std::process::id() {
        return OwnerStatus::Us;
    }
    if !cfg!(target_os = "linux") {
        return OwnerStatus::Unknown;
    }
    match process_start_ticks(state.pid) {
        None => OwnerStatus::Gone,
        Some(now) => match state.process_start_ticks {
            Some(then) if then != now => OwnerStatus::Gone,
            _ => OwnerStatus::Alive,
        },
    }
}

pub(crate) fn now_unix_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(crate) fn hostname() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

pub(crate) fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot.
pub(crate) fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it
    // start at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_per_device_and_safe() {
        let dir = Path::new("/state");
        let a = DeviceInfo {
            name: "A".into(),
            uuid: Some("GPU-AB/CD-01".into()),
            ..Default::default()
        };
        let b = DeviceInfo {
            name: "B/../x".into(),
            pci_bus_id: Some("00000000:65:00.0".into()),
            ..Default::default()
        };
        let c = DeviceInfo {
            name: "../../etc/passwd".into(),
            ..Default::default()
        };
        assert_eq!(state_file_for(dir, &a), dir.join("power-state-abcd01.json"));
        assert_eq!(
            state_file_for(dir, &b),
            dir.join("power-state-0000_65_00.0.json")
        );
        assert_eq!(state_file_for(dir, &c).parent(), Some(dir));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn our_own_process_has_a_start_time() {
        assert!(process_start_ticks(std::process::id()).is_some());
    }
}
