//! One measured setting of an op — kernel, precision, batch, power cap, clocks —
//! normalised per FLOP so batch sizes compare, from all the runs of it, with the
//! uncertainty of its figures and every caution its records carry (flags, and the
//! known biases of how they were taken), so what is known about the data travels
//! with it into every table, plot and settings entry.

use crate::baseline::BaselineCandidate;
use crate::digest::{FlagSet, Head, Run, SettingsDigest};
use crate::levers::{Lever, Levered};
use crate::objective::Candidate;
use crate::repeats::RunSpread;
use crate::significance::{NoiseFloor, Uncertainty};
use joulebench_core::protocol::{ValidityFlag, WindowMethod};
use joulebench_core::record::Record;
use joulebench_core::stats::median;
use joulebench_core::{PowerCap, Precision};

/// Flag of a setting whose records took schema-1 windows with idle gaps inside:
/// energy and average power read high (about 2% on the H200 records).
pub const GAPPED_FLAG: &str = "gapped";
/// Flag of a setting known only from `--meter check` records (two meters over the
/// same windows); their agreement is in [`Setting::meter_agreement_pct`].
pub const METER_CHECK_FLAG: &str = "meter-check";
/// A locked clock the GPU ran more than this fraction below did not bind.
const UNBOUND_CLOCK_MARGIN: f64 = 0.02;

/// One measured setting, normalised per FLOP.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub kernel: String,
    /// A vendor library's kernel (cuBLAS, cuBLASLt), not one of ours.
    pub vendor: bool,
    pub backend: String,
    pub precision: Precision,
    pub batch_size: u64,
    /// "default", "80%", "300W" as requested.
    pub cap: String,
    /// Watts the cap meant (requested, else enforced).
    pub cap_w: Option<f64>,
    pub is_default_cap: bool,
    /// The locked SM clock, MHz; `None`: the default clocks.
    pub sm_clock_mhz: Option<u32>,
    /// The locked memory clock, MHz; `None`: the default.
    pub mem_clock_mhz: Option<u32>,
    /// The SM clock seen while it ran (median), MHz.
    pub sm_clock_seen_mhz: Option<f64>,
    /// The device's highest SM clock, MHz, where the records say.
    pub sm_clock_max_mhz: Option<u32>,
    pub seconds_per_flop: f64,
    pub joules_per_flop: f64,
    pub tflops: f64,
    pub average_w: Option<f64>,
    /// Cautions: every caution flag of any run, `above-limit` where the average
    /// power shows it, `gapped` for schema-1 windows, `meter-check` for check-mode
    /// records.
    pub flags: Vec<String>,
    /// The card sat at its power limit: information, not a caution.
    pub power_limited: bool,
    pub default_limit_w: Option<f64>,
    /// Index of the (first) record this setting came from, in the slice given to
    /// the recommendation: how a caller finds its source file and device.
    pub record: usize,
    /// Runs of this setting (`--repeat`, or the same point measured again).
    pub runs: usize,
    pub run_to_run_spread: Option<f64>,
    /// How sure its energy and time per FLOP are.
    pub uncertainty: Uncertainty,
    /// Check mode: how the energy counter and integrated power agreed (median of
    /// its runs), %.
    pub meter_agreement_pct: Option<f64>,
    /// The physical board it ran on (see `crate::devices::physical_keys`).
    pub board: String,
}

impl Setting {
    /// `index`: the record's position in the caller's slice (see [`Setting::record`]).
    pub fn from_record(r: &Record, index: usize) -> Option<Setting> {
        Setting::from_runs(&[r], index)
    }

    /// One setting from its runs (records of one setting key, as
    /// `crate::repeats::group_settings` gives them), with the default noise floor.
    pub fn from_runs(runs: &[&Record], first_index: usize) -> Option<Setting> {
        Setting::from_runs_with(runs, first_index, NoiseFloor::default())
    }

    /// Medians of the runs' medians, their spread, and every caution any of them carries.
    pub fn from_runs_with(
        runs: &[&Record],
        first_index: usize,
        floor: NoiseFloor,
    ) -> Option<Setting> {
        let r = *runs.first()?;
        let mut digest = SettingsDigest::default();
        let device = digest.devices.id(r);
        let group = digest.strings.id(&r.group);
        let head = digest.head_of(r, 0, 0, device, group);
        let measured: Vec<Run> = runs
            .iter()
            .filter(|r| r.has_energy())
            .filter_map(|r| digest.run_of(r, 0))
            .collect();
        let measured: Vec<&Run> = measured.iter().collect();
        let mut s = Setting::from_parts(&digest, &head, &measured, floor)?;
        s.record = first_index;
        Some(s)
    }

    /// A setting from what a digest kept of its first run and of its runs.
    pub(crate) fn from_parts(
        digest: &SettingsDigest,
        head: &Head,
        measured: &[&Run],
        floor: NoiseFloor,
    ) -> Option<Setting> {
        if measured.is_empty() {
            return None;
        }
        let med = |f: &dyn Fn(&Run) -> Option<f64>| -> Option<f64> {
            let v: Vec<f64> = measured.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| median(&v))
        };
        let spread = RunSpread::of_runs(measured)?;
        let seconds_per_op = med(&|r| Some(r.seconds_per_op))?;
        let average_w = med(&|r| r.average_w.get());
        let mut cautions = measured
            .iter()
            .fold(FlagSet::default(), |all, r| all.union(r.flags));
        if measured.iter().any(|r| r.above_limit) {
            cautions.insert(ValidityFlag::AboveLimit);
        }
        let mut flags: Vec<String> = cautions
            .flags()
            .filter(|f| f.is_caution())
            .map(|f| f.name().to_string())
            .collect();
        let gapped = measured.iter().any(|r| r.gapped);
        if gapped {
            flags.push(GAPPED_FLAG.into());
        }
        let agreements: Vec<f64> = measured
            .iter()
            .filter_map(|r| r.agreement_pct.get())
            .collect();
        if !agreements.is_empty() {
            flags.push(METER_CHECK_FLAG.into());
        }
        let method = if gapped {
            Some(WindowMethod::Gapped)
        } else {
            head.method
        };
        let flop = head.flop as f64;
        Some(Setting {
            kernel: digest.strings.get(head.kernel).to_string(),
            vendor: head.vendor,
            backend: digest.strings.get(head.backend).to_string(),
            precision: head.precision,
            batch_size: head.batch_size,
            cap: digest.strings.get(head.cap).to_string(),
            cap_w: head.requested_w.get().or(head.enforced_w.get()),
            // a "default" point run at a limit or a clock that was not the default is
            // no baseline
            is_default_cap: head.cap_is_default && !measured.iter().any(|r| r.not_default),
            sm_clock_mhz: head.sm_requested_mhz,
            mem_clock_mhz: head.mem_requested_mhz,
            sm_clock_seen_mhz: med(&|r| r.sm_seen_mhz.get()),
            sm_clock_max_mhz: head.sm_max_mhz,
            seconds_per_flop: seconds_per_op / flop,
            joules_per_flop: spread.joules_per_flop,
            tflops: flop / seconds_per_op / 1e12,
            average_w,
            flags,
            power_limited: cautions.contains(ValidityFlag::PowerLimited),
            default_limit_w: head.default_w.get(),
            record: head.index as usize,
            runs: spread.runs,
            run_to_run_spread: spread.run_to_run,
            uncertainty: spread.uncertainty(floor.for_method(method)),
            meter_agreement_pct: (!agreements.is_empty()).then(|| median(&agreements)),
            board: digest.devices.seen[head.device as usize].key.clone(),
        })
    }

    pub fn picojoules_per_flop(&self) -> f64 {
        self.joules_per_flop * 1e12
    }

    pub fn cap_label(&self) -> String {
        match self.cap_w {
            Some(w) if self.cap != format!("{w}W") => format!("{} ({w:.0} W)", self.cap),
            Some(w) => format!("{w:.0} W"),
            None => self.cap.clone(),
        }
    }

    /// "cublas bf16", "cublas bf16 b4" (the batch where it is not 1).
    pub fn label(&self) -> String {
        if self.batch_size == 1 {
            format!("{} {}", self.kernel, self.precision)
        } else {
            format!("{} {} b{}", self.kernel, self.precision, self.batch_size)
        }
    }

    /// "default" or "1410 MHz" (with the memory clock where it was locked).
    pub fn clock_label(&self) -> String {
        match (self.sm_clock_mhz, self.mem_clock_mhz) {
            (None, None) => "default".into(),
            (Some(sm), None) => format!("{sm} MHz"),
            (None, Some(mem)) => format!("default, mem {mem} MHz"),
            (Some(sm), Some(mem)) => format!("{sm} MHz, mem {mem} MHz"),
        }
    }

    /// The clock column: the lock, and "(not binding)" where the GPU ran below it.
    pub fn clock_cell(&self) -> String {
        match self.unbound_clock() {
            Some(seen) => format!("{} (ran at {seen:.0}, not binding)", self.clock_label()),
            None => self.clock_label(),
        }
    }

    /// A lock the GPU ran below on its own (its power limit held it down): the
    /// clock it ran at, MHz. Such a lock changes nothing and is never advised.
    pub fn unbound_clock(&self) -> Option<f64> {
        let (asked, seen) = (self.sm_clock_mhz?, self.sm_clock_seen_mhz?);
        (seen < asked as f64 * (1.0 - UNBOUND_CLOCK_MARGIN)).then_some(seen)
    }

    /// The SM clock to lock, as advice: none where the lock did not bind.
    pub fn advised_sm_clock_mhz(&self) -> Option<u32> {
        self.sm_clock_mhz.filter(|_| self.unbound_clock().is_none())
    }

    /// Flags as tables show them, the meter check with its agreement.
    pub fn flags_label(&self) -> String {
        self.flags
            .iter()
            .map(|f| match (f.as_str(), self.meter_agreement_pct) {
                (METER_CHECK_FLAG, Some(a)) => format!("{METER_CHECK_FLAG} ({a:.1}% agreement)"),
                _ => f.clone(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn at_default_clocks(&self) -> bool {
        self.sm_clock_mhz.is_none() && self.mem_clock_mhz.is_none()
    }
}

impl Candidate for Setting {
    fn seconds_per_unit(&self) -> f64 {
        self.seconds_per_flop
    }
    fn joules_per_unit(&self) -> f64 {
        self.joules_per_flop
    }
    fn zeus_max_power_w(&self) -> Option<f64> {
        self.default_limit_w.or(self.average_w)
    }
    fn uncertainty(&self) -> Uncertainty {
        self.uncertainty
    }
}

impl Levered for Setting {
    fn lever_value(&self, lever: Lever) -> Option<String> {
        Some(match lever {
            Lever::Precision => self.precision.to_string(),
            Lever::Kernel => self.kernel.clone(),
            Lever::Batch => self.batch_size.to_string(),
            Lever::PowerCap if self.is_default_cap => "default".into(),
            // asked for the default, ran at a limit left changed: not the default
            Lever::PowerCap if self.cap == "default" => "default (limit as found)".into(),
            Lever::PowerCap => self.cap.clone(),
            Lever::Clock => self.clock_label(),
        })
    }
    fn board(&self) -> &str {
        &self.board
    }
    fn unbound_clock_mhz(&self) -> Option<f64> {
        self.unbound_clock()
    }
}

impl BaselineCandidate for Setting {
    fn precision(&self) -> Precision {
        self.precision
    }
    fn batch(&self) -> u64 {
        self.batch_size
    }
    fn cap(&self) -> Option<PowerCap> {
        if self.cap == "default" && !self.is_default_cap {
            return None;
        }
        self.cap.parse().ok()
    }
    fn kernel_names(&self) -> Vec<&str> {
        vec![self.kernel.as_str()]
    }
    fn all_vendor(&self) -> bool {
        self.vendor
    }
    fn at_default_clocks(&self) -> bool {
        Setting::at_default_clocks(self)
    }
}
