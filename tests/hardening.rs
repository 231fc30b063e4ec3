//! The binary against an attacker and a clumsy user: power state files and GPU locks
//! (planted links, shared directories and another user's links, two sweeps on one
//! GPU, a GPU left capped or locked, a relative HOME), restores (two and three
//! signals at varied gaps, a step that fails, `power restore` against a live
//! holder), results files (an incomplete or NUL-padded tail, a full disk, two
//! writers, a resume of another configuration), outputs (over inputs, over each
//! other, over a file a sweep writes, over a device, FIFO or link, a failed write, a
//! full stdout), meter files (a link to /dev/zero, a FIFO), and hostile input
//! (impossible or contradicting numbers, a record read twice, caps that name one
//! limit, objective parameters, names that would break a report, unbounded lines,
//! absurd and enormous values, repeated axis values, input found bad only after
//! measuring, a first Ctrl-C in a long warm-up, exact causal FLOP).
//! A test that needs root or another user says `skipped:` where it cannot have them,
//! and fails instead under CI=true.

#![cfg(unix)]

mod common;
use common::{jb, point_key, records, records_left, refused, run, text, write};

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What a test cannot do here: said plainly, or a failure under CI.
fn skip(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: cannot skip: {why}");
    }
    eprintln!("skipped: {why}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Four points on the simulated device, in a second or two.
const TINY: &str = "precisions = [\"bf16\", \"f32\"]\nkernels = [\"sim-vendor\"]\n\
    [[matmul]]\nm = 512\nn = 512\nk = 512\n[[matmul]]\nm = 1024\nn = 1024\nk = 1024\n\
    [protocol]\nidle_baseline_s = 0.0\n";

fn sweep_tiny(dir: &Path, out: &Path, extra: &[&str]) -> Output {
    let cfg = write(dir, "tiny.toml", TINY);
    let mut args = vec![
        "sweep",
        "--backend",
        "sim",
        "--config",
        s(&cfg),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(
        o.status.success() || !extra.is_empty(),
        "{args:?}: {}",
        text(&o)
    );
    o
}

/// A fake NVML GPU in a JSON file (100–400 W, default 300 W), with the state and
/// lock directories a sweep on it uses.
struct Gpu {
    dir: tempfile::TempDir,
}

const DEFAULT_MW: u64 = 300_000;
const UUID: &str = "GPU-11111111-2222-3333-4444-555555555555";
/// The UUID as state and lock files name the device.
const KEY: &str = "11111111222233334444555555555555";

impl Gpu {
    fn new(limit_mw: u64) -> Gpu {
        let g = Gpu {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(
            g.fake(),
            serde_json::json!({
                "name": "Fake GPU",
                "uuid": UUID,
                "match_any": true,
                "min_limit_mw": 100_000,
                "max_limit_mw": 400_000,
                "default_limit_mw": DEFAULT_MW,
                "limit_mw": limit_mw,
            })
            .to_string(),
        )
        .unwrap();
        // many points, so a sweep still runs when the test acts on it
        write(
            g.path(),
            "capped.toml",
            "precisions = [\"bf16\", \"f16\", \"f32\"]\nbatch_sizes = [1, 2, 3, 4]\npower_caps = [\"200\", \"150\"]\n\
             [[linear]]\nin_features = 1024\nout_features = 1024\nseq = 128\n\
             [[linear]]\nin_features = 2048\nout_features = 1024\nseq = 128\n\
             [protocol]\nidle_baseline_s = 0.5\n",
        );
        g
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn fake(&self) -> PathBuf {
        self.path().join("fake-nvml.json")
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.fake()).unwrap()).unwrap()
    }

    fn limit_mw(&self) -> u64 {
        self.state()["limit_mw"].as_u64().unwrap()
    }

    fn history(&self) -> Vec<u64> {
        self.state()["limit_history_mw"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default()
    }

    /// joulebench on this GPU with `state_dir` (the lock directory is the GPU's own,
    /// the same whatever the state directory).
    fn cmd(&self, state_dir: &Path, args: &[&str]) -> Command {
        let mut c = jb();
        c.args(args)
            .env("JOULEBENCH_FAKE_NVML", self.fake())
            .env("JOULEBENCH_STATE_DIR", state_dir)
            .env("JOULEBENCH_LOCK_DIR", self.path().join("locks"));
        c
    }

    fn capped_sweep(&self, out: &Path) -> Vec<String> {
        [
            "sweep",
            "--backend",
            "sim",
            "--config",
            s(&self.path().join("capped.toml")),
            "--out",
            s(out),
            "--allow-power-changes",
        ]
        .map(String::from)
        .to_vec()
    }

    fn output(&self, state_dir: &Path, args: &[String]) -> Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(state_dir, &args).output().unwrap()
    }

    fn spawn(&self, state_dir: &Path, args: &[String]) -> Child {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(state_dir, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Until the running sweep has capped the GPU and written a record.
    fn wait_until_capped(&self, child: &mut Child, out: &Path) {
        let start = Instant::now();
        while self.limit_mw() == DEFAULT_MW || line_count(out) == 0 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the sweep ended ({status}) before the test acted");
            }
            assert!(start.elapsed() < Duration::from_secs(120), "never capped");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn line_count(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn state_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().contains("power-state-"))
                .collect()
        })
        .unwrap_or_default()
}

// ---- the power-state file: shared directories, planted links and files ----

#[test]
fn a_state_directory_other_users_can_write_is_refused_before_anything_changes() {
    let gpu = Gpu::new(DEFAULT_MW);
    let shared = gpu.path().join("shared-state");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = gpu.path().join("r.jsonl");
    let o = gpu.output(&shared, &gpu.capped_sweep(&out));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("writable by other users") && text(&o).contains("chmod go-w"),
        "{}",
        text(&o)
    );
    assert!(gpu.history().is_empty() && gpu.limit_mw() == DEFAULT_MW);
    assert!(!out.exists());
    let o = gpu.cmd(&shared, &["power", "restore"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("writable by other users"), "{}", text(&o));
}

#[test]
fn planted_links_and_state_files_are_never_followed_or_trusted() {
    if !is_root() {
        return skip("planting files as another user needs root to switch to user nobody");
    }
    let gpu = Gpu::new(DEFAULT_MW);
    let victim = gpu.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    // a directory shared like /tmp: everyone may write, the sticky bit set
    let shared = gpu.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(gpu.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |script: &str| {
        let o = Command::new("sh")
            .args(["-c", script])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(o.status.success(), "as nobody: {script}: {}", text(&o));
    };
    // links at the state file's name and at the temporary names an old joulebench
    // wrote through (its pid was all that made them unique)
    let next_pid: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1);
    let state = shared.join(format!("power-state-{KEY}.json"));
    as_nobody(&format!(
        "ln -s {v} {st} && for p in $(seq {a} {b}); do ln -s {v} {st}.tmp-$p; done",
        v = s(&victim),
        st = s(&state),
        a = next_pid,
        b = next_pid + 400
    ));
    let out = gpu.path().join("r.jsonl");
    let o = gpu.output(&shared, &gpu.capped_sweep(&out));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("writable by other users"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(gpu.history().is_empty());

    // a state file another user planted, asking to "restore" 100 W
    std::fs::remove_file(&state).unwrap();
    let forged = serde_json::json!({
        "schema": 1, "device": {"name": "Fake GPU", "uuid": UUID, "pci_bus_id": null},
        "device_kind": "fake-nvml", "original_limit_w": 100.0, "default_limit_w": 300.0,
        "min_limit_w": 100.0, "max_limit_w": 400.0, "pid": 4000000000u64,
        "process_start_ticks": null, "boot_id": null, "host": null, "written_unix_s": 1.0
    })
    .to_string();
    as_nobody(&format!("printf '%s' '{forged}' > {}", s(&state)));
    let o = gpu.cmd(&shared, &["power", "restore"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(gpu.limit_mw(), DEFAULT_MW);

    // the same file in a private directory of root's: not written by root, not trusted
    let private = gpu.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let planted = private.join(format!("power-state-{KEY}.json"));
    std::fs::write(&planted, &forged).unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    let o = gpu.cmd(&private, &["power", "restore"]).output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("belongs to user 65534"), "{}", text(&o));
    // and a link there is not followed
    std::fs::remove_file(&planted).unwrap();
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let o = gpu.cmd(&private, &["power", "restore"]).output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("symbolic link"), "{}", text(&o));
    assert_eq!(gpu.limit_mw(), DEFAULT_MW);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

// ---- one GPU, two sweeps; a GPU left capped ----

#[test]
fn a_second_capped_sweep_on_a_gpu_is_refused_whatever_its_state_directory() {
    let gpu = Gpu::new(DEFAULT_MW);
    let (state_a, state_b) = (gpu.path().join("state-a"), gpu.path().join("state-b"));
    let out_a = gpu.path().join("a.jsonl");
    let mut a = gpu.spawn(&state_a, &gpu.capped_sweep(&out_a));
    gpu.wait_until_capped(&mut a, &out_a);
    let changes = gpu.history().len();

    let o = gpu.output(&state_b, &gpu.capped_sweep(&gpu.path().join("b.jsonl")));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let holder = format!("joulebench process {}", a.id());
    assert!(text(&o).contains(&holder), "{}", text(&o));
    let status = gpu.cmd(&state_b, &["power", "status"]).output().unwrap();
    assert!(text(&status).contains(&holder), "{}", text(&status));

    signal(&a, libc::SIGINT);
    let done = a.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(130), "{}", text(&done));
    assert_eq!(gpu.limit_mw(), DEFAULT_MW, "the limit was not restored");
    // the refused sweep changed nothing: every change is the first sweep's and its restore
    let history = gpu.history();
    assert!(history.len() >= changes);
    assert!(
        history[changes..]
            .iter()
            .all(|&mw| mw == DEFAULT_MW || mw == 200_000 || mw == 150_000),
        "{history:?}"
    );
    assert!(state_files(&state_a).is_empty() && state_files(&state_b).is_empty());
}

#[test]
fn a_gpu_left_capped_flags_uncapped_points_and_is_no_baseline() {
    // a sweep killed elsewhere left the GPU at 200 W, with no state file here
    let gpu = Gpu::new(200_000);
    let state = gpu.path().join("state");
    let cfg = write(
        gpu.path(),
        "caps.toml",
        "precisions = [\"bf16\"]\nkernels = [\"sim-vendor\"]\npower_caps = [\"default\", \"150\"]\n\
         [[matmul]]\nm = 1024\nn = 1024\nk = 1024\n[protocol]\nidle_baseline_s = 0.0\n",
    );
    let out = gpu.path().join("r.jsonl");
    let o = gpu
        .cmd(
            &state,
            &[
                "sweep",
                "--backend",
                "sim",
                "--config",
                s(&cfg),
                "--out",
                s(&out),
                "--allow-power-changes",
            ],
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("is 200 W, not its default 300 W"),
        "{}",
        text(&o)
    );
    let recs = records(&out);
    let flagged = |r: &serde_json::Value| {
        r["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "cap-not-default")
    };
    for r in &recs {
        let default = r["power_cap"]["requested"] == "default";
        assert_eq!(flagged(r), default, "{r}");
    }
    let o = gpu
        .cmd(
            &state,
            &["recommend", s(&out), "--objective", "least-energy"],
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not measured"), "{}", text(&o));
    let status = gpu.cmd(&state, &["power", "status"]).output().unwrap();
    assert!(
        text(&status).contains("not the default and no restore"),
        "{}",
        text(&status)
    );
}

// ---- results files ----

#[test]
fn readers_skip_an_incomplete_tail_and_resume_cuts_it_keeping_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.jsonl");
    sweep_tiny(dir.path(), &full, &[]);
    let whole = std::fs::read(&full).unwrap();
    let lines: Vec<&[u8]> = whole.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), 4);
    let three: Vec<u8> = lines[..3].concat();
    let cfg = dir.path().join("tiny.toml");
    for (name, tail) in [
        ("partial", lines[3][..lines[3].len() / 2].to_vec()),
        ("nul", vec![0u8; 4096]),
        ("partial-nul", [&lines[3][..100], &[0u8; 3000][..]].concat()),
    ] {
        let out = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&out, [&three[..], &tail].concat()).unwrap();
        for cmd in ["report", "recommend"] {
            let o = run(&[cmd, s(&out)]);
            assert!(o.status.success(), "{cmd} {name}: {}", text(&o));
            assert!(
                text(&o).contains(&format!("byte offset {}", three.len())),
                "{cmd} {name}: {}",
                text(&o)
            );
        }
        let o = run(&[
            "sweep",
            "--backend",
            "sim",
            "--config",
            s(&cfg),
            "--out",
            s(&out),
            "--resume",
        ]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert!(
            text(&o).contains("cut the incomplete last record"),
            "{}",
            text(&o)
        );
        let copy = dir
            .path()
            .join(format!("{name}.jsonl.incomplete-{}", three.len()));
        assert_eq!(
            std::fs::read(&copy).unwrap(),
            tail,
            "{name}: the tail's copy"
        );
        let after = std::fs::read(&out).unwrap();
        assert_eq!(
            &after[..three.len()],
            &three[..],
            "{name}: a record was rewritten"
        );
        let recs = records(&out);
        let mut keys: Vec<String> = recs.iter().map(point_key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!((recs.len(), keys.len()), (4, 4), "{name}");
    }
}

/// A file system of `bytes` at `dir` (a tmpfs, where this test may mount one), or
/// `None`.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, bytes: usize) -> Option<SmallDisk> {
        if !is_root() {
            return None;
        }
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes}"),
                "tmpfs",
                s(dir),
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|st| st.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_mid_sweep_exits_3_says_where_the_points_are_and_keeps_whole_records() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "many.toml",
        "precisions = [\"bf16\", \"f16\", \"f32\"]\nkernels = [\"sim-vendor\"]\nbatch_sizes = [1, 2, 3, 4]\n\
         [[linear]]\nin_features = 1024\nout_features = 1024\nseq = 128\n[protocol]\nidle_baseline_s = 0.0\n",
    );
    // room for a record or two of 12
    let limit = 8192usize;
    let disk = SmallDisk::mount(&dir.path().join("disk"), limit);
    let out = match &disk {
        Some(d) => d.0.join("r.jsonl"),
        None => dir.path().join("r.jsonl"),
    };
    let mut cmd = jb();
    cmd.args([
        "sweep",
        "--backend",
        "sim",
        "--config",
        s(&cfg),
        "--out",
        s(&out),
    ]);
    if disk.is_none() {
        eprintln!("no tmpfs could be mounted: the disk fills through a file-size limit instead");
        // SAFETY: between fork and exec, only async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let l = libc::rlimit {
                    rlim_cur: limit as libc::rlim_t,
                    rlim_max: limit as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("finished points are in {}", out.display())),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
    // whole records only: the half-written one was cut back off
    let kept = records(&out);
    assert!(
        !kept.is_empty() && kept.len() < 12,
        "{} records",
        kept.len()
    );
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&out, &copy).unwrap();
    drop(disk);
    let o = run(&["report", s(&copy)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("incomplete"), "{}", text(&o));
    // and on a disk with room, --resume measures the rest, each point once
    let o = run(&[
        "sweep",
        "--backend",
        "sim",
        "--config",
        s(&cfg),
        "--out",
        s(&copy),
        "--resume",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(records(&copy).len(), 12);
}

#[test]
fn a_second_writer_of_a_results_file_is_refused_with_the_first_ones_pid() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "longer.toml", common::LONGER_SWEEP);
    let out = dir.path().join("r.jsonl");
    let args = [
        "sweep",
        "--backend",
        "sim",
        "--config",
        s(&cfg),
        "--out",
        s(&out),
    ];
    let mut first = jb()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while line_count(&out) == 0 {
        assert!(first.try_wait().unwrap().is_none(), "finished too soon");
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let o = run(&resumed);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("(process {})", first.id())),
        "{}",
        text(&o)
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let o = run(&resumed);
    assert!(o.status.success(), "{}", text(&o));
    let recs = records(&out);
    let mut keys: Vec<String> = recs.iter().map(point_key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!((recs.len(), keys.len()), (60, 60));
}

#[test]
fn resume_refuses_records_of_another_seed_protocol_or_repeat_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    sweep_tiny(dir.path(), &out, &["--seed", "7"]);
    let text3: String = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .take(3)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&out, &text3).unwrap();
    let cfg = dir.path().join("tiny.toml");
    let base = [
        "sweep",
        "--backend",
        "sim",
        "--config",
        s(&cfg),
        "--out",
        s(&out),
        "--resume",
    ];
    let with = |extra: &[&'static str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        a
    };
    refused(&with(&["--seed", "8"]), "another seed");
    refused(
        &with(&["--seed", "7", "--min-window-s", "0.5"]),
        "min_window_s",
    );
    refused(&with(&["--seed", "7", "--repeat", "2"]), "--repeat 2");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text3);
    let o = run(&with(&["--seed", "7"]));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(records(&out).len(), 4);
    // told to, it adds points measured differently
    std::fs::write(&out, &text3).unwrap();
    let o = run(&with(&["--seed", "8", "--allow-config-mismatch"]));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(records(&out).len(), 4);
}

// ---- hostile input ----

#[test]
fn records_with_impossible_numbers_are_refused_naming_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    sweep_tiny(dir.path(), &out, &[]);
    let good = std::fs::read_to_string(&out).unwrap();
    let first: serde_json::Value = serde_json::from_str(good.lines().next().unwrap()).unwrap();
    let forge = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut r = first.clone();
        edit(&mut r);
        write(dir.path(), "forged.jsonl", &format!("{good}{r}\n"))
    };
    let negative = forge(&|r| {
        r["measurement"]["summary"]["joules_per_flop"]["median"] = (-1e-12).into();
        r["measurement"]["summary"]["joules_per_op"]["median"] = (-1.0).into();
    });
    refused(
        &["recommend", s(&negative), "--objective", "least-energy"],
        "forged.jsonl:5",
    );
    refused(&["report", s(&negative)], "cannot come from a measurement");
    let zero = forge(&|r| r["flop"] = 0.into());
    refused(&["recommend", s(&zero)], "0 FLOP");
}

#[test]
fn names_and_paths_cannot_break_out_of_a_report() {
    let dir = tempfile::tempdir().unwrap();
    // an --out name that would end the report's code block and start a heading
    let out = dir.path().join("r\n```\n# owned.jsonl");
    sweep_tiny(dir.path(), &out, &[]);
    let mut lines: Vec<serde_json::Value> = records(&out);
    lines[0]["device"]["name"] = "GPU | x\n| forged | row |\n<script>alert(1)</script>".into();
    lines[0]["kernel"] = "k|<b>".into();
    let hostile = write(
        dir.path(),
        "hostile.jsonl",
        &lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    );
    let doc = dir.path().join("doc.md");
    let o = run(&[
        "report",
        s(&hostile),
        "--format",
        "markdown",
        "--out",
        s(&doc),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(&doc).unwrap();
    assert!(!md.contains("<script>") && !md.contains("<b>"), "{md}");
    assert!(!md.lines().any(|l| l.starts_with("| forged")), "{md}");
    let open = md
        .find("````sh")
        .expect("a fence longer than the command's");
    // the line that would be a heading is inside the block: no fence closes it before
    let inside = md[open..].find("\n# owned.jsonl").unwrap();
    assert!(!md[open..open + inside].contains("\n````\n"), "{md}");
    let o = run(&["report", s(&hostile), "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"GPU | x\n| forged"));
}

#[test]
fn an_output_that_is_also_an_input_is_refused_even_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    sweep_tiny(dir.path(), &out, &[]);
    let before = std::fs::read(&out).unwrap();
    let same = dir.path().join(".").join("r.jsonl");
    refused(
        &["report", s(&out), "--out", s(&same), "--force"],
        "is also an input",
    );
    refused(
        &["merge", s(&out), "--out", s(&out), "--force"],
        "is also an input",
    );
    refused(
        &["recommend", s(&out), "--emit", "toml", s(&out), "--force"],
        "is also an input",
    );
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

#[test]
fn a_line_longer_than_the_limit_is_refused_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.jsonl");
    let mut f = std::fs::File::create(&p).unwrap();
    use std::io::Write;
    f.write_all(b"{\"schema\": 2, \"host\": \"").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..20 {
        f.write_all(&chunk).unwrap();
    }
    f.write_all(b"\"}\n").unwrap();
    drop(f);
    let start = Instant::now();
    refused(
        &["report", s(&p)],
        "huge.jsonl:1: corrupt results line: line is longer than",
    );
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn absurd_protocol_values_and_node_sizes_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.jsonl");
    let sweep = |extra: &[&'static str]| {
        let mut a = vec!["sweep", "--backend", "sim", "--out", s(&out)];
        a.extend_from_slice(extra);
        a
    };
    refused(
        &sweep(&["--warmup-s", "1e308", "--warmup-max-s", "1e308"]),
        "at most 86400",
    );
    refused(
        &sweep(&["--max-windows", "4000000000"]),
        "max_windows must be ≤ 10000",
    );
    refused(
        &sweep(&["--devices", "all", "--sim-devices", "100000"]),
        "1 to 64 GPUs",
    );
    refused(&sweep(&["--devices", "0-1000000000"]), "at most 64 devices");
    assert!(!out.exists());
}

#[test]
fn repeated_axis_values_are_measured_once_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let o = sweep_tiny(
        dir.path(),
        &out,
        &["--precisions", "bf16,bf16,f32", "--batch-sizes", "1,1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("note: precisions: 1 repeated value removed"),
        "{}",
        text(&o)
    );
    let recs = records(&out);
    let mut keys: Vec<String> = recs.iter().map(point_key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!((recs.len(), keys.len()), (4, 4));
}

#[test]
fn the_first_ctrl_c_ends_a_long_warm_up_at_once_and_records_nothing_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "long.toml",
        "precisions = [\"bf16\"]\nkernels = [\"sim-vendor\"]\n[[matmul]]\nm = 1024\nn = 1024\nk = 1024\n\
         [protocol]\nidle_baseline_s = 0.0\nwarmup_s = 86400.0\nwarmup_max_s = 86400.0\npoint_budget_s = 86400.0\n",
    );
    let out = dir.path().join("r.jsonl");
    let mut child = jb()
        .args([
            "sweep",
            "--backend",
            "sim",
            "--config",
            s(&cfg),
            "--out",
            s(&out),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("sweep:") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "the sweep never started"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    signal(&child, libc::SIGINT);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if asked.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the first Ctrl-C did not end the point within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    assert_eq!(line_count(&out), 0, "an interrupted point was recorded");
}

#[test]
fn causal_attention_counts_exactly_the_visible_pairs_when_seq_kv_differs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "attn.toml",
        "precisions = [\"bf16\"]\nkernels = [\"sim-fused\"]\n\
         [[attention]]\nheads = 2\nseq_q = 1024\nseq_kv = 96\nhead_dim = 64\ncausal = true\n\
         [[attention]]\nheads = 2\nseq_q = 96\nseq_kv = 1024\nhead_dim = 64\ncausal = true\n\
         [protocol]\nidle_baseline_s = 0.0\n",
    );
    let out = dir.path().join("r.jsonl");
    let o = run(&[
        "sweep",
        "--backend",
        "sim",
        "--config",
        s(&cfg),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let recs = records(&out);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        let a = &r["workload"];
        let (sq, skv) = (a["seq_q"].as_u64().unwrap(), a["seq_kv"].as_u64().unwrap());
        // bottom-right aligned: query i sees keys 0 ..= i + (skv − sq), counted one by one
        let pairs: u64 = (0..sq as i64)
            .map(|i| (i + skv as i64 - sq as i64 + 1).clamp(0, skv as i64) as u64)
            .sum();
        let (b, h, d) = (
            a["batch"].as_u64().unwrap(),
            a["heads"].as_u64().unwrap(),
            a["head_dim"].as_u64().unwrap(),
        );
        let expected = 4 * b * h * d * pairs;
        assert_eq!(r["flop"].as_u64(), Some(expected), "{a}");
        // half the full product, the old count, is far off for these shapes
        assert_ne!(expected, 2 * b * h * d * sq * skv);
    }
}

#[test]
fn long_names_get_file_names_that_fit_with_a_hash_to_keep_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let long = "n".repeat(300);
    let cfg = write(
        dir.path(),
        "long-names.toml",
        &format!(
            "precisions = [\"bf16\"]\nkernels = [\"sim-vendor\"]\n\
             [[linear]]\nin_features = 512\nout_features = 512\nseq = 64\nname = \"{long}a\"\n\
             [[linear]]\nin_features = 512\nout_features = 512\nseq = 128\nname = \"{long}b\"\n\
             [protocol]\nidle_baseline_s = 0.0\n"
        ),
    );
    let out = dir.path().join("r.jsonl");
    let o = run(&[
        "sweep",
        "--backend",
        "sim",
        "--config",
        s(&cfg),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let plots = dir.path().join("plots");
    let o = run(&["report", s(&out), "--plots", s(&plots)]);
    assert!(o.status.success(), "{}", text(&o));
    let names: Vec<String> = std::fs::read_dir(&plots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.len() <= 120), "{names:?}");
    let energy_time = names
        .iter()
        .filter(|n| n.starts_with("energy-time_") && n.ends_with(".svg"))
        .count();
    assert_eq!(energy_time, 2, "{names:?}");
}

// ---- restores that cannot be cut short, and that respect the lock ----

/// A few points with a cap, a locked SM clock and a locked memory clock.
const CHANGES: &str = "precisions = [\"bf16\", \"f32\"]\nkernels = [\"sim-vendor\"]\nbatch_sizes = [1, 2]\n\
    power_caps = [\"200\", \"150\"]\nsm_clocks = [1200, 900]\nmem_clocks = [1593]\n\
    [[linear]]\nin_features = 1024\nout_features = 1024\nseq = 128\n[protocol]\nidle_baseline_s = 0.2\n";

impl Gpu {
    /// Change the fake GPU's state file (only while no joulebench runs on it).
    fn set(&self, key: &str, value: serde_json::Value) {
        let mut state = self.state();
        state[key] = value;
        std::fs::write(self.fake(), state.to_string()).unwrap();
    }

    fn locked(&self, domain: &str) -> Option<u64> {
        self.state()[format!("locked_{domain}_mhz")][1].as_u64()
    }

    /// A sweep that caps the GPU and locks its SM and memory clocks.
    fn changing_sweep(&self, out: &Path, config: &str) -> Vec<String> {
        let cfg = write(self.path(), "changes.toml", config);
        self.set("supported_mem_clocks_mhz", serde_json::json!([1593, 2619]));
        [
            "sweep",
            "--backend",
            "sim",
            "--config",
            s(&cfg),
            "--out",
            s(out),
            "--allow-power-changes",
            "--allow-clock-changes",
        ]
        .map(String::from)
        .to_vec()
    }

    /// Until the running sweep has capped the GPU, locked its SM clock and written
    /// a record.
    fn wait_until_changed(&self, child: &mut Child, out: &Path) {
        let start = Instant::now();
        while self.limit_mw() == DEFAULT_MW || self.locked("sm").is_none() || line_count(out) == 0 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the sweep ended ({status}) before the test acted");
            }
            assert!(start.elapsed() < Duration::from_secs(120), "never changed");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The GPU at its defaults, with no restore owed in `state`.
    fn at_defaults(&self, state: &Path) -> Result<(), String> {
        let (limit, sm, mem) = (self.limit_mw(), self.locked("sm"), self.locked("mem"));
        let files = state_files(state);
        if limit == DEFAULT_MW && sm.is_none() && mem.is_none() && files.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "limit {limit} mW, SM {sm:?}, memory {mem:?}, state files {files:?}"
            ))
        }
    }
}

/// A signal that may find the process gone already.
fn signal_if_alive(child: &Child, sig: i32) {
    // SAFETY: a signal to our own child; ESRCH (already gone) is fine here.
    unsafe { libc::kill(child.id() as i32, sig) };
}

#[test]
fn two_quick_signals_wait_for_the_restore_whatever_the_gap_between_them() {
    let gpu = Gpu::new(DEFAULT_MW);
    let state = gpu.path().join("state");
    let (int, term) = (libc::SIGINT, libc::SIGTERM);
    let mut failures = Vec::new();
    // Ctrl-C twice, a scheduler's TERM twice, and mixes, at gaps from none to 30 ms
    for (i, (first, second, gap_ms)) in [
        (int, int, 0),
        (term, term, 0),
        (int, int, 1),
        (int, term, 2),
        (term, int, 5),
        (int, int, 10),
        (term, term, 30),
    ]
    .into_iter()
    .enumerate()
    {
        let out = gpu.path().join(format!("r{i}.jsonl"));
        let mut child = gpu.spawn(&state, &gpu.changing_sweep(&out, CHANGES));
        gpu.wait_until_changed(&mut child, &out);
        signal(&child, first);
        if gap_ms > 0 {
            std::thread::sleep(Duration::from_millis(gap_ms));
        }
        signal_if_alive(&child, second);
        let done = child.wait_with_output().unwrap();
        let case = format!("signals {first} then {second} {gap_ms} ms apart");
        // two signals that arrive together are read in either order: the exit code
        // is the one that started the restore
        if done.status.code() != Some(128 + first) && done.status.code() != Some(128 + second) {
            failures.push(format!("{case}: exit {:?}: {}", done.status, text(&done)));
        }
        if let Err(left) = gpu.at_defaults(&state) {
            failures.push(format!("{case}: left {left}: {}", text(&done)));
            // put it back for the next case
            let _ = gpu.cmd(&state, &["power", "restore", "--force"]).output();
        }
        for r in records(&out) {
            assert!(r["status"].is_string(), "{r}");
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_third_signal_abandons_a_slow_restore_only_after_saying_what_is_left() {
    let gpu = Gpu::new(DEFAULT_MW);
    let state = gpu.path().join("state");
    let out = gpu.path().join("r.jsonl");
    let args = gpu.changing_sweep(&out, CHANGES);
    // every change takes 1.5 s: a restore of three takes 4.5
    gpu.set("change_delay_ms", 1500.into());
    let mut child = gpu.spawn(&state, &args);
    gpu.wait_until_changed(&mut child, &out);
    let mut err = BufReader::new(child.stderr.take().unwrap());
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGINT);
    let mut said = String::new();
    while !said.contains("waiting up to") {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "{said}");
        said.push_str(&line);
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited on the second signal: {said}"
    );
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    said.push_str(&rest);
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("still owed"), "{said}");
    assert!(said.contains("joulebench power restore"), "{said}");
    let files = state_files(&state);
    assert_eq!(files.len(), 1, "{said}");
    // what the state file owes is what is still changed, and `power restore` ends it
    gpu.set("change_delay_ms", 0.into());
    let o = gpu.cmd(&state, &["power", "restore"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    gpu.at_defaults(&state).unwrap();
}

#[test]
fn a_restore_tries_every_step_and_keeps_exactly_what_is_still_owed() {
    let gpu = Gpu::new(DEFAULT_MW);
    let state = gpu.path().join("state");
    let one_point = "precisions = [\"bf16\"]\nkernels = [\"sim-vendor\"]\npower_caps = [\"200\"]\n\
        sm_clocks = [1200]\nmem_clocks = [1593]\n[[matmul]]\nm = 512\nn = 512\nk = 512\n\
        [protocol]\nidle_baseline_s = 0.0\n";
    // the guard's own restore: the SM reset fails, the memory clock and limit still go back
    let out = gpu.path().join("a.jsonl");
    let args = gpu.changing_sweep(&out, one_point);
    gpu.set("fail_clock_resets", serde_json::json!(["sm"]));
    let o = gpu.output(&state, &args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("SM clocks could not be reset"),
        "{}",
        text(&o)
    );
    assert_eq!(gpu.locked("mem"), None, "{}", text(&o));
    assert_eq!(gpu.limit_mw(), DEFAULT_MW, "{}", text(&o));
    assert_eq!(gpu.locked("sm"), Some(1200));
    let owed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_files(&state)[0]).unwrap()).unwrap();
    assert_eq!(
        owed["locked_clocks"],
        serde_json::json!({"sm": true, "mem": false})
    );
    assert_eq!(owed["limit_owed"], false);
    gpu.set("fail_clock_resets", serde_json::json!([]));
    let o = gpu.cmd(&state, &["power", "restore"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    gpu.at_defaults(&state).unwrap();

    // `power restore` after a SIGKILL: the same, every step tried
    let out = gpu.path().join("b.jsonl");
    let mut child = gpu.spawn(&state, &gpu.changing_sweep(&out, CHANGES));
    gpu.wait_until_changed(&mut child, &out);
    while gpu.locked("mem").is_none() {
        assert!(child.try_wait().unwrap().is_none());
        std::thread::sleep(Duration::from_millis(2));
    }
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    gpu.set("fail_clock_resets", serde_json::json!(["sm"]));
    let o = gpu.cmd(&state, &["power", "restore"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("SM clocks could not be reset"),
        "{}",
        text(&o)
    );
    assert_eq!(gpu.limit_mw(), DEFAULT_MW, "{}", text(&o));
    assert_eq!(gpu.locked("mem"), None, "{}", text(&o));
    let owed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_files(&state)[0]).unwrap()).unwrap();
    assert_eq!(
        owed["locked_clocks"],
        serde_json::json!({"sm": true, "mem": false})
    );
    assert_eq!(owed["limit_owed"], false);
    gpu.set("fail_clock_resets", serde_json::json!([]));
    let o = gpu.cmd(&state, &["power", "restore"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    gpu.at_defaults(&state).unwrap();
}

#[test]
fn power_restore_never_touches_a_gpu_another_live_process_holds() {
    let gpu = Gpu::new(DEFAULT_MW);
    let (state_a, state_b) = (gpu.path().join("state-a"), gpu.path().join("state-b"));
    // a live clock sweep: `power restore --force` on its own state file is refused
    let out = gpu.path().join("live.jsonl");
    let mut live = gpu.spawn(&state_b, &gpu.changing_sweep(&out, CHANGES));
    gpu.wait_until_changed(&mut live, &out);
    let o = gpu
        .cmd(&state_b, &["power", "restore", "--force"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let holder = format!("joulebench process {}", live.id());
    assert!(text(&o).contains(&holder), "{}", text(&o));
    assert_eq!(
        state_files(&state_b).len(),
        1,
        "the live sweep's state file went"
    );
    assert!(gpu.locked("sm").is_some());
    signal(&live, libc::SIGINT);
    live.wait().unwrap();
    gpu.at_defaults(&state_b).unwrap();

    // a sweep killed with a restore owed in state-a; another sweep, from state-b,
    // is refused rather than take A's cap as the limit "as found"
    let out = gpu.path().join("a.jsonl");
    let mut a = gpu.spawn(&state_a, &gpu.capped_sweep(&out));
    gpu.wait_until_capped(&mut a, &out);
    signal(&a, libc::SIGKILL);
    a.wait().unwrap();
    let left_at = gpu.limit_mw();
    let changes = gpu.history().len();
    let o = gpu.output(&state_b, &gpu.capped_sweep(&gpu.path().join("b.jsonl")));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("JOULEBENCH_STATE_DIR={}", state_a.display())),
        "{}",
        text(&o)
    );
    assert_eq!((gpu.limit_mw(), gpu.history().len()), (left_at, changes));
    let status = gpu.cmd(&state_b, &["power", "status"]).output().unwrap();
    assert!(
        text(&status).contains("owed from another state directory"),
        "{}",
        text(&status)
    );
    let o = gpu.cmd(&state_a, &["power", "restore"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    gpu.at_defaults(&state_a).unwrap();
}

#[test]
fn power_restore_waits_for_the_lock_of_a_sweep_from_another_state_directory() {
    // a state file an older run left (no word of it in the GPU's lock file), its
    // cap still on the GPU; a sweep from another state directory runs meanwhile
    let gpu = Gpu::new(150_000);
    let (state_a, state_b) = (gpu.path().join("state-a"), gpu.path().join("state-b"));
    std::fs::create_dir(&state_a).unwrap();
    std::fs::set_permissions(&state_a, std::fs::Permissions::from_mode(0o700)).unwrap();
    let stale = serde_json::json!({
        "schema": 2, "device": {"name": "Fake GPU", "uuid": UUID, "pci_bus_id": null},
        "device_kind": "fake-nvml", "original_limit_w": 300.0, "default_limit_w": 300.0,
        "min_limit_w": 100.0, "max_limit_w": 400.0, "pid": 4000000000u64,
        "process_start_ticks": null, "boot_id": null, "host": null, "written_unix_s": 1.0
    });
    let planted = state_a.join(format!("power-state-{KEY}.json"));
    std::fs::write(&planted, stale.to_string()).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = gpu.path().join("b.jsonl");
    let mut b = gpu.spawn(&state_b, &gpu.capped_sweep(&out));
    let start = Instant::now();
    while line_count(&out) == 0 || gpu.limit_mw() == 150_000 {
        assert!(b.try_wait().unwrap().is_none());
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(2));
    }
    let o = gpu
        .cmd(&state_a, &["power", "restore", "--force"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("joulebench process {}", b.id())),
        "{}",
        text(&o)
    );
    // nothing changed under B: every limit set is one of B's caps
    assert!(
        gpu.history()
            .iter()
            .all(|&mw| mw == 200_000 || mw == 150_000),
        "{:?}",
        gpu.history()
    );
    assert!(planted.exists());
    signal(&b, libc::SIGINT);
    b.wait().unwrap();
    // B put back what it found; A's restore then runs
    assert_eq!(gpu.limit_mw(), 150_000);
    let o = gpu.cmd(&state_a, &["power", "restore"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    gpu.at_defaults(&state_a).unwrap();
    assert!(state_files(&state_b).is_empty());
}

#[test]
fn clocks_left_locked_are_noticed_at_the_start_like_a_cap() {
    let gpu = Gpu::new(DEFAULT_MW);
    let state = gpu.path().join("state");
    let flagged = |r: &serde_json::Value| {
        r["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "clocks-not-default")
    };
    // a clock sweep killed with the SM clock locked: resumed at default clocks
    let out = gpu.path().join("r.jsonl");
    let mut child = gpu.spawn(&state, &gpu.changing_sweep(&out, CHANGES));
    gpu.wait_until_changed(&mut child, &out);
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let before = records_left(&out).len();
    let cfg = gpu.path().join("changes.toml");
    let defaults = |out: &Path| {
        [
            "sweep",
            "--backend",
            "sim",
            "--config",
            s(&cfg),
            "--out",
            s(out),
            "--power-caps",
            "default",
            "--sm-clocks",
            "default",
            "--mem-clocks",
            "default",
        ]
        .map(String::from)
        .to_vec()
    };
    let mut resumed = defaults(&out);
    resumed.push("--resume".into());
    let o = gpu.output(&state, &resumed);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not at its default"), "{}", text(&o));
    let new: Vec<serde_json::Value> = records(&out).into_iter().skip(before).collect();
    assert!(!new.is_empty());
    for r in &new {
        if r["status"] == "measured" {
            assert!(flagged(r), "{r}");
        }
    }
    let o = gpu.cmd(&state, &["power", "restore"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // locked by another tool, no state file anywhere: flagged, and a clock sweep
    // (whose restore would reset to a state it never found) is refused
    gpu.set("locked_sm_mhz", serde_json::json!([1200, 1200]));
    let other = gpu.path().join("other.jsonl");
    let o = gpu.output(&state, &defaults(&other));
    assert!(o.status.success(), "{}", text(&o));
    assert!(records(&other)
        .iter()
        .filter(|r| r["status"] == "measured")
        .all(flagged));
    let o = gpu.output(
        &state,
        &gpu.changing_sweep(&gpu.path().join("x.jsonl"), CHANGES),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("cannot put back a lock it did not make"),
        "{}",
        text(&o)
    );
    assert_eq!(gpu.locked("sm"), Some(1200));
    let status = gpu.cmd(&state, &["power", "status"]).output().unwrap();
    assert!(
        text(&status).contains("clocks are locked and no restore is owed"),
        "{}",
        text(&status)
    );
}

#[test]
fn a_state_directory_that_is_another_users_link_is_refused() {
    if !is_root() {
        return skip("a link of another user needs root to switch to user nobody");
    }
    let gpu = Gpu::new(DEFAULT_MW);
    std::fs::set_permissions(gpu.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let real = gpu.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let shared = gpu.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let link = shared.join("state");
    let o = Command::new("ln")
        .args(["-s", s(&real), s(&link)])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = gpu.path().join("r.jsonl");
    let o = gpu.output(&link, &gpu.capped_sweep(&out));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("symbolic link of user 65534"),
        "{}",
        text(&o)
    );
    assert!(gpu.history().is_empty() && !out.exists());
    for cmd in ["restore", "status"] {
        let o = gpu.cmd(&link, &["power", cmd]).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", text(&o));
    }
}

// ---- outputs: never onto an input, a live results file, or anything but a file ----

#[test]
fn two_outputs_of_one_command_never_share_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    let o = run(&[
        "model",
        "--backend",
        "sim",
        "--preset",
        "tiny",
        "--micro-batches",
        "1",
        "--precisions",
        "bf16",
        "--out",
        s(&f),
        "--emit",
        "toml",
        s(&f),
        "--force",
        "--idle-baseline-s",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("both name"), "{}", text(&o));
    assert!(!f.exists(), "something was measured into it");
    // a sweep's results over its own config
    let cfg = write(dir.path(), "tiny.toml", TINY);
    let before = std::fs::read(&cfg).unwrap();
    refused(
        &[
            "sweep",
            "--backend",
            "sim",
            "--config",
            s(&cfg),
            "--out",
            s(&cfg),
            "--resume",
        ],
        "is also an input",
    );
    assert_eq!(std::fs::read(&cfg).unwrap(), before);
}

#[test]
fn force_replaces_only_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    sweep_tiny(dir.path(), &out, &[]);
    let target = write(dir.path(), "target.md", "precious\n");
    let link = dir.path().join("link.md");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fifo = dir.path().join("fifo.md");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut targets = vec![(link.clone(), "symbolic link"), (fifo.clone(), "a FIFO")];
    // a device node of our own (as /dev/full is: char 1,7), where we may make one
    let node = dir.path().join("full.md");
    let made = is_root()
        && Command::new("mknod")
            .args([s(&node), "c", "1", "7"])
            .status()
            .is_ok_and(|st| st.success());
    if made {
        targets.push((node.clone(), "a device"));
    } else if is_root() {
        panic!("mknod failed as root");
    }
    for (path, why) in &targets {
        let start = Instant::now();
        refused(&["report", s(&out), "--out", s(path), "--force"], why);
        assert!(start.elapsed() < Duration::from_secs(20), "{why}: blocked");
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    if made {
        assert!(std::fs::metadata(&node)
            .unwrap()
            .file_type()
            .is_char_device());
    } else {
        skip("making a device node needs root");
    }
}

#[test]
fn no_output_lands_on_a_results_file_a_running_sweep_writes() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.jsonl");
    sweep_tiny(dir.path(), &other, &[]);
    let cfg = write(dir.path(), "longer.toml", common::LONGER_SWEEP);
    let live = dir.path().join("live.jsonl");
    let mut sweep = jb()
        .args([
            "sweep",
            "--backend",
            "sim",
            "--config",
            s(&cfg),
            "--out",
            s(&live),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while line_count(&live) == 0 {
        assert!(sweep.try_wait().unwrap().is_none(), "finished too soon");
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = format!("(process {})", sweep.id());
    for args in [
        vec!["report", s(&other), "--out", s(&live), "--force"],
        vec!["merge", s(&other), "--out", s(&live), "--force"],
        vec![
            "recommend",
            s(&other),
            "--emit",
            "toml",
            s(&live),
            "--force",
        ],
    ] {
        let t = refused(&args, "being written by another joulebench");
        assert!(t.contains(&pid), "{t}");
    }
    let seen = line_count(&live);
    sweep.kill().unwrap();
    sweep.wait().unwrap();
    let kept = records(&live);
    assert!(kept.len() >= seen && kept.iter().all(|r| r["schema"].is_u64()));
}

#[test]
fn a_failed_write_leaves_no_temporary_file_and_stdout_errors_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    sweep_tiny(dir.path(), &out, &[]);
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    let doc = docs.join("report.md");
    let mut cmd = jb();
    cmd.args(["report", s(&out), "--format", "markdown", "--out", s(&doc)]);
    // room for 1 KiB: the report is longer, so its write fails half-way (EFBIG)
    // SAFETY: between fork and exec, only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let l = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let left: Vec<_> = std::fs::read_dir(&docs).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    // a full standard output is an I/O error, not a success (nor a panic)
    for args in [
        vec!["report", s(&out)],
        vec!["recommend", s(&out)],
        vec!["devices"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = jb().args(&args).stdout(full).output().unwrap();
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("standard output"), "{}", text(&o));
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
    }
}

// ---- meters: bounded reads of regular files only ----

#[path = "../crates/energy/tests/common/sysfs_fixture.rs"]
mod sysfs_fixture;

#[test]
fn a_meter_file_that_is_a_device_or_a_fifo_is_refused_without_reading_it() {
    let fx = sysfs_fixture::SysfsFixture::new();
    let zero = fx.intel(2, "xe", "0000:04:00.0", 0).join("energy1_input");
    std::fs::remove_file(&zero).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let fifo = fx.intel(3, "xe", "0000:05:00.0", 0).join("energy1_input");
    std::fs::remove_file(&fifo).unwrap();
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut cmd = jb();
    cmd.arg("devices")
        .env("JOULEBENCH_SYSFS_ROOT", fx.root())
        .env_remove("JOULEBENCH_FAKE_NVML")
        .env_remove("JOULEBENCH_FAKE_AMDSMI")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // a reader that trusted the file would fill memory: capped here so a failure
    // of this test cannot take the machine with it
    // SAFETY: between fork and exec, only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(|| {
            let l = libc::rlimit {
                rlim_cur: 4 << 30,
                rlim_max: 4 << 30,
            };
            libc::setrlimit(libc::RLIMIT_DATA, &l);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("`devices` blocked on a meter file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = child.wait_with_output().unwrap();
    assert!(status.success(), "{}", text(&o));
    assert!(text(&o).contains("not a regular file"), "{}", text(&o));
}

// ---- records that contradict themselves, counted twice, or asked twice ----

#[test]
fn records_whose_numbers_contradict_each_other_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    sweep_tiny(dir.path(), &out, &[]);
    let good = std::fs::read_to_string(&out).unwrap();
    let first: serde_json::Value = serde_json::from_str(good.lines().next().unwrap()).unwrap();
    let forge = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut r = first.clone();
        edit(&mut r);
        write(dir.path(), name, &format!("{good}{r}\n"))
    };
    let cases = [
        (
            forge("negative-window.jsonl", &|r| {
                r["measurement"]["windows"][0]["joules"] = (-1.0).into()
            }),
            "windows[0].joules = -1",
        ),
        (
            forge("summary.jsonl", &|r| {
                let s = &mut r["measurement"]["summary"];
                let j = s["joules_per_op"]["median"].as_f64().unwrap();
                let f = s["joules_per_flop"]["median"].as_f64().unwrap();
                s["joules_per_op"]["median"] = (j / 10.0).into();
                s["joules_per_flop"]["median"] = (f / 10.0).into();
            }),
            "lies outside its windows",
        ),
        (
            forge("flop.jsonl", &|r| {
                let f = r["flop"].as_u64().unwrap();
                r["flop"] = (f / 2).into();
            }),
            "the workload's shape makes",
        ),
    ];
    for (path, why) in &cases {
        for cmd in ["report", "recommend"] {
            let t = refused(&[cmd, s(path)], why);
            assert!(t.contains(":5:"), "{t}");
        }
    }
}

#[test]
fn one_measurement_read_twice_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    sweep_tiny(dir.path(), &out, &[]);
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&out, &copy).unwrap();
    let o = run(&["report", s(&out), s(&copy), "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows["rows"].as_array().map(Vec::len), Some(4), "{rows}");
    assert!(text(&o).contains("counts once"), "{}", text(&o));
}

#[test]
fn caps_that_name_one_limit_are_measured_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    // sim-h100's default limit is 700 W: 350 W and 50% are one cap
    let o = sweep_tiny(dir.path(), &out, &["--power-caps", "350,50%"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("both 350 W"), "{}", text(&o));
    let recs = records(&out);
    let mut keys: Vec<String> = recs.iter().map(point_key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!((recs.len(), keys.len()), (4, 4));
}

#[test]
fn objective_parameters_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    sweep_tiny(dir.path(), &out, &[]);
    for bad in ["0", "-1e6", "NaN", "inf"] {
        let flag = format!("--max-power-w={bad}");
        refused(
            &["recommend", s(&out), "--objective", "zeus", &flag],
            "--max-power-w",
        );
    }
    refused(
        &[
            "recommend",
            s(&out),
            "--objective",
            "least-energy",
            "--max-power-w=700",
        ],
        "--objective zeus",
    );
}

// ---- every control in `power status`, input checked before measuring, odd values ----

#[test]
fn power_status_covers_amdsmi_and_hwmon_caps() {
    let fx = sysfs_fixture::SysfsFixture::new();
    fx.amdgpu(4, "0000:c1:00.0", 150_000_000, 250_000_000);
    let dir = tempfile::tempdir().unwrap();
    let fake_amd = write(dir.path(), "amd.json", "{}");
    let o = jb()
        .args(["power", "status"])
        .env("JOULEBENCH_SYSFS_ROOT", fx.root())
        .env("JOULEBENCH_FAKE_AMDSMI", &fake_amd)
        .env("JOULEBENCH_STATE_DIR", dir.path().join("state"))
        .env("JOULEBENCH_LOCK_DIR", dir.path().join("locks"))
        .env_remove("JOULEBENCH_FAKE_NVML")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("Fake MI210 (fake amdsmi) (fake-amdsmi)"), "{t}");
    assert!(t.contains("(amdgpu, 0000:c1:00.0) (hwmon)"), "{t}");
    assert!(t.contains("power limit: 250 W now"), "{t}");
}

#[test]
fn every_input_is_checked_before_the_first_point_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = write(dir.path(), "plots", "a file\n");
    let out = dir.path().join("never.jsonl");
    refused(
        &[
            "model",
            "--backend",
            "sim",
            "--preset",
            "tiny",
            "--micro-batches",
            "1",
            "--precisions",
            "bf16",
            "--out",
            s(&out),
            "--plots",
            s(&not_a_dir),
        ],
        "is not a directory",
    );
    assert!(!out.exists(), "measured before refusing");
}

#[test]
fn a_relative_home_is_no_place_for_a_state_file() {
    let gpu = Gpu::new(DEFAULT_MW);
    let cwd = gpu.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let out = gpu.path().join("r.jsonl");
    let args = gpu.capped_sweep(&out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = jb()
        .args(&args)
        .current_dir(&cwd)
        .env("HOME", "relative-home")
        .env_remove("JOULEBENCH_STATE_DIR")
        .env_remove("XDG_STATE_HOME")
        .env("JOULEBENCH_FAKE_NVML", gpu.fake())
        .env("JOULEBENCH_LOCK_DIR", gpu.path().join("locks"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("state file"), "{}", text(&o));
    assert!(gpu.history().is_empty());
    assert!(!cwd.join("relative-home").exists());
}

#[test]
fn enormous_values_are_echoed_shortened() {
    // as long as one argument may be (128 KiB on Linux)
    let huge = "x".repeat(100_000);
    for args in [
        vec!["sweep", "--backend", "sim", "--precisions", &huge],
        vec!["sweep", "--backend", "sim", "--seed", &huge],
        vec!["report", "r.jsonl", "--max-slowdown", &huge],
    ] {
        let o = run(&args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}",
            &text(&o)[..200.min(text(&o).len())]
        );
        assert!(text(&o).len() < 4096, "{} bytes echoed", text(&o).len());
        assert!(text(&o).contains("characters left out"), "{}", text(&o));
    }
}
