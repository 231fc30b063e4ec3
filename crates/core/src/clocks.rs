//! Locked GPU clocks, the lever beside the power cap (docs/ARCHITECTURE.md §6): energy per FLOP
//! usually has its minimum well below the maximum SM clock, where the voltage drops.
//! The trait is as narrow as `PowerControl`, so NVML, the simulated device and a test
//! fake implement it, and the guard in `joulebench-energy` wraps any of them to put
//! the default clocks back on every exit path. A sweep axis names clocks as a user
//! writes them ([`ClockSpec`]), resolved against the clocks the GPU supports.

use crate::power::PowerError;
use serde::{Deserialize, Serialize};
use std::fmt;

pub trait ClockControl: Send {
    /// Every SM (graphics) clock the device can be locked to, MHz, lowest first.
    fn supported_sm_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError>;
    /// Every memory clock it can be locked to, MHz, lowest first (one where the
    /// memory clock cannot be chosen).
    fn supported_mem_clocks_mhz(&mut self) -> Result<Vec<u32>, PowerError>;
    /// Lock the SM clock to `min_mhz..=max_mhz` (supported clocks; the caller checked).
    fn lock_sm_clocks_mhz(&mut self, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError>;
    /// Back to the device's default (unlocked) SM clocks.
    fn reset_sm_clocks(&mut self) -> Result<(), PowerError>;
    fn lock_mem_clocks_mhz(&mut self, min_mhz: u32, max_mhz: u32) -> Result<(), PowerError>;
    fn reset_mem_clocks(&mut self) -> Result<(), PowerError>;
    /// Which clocks are locked now, where the device can say: a restore verifies its
    /// resets with it, and a sweep notices clocks another run left locked. The
    /// default: it cannot say.
    fn clock_locks(&mut self) -> Result<ClockLocks, PowerError> {
        Err(PowerError::Unavailable(
            "this clock control cannot say whether its clocks are locked".into(),
        ))
    }
}

/// The locked clock ranges of a device now, MHz; `None`: that clock is at its default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockLocks {
    pub sm_mhz: Option<(u32, u32)>,
    pub mem_mhz: Option<(u32, u32)>,
}

impl ClockLocks {
    pub fn any(&self) -> bool {
        self.sm_mhz.is_some() || self.mem_mhz.is_some()
    }

    /// "SM 1200–1200 MHz and memory 2619–2619 MHz".
    pub fn describe(&self) -> String {
        let one =
            |name: &str, r: Option<(u32, u32)>| r.map(|(lo, hi)| format!("{name} {lo}–{hi} MHz"));
        [one("SM", self.sm_mhz), one("memory", self.mem_mhz)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

/// A clock as a user writes it: the device's default (not locked), a clock in MHz,
/// or a range `min:max:step` in MHz, snapped to the clocks the GPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClockSpec {
    Default,
    Mhz(u32),
    Range { min: u32, max: u32, step: u32 },
}

/// The most clocks one axis may expand to.
pub const MAX_CLOCKS_PER_AXIS: usize = 200;

impl ClockSpec {
    pub fn is_default(&self) -> bool {
        matches!(self, ClockSpec::Default)
    }

    /// "default,1410,900:1500:150" → the specs; refused with the item that is wrong.
    pub fn parse_list(s: &str) -> Result<Vec<ClockSpec>, String> {
        let specs: Vec<ClockSpec> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if specs.is_empty() {
            return Err("empty clock list".into());
        }
        Ok(specs)
    }

    /// Resolve `specs` against the `supported` clocks (MHz, any order): `None` for the
    /// default, `Some(MHz)` for a locked clock. An explicit clock must be one the
    /// device supports; a range takes min, min+step, … ≤ max, each snapped to the
    /// nearest supported clock inside the range. Repeats are dropped, order kept.
    /// `what` names the axis in messages ("SM", "memory").
    pub fn resolve(
        specs: &[ClockSpec],
        supported: &[u32],
        what: &str,
    ) -> Result<Vec<Option<u32>>, String> {
        let mut sorted = supported.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let describe = || match (sorted.first(), sorted.last()) {
            (Some(lo), Some(hi)) if sorted.len() > 1 => {
                format!("{} clocks from {lo} to {hi} MHz", sorted.len())
            }
            (Some(one), _) => format!("only {one} MHz"),
            _ => "none".into(),
        };
        let mut out: Vec<Option<u32>> = Vec::new();
        let push = |v: Option<u32>, out: &mut Vec<Option<u32>>| {
            if !out.contains(&v) {
                out.push(v);
            }
        };
        for spec in specs {
            match *spec {
                ClockSpec::Default => push(None, &mut out),
                ClockSpec::Mhz(mhz) => {
                    if sorted.binary_search(&mhz).is_err() {
                        let near = nearest(&sorted, mhz)
                            .map(|n| format!(" (nearest: {n} MHz)"))
                            .unwrap_or_default();
                        return Err(format!(
                            "{mhz} MHz is not a {what} clock this GPU supports{near}; it supports {}",
                            describe()
                        ));
                    }
                    push(Some(mhz), &mut out);
                }
                ClockSpec::Range { min, max, step } => {
                    let inside: Vec<u32> = sorted
                        .iter()
                        .copied()
                        .filter(|c| (min..=max).contains(c))
                        .collect();
                    if inside.is_empty() {
                        return Err(format!(
                            "no {what} clock this GPU supports lies in {min}–{max} MHz; it supports {}",
                            describe()
                        ));
                    }
                    let mut v = min as u64;
                    while v <= max as u64 {
                        push(nearest(&inside, v as u32), &mut out);
                        v += step as u64;
                    }
                }
            }
            if out.len() > MAX_CLOCKS_PER_AXIS {
                return Err(format!(
                    "the {what} clock list expands to more than {MAX_CLOCKS_PER_AXIS} clocks"
                ));
            }
        }
        Ok(out)
    }
}

fn nearest(sorted: &[u32], mhz: u32) -> Option<u32> {
    sorted.iter().copied().min_by_key(|c| (c.abs_diff(mhz), *c))
}

impl std::str::FromStr for ClockSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("default") {
            return Ok(ClockSpec::Default);
        }
        let mhz = |x: &str| -> Result<u32, String> {
            let x = x.trim();
            let x = x
                .strip_suffix("MHz")
                .or_else(|| x.strip_suffix("mhz"))
                .unwrap_or(x);
            match x.trim().parse::<u32>() {
                Ok(v) if v > 0 && v <= 100_000 => Ok(v),
                _ => Err(format!(
                    "clock '{s}': '{x}' is not a clock in MHz (1–100000), 'default', or min:max:step"
                )),
            }
        };
        if t.contains(':') {
            let parts: Vec<&str> = t.split(':').collect();
            let [lo, hi, step] = parts.as_slice() else {
                return Err(format!("clock range '{s}' must be min:max:step in MHz"));
            };
            let (min, max, step) = (mhz(lo)?, mhz(hi)?, mhz(step)?);
            if min > max {
                return Err(format!("clock range '{s}' needs min ≤ max"));
            }
            return Ok(ClockSpec::Range { min, max, step });
        }
        Ok(ClockSpec::Mhz(mhz(t)?))
    }
}

impl fmt::Display for ClockSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockSpec::Default => f.write_str("default"),
            ClockSpec::Mhz(m) => write!(f, "{m}"),
            ClockSpec::Range { min, max, step } => write!(f, "{min}:{max}:{step}"),
        }
    }
}

impl Serialize for ClockSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ClockSpec::Mhz(m) => s.serialize_u32(*m),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for ClockSpec {
    /// A config writes `1410` or `"1410"`, `"default"`, `"900:1500:150"`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => u32::try_from(n)
                .map_err(|_| serde::de::Error::custom(format!("clock {n} MHz is out of range")))
                .and_then(|n| format!("{n}").parse().map_err(serde::de::Error::custom)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// What a record says about clocks: what the point asked for and what the GPU ran
/// at while its windows were measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockRecord {
    /// The locked SM clock the point asked for, MHz; `None`: the default (unlocked).
    pub sm_requested_mhz: Option<u32>,
    /// The locked memory clock, MHz; `None`: the default.
    pub mem_requested_mhz: Option<u32>,
    /// The SM clock telemetry saw during the windows: median of the windows'
    /// medians, lowest and highest reading, MHz.
    pub sm_seen_mhz_median: Option<f64>,
    pub sm_seen_mhz_min: Option<f64>,
    pub sm_seen_mhz_max: Option<f64>,
    pub mem_seen_mhz_median: Option<f64>,
    /// The highest SM clock the device supports, MHz, where it could say.
    pub sm_max_mhz: Option<u32>,
}

impl ClockRecord {
    pub fn is_locked(&self) -> bool {
        self.sm_requested_mhz.is_some() || self.mem_requested_mhz.is_some()
    }

    /// "default", "1410 MHz", "1410 MHz, mem 2619 MHz".
    pub fn requested_label(&self) -> String {
        match (self.sm_requested_mhz, self.mem_requested_mhz) {
            (None, None) => "default".into(),
            (Some(sm), None) => format!("{sm} MHz"),
            (None, Some(mem)) => format!("default, mem {mem} MHz"),
            (Some(sm), Some(mem)) => format!("{sm} MHz, mem {mem} MHz"),
        }
    }
}

/// The part of a point key that names its clocks: empty at the default clocks, so
/// keys of points without a clock axis are what they always were.
pub fn clock_key(sm_mhz: Option<u32>, mem_mhz: Option<u32>) -> String {
    let mut k = String::new();
    if let Some(sm) = sm_mhz {
        k.push_str(&format!("|sm{sm}"));
    }
    if let Some(mem) = mem_mhz {
        k.push_str(&format!("|mem{mem}"));
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_nonsense_is_refused() {
        assert_eq!(
            ClockSpec::parse_list("default, 1410, 900:1500:150, 1200MHz").unwrap(),
            vec![
                ClockSpec::Default,
                ClockSpec::Mhz(1410),
                ClockSpec::Range {
                    min: 900,
                    max: 1500,
                    step: 150
                },
                ClockSpec::Mhz(1200)
            ]
        );
        for bad in [
            "",
            "fast",
            "0",
            "-5",
            "1500:900:10",
            "900:1500",
            "900:1500:0",
            "1e9",
        ] {
            assert!(ClockSpec::parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clocks_resolve_against_what_the_gpu_supports() {
        let supported: Vec<u32> = (345..=1980).step_by(15).collect();
        let r = ClockSpec::resolve(
            &ClockSpec::parse_list("default,1980,1000:1200:100,1980").unwrap(),
            &supported,
            "SM",
        )
        .unwrap();
        // 1000 and 1100 snap to the nearest supported clocks; repeats are dropped
        assert_eq!(
            r,
            vec![None, Some(1980), Some(1005), Some(1095), Some(1200)]
        );
        let e = ClockSpec::resolve(&[ClockSpec::Mhz(1001)], &supported, "SM").unwrap_err();
        assert!(
            e.contains("1001 MHz is not a SM clock") && e.contains("nearest: 1005"),
            "{e}"
        );
        let e = ClockSpec::resolve(
            &[ClockSpec::Range {
                min: 10,
                max: 20,
                step: 5,
            }],
            &supported,
            "SM",
        )
        .unwrap_err();
        assert!(e.contains("no SM clock"), "{e}");
        assert_eq!(clock_key(None, None), "");
        assert_eq!(clock_key(Some(1410), None), "|sm1410");
    }

    #[test]
    fn specs_round_trip_through_a_config() {
        #[derive(Deserialize, Serialize)]
        struct C {
            clocks: Vec<ClockSpec>,
        }
        let c: C = toml::from_str("clocks = [\"default\", 1410, \"900:1500:150\"]").unwrap();
        assert_eq!(c.clocks.len(), 3);
        let back: C = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.clocks, c.clocks);
    }
}
