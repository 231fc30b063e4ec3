//! Power-limit control, the one place joulebench changes a machine's state
//! (docs/ARCHITECTURE.md §6). The trait is narrow so that NVML, the simulated device and a
//! test fake all implement it; restoring the original limit is the job of the
//! guard in `joulebench-energy`, which wraps any implementation.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a power or clock change (or its restore) did not happen. Each variant is a
/// situation a caller acts on differently: wait for another process, run a pending
/// restore first, stop changing a GPU that was already put back, or tell the user
/// that a setting is still owed.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("power control unavailable: {0}")]
    Unavailable(String),
    #[error("power cap {requested_w:.0} W is outside the device's range {min_w:.0}–{max_w:.0} W")]
    OutOfRange {
        requested_w: f64,
        min_w: f64,
        max_w: f64,
    },
    #[error("not permitted to change the power limit: {0}")]
    NotPermitted(String),
    /// Another process holds the GPU's lock: it may change the GPU now.
    #[error("{device} is being changed by {holder} now (lock {}): two processes changing one GPU's power limit or clocks would leave it changed with no restore pending; wait for that one to finish", lock.display())]
    Locked {
        device: String,
        holder: String,
        lock: std::path::PathBuf,
    },
    /// A state file says a process that has ended left this GPU changed.
    #[error("a restore is pending for {device}: process {pid} changed {what} and did not restore it; run `{command}` first (state file {})", state_file.display())]
    RestorePending {
        device: String,
        pid: u32,
        /// "the power limit (from 300 W) and the SM clock".
        what: String,
        state_file: std::path::PathBuf,
        /// The command that restores it.
        command: String,
    },
    /// The process that changed the GPU still runs: it restores when it ends.
    #[error("joulebench process {pid}{}, which changed {device}, still runs: it restores it when it ends (SIGINT or SIGTERM it), or force the restore if that process is not joulebench; state file {}", if *.this_process { " (this very process)" } else { "" }, state_file.display())]
    OwnerRunning {
        device: String,
        pid: u32,
        this_process: bool,
        state_file: std::path::PathBuf,
    },
    /// The guard already put the GPU back (after a signal or a panic): no further change.
    #[error(
        "the original power limit and clocks were already restored ({why}); no further changes"
    )]
    AlreadyRestored { why: String },
    /// A limit was set but reads back as another.
    #[error("asked for {asked_w:.0} W but the power limit of {device} reads {reads_w:.0} W")]
    LimitReadsWrong {
        device: String,
        asked_w: f64,
        reads_w: f64,
    },
    /// A restore tried every step; these failed. What is still owed stays in the
    /// state file (when there is one).
    #[error("could not restore everything on {device}: {}{}", failures.join("; "), match state_file { Some(p) => format!("; what is still owed is kept in {} for `joulebench power restore`", p.display()), None => String::new() })]
    RestoreIncomplete {
        device: String,
        failures: Vec<String>,
        state_file: Option<std::path::PathBuf>,
    },
    #[error("power control failed: {0}")]
    Failed(String),
}

impl PowerError {
    /// A state another process or an earlier run left, which the user must settle
    /// before this command can change the GPU (as opposed to a driver failure).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            PowerError::OutOfRange { .. }
                | PowerError::NotPermitted(_)
                | PowerError::Locked { .. }
                | PowerError::RestorePending { .. }
                | PowerError::OwnerRunning { .. }
        )
    }
}

/// The limits a device allows and the one it has now, in watts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerLimits {
    pub min_w: f64,
    pub max_w: f64,
    pub default_w: f64,
    pub current_w: f64,
}

impl PowerLimits {
    pub fn check(&self, watts: f64) -> Result<(), PowerError> {
        if !watts.is_finite() || watts < self.min_w - 1e-6 || watts > self.max_w + 1e-6 {
            return Err(PowerError::OutOfRange {
                requested_w: watts,
                min_w: self.min_w,
                max_w: self.max_w,
            });
        }
        Ok(())
    }
}

pub trait PowerControl: Send {
    fn limits(&mut self) -> Result<PowerLimits, PowerError>;
    /// Ask for a new limit in watts; the caller has checked it against `limits`.
    fn set_limit_w(&mut self, watts: f64) -> Result<(), PowerError>;
    /// The limit the device enforces now.
    fn enforced_limit_w(&mut self) -> Result<f64, PowerError>;
}

/// A power cap as a user writes it: the device default, watts, or % of the default.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum PowerCap {
    Default,
    Watts(f64),
    PercentOfDefault(f64),
}

impl PowerCap {
    /// Watts this cap means on a device with these limits.
    pub fn resolve_w(&self, limits: &PowerLimits) -> f64 {
        match *self {
            PowerCap::Default => limits.default_w,
            PowerCap::Watts(w) => w,
            PowerCap::PercentOfDefault(p) => limits.default_w * p / 100.0,
        }
    }

    pub fn is_default(&self) -> bool {
        matches!(self, PowerCap::Default)
    }

    /// Parse a list: "default,300,80%" or a range "200:400:50" (watts, inclusive).
    pub fn parse_list(s: &str) -> Result<Vec<PowerCap>, String> {
        let mut caps = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.contains(':') {
                let nums: Vec<&str> = part.split(':').collect();
                if nums.len() != 3 {
                    return Err(format!(
                        "power-cap range '{part}' must be min:max:step in watts"
                    ));
                }
                let parse = |x: &str| {
                    x.trim()
                        .trim_end_matches(['W', 'w'])
                        .parse::<f64>()
                        .map_err(|_| format!("'{x}' in power-cap range '{part}' is not a number"))
                };
                let (lo, hi, step) = (parse(nums[0])?, parse(nums[1])?, parse(nums[2])?);
                if step.is_nan() || step <= 0.0 || lo > hi || lo <= 0.0 {
                    return Err(format!(
                        "power-cap range '{part}' needs 0 < min ≤ max and a positive step"
                    ));
                }
                let count = ((hi - lo) / step).floor() as usize + 1;
                if count > 1000 {
                    return Err(format!(
                        "power-cap range '{part}' has {count} steps; at most 1000"
                    ));
                }
                caps.extend((0..count).map(|i| PowerCap::Watts(lo + step * i as f64)));
            } else {
                caps.push(part.parse()?);
            }
        }
        if caps.is_empty() {
            return Err("empty power-cap list".into());
        }
        Ok(caps)
    }
}

impl FromStr for PowerCap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("default") {
            return Ok(PowerCap::Default);
        }
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("power cap '{s}': '{p}' is not a number"))?;
            if !(v > 0.0 && v <= 200.0) {
                return Err(format!(
                    "power cap '{s}': a percentage of the default must be in (0, 200]"
                ));
            }
            return Ok(PowerCap::PercentOfDefault(v));
        }
        let w: f64 = t.trim_end_matches(['W', 'w']).trim().parse().map_err(|_| {
            format!("power cap '{s}' is not 'default', watts (300) or a percentage (80%)")
        })?;
        if !(w > 0.0 && w.is_finite()) {
            return Err(format!(
                "power cap '{s}' must be a positive number of watts"
            ));
        }
        Ok(PowerCap::Watts(w))
    }
}

impl fmt::Display for PowerCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerCap::Default => f.write_str("default"),
            PowerCap::Watts(w) => write!(f, "{w}W"),
            PowerCap::PercentOfDefault(p) => write!(f, "{p}%"),
        }
    }
}

impl From<PowerCap> for String {
    fn from(c: PowerCap) -> String {
        c.to_string()
    }
}

impl TryFrom<String> for PowerCap {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_caps_and_ranges() {
        let caps = PowerCap::parse_list("default, 300, 80%, 200:300:50").unwrap();
        assert_eq!(
            caps,
            vec![
                PowerCap::Default,
                PowerCap::Watts(300.0),
                PowerCap::PercentOfDefault(80.0),
                PowerCap::Watts(200.0),
                PowerCap::Watts(250.0),
                PowerCap::Watts(300.0)
            ]
        );
        assert!(PowerCap::parse_list("abc").is_err());
        assert!(PowerCap::parse_list("-5").is_err());
        assert!(PowerCap::parse_list("300:200:10").is_err());
        assert!(PowerCap::parse_list("0%").is_err());
    }

    #[test]
    fn resolves_against_limits_and_checks_range() {
        let l = PowerLimits {
            min_w: 200.0,
            max_w: 700.0,
            default_w: 700.0,
            current_w: 700.0,
        };
        assert_eq!(PowerCap::PercentOfDefault(50.0).resolve_w(&l), 350.0);
        assert_eq!(PowerCap::Default.resolve_w(&l), 700.0);
        assert!(l.check(150.0).is_err());
        assert!(l.check(701.0).is_err());
        assert!(l.check(450.0).is_ok());
    }

    #[test]
    fn round_trips_through_strings() {
        for c in [
            PowerCap::Default,
            PowerCap::Watts(250.0),
            PowerCap::PercentOfDefault(75.0),
        ] {
            assert_eq!(c.to_string().parse::<PowerCap>().unwrap(), c);
        }
    }
}
