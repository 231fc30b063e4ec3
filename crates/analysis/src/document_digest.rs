//! What the report document says of all its records — devices, protocols, flags,
//! the commands that wrote them — gathered one record at a time, beside the
//! settings digest its recommendations and repeats come from and what the results
//! table's head needs. A fleet's campaign is reported from this without being held.

use crate::digest::{FlagSet, SettingsDigest};
use crate::format::{opt, sig};
use crate::report::RecordsTableDigest;
use crate::table::Table;
use joulebench_core::protocol::{ValidityFlag, WindowMethod};
use joulebench_core::record::Record;
use joulebench_core::{PowerCap, ProtocolConfig};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

/// What the devices table says of one device description's records.
#[derive(Clone, Debug, Default)]
struct DeviceFacts {
    first_index: usize,
    last_index: usize,
    simulated: bool,
    backends: BTreeSet<String>,
    hosts: BTreeSet<String>,
    meters: BTreeSet<String>,
    update_periods: BTreeSet<String>,
    idle_w: BTreeSet<String>,
    default_limits_w: BTreeSet<String>,
    caps: BTreeSet<String>,
    /// The last values seen, not formatted again when they repeat.
    last: Option<(u64, Option<u64>, Option<u64>, PowerCap)>,
}

/// A command as the commands block lists it: as typed, where, by which joulebench.
type CommandKey = (String, String, String);

/// A measurement protocol as the protocol table lists it: its settings and windows.
type Protocol = (ProtocolConfig, Option<WindowMethod>);

/// Everything a report reads of its records.
#[derive(Clone, Debug, Default)]
pub struct ReportDigest {
    pub settings: SettingsDigest,
    pub table: RecordsTableDigest,
    simulated: usize,
    devices: Vec<DeviceFacts>,
    /// Each protocol, and the devices (by id) it ran on.
    protocols: Vec<(Protocol, BTreeSet<u32>)>,
    flagged: [usize; ValidityFlag::ALL.len()],
    commands: Vec<(CommandKey, usize)>,
    command_ids: HashMap<CommandKey, usize>,
    /// The raw (command, host, tool name, version, commit) of the last record, and its entry.
    last_command: Option<(String, String, String, String, Option<String>, usize)>,
}

fn join_set<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    let set: BTreeSet<&String> = items.into_iter().filter(|s| !s.is_empty()).collect();
    if set.is_empty() {
        "–".into()
    } else {
        set.into_iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

impl ReportDigest {
    pub fn of(records: &[Record]) -> ReportDigest {
        let mut d = ReportDigest::default();
        for r in records {
            d.push(r, 0);
        }
        d
    }

    /// Take in the next record, read from source (file) `source`.
    pub fn push(&mut self, r: &Record, source: usize) {
        let index = self.settings.records();
        let device = self.settings.push_device(r, source) as usize;
        self.table.push(r);
        self.simulated += usize::from(r.simulated);
        if self.devices.len() <= device {
            self.devices.resize_with(device + 1, || DeviceFacts {
                first_index: index,
                ..DeviceFacts::default()
            });
        }
        let d = &mut self.devices[device];
        d.last_index = index;
        d.simulated |= r.simulated;
        for (set, value) in [(&mut d.backends, &r.backend), (&mut d.hosts, &r.host)] {
            if !set.contains(value) {
                set.insert(value.clone());
            }
        }
        let meter = r.meter.source.name();
        if !d.meters.contains(meter) {
            d.meters.insert(meter.to_string());
        }
        let values = (
            r.meter.update_period_s.to_bits(),
            r.idle.map(|i| i.watts.to_bits()),
            r.power_cap.default_w.map(f64::to_bits),
            r.power_cap.requested,
        );
        if d.last != Some(values) {
            d.update_periods.insert(sig(r.meter.update_period_s, 3));
            if let Some(i) = r.idle {
                d.idle_w.insert(sig(i.watts, 3));
            }
            if let Some(w) = r.power_cap.default_w {
                d.default_limits_w.insert(sig(w, 3));
            }
            d.caps.insert(r.power_cap.requested.to_string());
            d.last = Some(values);
        }
        let config = (&r.protocol, r.window_method());
        let at = match self
            .protocols
            .iter()
            .position(|((c, m), _)| (c, *m) == config)
        {
            Some(at) => at,
            None => {
                self.protocols
                    .push(((r.protocol.clone(), config.1), BTreeSet::new()));
                self.protocols.len() - 1
            }
        };
        self.protocols[at].1.insert(device as u32);
        let flags = FlagSet::of(&r.flags_now());
        for (n, f) in self.flagged.iter_mut().zip(ValidityFlag::ALL) {
            *n += usize::from(flags.contains(f));
        }
        self.count_command(r);
    }

    fn count_command(&mut self, r: &Record) {
        if let Some((command, host, name, version, commit, at)) = &self.last_command {
            if *command == r.command
                && *host == r.host
                && *name == r.tool.name
                && *version == r.tool.version
                && *commit == r.tool.git_commit
            {
                self.commands[*at].1 += 1;
                return;
            }
        }
        let tool = match &r.tool.git_commit {
            Some(c) => format!("{} {} ({c})", r.tool.name, r.tool.version),
            None => format!("{} {}", r.tool.name, r.tool.version),
        };
        let key = (as_typed(&r.command), r.host.clone(), tool);
        let at = match self.command_ids.get(&key) {
            Some(&at) => at,
            None => {
                self.commands.push((key.clone(), 0));
                self.command_ids.insert(key, self.commands.len() - 1);
                self.commands.len() - 1
            }
        };
        self.commands[at].1 += 1;
        self.last_command = Some((
            r.command.clone(),
            r.host.clone(),
            r.tool.name.clone(),
            r.tool.version.clone(),
            r.tool.git_commit.clone(),
            at,
        ));
    }

    /// Records taken in, and how many of them are simulated.
    pub fn records(&self) -> (usize, usize) {
        (self.settings.records(), self.simulated)
    }

    /// One row per device: identity, meter, idle power and the caps that were swept.
    pub fn devices_table(&self) -> Table {
        let mut t = Table::new(
            "Devices",
            &[
                "device",
                "data",
                "architecture",
                "compute capability",
                "driver",
                "memory (GiB)",
                "backends",
                "hosts",
                "energy meter",
                "meter update (s)",
                "idle power (W)",
                "default power limit (W)",
                "power caps swept",
            ],
        );
        let labels = self.settings.device_labels();
        let physical = self.settings.physical_keys();
        let mut by_device: BTreeMap<&String, Vec<usize>> = BTreeMap::new();
        for (id, key) in physical.iter().enumerate() {
            by_device.entry(key).or_default().push(id);
        }
        for (key, ids) in by_device {
            let info = |id: usize| &self.settings.device(id as u32).info;
            // the fullest description of the device among its records (CUDA's, where
            // a wgpu record of the same GPU lacks the architecture and memory); of
            // equally full ones, the last record's
            let score = |id: usize| {
                let d = info(id);
                [
                    d.uuid.is_some(),
                    d.architecture.is_some(),
                    d.memory_bytes.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count()
            };
            let Some(&fullest) = ids
                .iter()
                .max_by_key(|&&id| (score(id), self.devices[id].last_index))
            else {
                continue;
            };
            let d = info(fullest);
            let facts: Vec<&DeviceFacts> = ids.iter().map(|&id| &self.devices[id]).collect();
            let data = if facts.iter().any(|f| f.simulated) {
                "SIMULATED"
            } else if d.cpu_emulation {
                "CPU emulation"
            } else {
                "measured"
            };
            // the drivers of the device's records, in the order they first appear
            let mut by_first: Vec<usize> = ids.clone();
            by_first.sort_by_key(|&id| self.devices[id].first_index);
            let drivers: Vec<&str> = by_first
                .iter()
                .filter_map(|&id| info(id).driver.as_deref())
                .collect();
            let union = |f: fn(&DeviceFacts) -> &BTreeSet<String>| {
                join_set(facts.iter().flat_map(|x| f(x)))
            };
            t.push(vec![
                labels.get(key).cloned().unwrap_or_else(|| key.clone()),
                data.into(),
                d.architecture.clone().unwrap_or_else(|| "–".into()),
                d.compute_capability.clone().unwrap_or_else(|| "–".into()),
                driver_label(d.driver.as_deref(), &drivers),
                opt(d.memory_bytes.map(|b| b as f64 / (1u64 << 30) as f64), 3),
                union(|f| &f.backends),
                union(|f| &f.hosts),
                union(|f| &f.meters),
                union(|f| &f.update_periods),
                union(|f| &f.idle_w),
                union(|f| &f.default_limits_w),
                union(|f| &f.caps),
            ]);
        }
        t
    }

    /// The measurement protocol of each distinct configuration and window method, and
    /// the devices it ran on. Records of schema 1 show their gapped windows as such.
    pub fn protocol_table(&self) -> Table {
        let mut t = Table::new(
            "Measurement protocol",
            &[
                "devices",
                "windows",
                "idle baseline (s)",
                "warm-up (s, min–max)",
                "settled over (s at load): °C/s, power/s, pace/s",
                "min window (s)",
                "min counter updates",
                "phase shift",
                "stop rule",
                "target spread",
                "windows (min–max)",
                "budget per point (s)",
            ],
        );
        let labels = self.settings.device_labels();
        for ((c, method), ids) in &self.protocols {
            let devices: Vec<String> = ids
                .iter()
                .map(|&id| {
                    let d = self.settings.device(id);
                    labels
                        .get(&d.key)
                        .cloned()
                        .unwrap_or_else(|| d.info.name.clone())
                })
                .collect();
            t.push(vec![
                join_set(&devices),
                method.map_or("–".into(), |m| m.name().to_string()),
                sig(c.idle_baseline_s, 3),
                format!("{}–{}", sig(c.warmup_s, 3), sig(c.warmup_max_s, 3)),
                format!(
                    "{}: {}, {}%, {}%",
                    sig(c.settle_window_s, 3),
                    sig(c.settle_temp_c_per_s, 3),
                    sig(c.settle_power_per_s * 100.0, 3),
                    sig(c.settle_pace_per_s * 100.0, 3)
                ),
                sig(c.min_window_s, 3),
                c.min_counter_updates.to_string(),
                if c.phase_shift { "yes" } else { "no" }.into(),
                c.stop_rule.name().into(),
                format!("{}%", sig(c.target_rel_spread * 100.0, 3)),
                format!("{}–{}", c.min_windows, c.max_windows),
                sig(c.point_budget_s, 3),
            ]);
        }
        t
    }

    /// What each flag means and how many records carry it.
    pub fn flags_table(&self) -> Table {
        let mut t = Table::new(
            "Validity flags",
            &["flag", "kind", "meaning", "records flagged"],
        );
        for (f, n) in ValidityFlag::ALL.into_iter().zip(self.flagged) {
            t.push(vec![
                f.name().into(),
                f.kind().into(),
                f.meaning().into(),
                n.to_string(),
            ]);
        }
        t
    }

    /// The commands that wrote the records, with where and by which joulebench.
    pub fn commands_block(&self) -> String {
        let mut body = String::new();
        for ((command, host, tool), n) in &self.commands {
            let one_line = |s: &str| s.replace(['\n', '\r'], " ");
            let _ = writeln!(
                body,
                "# on {}, {}: {n} records",
                one_line(host),
                one_line(tool)
            );
            let _ = writeln!(body, "{command}");
        }
        // a fence longer than any run of backticks inside: no command can end the block
        let fence = "`".repeat(longest_run(&body, '`').max(2) + 1);
        format!("{fence}sh\n{body}{fence}\n")
    }
}

/// The longest run of `c` in `s`.
pub(crate) fn longest_run(s: &str, c: char) -> usize {
    s.split(|x| x != c).map(str::len).max().unwrap_or(0)
}

/// A dotted version number ("580.159.04"), with its surrounding punctuation trimmed.
fn dotted_version(word: &str) -> Option<&str> {
    let w = word.trim_matches(|c: char| !c.is_ascii_digit());
    let parts: Vec<&str> = w.split('.').collect();
    (parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
    .then_some(w)
}

/// The driver a device row shows. Records of an older joulebench read the CUDA
/// driver's version from the wrong word of its kernel-module line ("for (CUDA
/// 13.0)"): there the version comes from another record of the same GPU (a wgpu
/// record says "NVIDIA (580.159.04)"), else only the CUDA version is shown.
/// `drivers`: the drivers of the device's records, in record order.
fn driver_label(driver: Option<&str>, drivers: &[&str]) -> String {
    let Some(d) = driver else {
        return "–".into();
    };
    let Some((before, cuda)) = d.split_once("(CUDA ") else {
        return d.to_string();
    };
    let cuda = format!("CUDA {}", cuda.trim_end_matches(')').trim());
    if dotted_version(before.trim()).is_some() {
        return d.to_string();
    }
    let sibling = drivers
        .iter()
        .filter(|other| !other.contains("(CUDA "))
        .find_map(|other| other.split_whitespace().find_map(dotted_version));
    match sibling {
        Some(v) => format!("{v} ({cuda})"),
        None => cuda,
    }
}

/// A command as its user typed it. Workers of a `--devices` sweep recorded their own
/// command line before they recorded their parent's; the flags of the parent-worker
/// protocol (no user types them) are taken out of such records.
fn as_typed(command: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut words = command.split(' ').peekable();
    while let Some(w) = words.next() {
        match w {
            "--progress-lines" => {}
            "--sim-index" => {
                words.next();
            }
            w if w.starts_with("--sim-index=") => {}
            w => out.push(w),
        }
    }
    out.join(" ")
}
