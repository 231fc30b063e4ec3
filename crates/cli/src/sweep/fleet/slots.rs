//! Which GPUs of this node `--devices` measures, and the command line that pins a
//! worker to one of them: `CUDA_VISIBLE_DEVICES` (by UUID) for CUDA, `--adapter N`
//! for wgpu, `--sim-index N` with its own profile for the simulated device.

use crate::args::SweepArgs;
use crate::error::{runtime, usage, CliError};
use joulebench_device::BackendKind;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The most devices one node sweep measures: one worker process each.
pub const MAX_DEVICES: usize = 64;

/// "all", or device indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceList {
    All,
    Indices(Vec<usize>),
}

/// "all", "0,2", "0-3", "0-1,4" → the list (in order, without repeats).
pub fn parse_device_list(s: &str) -> Result<DeviceList, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("all") {
        return Ok(DeviceList::All);
    }
    let bad = |item: &str| {
        format!("--devices '{item}' is not \"all\", a device index (0) or a range (0-3)")
    };
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>(), b.trim().parse::<usize>()),
            None => (item.parse::<usize>(), item.parse::<usize>()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else {
            return Err(bad(item));
        };
        if lo > hi {
            return Err(bad(item));
        }
        if hi - lo >= MAX_DEVICES || hi >= 1 << 16 {
            return Err(format!(
                "--devices '{item}': at most {MAX_DEVICES} devices, indices below 65536"
            ));
        }
        for i in lo..=hi {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    if out.is_empty() {
        return Err("empty --devices list: give \"all\" or device indices".into());
    }
    if out.len() > MAX_DEVICES {
        return Err(format!(
            "--devices names {} devices; a node sweep measures at most {MAX_DEVICES}",
            out.len()
        ));
    }
    Ok(DeviceList::Indices(out))
}

/// How a worker is pinned to its device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    Sim {
        index: usize,
        profile: String,
    },
    /// The value of `CUDA_VISIBLE_DEVICES` for the worker: the GPU's UUID where known.
    Cuda {
        visible: String,
    },
    Wgpu {
        adapter: usize,
    },
}

/// One device of the node and the results file of its worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub index: usize,
    pub pin: Pin,
    pub out: PathBuf,
}

/// `results/run.jsonl` → `results/run.dev2.jsonl`.
pub fn device_file(out: &Path, index: usize) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "results".into());
    out.with_file_name(format!("{stem}.dev{index}.jsonl"))
}

/// The profile of simulated GPU `index`: one name serves every GPU, a list names each.
pub fn profile_for(list: &str, index: usize) -> Result<String, String> {
    let names = profile_names(list);
    match names.as_slice() {
        [] => Err("empty --sim-profile".into()),
        [one] => Ok(one.clone()),
        many => many.get(index).cloned().ok_or_else(|| {
            format!(
                "--sim-profile names {} profiles; simulated GPU {index} has none",
                many.len()
            )
        }),
    }
}

/// The profile of a single-device sweep: a list needs --devices.
pub fn single_profile(list: &str) -> Result<String, String> {
    match profile_names(list).as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("empty --sim-profile".into()),
        _ => Err(
            "--sim-profile with several profiles needs --devices (one simulated GPU per profile)"
                .into(),
        ),
    }
}

fn profile_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The devices to measure, each with its pin and results file.
pub fn slots(
    args: &SweepArgs,
    backend: BackendKind,
    list: &DeviceList,
    out: &Path,
) -> Result<Vec<Slot>, CliError> {
    let pins: Vec<(usize, Pin)> = match backend {
        BackendKind::Sim => sim_pins(args, list)?,
        BackendKind::Cuda => cuda_pins(list)?,
        BackendKind::Wgpu => wgpu_pins(list)?,
        BackendKind::Auto => return Err(runtime("internal: backend not resolved")),
    };
    Ok(pins
        .into_iter()
        .map(|(index, pin)| Slot {
            index,
            pin,
            out: device_file(out, index),
        })
        .collect())
}

fn pick(list: &DeviceList, count: usize, what: &str) -> Result<Vec<usize>, CliError> {
    match list {
        DeviceList::All => Ok((0..count).collect()),
        DeviceList::Indices(ix) => match ix.iter().find(|&&i| i >= count) {
            Some(i) => Err(usage(format!(
                "--devices {i}: this node has {count} {what} (indices 0–{})",
                count.saturating_sub(1)
            ))),
            None => Ok(ix.clone()),
        },
    }
}

fn sim_pins(args: &SweepArgs, list: &DeviceList) -> Result<Vec<(usize, Pin)>, CliError> {
    let names = profile_names(&args.sim_profile);
    let count = args.sim_devices.unwrap_or(names.len().max(1));
    if count == 0 {
        return Err(usage("--sim-devices must be ≥ 1"));
    }
    if count > MAX_DEVICES {
        return Err(usage(format!(
            "--sim-devices {count}: a simulated node has 1 to {MAX_DEVICES} GPUs (one worker process each)"
        )));
    }
    if names.len() > 1 && names.len() != count {
        return Err(usage(format!(
            "--sim-profile names {} profiles for {count} simulated GPUs (--sim-devices): give one profile, or one per GPU",
            names.len()
        )));
    }
    // profile names are checked by each worker, so one bad name fails one device only
    pick(list, count, "simulated GPUs (--sim-devices)")?
        .into_iter()
        .map(|i| {
            Ok((
                i,
                Pin::Sim {
                    index: i,
                    profile: profile_for(&args.sim_profile, i).map_err(usage)?,
                },
            ))
        })
        .collect()
}

fn cuda_pins(list: &DeviceList) -> Result<Vec<(usize, Pin)>, CliError> {
    let probe = joulebench_cuda::probe();
    if let Err(e) = &probe.driver {
        return Err(runtime(format!("CUDA: {e}")));
    }
    // a worker sees only its GPU; by UUID, so CUDA's device order does not matter
    let visible: Option<Vec<String>> = std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    pick(list, probe.devices.len(), "CUDA devices")?
        .into_iter()
        .map(|i| {
            let d = &probe.devices[i];
            let visible = d
                .uuid
                .clone()
                .or_else(|| visible.as_ref().and_then(|v| v.get(i).cloned()))
                .unwrap_or_else(|| i.to_string());
            Ok((i, Pin::Cuda { visible }))
        })
        .collect()
}

fn wgpu_pins(list: &DeviceList) -> Result<Vec<(usize, Pin)>, CliError> {
    let adapters = joulebench_wgpu::list_adapters().map_err(|e| runtime(format!("wgpu: {e}")))?;
    let indices = match list {
        DeviceList::Indices(_) => pick(list, adapters.len(), "wgpu adapters")?,
        DeviceList::All => {
            // one GPU can show up once per graphics API: keep its first adapter
            let mut seen = Vec::new();
            let mut keep = Vec::new();
            for a in adapters.iter().filter(|a| !a.cpu_emulation) {
                let id = a
                    .pci_bus_id
                    .clone()
                    .unwrap_or_else(|| format!("#{}", a.index));
                if !seen.contains(&id) {
                    seen.push(id);
                    keep.push(a.index);
                }
            }
            if keep.is_empty() {
                return Err(usage(
                    "--devices all: no GPU wgpu adapter, only CPU emulations; name adapters by index to measure them anyway (--devices 0)",
                ));
            }
            keep
        }
    };
    Ok(indices
        .into_iter()
        .map(|i| (i, Pin::Wgpu { adapter: i }))
        .collect())
}

/// Flags of the parent's command line a worker must not inherit: the worker gets its
/// own backend, device and results file instead.
const VALUE_FLAGS: &[&str] = &[
    "--devices",
    "--sim-devices",
    "--sim-profile",
    "--sim-index",
    "--out",
    "--adapter",
    "--cuda-device",
    "--backend",
];
const SWITCHES: &[&str] = &["--progress-lines"];

/// The parent's arguments (after the program name) with the device flags removed;
/// every other flag, including ones added later, passes through unchanged.
pub fn inherited_args(argv: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in argv {
        if skip_value {
            skip_value = false;
            continue;
        }
        let s = a.to_string_lossy();
        if SWITCHES.contains(&s.as_ref()) {
            continue;
        }
        if VALUE_FLAGS.contains(&s.as_ref()) {
            skip_value = true;
            continue;
        }
        if VALUE_FLAGS.iter().any(|f| s.starts_with(&format!("{f}="))) {
            continue;
        }
        out.push(a.clone());
    }
    out
}

/// The flags that pin a worker to its slot.
pub fn worker_args(backend: BackendKind, slot: &Slot) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "--backend".into(),
        backend.name().into(),
        "--out".into(),
        slot.out.clone().into_os_string(),
    ];
    match &slot.pin {
        Pin::Sim { index, profile } => {
            v.extend([
                "--sim-index".into(),
                index.to_string().into(),
                "--sim-profile".into(),
                profile.into(),
            ]);
        }
        Pin::Cuda { .. } => v.extend(["--cuda-device".into(), "0".into()]),
        Pin::Wgpu { adapter } => v.extend(["--adapter".into(), adapter.to_string().into()]),
    }
    v.push("--progress-lines".into());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lists_parse_and_refuse_nonsense() {
        assert_eq!(parse_device_list("all"), Ok(DeviceList::All));
        assert_eq!(parse_device_list("ALL"), Ok(DeviceList::All));
        assert_eq!(
            parse_device_list("0,2"),
            Ok(DeviceList::Indices(vec![0, 2]))
        );
        assert_eq!(
            parse_device_list("0-2,1,5"),
            Ok(DeviceList::Indices(vec![0, 1, 2, 5]))
        );
        for bad in ["", "x", "1-", "3-1", "-1", "0,,a", "0-1000000000", "70000"] {
            assert!(parse_device_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_files_sit_next_to_the_merged_file() {
        assert_eq!(
            device_file(Path::new("results/run.jsonl"), 2),
            PathBuf::from("results/run.dev2.jsonl")
        );
        assert_eq!(
            device_file(Path::new("3.jsonl"), 0),
            PathBuf::from("3.dev0.jsonl")
        );
        assert_eq!(
            device_file(Path::new("/x/plain"), 1),
            PathBuf::from("/x/plain.dev1.jsonl")
        );
    }

    #[test]
    fn profiles_are_one_for_all_or_one_each() {
        assert_eq!(profile_for("sim-a100", 3).unwrap(), "sim-a100");
        assert_eq!(
            profile_for("sim-h100, sim-a100,sim-l40s", 1).unwrap(),
            "sim-a100"
        );
        assert!(profile_for("sim-h100,sim-a100", 2).is_err());
        assert_eq!(single_profile("sim-l40s").unwrap(), "sim-l40s");
        assert!(single_profile("sim-h100,sim-a100")
            .unwrap_err()
            .contains("--devices"));
    }

    #[test]
    fn workers_inherit_every_flag_but_the_device_ones() {
        let argv: Vec<OsString> = [
            "sweep",
            "--devices",
            "all",
            "--backend=sim",
            "--sim-profile",
            "a,b",
            "--sim-devices",
            "2",
            "--config",
            "c.toml",
            "--out",
            "r.jsonl",
            "--resume",
            "--power-caps",
            "default,80%",
            "--out=x",
            "--progress-lines",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let kept: Vec<String> = inherited_args(&argv)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            kept,
            [
                "sweep",
                "--config",
                "c.toml",
                "--resume",
                "--power-caps",
                "default,80%"
            ]
        );

        let slot = Slot {
            index: 1,
            pin: Pin::Sim {
                index: 1,
                profile: "b".into(),
            },
            out: "r.dev1.jsonl".into(),
        };
        let w: Vec<String> = worker_args(BackendKind::Sim, &slot)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            w,
            [
                "--backend",
                "sim",
                "--out",
                "r.dev1.jsonl",
                "--sim-index",
                "1",
                "--sim-profile",
                "b",
                "--progress-lines"
            ]
        );
    }
}
