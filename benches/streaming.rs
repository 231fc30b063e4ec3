//! Reading a fleet's campaign: time and peak memory of `report`, `recommend`,
//! `compare`, `merge` and `diff` on a million records. The bench writes the campaign
//! first — 64 simulated GPUs on 8 nodes (a results file per node, as a Slurm array
//! writes them) × 5 power caps × 8 SM clocks × 16 shapes and their kernels and
//! precisions × 5 repeats — from the committed simulated records, each record's
//! windows rescaled and its summary made again by the protocol's own `summarize`,
//! so every record passes the readers' cross-checks. Then it runs the optimised
//! `joulebench` on it, a command at a time, and reads each one's peak resident
//! memory from the kernel (`wait4`). The target: each under 60 s and 300 MB
//! reading a million records (`diff` reads two runs of half a million; the whole
//! campaign against itself, two million records, is shown beside it without one).
//!
//!     cargo bench --bench streaming
//!     JOULEBENCH_BENCH_RECORDS=200000 cargo bench --bench streaming
//!
//! The files go to a temporary directory (about 4.6 GB per million records, twice
//! and a half: the node files, their merge, and its first half), or under `JOULEBENCH_BENCH_DIR`; with
//! `JOULEBENCH_BENCH_KEEP=1` they stay there, to run commands on by hand. In test
//! mode (`cargo test --benches`) it writes 500 records and checks every command
//! succeeds.

use joulebench_core::clocks::ClockRecord;
use joulebench_core::protocol::summarize;
use joulebench_core::record::{read_records, PointStatus, Record};
use joulebench_core::{AttentionShape, MatmulShape, Op, PowerCap, Workload};
use joulebench_criterion::criterion_test_mode;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const DEVICES: usize = 64;
const GPUS_PER_NODE: usize = 8;
const REPEATS: u32 = 5;
/// (cap as requested, fraction of the default limit)
const CAPS: [(&str, f64); 5] = [
    ("default", 1.0),
    ("90%", 0.9),
    ("80%", 0.8),
    ("70%", 0.7),
    ("60%", 0.6),
];
/// Locked SM clocks, MHz; `None`: the default clocks.
const CLOCKS: [Option<u32>; 8] = [
    None,
    Some(1980),
    Some(1830),
    Some(1680),
    Some(1530),
    Some(1380),
    Some(1230),
    Some(1080),
];
const TARGET_S: f64 = 60.0;
const TARGET_MB: f64 = 300.0;

fn matmul(m: u64, n: u64, k: u64) -> Workload {
    Workload::Matmul(MatmulShape { batch: 1, m, n, k })
}

fn attention(seq: u64, heads: u64, causal: bool) -> Workload {
    Workload::Attention(AttentionShape {
        batch: 1,
        heads,
        seq_q: seq,
        seq_kv: seq,
        head_dim: 128,
        causal,
    })
}

/// The shapes each GPU measures: a transformer's GEMMs and attention.
fn shapes() -> Vec<Workload> {
    vec![
        matmul(4096, 4096, 4096),
        matmul(8192, 8192, 8192),
        matmul(2048, 14336, 4096),
        matmul(2048, 4096, 14336),
        matmul(4096, 6144, 4096),
        matmul(4096, 4096, 2048),
        matmul(8192, 1024, 8192),
        matmul(16384, 4096, 4096),
        matmul(1024, 1024, 1024),
        matmul(2048, 2048, 2048),
        matmul(8192, 28672, 4096),
        matmul(8192, 4096, 28672),
        attention(4096, 16, false),
        attention(4096, 32, true),
        attention(8192, 32, true),
        attention(2048, 16, false),
    ]
}

/// A small deterministic noise in [-1, 1] for (record, salt).
fn noise(i: u64, salt: u64) -> f64 {
    let mut x = i
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// The committed simulated records the campaign is made from: each kernel and
/// precision at the default limit, 80% and 60%.
fn templates() -> Vec<Record> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/sim/sim-h200-quick.jsonl");
    read_records(&path)
        .unwrap_or_else(|e| panic!("templates from {}: {e}", path.display()))
        .into_iter()
        .filter(|r| r.has_energy())
        .collect()
}

/// The template of `kernel`/`precision` at the cap nearest below `fraction`.
fn template<'a>(all: &'a [Record], kernel: &str, p: &str, fraction: f64) -> &'a Record {
    let at = |r: &Record| {
        r.power_cap
            .requested_w
            .or(r.power_cap.enforced_w)
            .unwrap_or(0.0)
    };
    all.iter()
        .filter(|r| r.kernel == kernel && r.precision.to_string() == p)
        .filter(|r| at(r) <= 700.0 * fraction + 1.0)
        .max_by(|a, b| at(a).total_cmp(&at(b)))
        .expect("a template for every kernel and precision")
}

/// Record `i` of the campaign: one run of one setting.
#[allow(clippy::too_many_arguments)]
fn record(
    i: u64,
    t: &Record,
    device: usize,
    cap: (&str, f64),
    clock: Option<u32>,
    workload: Workload,
    repeat: u32,
    started_s: f64,
) -> Record {
    let mut r = t.clone();
    let model = if device < DEVICES / 2 {
        "sim-h100"
    } else {
        "sim-h200"
    };
    r.device.name = format!("{model} (simulated)");
    r.device.uuid = Some(format!("SIM-{model}-{device}"));
    r.device.pci_bus_id = Some(format!("sim:{device:02x}:00.0"));
    r.host = format!("node{:02}", device / GPUS_PER_NODE);
    r.unix_time_s = started_s + i as f64 * 7.3;
    r.command = format!(
        "joulebench sweep --backend sim --power-caps default,90%,80%,70%,60% --allow-power-changes \
         --sm-clocks 1980,1830,1680,1530,1380,1230,1080 --allow-clock-changes --repeat {REPEATS} \
         --out node{:02}.jsonl",
        device / GPUS_PER_NODE
    );
    r.repeat = Some(repeat);
    r.seed = 0x5EED ^ i;
    r.group = workload.shape_label();
    let template_flop = r.flop as f64;
    r.flop = workload.flop().unwrap_or(r.flop);
    r.workload = workload;
    let (name, fraction) = cap;
    let default_w = 700.0;
    r.power_cap.requested = name.parse::<PowerCap>().unwrap_or(PowerCap::Default);
    r.power_cap.requested_w = (fraction < 1.0).then_some(default_w * fraction);
    r.power_cap.enforced_w = Some(default_w * fraction);
    let seen = r.clocks.sm_seen_mhz_median.unwrap_or(1600.0);
    r.clocks = ClockRecord {
        sm_requested_mhz: clock,
        sm_seen_mhz_median: Some(clock.map_or(seen, |c| seen.min(c as f64))),
        ..r.clocks
    };
    // a slower clock takes longer and, below the power limit's own clock, a little
    // less energy per FLOP; each run differs by its noise
    let slower = clock.map_or(1.0, |c| (seen / c as f64).max(1.0));
    let leaner = clock.map_or(1.0, |c| (c as f64 / seen).clamp(0.85, 1.0).sqrt());
    let template_fraction = t.power_cap.enforced_w.unwrap_or(default_w) / default_w;
    let capped = (fraction / template_fraction).sqrt();
    let flop_ratio = r.flop as f64 / template_flop;
    let time = flop_ratio * slower / capped * (1.0 + 0.004 * noise(i, 1));
    let energy = flop_ratio * leaner * capped.powf(0.3) * (1.0 + 0.004 * noise(i, 2));
    if let Some(m) = r.measurement.as_mut() {
        for w in &mut m.windows {
            w.seconds *= time;
            w.device_s = w.device_s.map(|s| s * time);
            w.joules = w.joules.map(|j| j * energy);
        }
        m.summary = summarize(&m.windows, r.flop, r.idle.map(|i| i.watts));
    }
    // now and then a point the backend could not run
    if noise(i, 3) > 0.98 {
        r.status = PointStatus::Failed;
        r.reason = Some("sim: the allocation failed at this shape".into());
        r.measurement = None;
        r.verification = None;
        r.flags.clear();
    }
    r
}

/// Write `n` records of the campaign, a file per node; the files' paths.
fn write_campaign(dir: &Path, n: usize) -> Vec<PathBuf> {
    let all = templates();
    let mut settings: Vec<(&Record, Workload)> = Vec::new();
    for w in shapes() {
        let kernels: &[(&str, &str)] = match w.op() {
            Op::Matmul => &[
                ("sim-vendor", "bf16"),
                ("sim-vendor", "fp8-e4m3"),
                ("sim-vendor", "tf32"),
                ("sim-vendor", "f32"),
                ("sim-ours", "bf16"),
                ("sim-ours", "f32"),
            ],
            _ => &[("sim-unfused", "bf16"), ("sim-fused", "bf16")],
        };
        for (k, p) in kernels {
            settings.push((template(&all, k, p, 1.0), w));
        }
    }
    let started_s = 1.8e9;
    let mut files: Vec<PathBuf> = Vec::new();
    let mut out: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut i = 0u64;
    'all: for device in 0..DEVICES {
        if device % GPUS_PER_NODE == 0 {
            if let Some(mut f) = out.take() {
                f.flush().expect("flush a node file");
            }
            let path = dir.join(format!("node{:02}.jsonl", device / GPUS_PER_NODE));
            let f = std::fs::File::create(&path).expect("create a node file");
            out = Some(std::io::BufWriter::with_capacity(1 << 20, f));
            files.push(path);
        }
        let f = out.as_mut().expect("an open node file");
        for cap in CAPS {
            for clock in CLOCKS {
                for (default_template, workload) in &settings {
                    let t = template(
                        &all,
                        &default_template.kernel,
                        &default_template.precision.to_string(),
                        cap.1,
                    );
                    for repeat in 1..=REPEATS {
                        if i as usize >= n {
                            break 'all;
                        }
                        let r = record(i, t, device, cap, clock, *workload, repeat, started_s);
                        // as the sweep's writer writes it: one JSON object per line
                        serde_json::to_writer(&mut *f, &r).expect("write a record");
                        f.write_all(b"\n").expect("write a record");
                        i += 1;
                    }
                }
            }
        }
    }
    if let Some(mut f) = out {
        f.flush().expect("flush a node file");
    }
    files
}

/// The first `n` lines of `from`, written to `to`.
fn write_first_lines(from: &Path, to: &Path, n: usize) {
    use std::io::BufRead;
    let lines = std::io::BufReader::new(std::fs::File::open(from).expect("the merged campaign"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(to).expect("a file for half"));
    for line in lines.lines().take(n) {
        let line = line.expect("read the merged campaign");
        writeln!(out, "{line}").expect("write half the campaign");
    }
    out.flush().expect("write half the campaign");
}

/// A command's wall time, peak resident memory and exit status.
struct Run {
    wall_s: f64,
    peak_mb: f64,
    status: i32,
}

/// Run `args` with standard output thrown away and its errors in `errors`; its
/// peak memory from `wait4`.
fn run(args: &[&str], errors: &Path) -> Run {
    let start = Instant::now();
    let stderr = std::fs::File::create(errors).expect("a file for the command's errors");
    // reaped by wait4 below, which gives the child's own peak memory
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_joulebench"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start joulebench");
    let pid = child.id() as libc::pid_t;
    // the child's own accounting; std's wait would not give its peak memory
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_s = start.elapsed().as_secs_f64();
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    if code != 0 {
        let err = std::fs::read_to_string(errors).unwrap_or_default();
        eprintln!("joulebench {} exited {code}: {err}", args.join(" "));
    }
    Run {
        wall_s,
        // Linux gives ru_maxrss in KiB
        peak_mb: usage.ru_maxrss as f64 * 1024.0 / 1e6,
        status: code,
    }
}

fn main() {
    let test_mode = criterion_test_mode();
    let n: usize = std::env::var("JOULEBENCH_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if test_mode { 500 } else { 1_000_000 });
    let dir = match std::env::var_os("JOULEBENCH_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("a temporary directory");
    let t0 = Instant::now();
    let files = write_campaign(dir.path(), n);
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    eprintln!(
        "streaming: {n} records in {} files, {:.0} MB, written in {:.1} s",
        files.len(),
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    let d = dir.path();
    let merged = d.join("campaign.jsonl");
    let s = |p: &Path| p.display().to_string();
    let nodes: Vec<String> = files.iter().map(|f| s(f)).collect();
    let with_nodes = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|a| a.to_string())
            .chain(nodes.iter().cloned())
            .collect()
    };
    let settings = s(&d.join("settings.toml"));
    // a diff reads two runs: half the campaign as each (the records read are the
    // campaign's), and the whole campaign as each, twice the records (no target)
    let half = d.join("half.jsonl");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("merge", {
            let mut a = with_nodes(&["merge", "--out"]);
            a.insert(2, s(&merged));
            a
        }),
        ("report", vec!["report".into(), s(&merged)]),
        (
            "report --format markdown",
            vec![
                "report".into(),
                "--format".into(),
                "markdown".into(),
                s(&merged),
            ],
        ),
        ("recommend", vec!["recommend".into(), s(&merged)]),
        (
            "recommend --emit toml",
            vec![
                "recommend".into(),
                "--emit".into(),
                "toml".into(),
                settings,
                s(&merged),
            ],
        ),
        (
            "compare --cap any",
            with_nodes(&["compare", "--cap", "any"]),
        ),
        (
            "diff (half the campaign against itself)",
            vec!["diff".into(), s(&half), s(&half)],
        ),
        (
            "diff (the whole campaign against itself)",
            vec!["diff".into(), s(&merged), s(&merged)],
        ),
    ];
    println!("| command | records read | wall (s) | peak memory (MB) |");
    println!("|---|---|---|---|");
    let mut failed = false;
    for (name, args) in &cases {
        if args.contains(&s(&half)) && !half.exists() {
            write_first_lines(&merged, &half, n / 2);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(&refs, &d.join("errors.txt"));
        let whole_twice = name.contains("whole campaign");
        let read = if whole_twice { 2 * n } else { n };
        println!(
            "| `{name}` | {read} | {:.1} | {:.0} |{}",
            r.wall_s,
            r.peak_mb,
            if r.status == 0 {
                String::new()
            } else {
                format!(" exit {}", r.status)
            }
        );
        failed |= r.status != 0;
        if !test_mode && !whole_twice && (r.wall_s > TARGET_S || r.peak_mb > TARGET_MB) {
            eprintln!("streaming: `{name}` missed the target ({TARGET_S} s, {TARGET_MB} MB)");
        }
    }
    if std::env::var_os("JOULEBENCH_BENCH_KEEP").is_some() {
        eprintln!("streaming: the files are kept in {}", dir.keep().display());
    }
    if failed {
        std::process::exit(1);
    }
}
