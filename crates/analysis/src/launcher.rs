//! From advice to a machine: a POSIX shell script that applies each GPU's power
//! cap and clocks from a settings file's `[[device]]` entries — by UUID with
//! `nvidia-smi` on NVIDIA GPUs, by PCI address with `amd-smi` on AMD GPUs — and,
//! run with `undo`, puts the default limit and clocks back. Every name in it comes
//! from records, which anyone can write, so each is quoted for the shell.

use crate::settings_file::{DeviceEntry, DeviceVendor, SettingsFile};
use std::fmt::Write;

/// `s` as one single-quoted shell word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A number of watts as `nvidia-smi -pl` and `amd-smi --power-cap` take it.
fn watts(w: f64) -> String {
    let r = (w * 100.0).round() / 100.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r}")
    }
}

/// What a device entry asks a GPU to change.
fn changes(d: &DeviceEntry) -> (Option<f64>, Option<u32>, Option<u32>) {
    let cap = (d.power_cap != "default")
        .then_some(d.power_cap_w)
        .flatten();
    (cap, d.sm_clock_mhz, d.mem_clock_mhz)
}

/// The script for `file`; run it as `sh FILE` (apply) or `sh FILE undo`.
pub fn shell_script(file: &SettingsFile) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "#!/bin/sh");
    let _ = writeln!(
        out,
        "# Applies each GPU's power cap and clocks from joulebench's advice ({}), or undoes them.",
        file.objective
    );
    let _ = writeln!(
        out,
        "# Written by {}. Usage: sh THIS-FILE [apply|undo]  (default: apply). Needs the rights the",
        file.generated_by
    );
    let _ = writeln!(
        out,
        "# tools ask for (root). Never apply it to GPUs others share: their jobs run at these limits too."
    );
    if file.simulated {
        let _ = writeln!(
            out,
            "# SIMULATED: some entries come from joulebench's model device; those are never applied."
        );
    }
    out.push_str(
        r#"set -eu
action="${1:-apply}"
case "$action" in
  apply|undo) ;;
  *) echo "usage: $0 [apply|undo]" >&2; exit 2 ;;
esac

# refuse a UUID that is missing or names another GPU model than the advice was for
check_nvidia() {
  found=$(nvidia-smi -i "$1" --query-gpu=name --format=csv,noheader) || {
    echo "joulebench settings: no GPU $1 on this machine" >&2; exit 1; }
  if [ "$found" != "$2" ]; then
    echo "joulebench settings: GPU $1 is a $found, the advice is for a $2" >&2; exit 1
  fi
}
"#,
    );
    if file.devices.is_empty() {
        let _ = writeln!(out, "\necho 'joulebench settings: no device entries' >&2");
    }
    // every GPU is checked before any is changed: a wrong machine changes nothing
    let checks: Vec<String> = file
        .devices
        .iter()
        .filter(|d| d.vendor == DeviceVendor::Nvidia && !d.simulated)
        .filter(|d| {
            let (cap, sm, mem) = changes(d);
            cap.is_some() || sm.is_some() || mem.is_some()
        })
        .flat_map(|d| {
            d.uuids.iter().map(|u| {
                format!(
                    "  check_nvidia {} {}",
                    sh_quote(u),
                    sh_quote(&d.device_model)
                )
            })
        })
        .collect();
    if !checks.is_empty() {
        let _ = writeln!(
            out,
            "\nif [ \"$action\" = apply ]; then\n{}\nfi",
            checks.join("\n")
        );
    }
    for d in &file.devices {
        device_block(&mut out, d);
    }
    out
}

fn device_block(out: &mut String, d: &DeviceEntry) {
    let (cap, sm, mem) = changes(d);
    let _ = writeln!(
        out,
        "\n# {}: power cap {}{}, SM clock {}{}",
        d.device_model.replace('\n', " "),
        d.power_cap,
        d.power_cap_w
            .map(|w| format!(" ({} W)", watts(w)))
            .unwrap_or_default(),
        sm.map(|c| format!("{c} MHz"))
            .unwrap_or_else(|| "default".into()),
        mem.map(|c| format!(", memory clock {c} MHz"))
            .unwrap_or_default(),
    );
    if !d.mix.is_empty() {
        let _ = writeln!(out, "# chosen for {}", d.mix.replace('\n', " "));
    }
    let say = |out: &mut String, why: &str| {
        let _ = writeln!(
            out,
            "echo {} >&2",
            sh_quote(&format!("joulebench settings: {}: {why}", d.device_model))
        );
    };
    if d.simulated {
        say(out, "simulated device, nothing to apply");
        return;
    }
    if cap.is_none() && sm.is_none() && mem.is_none() {
        say(out, "the default power limit and clocks: nothing to change");
        return;
    }
    match d.vendor {
        DeviceVendor::Nvidia if d.uuids.is_empty() => {
            say(out, "no GPU UUID in its records: set it by hand")
        }
        DeviceVendor::Nvidia => {
            let _ = writeln!(out, "if [ \"$action\" = apply ]; then");
            for u in &d.uuids {
                let u = sh_quote(u);
                if let Some(w) = cap {
                    let _ = writeln!(out, "  nvidia-smi -i {u} -pl {}", watts(w));
                }
                if let Some(c) = sm {
                    let _ = writeln!(out, "  nvidia-smi -i {u} -lgc {c},{c}");
                }
                if let Some(c) = mem {
                    let _ = writeln!(out, "  nvidia-smi -i {u} -lmc {c},{c}");
                }
            }
            let _ = writeln!(out, "else");
            for u in &d.uuids {
                let u = sh_quote(u);
                if cap.is_some() {
                    match d.default_power_limit_w {
                        Some(w) => {
                            let _ = writeln!(out, "  nvidia-smi -i {u} -pl {}", watts(w));
                        }
                        None => {
                            let _ = writeln!(
                                out,
                                "  nvidia-smi -i {u} -pl \"$(nvidia-smi -i {u} --query-gpu=power.default_limit --format=csv,noheader,nounits)\""
                            );
                        }
                    }
                }
                if sm.is_some() {
                    let _ = writeln!(out, "  nvidia-smi -i {u} -rgc");
                }
                if mem.is_some() {
                    let _ = writeln!(out, "  nvidia-smi -i {u} -rmc");
                }
            }
            let _ = writeln!(out, "fi");
        }
        DeviceVendor::Amd if d.pci_bus_ids.is_empty() => {
            say(out, "no PCI address in its records: set it by hand")
        }
        DeviceVendor::Amd => {
            if sm.is_some() || mem.is_some() {
                say(out, "clocks are not locked on AMD GPUs by this script");
            }
            if let (Some(w), Some(default_w)) = (cap, d.default_power_limit_w) {
                let _ = writeln!(out, "if [ \"$action\" = apply ]; then");
                for p in &d.pci_bus_ids {
                    let _ = writeln!(
                        out,
                        "  amd-smi set --gpu {} --power-cap {}",
                        sh_quote(p),
                        watts(w)
                    );
                }
                let _ = writeln!(out, "else");
                for p in &d.pci_bus_ids {
                    let _ = writeln!(
                        out,
                        "  amd-smi set --gpu {} --power-cap {}",
                        sh_quote(p),
                        watts(default_w)
                    );
                }
                let _ = writeln!(out, "fi");
            } else if cap.is_some() {
                say(
                    out,
                    "its default power limit is not in the records: set it by hand",
                );
            }
        }
        DeviceVendor::Other => say(
            out,
            "no command-line tool known for this GPU's power limit and clocks: set them by hand",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings_file::device_entry;
    use std::path::Path;
    use std::process::Command;

    fn file() -> SettingsFile {
        let mut f = SettingsFile::new("least energy".into(), String::new());
        let mut h200 = device_entry("NVIDIA H200", &[]);
        h200.vendor = DeviceVendor::Nvidia;
        // a UUID with a quote in it stays one word
        h200.uuids = vec!["GPU-1".into(), "GPU-it's".into()];
        h200.power_cap = "80%".into();
        h200.power_cap_w = Some(560.0);
        h200.default_power_limit_w = Some(700.0);
        h200.sm_clock_mhz = Some(1260);
        let mut sim = device_entry("sim-h100 (simulated)", &[]);
        sim.simulated = true;
        sim.power_cap = "60%".into();
        sim.power_cap_w = Some(420.0);
        f.devices = vec![h200, sim];
        f
    }

    /// Run the script with a fake `nvidia-smi` that logs its arguments and names
    /// every GPU `gpu_name`; the exit status and the calls.
    fn run(dir: &Path, action: &str, gpu_name: &str) -> (bool, Vec<String>) {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fake = bin.join("nvidia-smi");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"$*\" >> \"$FAKE_LOG\"\ncase \"$*\" in *--query-gpu=name*) echo \"$FAKE_NAME\";; esac\n",
        )
        .unwrap();
        Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
        let script = dir.join("apply.sh");
        std::fs::write(&script, shell_script(&file())).unwrap();
        let log = dir.join(format!("{action}-{}.log", gpu_name.replace(' ', "-")));
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let status = Command::new("sh")
            .arg(&script)
            .arg(action)
            .env("PATH", path)
            .env("FAKE_LOG", &log)
            .env("FAKE_NAME", gpu_name)
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        (status.status.success(), calls)
    }

    #[test]
    fn the_script_applies_each_gpus_cap_and_clock_by_uuid_and_undoes_them() {
        let dir = tempfile::tempdir().unwrap();
        let (ok, calls) = run(dir.path(), "apply", "NVIDIA H200");
        assert!(ok, "{calls:?}");
        let query = "--query-gpu=name --format=csv,noheader";
        assert_eq!(
            calls,
            [
                format!("-i GPU-1 {query}"),
                format!("-i GPU-it's {query}"),
                "-i GPU-1 -pl 560".into(),
                "-i GPU-1 -lgc 1260,1260".into(),
                "-i GPU-it's -pl 560".into(),
                "-i GPU-it's -lgc 1260,1260".into(),
            ]
        );
        let (ok, calls) = run(dir.path(), "undo", "NVIDIA H200");
        assert!(ok);
        assert_eq!(
            calls,
            [
                "-i GPU-1 -pl 700",
                "-i GPU-1 -rgc",
                "-i GPU-it's -pl 700",
                "-i GPU-it's -rgc"
            ]
        );
        // a UUID that names another model: refused before anything changes
        let (ok, calls) = run(dir.path(), "apply", "NVIDIA A100");
        assert!(!ok);
        assert_eq!(calls, [format!("-i GPU-1 {query}")]);
        let text = shell_script(&file());
        assert!(
            text.contains("simulated device, nothing to apply"),
            "{text}"
        );
        assert!(!text.contains("-pl 420"), "{text}");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }
}
