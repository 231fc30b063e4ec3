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
            let name = sh_quote(&d.device_model);
            let _ = writeln!(out, "if [ \"$action\" = apply ]; then");
            for u in &d.uuids {
                let u = sh_quote(u);
                let _ = writeln!(out, "  check_nvidia {u} {name}");
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
