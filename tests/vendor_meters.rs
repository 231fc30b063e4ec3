//! AMD, Intel and host energy end to end, against sysfs fixture trees in the
//! kernel's layout (JOULEBENCH_SYSFS_ROOT) and the fake amdsmi: `devices` lists each
//! meter found and why each missing one is missing, and `sweep --backend wgpu` on
//! lavapipe records the GPU meter's energy with the host's RAPL energy beside it,
//! which `report` shows per FLOP. lavapipe has no PCI address, so these tests pair
//! it with the fixture GPU through JOULEBENCH_TEST_DEVICE_PCI (test set-up only).
//! No real AMD or Intel GPU is involved.
#![cfg(unix)]

mod common;
#[path = "../crates/energy/tests/common/sysfs_fixture.rs"]
mod sysfs_fixture;

use common::{jb, records, text, write};
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use sysfs_fixture::{Counter, SysfsFixture, Ticker, TWO_SOCKETS};

const AMD_PCI: &str = "0000:03:00.0";
const INTEL_PCI: &str = "0000:04:00.0";

/// An AMD board (amdgpu hwmon4, 150 W average), an Intel one (xe hwmon2, its
/// energy counter at 0 µJ) and a two-socket host's RAPL zones.
fn node() -> SysfsFixture {
    let fx = SysfsFixture::new();
    fx.amdgpu(4, AMD_PCI, 150_000_000, 300_000_000);
    fx.intel(2, "xe", INTEL_PCI, 0);
    fx.rapl(&TWO_SOCKETS, 1_000_000);
    fx
}

/// Package and DRAM counters advancing at 60 + 15 W per socket.
fn host_counters(fx: &SysfsFixture) -> Vec<Counter> {
    let base = fx.root().join("sys/class/powercap");
    [
        ("intel-rapl:0", 60.0, 262_143_328_850u64),
        ("intel-rapl:0:0", 15.0, 65_712_999_613),
        ("intel-rapl:1", 60.0, 262_143_328_850),
        ("intel-rapl:1:0", 15.0, 65_712_999_613),
    ]
    .into_iter()
    .map(|(z, w, max)| Counter {
        path: base.join(z).join("energy_uj"),
        watts: w,
        max_uj: max,
    })
    .collect()
}

fn devices(fx: &SysfsFixture, fake_amdsmi: Option<&Path>) -> Output {
    let mut c = jb();
    c.arg("devices").env("JOULEBENCH_SYSFS_ROOT", fx.root());
    c.env_remove("JOULEBENCH_FAKE_NVML");
    match fake_amdsmi {
        Some(p) => c.env("JOULEBENCH_FAKE_AMDSMI", p),
        None => c.env_remove("JOULEBENCH_FAKE_AMDSMI"),
    };
    c.output().unwrap()
}

#[test]
fn devices_lists_amd_intel_and_rapl_meters_and_why_a_missing_one_is_missing() {
    let fx = node();
    let o = devices(&fx, None);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("amdsmi: not available — amdsmi is unavailable: libamd_smi.so not found"),
        "{t}"
    );
    assert!(t.contains("hwmon (AMD: amdgpu): available"), "{t}");
    assert!(
        t.contains("[hwmon4] AMD Instinct MI210 (amdgpu, 0000:03:00.0)"),
        "{t}"
    );
    assert!(
        t.contains("power (power1_average, sampled and integrated): 150.0 W now"),
        "{t}"
    );
    assert!(
        t.contains("power-cap control (power1_cap): 300.0 W now"),
        "{t}"
    );
    assert!(t.contains("hwmon (Intel: xe, i915): available"), "{t}");
    assert!(t.contains("[hwmon2] Intel GPU (xe, 0000:04:00.0)"), "{t}");
    assert!(t.contains("energy counter (energy1_input): yes"), "{t}");
    assert!(t.contains("RAPL (host CPU and DRAM): available"), "{t}");
    assert!(t.contains("[intel-rapl:1:0] dram"), "{t}");
    assert!(
        !t.contains("psys") && !t.contains("] core"),
        "only packages and DRAM count: {t}"
    );

    // with the fake amdsmi in place, its GPU and its cap are listed
    let dir = tempfile::tempdir().unwrap();
    let fake = write(dir.path(), "amd.json", "{}");
    let t = text(&devices(&fx, Some(&fake)));
    assert!(t.contains("amdsmi: available"), "{t}");
    assert!(t.contains("Fake MI210 (fake amdsmi)"), "{t}");
    assert!(t.contains("ticks of 15.3 µJ"), "{t}");
    assert!(
        t.contains("300 W now, default 300 W, allowed 100–300 W"),
        "{t}"
    );

    // JSON says the same
    let o = jb()
        .args(["devices", "--json"])
        .env("JOULEBENCH_SYSFS_ROOT", fx.root())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rapl = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "RAPL (host CPU and DRAM)")
        .unwrap();
    assert_eq!(rapl["available"], true);
    assert_eq!(rapl["entries"].as_array().unwrap().len(), 4);
}

#[test]
fn devices_as_an_unprivileged_user_says_rapl_is_root_only() {
    use std::os::unix::process::CommandExt;
    let fx = node();
    // SAFETY: geteuid has no preconditions.
    if unsafe { geteuid() } != 0 {
        eprintln!("skipped: needs root to start joulebench as another user");
        return;
    }
    let o = jb()
        .arg("devices")
        .env("JOULEBENCH_SYSFS_ROOT", fx.root())
        .env("HOME", "/tmp")
        .uid(65534)
        .gid(65534)
        .output();
    let o = match o {
        Ok(o) => o,
        Err(e) => {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{e}");
            eprintln!("skipped: cannot start a process as nobody here ({e})");
            return;
        }
    };
    let t = text(&o);
    assert!(
        t.contains("RAPL (host CPU and DRAM): not available")
            && t.contains("energy_uj is readable only by root on current kernels")
            && t.contains("run as root or grant read access"),
        "{t}"
    );
}

extern "C" {
    fn geteuid() -> u32;
}

/// The sweeps run one at a time: their counters advance in threads against real
/// time, and several lavapipe sweeps at once would starve those threads.
static ONE_SWEEP_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One small f32 matmul with half-second windows: seconds on lavapipe.
const TINY: &str = r#"
precisions = ["f32"]
kernels = ["wgsl-tiled"]
[[matmul]]
m = 128
n = 128
k = 128
[protocol]
idle_baseline_s = 0.0
warmup_s = 0.2
warmup_max_s = 0.5
min_window_s = 0.5
min_counter_updates = 10
stop_rule = "fixed-count"
min_windows = 2
max_windows = 2
"#;

fn sweep(
    fx: &SysfsFixture,
    dir: &Path,
    pci: &str,
    envs: &[(&str, &Path)],
) -> (String, Vec<serde_json::Value>) {
    let _one = ONE_SWEEP_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let cfg = write(dir, "tiny.toml", TINY);
    let out = dir.join("r.jsonl");
    let mut c = jb();
    c.args(["sweep", "--backend", "wgpu", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .env("JOULEBENCH_SYSFS_ROOT", fx.root())
        .env("JOULEBENCH_TEST_DEVICE_PCI", pci)
        .env("JOULEBENCH_STATE_DIR", dir.join("state"))
        .env("JOULEBENCH_LOCK_DIR", dir.join("locks"))
        .env_remove("JOULEBENCH_FAKE_NVML")
        .env_remove("JOULEBENCH_FAKE_AMDSMI");
    for (k, v) in envs {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    (t, records(&out))
}

/// The record's GPU watts, and the host's per window.
fn check_record(r: &serde_json::Value, source: &str, gpu_w: f64) {
    assert_eq!(r["status"], "measured", "{r}");
    assert_eq!(r["meter"]["source"], source, "{r}");
    assert_eq!(r["meter"]["host"]["source"], "rapl");
    assert_eq!(
        r["meter"]["host"]["domains"],
        serde_json::json!(["package-0", "dram", "package-1", "dram"])
    );
    let flags: Vec<&str> = r["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(flags.contains(&"cpu-emulation"), "{flags:?}");
    let m = &r["measurement"];
    let avg = m["summary"]["average_w"].as_f64().unwrap();
    // the fixture's counters advance in threads against real time: a few % of jitter
    assert!(
        (avg - gpu_w).abs() < 0.15 * gpu_w,
        "GPU {avg} W, expected {gpu_w}"
    );
    for w in m["windows"].as_array().unwrap() {
        let host_w = w["host_joules"].as_f64().unwrap() / w["seconds"].as_f64().unwrap();
        assert!((host_w - 150.0).abs() < 22.5, "host {host_w} W in {w}");
    }
    let host = &m["summary"]["host"];
    let h = host["host_joules_per_flop"]["median"].as_f64().unwrap();
    let g = m["summary"]["joules_per_flop"]["median"].as_f64().unwrap();
    let both = host["gpu_and_host_joules_per_flop"]["median"]
        .as_f64()
        .unwrap();
    assert!((both - (g + h)).abs() < 0.05 * both, "{g} + {h} vs {both}");
}

fn report(out: &Path) -> String {
    let o = jb().arg("report").arg(out).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

#[test]
fn sweep_wgpu_with_the_amdgpu_hwmon_meter_and_rapl_then_report() {
    let fx = node();
    let _t = Ticker::start(host_counters(&fx), Duration::from_millis(5));
    let dir = tempfile::tempdir().unwrap();
    let (t, recs) = sweep(&fx, dir.path(), AMD_PCI, &[]);
    assert!(
        t.contains("amdsmi is unavailable") || t.contains("energy meter: power1_average"),
        "{t}"
    );
    assert!(
        t.contains("energy meter: power1_average of AMD Instinct MI210 (amdgpu, 0000:03:00.0)"),
        "{t}"
    );
    assert!(
        t.contains("host energy: RAPL (package-0, dram, package-1, dram)"),
        "{t}"
    );
    assert_eq!(recs.len(), 1);
    check_record(&recs[0], "hwmon-sampled", 150.0);
    let rep = report(&dir.path().join("r.jsonl"));
    assert!(
        rep.contains("host CPU+DRAM (pJ/FLOP)") && rep.contains("GPU + host (pJ/FLOP)"),
        "{rep}"
    );
    assert!(
        rep.contains("Host energy: rapl (package-0, dram, package-1, dram)"),
        "{rep}"
    );
}

#[test]
fn sweep_wgpu_with_the_intel_energy_counter_and_rapl() {
    let fx = node();
    let mut counters = host_counters(&fx);
    counters.push(Counter {
        path: fx.root().join("sys/class/hwmon/hwmon2/energy1_input"),
        watts: 90.0,
        max_uj: u64::MAX,
    });
    let _t = Ticker::start(counters, Duration::from_millis(5));
    let dir = tempfile::tempdir().unwrap();
    let (t, recs) = sweep(&fx, dir.path(), INTEL_PCI, &[]);
    assert!(
        t.contains("energy meter: energy1_input of Intel GPU (xe, 0000:04:00.0)"),
        "{t}"
    );
    check_record(&recs[0], "hwmon-energy", 90.0);
}

#[test]
fn sweep_wgpu_with_the_fake_amdsmi_counter_and_rapl() {
    let fx = node();
    let _t = Ticker::start(host_counters(&fx), Duration::from_millis(5));
    let dir = tempfile::tempdir().unwrap();
    let fake = write(
        dir.path(),
        "amd.json",
        r#"{"power_demand_w": 210.0, "counter_period_ms": 2}"#,
    );
    let (t, recs) = sweep(
        &fx,
        dir.path(),
        AMD_PCI,
        &[("JOULEBENCH_FAKE_AMDSMI", &fake)],
    );
    assert!(
        t.contains("energy meter: amdsmi energy counter on Fake MI210 (fake amdsmi)"),
        "{t}"
    );
    check_record(&recs[0], "amdsmi-counter", 210.0);
    assert_eq!(
        recs[0]["measurement"]["summary"]["average_w"]
            .as_f64()
            .map(|w| w > 0.0),
        Some(true)
    );
}

#[test]
fn a_device_whose_pci_address_matches_no_meter_says_why_for_each() {
    let fx = node();
    let dir = tempfile::tempdir().unwrap();
    let (t, recs) = sweep(&fx, dir.path(), "0000:99:00.0", &[]);
    assert!(t.contains("no energy meter:"), "{t}");
    assert!(t.contains("amdsmi: amdsmi is unavailable"), "{t}");
    assert!(
        t.contains("hwmon: no amdgpu hwmon directory for 0000:99:00.0"),
        "{t}"
    );
    assert!(
        t.contains("hwmon: no xe or i915 energy1_input for 0000:99:00.0"),
        "{t}"
    );
    assert_eq!(recs[0]["meter"]["source"], "none");
}
