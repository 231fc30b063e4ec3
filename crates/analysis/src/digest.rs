//! What the analysis keeps of records read one at a time: per setting (device,
//! backend, kernel, precision, workload, cap, clocks, inputs), the few figures of
//! each of its runs that its medians and spreads need and what its first run says
//! of it; per device, its description. A fleet's campaign — a million records, a few
//! GB — is read into this, never held whole. The functions that take `&[Record]`
//! build it from the slice, so a slice and a stream give the same tables.

use crate::devices::label_devices;
use joulebench_core::protocol::{ValidityFlag, WindowMethod};
use joulebench_core::record::{point_key, PointStatus, Record};
use joulebench_core::{DeviceInfo, InputDistribution, MeterSource, PowerCap, Precision, Workload};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// An `f64` that may be absent, in 8 bytes: NaN stands for none. JSON holds no
/// NaN, so no figure read from a results file is one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MaybeF64(f64);

impl MaybeF64 {
    pub(crate) fn new(v: Option<f64>) -> MaybeF64 {
        MaybeF64(v.unwrap_or(f64::NAN))
    }
    pub(crate) fn get(self) -> Option<f64> {
        (!self.0.is_nan()).then_some(self.0)
    }
}

/// Validity flags as bits, in [`ValidityFlag::ALL`]'s order (which is their sort order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FlagSet(u16);

impl FlagSet {
    pub(crate) fn of(flags: &[ValidityFlag]) -> FlagSet {
        let mut s = FlagSet(0);
        for &f in flags {
            s.insert(f);
        }
        s
    }
    fn bit(f: ValidityFlag) -> u16 {
        1 << ValidityFlag::ALL.iter().position(|&g| g == f).unwrap_or(0)
    }
    pub(crate) fn insert(&mut self, f: ValidityFlag) {
        self.0 |= FlagSet::bit(f);
    }
    pub(crate) fn contains(self, f: ValidityFlag) -> bool {
        self.0 & FlagSet::bit(f) != 0
    }
    pub(crate) fn union(self, other: FlagSet) -> FlagSet {
        FlagSet(self.0 | other.0)
    }
    /// The flags set, sorted.
    pub(crate) fn flags(self) -> impl Iterator<Item = ValidityFlag> {
        ValidityFlag::ALL
            .into_iter()
            .filter(move |&f| self.contains(f))
    }
}

/// An average power this far above the enforced limit is a failed self-check
/// (the protocol's `above-limit`, derived here for records that predate it).
pub(crate) const ABOVE_LIMIT_MARGIN: f64 = 1.03;

/// Strings many records share (kernels, backends, workloads, hosts), stored once.
#[derive(Clone, Debug, Default)]
pub(crate) struct Strings {
    ids: HashMap<Arc<str>, u32>,
    all: Vec<Arc<str>>,
}

impl Strings {
    pub(crate) fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.all.len() as u32;
        let shared: Arc<str> = Arc::from(s);
        self.all.push(shared.clone());
        self.ids.insert(shared, id);
        id
    }
    pub(crate) fn get(&self, id: u32) -> &str {
        self.all.get(id as usize).map_or("", |s| s)
    }

    /// The string, shared rather than copied.
    pub(crate) fn shared(&self, id: u32) -> Arc<str> {
        self.all
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }
}

/// One device as records describe it, and what its records say beyond that.
#[derive(Clone, Debug)]
pub(crate) struct DeviceSeen {
    pub(crate) info: DeviceInfo,
    pub(crate) key: String,
    /// The meters its records read (for the vendor a settings file names).
    pub(crate) meters: Vec<MeterSource>,
    pub(crate) simulated: bool,
}

/// Every distinct device description of the records, in the order they first
/// appear (two records of one GPU may describe it differently: CUDA and Vulkan).
#[derive(Clone, Debug, Default)]
pub(crate) struct Devices {
    pub(crate) seen: Vec<DeviceSeen>,
    ids: HashMap<String, u32>,
    last: Option<u32>,
}

impl Devices {
    pub(crate) fn id(&mut self, r: &Record) -> u32 {
        let id = match self
            .last
            .filter(|&l| self.seen[l as usize].info == r.device)
        {
            Some(l) => l,
            None => {
                let json = serde_json::to_string(&r.device).unwrap_or_default();
                match self.ids.get(&json) {
                    Some(&id) => id,
                    None => {
                        let id = self.seen.len() as u32;
                        self.seen.push(DeviceSeen {
                            key: r.device.key(),
                            info: r.device.clone(),
                            meters: Vec::new(),
                            simulated: false,
                        });
                        self.ids.insert(json, id);
                        id
                    }
                }
            }
        };
        self.last = Some(id);
        let d = &mut self.seen[id as usize];
        if !d.meters.contains(&r.meter.source) {
            d.meters.push(r.meter.source);
        }
        d.simulated |= r.simulated;
        id
    }

    /// One key per physical GPU for each device (see `crate::devices::physical_keys`).
    pub(crate) fn physical_keys(&self) -> Vec<String> {
        let infos: Vec<&DeviceInfo> = self.seen.iter().map(|d| &d.info).collect();
        crate::devices::physical_keys_of(&infos)
    }

    /// How tables name each device key and physical key (see `crate::devices::device_labels`).
    pub(crate) fn labels(&self, physical: &[String]) -> BTreeMap<String, String> {
        label_devices(
            self.seen
                .iter()
                .zip(physical)
                .map(|(d, p)| (d.info.name.as_str(), d.key.as_str(), p.as_str())),
        )
    }
}

/// What a setting takes from its first run: what identifies it, and the figures
/// the first run alone gives (the cap it asked for in watts, the device's limits).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Head {
    /// The record's place among those read.
    pub(crate) index: u32,
    /// Which source (file) it came from.
    pub(crate) source: u32,
    pub(crate) device: u32,
    pub(crate) kernel: u32,
    pub(crate) backend: u32,
    pub(crate) group: u32,
    /// The cap as requested ("default", "80%", "300W").
    pub(crate) cap: u32,
    pub(crate) workload: u32,
    pub(crate) precision: Precision,
    pub(crate) vendor: bool,
    pub(crate) simulated: bool,
    pub(crate) cap_is_default: bool,
    pub(crate) method: Option<WindowMethod>,
    pub(crate) batch_size: u64,
    pub(crate) flop: u64,
    pub(crate) requested_w: MaybeF64,
    pub(crate) enforced_w: MaybeF64,
    pub(crate) default_w: MaybeF64,
    pub(crate) sm_requested_mhz: Option<u32>,
    pub(crate) mem_requested_mhz: Option<u32>,
    pub(crate) sm_max_mhz: Option<u32>,
}

/// One run of a setting: what its medians, spreads and flags need.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Run {
    /// The record's place among those read.
    pub(crate) index: u32,
    pub(crate) joules_per_flop: f64,
    pub(crate) joules_per_flop_spread: f64,
    pub(crate) seconds_per_op: f64,
    pub(crate) seconds_per_op_spread: f64,
    pub(crate) average_w: MaybeF64,
    pub(crate) sm_seen_mhz: MaybeF64,
    /// A `--meter check` record: how its two meters agreed, %.
    pub(crate) agreement_pct: MaybeF64,
    pub(crate) temperature_start_c: MaybeF64,
    pub(crate) temperature_end_c: MaybeF64,
    /// The run's flags as this version defines them ([`Record::flags_now`]).
    pub(crate) flags: FlagSet,
    /// The record itself says its default cap or clocks were not the default.
    pub(crate) not_default: bool,
    /// Average power above the enforced limit (see `crate::setting`).
    pub(crate) above_limit: bool,
    pub(crate) gapped: bool,
}

impl Run {
    pub(crate) fn is_check(&self) -> bool {
        self.agreement_pct.get().is_some()
    }
}

/// A setting's runs, read in order.
#[derive(Clone, Debug)]
pub(crate) struct SettingRuns {
    head: Head,
    /// The head of its first ordinary run, where its first run is a meter check.
    ordinary: Option<Box<Head>>,
    runs: Vec<Run>,
}

impl SettingRuns {
    /// The runs a setting is made of — its ordinary runs, or its meter checks where
    /// it has no other — and the head of the first of them.
    pub(crate) fn kept(&self) -> (&Head, Vec<&Run>) {
        let ordinary: Vec<&Run> = self.runs.iter().filter(|r| !r.is_check()).collect();
        let runs = if ordinary.is_empty() {
            self.runs.iter().collect()
        } else {
            ordinary
        };
        (self.kept_head(), runs)
    }

    /// The head of the first kept run (see [`SettingRuns::kept`]).
    fn kept_head(&self) -> &Head {
        if self.runs.iter().any(|r| !r.is_check()) {
            self.ordinary.as_deref().unwrap_or(&self.head)
        } else {
            &self.head
        }
    }
}

/// What identifies a setting: its point key without clocks and inputs (stored once
/// for many settings), and those.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct SettingKey {
    base: u32,
    sm: Option<u32>,
    mem: Option<u32>,
    inputs: InputDistribution,
}

/// A number for each setting key ([`Record::setting_key`]) of the records, the
/// key's text kept once per distinct point without its clocks and inputs: two
/// records have the same number exactly when they have the same setting key.
#[derive(Clone, Debug, Default)]
pub struct PointKeys {
    bases: HashMap<Box<str>, u32>,
    ids: HashMap<SettingKey, u32>,
    /// The last record's point and its number: runs of one point follow each other.
    last: Option<(LastPoint, u32)>,
}

/// What a point key is made of, without clocks and inputs.
#[derive(Clone, Debug)]
struct LastPoint {
    device: DeviceInfo,
    backend: String,
    kernel: String,
    precision: Precision,
    workload: Workload,
    cap: PowerCap,
}

/// The same cap, to the bit (a cap's text follows from its bits).
fn same_cap(a: &PowerCap, b: &PowerCap) -> bool {
    match (a, b) {
        (PowerCap::Default, PowerCap::Default) => true,
        (PowerCap::Watts(x), PowerCap::Watts(y))
        | (PowerCap::PercentOfDefault(x), PowerCap::PercentOfDefault(y)) => {
            x.to_bits() == y.to_bits()
        }
        _ => false,
    }
}

impl PointKeys {
    /// The number of `r`'s setting key.
    pub fn setting(&mut self, r: &Record) -> u32 {
        let base = match &self.last {
            Some((l, base))
                if l.device == r.device
                    && l.backend == r.backend
                    && l.kernel == r.kernel
                    && l.precision == r.precision
                    && l.workload == r.workload
                    && same_cap(&l.cap, &r.power_cap.requested) =>
            {
                *base
            }
            _ => {
                let base = self.base(r);
                let point = LastPoint {
                    device: r.device.clone(),
                    backend: r.backend.clone(),
                    kernel: r.kernel.clone(),
                    precision: r.precision,
                    workload: r.workload,
                    cap: r.power_cap.requested,
                };
                self.last = Some((point, base));
                base
            }
        };
        let key = SettingKey {
            base,
            sm: r.clocks.sm_requested_mhz,
            mem: r.clocks.mem_requested_mhz,
            inputs: r.inputs,
        };
        let next = self.ids.len() as u32;
        *self.ids.entry(key).or_insert(next)
    }

    fn base(&mut self, r: &Record) -> u32 {
        let base = point_key(
            &r.device,
            &r.backend,
            &r.kernel,
            r.precision,
            &r.workload,
            &r.power_cap.requested,
        );
        match self.bases.get(base.as_str()) {
            Some(&b) => b,
            None => {
                let b = self.bases.len() as u32;
                self.bases.insert(base.into_boxed_str(), b);
                b
            }
        }
    }
}

/// The analysis's view of records: every recommendation, comparison and repeats
/// table is made from it.
#[derive(Clone, Debug, Default)]
pub struct SettingsDigest {
    pub(crate) devices: Devices,
    pub(crate) strings: Strings,
    workloads: Vec<Workload>,
    workload_ids: HashMap<Workload, u32>,
    /// Numbers the settings in the order they first appear: a setting's number is
    /// its place in `settings`.
    keys: PointKeys,
    settings: Vec<SettingRuns>,
    records: usize,
    by_status: [usize; 4],
    groups: HashSet<u32>,
    /// (group, precision, device) where a vendor kernel was measured with energy.
    vendor_measured: HashSet<(u32, Precision, u32)>,
    /// The runs taken in, by what tells a duplicate (setting, repeat, start time's
    /// bits, host), unless the reader drops duplicates itself.
    runs_taken: HashSet<(u32, Option<u32>, u64, u32)>,
    reader_drops_duplicates: bool,
}

fn status_slot(s: PointStatus) -> usize {
    match s {
        PointStatus::Measured => 0,
        PointStatus::Invalid => 1,
        PointStatus::Skipped => 2,
        PointStatus::Failed => 3,
    }
}

impl SettingsDigest {
    /// A digest for a reader that hands over each record once (it drops what it
    /// read twice itself, as the command line's readers do): it keeps no note of
    /// the runs it took in to tell one read twice.
    pub fn of_deduplicated_reads() -> SettingsDigest {
        SettingsDigest {
            reader_drops_duplicates: true,
            ..SettingsDigest::default()
        }
    }

    /// A digest of `records`, each from source 0.
    pub fn of(records: &[Record]) -> SettingsDigest {
        let mut d = SettingsDigest::default();
        for r in records {
            d.push(r, 0);
        }
        d
    }

    /// Take in the next record; `source` is the file it came from (see
    /// [`crate::settings_file::SettingsFile::from_digest`]).
    pub fn push(&mut self, r: &Record, source: usize) {
        self.push_device(r, source);
    }

    /// [`SettingsDigest::push`], saying which device (by id) the record was on.
    pub(crate) fn push_device(&mut self, r: &Record, source: usize) -> u32 {
        let index = self.records as u32;
        self.records += 1;
        self.by_status[status_slot(r.status)] += 1;
        let device = self.devices.id(r);
        let group = self.strings.id(&r.group);
        self.groups.insert(group);
        if !r.has_energy() {
            return device;
        }
        if r.vendor_kernel {
            self.vendor_measured.insert((group, r.precision, device));
        }
        let Some(run) = self.run_of(r, index) else {
            return device;
        };
        let at = self.keys.setting(r) as usize;
        if at == self.settings.len() {
            let head = self.head_of(r, index, source, device, group);
            self.settings.push(SettingRuns {
                head,
                ordinary: None,
                runs: Vec::new(),
            });
        }
        // a run read twice (the same repeat started at the same time on the same
        // host) counts once; + 0.0 makes -0.0 the 0.0 it equals
        if !self.reader_drops_duplicates {
            let host = self.strings.id(&r.host);
            if !self
                .runs_taken
                .insert((at as u32, r.repeat, (r.unix_time_s + 0.0).to_bits(), host))
            {
                return device;
            }
        }
        let s = &self.settings[at];
        let first_ordinary = !run.is_check()
            && s.runs.first().is_some_and(Run::is_check)
            && s.runs.iter().all(Run::is_check);
        if first_ordinary {
            let head = self.head_of(r, index, source, device, group);
            self.settings[at].ordinary = Some(Box::new(head));
        }
        let runs = &mut self.settings[at].runs;
        runs.reserve_exact(1);
        runs.push(run);
        device
    }

    pub(crate) fn head_of(
        &mut self,
        r: &Record,
        index: u32,
        source: usize,
        device: u32,
        group: u32,
    ) -> Head {
        let workload = match self.workload_ids.get(&r.workload) {
            Some(&w) => w,
            None => {
                let w = self.workloads.len() as u32;
                self.workloads.push(r.workload);
                self.workload_ids.insert(r.workload, w);
                w
            }
        };
        Head {
            index,
            source: source as u32,
            device,
            kernel: self.strings.id(&r.kernel),
            backend: self.strings.id(&r.backend),
            group,
            cap: self.strings.id(&r.power_cap.requested.to_string()),
            workload,
            precision: r.precision,
            vendor: r.vendor_kernel,
            simulated: r.simulated,
            cap_is_default: r.power_cap.requested.is_default(),
            method: r.window_method(),
            batch_size: r.batch_size,
            flop: r.flop,
            requested_w: MaybeF64::new(r.power_cap.requested_w),
            enforced_w: MaybeF64::new(r.power_cap.enforced_w),
            default_w: MaybeF64::new(r.power_cap.default_w),
            sm_requested_mhz: r.clocks.sm_requested_mhz,
            mem_requested_mhz: r.clocks.mem_requested_mhz,
            sm_max_mhz: r.clocks.sm_max_mhz,
        }
    }

    /// A run of a record with an energy figure.
    pub(crate) fn run_of(&mut self, r: &Record, index: u32) -> Option<Run> {
        let m = r.measurement.as_ref()?;
        let s = &m.summary;
        let jpf = s.joules_per_flop?;
        let flags = r.flags_now();
        let average_w = s.average_w;
        Some(Run {
            index,
            joules_per_flop: jpf.median,
            joules_per_flop_spread: jpf.rel_spread,
            seconds_per_op: s.seconds_per_op.median,
            seconds_per_op_spread: s.seconds_per_op.rel_spread,
            average_w: MaybeF64::new(average_w),
            sm_seen_mhz: MaybeF64::new(r.clocks.sm_seen_mhz_median),
            agreement_pct: MaybeF64::new(r.meter.check.as_ref().map(|c| c.agreement_pct)),
            temperature_start_c: MaybeF64::new(m.telemetry.temperature_start_c),
            temperature_end_c: MaybeF64::new(m.telemetry.temperature_end_c),
            flags: FlagSet::of(&flags),
            not_default: r.flags.contains(&ValidityFlag::CapNotDefault)
                || r.flags.contains(&ValidityFlag::ClocksNotDefault),
            above_limit: matches!(
                (average_w, r.power_cap.enforced_w),
                (Some(w), Some(limit)) if w > limit * ABOVE_LIMIT_MARGIN
            ),
            gapped: r.window_method() == Some(WindowMethod::Gapped),
        })
    }

    pub(crate) fn device(&self, id: u32) -> &DeviceSeen {
        &self.devices.seen[id as usize]
    }

    pub(crate) fn string(&self, id: u32) -> &str {
        self.strings.get(id)
    }

    /// One key per physical GPU, for each device the digest has seen (by its id).
    pub(crate) fn physical_keys(&self) -> Vec<String> {
        self.devices.physical_keys()
    }

    /// How tables name each device key and physical key.
    pub fn device_labels(&self) -> BTreeMap<String, String> {
        self.devices.labels(&self.physical_keys())
    }

    /// Records taken in.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Records taken in, by status: measured, invalid, skipped, failed.
    pub fn by_status(&self) -> [usize; 4] {
        self.by_status
    }

    /// Settings with at least one measured run with an energy figure.
    pub fn settings(&self) -> usize {
        self.settings.len()
    }

    /// Every setting's kept runs, in the order settings first appear.
    pub(crate) fn setting_runs(&self) -> impl Iterator<Item = (&Head, Vec<&Run>)> {
        self.settings.iter().map(SettingRuns::kept)
    }

    /// Setting `i`'s head and kept runs, taken: from here on it keeps that head
    /// and no run (what is made of its runs is made once, by the caller).
    pub(crate) fn take_setting_runs(&mut self, i: usize) -> (Head, Vec<Run>) {
        let s = &mut self.settings[i];
        let head = s.kept().0.clone();
        let mut runs = std::mem::take(&mut s.runs);
        // as `kept` keeps them: the ordinary runs, or the meter checks where none is
        if runs.iter().any(|r| !r.is_check()) {
            runs.retain(|r| !r.is_check());
        }
        s.head = head.clone();
        s.ordinary = None;
        (head, runs)
    }

    /// Setting `i`'s head (that of its kept runs, as [`SettingsDigest::setting_runs`]
    /// gives it), also once its runs are taken.
    pub(crate) fn setting_head(&self, i: usize) -> &Head {
        self.settings[i].kept_head()
    }

    /// Give back what the reading set aside to grow into: the digest is read, not
    /// added to, from here on.
    pub fn shrink_to_fit(&mut self) {
        self.settings.shrink_to_fit();
    }

    /// The workloads (groups) of every record, sorted.
    pub fn workloads(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.groups.iter().map(|&g| self.strings.get(g)).collect();
        v.sort();
        v
    }

    pub(crate) fn workload(&self, id: u32) -> Option<Workload> {
        self.workloads.get(id as usize).copied()
    }

    /// (group, precision, device) of every vendor kernel measured with energy.
    pub(crate) fn vendor_measured(&self) -> impl Iterator<Item = (u32, Precision, u32)> + '_ {
        self.vendor_measured.iter().copied()
    }

    /// The head of the setting whose first kept run is record `index`.
    pub(crate) fn heads_by_index(&self) -> HashMap<u32, &Head> {
        self.settings
            .iter()
            .map(|s| {
                let (h, _) = s.kept();
                (h.index, h)
            })
            .collect()
    }

    /// "N records: … measured, … invalid, … skipped, … failed".
    pub fn status_line(&self) -> String {
        crate::report::status_line_of(self.records, self.by_status)
    }
}
