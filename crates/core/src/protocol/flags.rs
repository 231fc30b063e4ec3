//! What a record's flags and window method mean, in the words reports show users
//! (docs/ARCHITECTURE.md §4.5): one home for the taxonomy and its text, so every
//! table, plot and settings file explains a flag the same way.

use serde::{Deserialize, Serialize};

/// How a record's windows were taken. Records of schema 1 do not say, and read
/// as `gapped`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowMethod {
    /// Schema 1: blocks separated by sleeps, a wait for the closing update after
    /// the work, idle power subtracted for those gaps and the rest divided by busy
    /// time. Biased high where the board stays above idle in the gaps.
    #[default]
    Gapped,
    /// Busy from before the opening counter update to after the closing one, the
    /// work between them interpolated from the blocks' timings.
    Busy,
}

impl WindowMethod {
    pub fn name(self) -> &'static str {
        match self {
            WindowMethod::Gapped => "gapped",
            WindowMethod::Busy => "busy",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            WindowMethod::Gapped => "schema-1 windows with idle gaps inside, idle power subtracted for them (biased high: the board stays above idle in the gaps, and average power reads above the limit)",
            WindowMethod::Busy => "windows from one counter update to another with the GPU busy throughout, the work between the updates interpolated from the timings of the blocks of work around them",
        }
    }
}

/// Why a record's numbers deserve caution — or, for `power-limited`, what they
/// mean. Reports show flags; they never hide them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValidityFlag {
    /// A window was shorter than the protocol's window rule (max(1 s, 10 meter
    /// updates) by default).
    ShortWindow,
    /// The spread of J/FLOP (or of time, without a meter) stayed above the target.
    HighSpread,
    /// A thermal, hardware-slowdown or power-brake throttle reason, or an SM clock
    /// under 75% of its default with no power-limit reason to explain it.
    Throttled,
    /// No energy meter: time only.
    NoEnergy,
    /// Measured on a CPU emulation of a GPU (lavapipe and the like).
    CpuEmulation,
    /// The enforced power limit differs from the one requested.
    CapNotEnforced,
    /// Information, not a caution: the card ran at its power limit (the normal
    /// operating point of heavy work), at the clock the telemetry shows.
    PowerLimited,
    /// The point asked for the default power limit, but the GPU's limit was not its
    /// default (a killed sweep or another tool left it capped): not a baseline.
    CapNotDefault,
    /// The point asked for the default clocks, but a clock was locked (a killed run
    /// or another tool left it locked): not a baseline.
    ClocksNotDefault,
    /// The average power exceeded the enforced limit by more than 3%: a
    /// self-check of the measurement that failed.
    AboveLimit,
    /// The warm-up reached its time bound before power and temperature settled.
    Unsettled,
    /// The device sat idle for more than 1% of a window, by its own timestamps.
    IdleInWindow,
}

impl ValidityFlag {
    pub fn name(self) -> &'static str {
        match self {
            ValidityFlag::ShortWindow => "short-window",
            ValidityFlag::HighSpread => "high-spread",
            ValidityFlag::Throttled => "throttled",
            ValidityFlag::NoEnergy => "no-energy",
            ValidityFlag::CpuEmulation => "cpu-emulation",
            ValidityFlag::CapNotEnforced => "cap-not-enforced",
            ValidityFlag::PowerLimited => "power-limited",
            ValidityFlag::CapNotDefault => "cap-not-default",
            ValidityFlag::ClocksNotDefault => "clocks-not-default",
            ValidityFlag::AboveLimit => "above-limit",
            ValidityFlag::Unsettled => "unsettled",
            ValidityFlag::IdleInWindow => "idle-in-window",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            ValidityFlag::ShortWindow => "a window was shorter than the protocol's window rule (max(1 s, 10 energy-meter updates) by default); its energy may be off by a sensor period",
            ValidityFlag::HighSpread => "the relative spread across windows stayed above the target within the time budget",
            ValidityFlag::Throttled => "a thermal, hardware-slowdown or power-brake throttle reason was active, or the SM clock fell under 75% of its default with no power limit to explain it",
            ValidityFlag::NoEnergy => "no energy meter on this device: time was measured, energy was not",
            ValidityFlag::CpuEmulation => "measured on a CPU emulation of a GPU (e.g. lavapipe): not a GPU's numbers",
            ValidityFlag::CapNotEnforced => "the enforced power limit differed from the requested cap",
            ValidityFlag::PowerLimited => "information, not a caution: the GPU ran at its power limit and lowered its clock to stay under it (NVML's sw-power-cap), the normal operating point of heavy work",
            ValidityFlag::CapNotDefault => "the point asked for the default power limit, but the GPU's limit differed from its default (a killed sweep or another tool left it capped); it is never used as the default-limit baseline",
            ValidityFlag::ClocksNotDefault => "the point asked for the default clocks, but a clock of the GPU was locked (a killed run or another tool left it locked); it is never used as the default-clock baseline",
            ValidityFlag::AboveLimit => "the average power was more than 3% above the enforced power limit: the energy or the time of this point is wrong",
            ValidityFlag::Unsettled => "the warm-up ended at its time bound before power and temperature settled; the numbers may drift with the GPU's temperature",
            ValidityFlag::IdleInWindow => "the GPU sat idle for more than 1% of a window by its own timestamps (the host could not keep it fed): energy per op and average power include idle time",
        }
    }

    /// Whether the flag asks for caution. `power-limited` is information.
    pub fn is_caution(self) -> bool {
        !matches!(self, ValidityFlag::PowerLimited)
    }

    /// "caution" or "information", as reports list it.
    pub fn kind(self) -> &'static str {
        if self.is_caution() {
            "caution"
        } else {
            "information"
        }
    }

    pub const ALL: [ValidityFlag; 12] = [
        ValidityFlag::ShortWindow,
        ValidityFlag::HighSpread,
        ValidityFlag::Throttled,
        ValidityFlag::NoEnergy,
        ValidityFlag::CpuEmulation,
        ValidityFlag::CapNotEnforced,
        ValidityFlag::PowerLimited,
        ValidityFlag::CapNotDefault,
        ValidityFlag::ClocksNotDefault,
        ValidityFlag::AboveLimit,
        ValidityFlag::Unsettled,
        ValidityFlag::IdleInWindow,
    ];
}
