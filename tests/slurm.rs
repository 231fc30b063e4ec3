//! The Slurm job array of scripts/slurm/ on a real (one-node) cluster: munged,
//! slurmctld and slurmd started on localhost inside a temp dir by
//! scripts/slurm/local-cluster.sh. The array runs on the simulated device with a
//! different profile per task, is merged and compared; and a task cancelled mid-sweep
//! and submitted again ends with every point measured exactly once.
//!
//! Needs root and Debian's slurm-wlm and munge (scripts/setup-test-deps.sh installs
//! them). Without them the tests say `skipped: <why>`; under CI=true they fail instead.

mod common;
use common::{point_key, records, text, uuids, write, LONGER_SWEEP, LONGER_SWEEP_POINTS};

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const JOB_TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script(name: &str) -> PathBuf {
    repo().join("scripts/slurm").join(name)
}

/// A one-node cluster in a temp dir; its daemons are stopped when it is dropped,
/// also when a test fails.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("id: {e}"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("needs root to run slurmd".into());
        }
        for bin in [
            "munged",
            "slurmctld",
            "slurmd",
            "sbatch",
            "squeue",
            "scontrol",
            "scancel",
        ] {
            let found = Command::new("sh")
                .args([
                    "-c",
                    &format!("PATH=$PATH:/usr/sbin:/sbin; command -v {bin}"),
                ])
                .output();
            if !found.is_ok_and(|o| o.status.success()) {
                return Err(format!(
                    "{bin} not found: install slurm-wlm and munge (scripts/setup-test-deps.sh)"
                ));
            }
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // munged wants the directories above its socket searchable by all
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(|e| e.to_string())?;
        let cluster = Cluster { dir }; // from here on, Drop stops whatever started
        let o = Command::new("bash")
            .arg(script("local-cluster.sh"))
            .args(["start", cluster.cluster_dir().to_str().unwrap()])
            .output()
            .map_err(|e| format!("local-cluster.sh: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "the local cluster did not start: {}",
                text(&o).trim()
            ));
        }
        Ok(cluster)
    }

    fn cluster_dir(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    fn results(&self) -> PathBuf {
        self.dir.path().join("results")
    }

    /// A command that talks to this cluster, with the joulebench under test.
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.cluster_dir().join("slurm.conf"))
            .env("JOULEBENCH", env!("CARGO_BIN_EXE_joulebench"))
            .env_remove("CI");
        c
    }

    fn run(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
        self.cmd(program)
            .args(args)
            .output()
            .expect("run a cluster command")
    }

    /// Submit with scripts/slurm/submit.sh; the job id.
    fn submit(&self, args: &[&str]) -> String {
        let o = self
            .cmd("bash")
            .arg(script("submit.sh"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "submit.sh: {}", text(&o));
        let job = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(job.parse::<u64>().is_ok(), "job id '{job}': {}", text(&o));
        job
    }

    /// Wait until no task of `job` is pending or running.
    fn wait(&self, job: &str) {
        let start = Instant::now();
        loop {
            let o = self.run("squeue", &["-h", "-j", job, "-o", "%i"]);
            let gone = String::from_utf8_lossy(&o.stderr).contains("Invalid job id");
            if gone || (o.status.success() && o.stdout.iter().all(u8::is_ascii_whitespace)) {
                return;
            }
            assert!(
                start.elapsed() < JOB_TIMEOUT,
                "job {job} still queued after {JOB_TIMEOUT:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Array task → final state (COMPLETED, CANCELLED, FAILED…).
    fn states(&self, job: &str) -> BTreeMap<u32, String> {
        let o = self.run("scontrol", &["show", "job", job]);
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let field = |block: &str, name: &str| {
            block
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(String::from))
        };
        out.split("JobId=")
            .skip(1)
            .filter_map(|b| {
                Some((
                    field(b, "ArrayTaskId")?.parse().ok()?,
                    field(b, "JobState")?,
                ))
            })
            .collect()
    }

    /// Every task log and the daemons' last lines, for a failure message.
    fn logs(&self) -> String {
        let mut s = String::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.results())
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|run| {
                std::fs::read_dir(run.path().join("logs"))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|e| e.path())
            .collect();
        files.sort();
        files.push(self.cluster_dir().join("log/slurmctld.log"));
        files.push(self.cluster_dir().join("log/slurmd.log"));
        for f in files {
            let body = std::fs::read_to_string(&f).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(25).collect();
            s.push_str(&format!("== {}\n", f.display()));
            for l in tail.iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let dir = self.cluster_dir();
        let _ = Command::new("bash")
            .arg(script("local-cluster.sh"))
            .arg("stop")
            .arg(&dir)
            .output();
        // should the script itself have failed: the daemons by their pid files
        for pid_file in ["slurmd.pid", "slurmctld.pid", "munge/munged.pid"] {
            if let Ok(pid) = std::fs::read_to_string(dir.join(pid_file)) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).output();
            }
        }
    }
}

/// The cluster, or `None` after saying why not (a failure under CI=true).
fn cluster_or_skip() -> Option<Cluster> {
    match Cluster::start() {
        Ok(c) => Some(c),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true, and no Slurm cluster: {why}")
        }
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

fn point_keys(recs: &[serde_json::Value]) -> HashSet<String> {
    recs.iter().map(point_key).collect()
}

const PROFILES: [&str; 3] = ["sim-h100", "sim-a100", "sim-l40s"];

/// 2 kernels × 2 precisions × 2 caps of one matmul, and bf16 attention: a few seconds.
const TINY: &str = r#"
precisions = ["bf16", "f32"]
power_caps = ["default", "70%"]
[[matmul]]
m = 2048
n = 2048
k = 2048
[protocol]
idle_baseline_s = 0.5
"#;
const TINY_POINTS: usize = 8;

/// A row of `compare`: rank, device, pJ/FLOP.
type Ranked = (u32, String, f64);

#[test]
fn a_job_array_of_simulated_gpus_is_merged_and_compared() {
    let Some(cluster) = cluster_or_skip() else {
        return;
    };
    let started = Instant::now();
    let cfg = write(cluster.dir.path(), "sweep.toml", TINY);
    let results = cluster.results();
    let job = cluster.submit(&[
        "--results",
        results.to_str().unwrap(),
        "--run",
        "survey",
        "--backend",
        "sim",
        "--config",
        cfg.to_str().unwrap(),
        "--sim-profiles",
        &PROFILES.join(","),
    ]);
    cluster.wait(&job);
    let states = cluster.states(&job);
    let want: BTreeMap<u32, String> = (0..3).map(|t| (t, "COMPLETED".to_string())).collect();
    assert_eq!(states, want, "{}", cluster.logs());

    let run = results.join("survey");
    for (task, profile) in PROFILES.iter().enumerate() {
        let recs = records(&run.join(format!("{task}.jsonl")));
        assert_eq!(recs.len(), TINY_POINTS, "task {task}");
        // one simulated GPU per task: device 0 of its node
        assert_eq!(
            uuids(&recs),
            BTreeSet::from([format!("SIM-{profile}-0")]),
            "task {task}"
        );
    }

    let o = cluster.run(
        "bash",
        &[
            script("collect.sh").to_str().unwrap(),
            run.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "collect.sh: {}", text(&o));
    let merged = records(&results.join("survey.jsonl"));
    assert_eq!(merged.len(), 3 * TINY_POINTS);
    assert_eq!(
        point_keys(&merged).len(),
        merged.len(),
        "a point appears twice"
    );
    assert_eq!(uuids(&merged).len(), 3);

    // compare ranks the three profiles in every workload and precision
    let table: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("compare --format json");
    let rows = table["rows"].as_array().expect("rows");
    let mut groups: BTreeMap<(String, String), Vec<Ranked>> = BTreeMap::new();
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        groups
            .entry((s("workload"), s("precision")))
            .or_default()
            .push((
                s("rank").parse().unwrap(),
                s("device"),
                s("energy (pJ/FLOP)").parse().unwrap(),
            ));
    }
    assert!(!groups.is_empty(), "{table}");
    for (g, mut ranked) in groups.clone() {
        ranked.sort_by_key(|r| r.0);
        assert_eq!(
            ranked.iter().map(|r| r.0).collect::<Vec<_>>(),
            [1, 2, 3],
            "{g:?}"
        );
        let devices: BTreeSet<&str> = ranked.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(devices.len(), 3, "{g:?}: {ranked:?}");
        assert!(
            ranked.windows(2).all(|w| w[0].2 <= w[1].2),
            "{g:?}: ranks not by energy: {ranked:?}"
        );
    }
    let bf16 = &groups[&("matmul 2048x2048x2048".to_string(), "bf16".to_string())];
    let first = bf16.iter().min_by_key(|r| r.0).unwrap();
    assert!(
        first.1.starts_with("sim-h100"),
        "bf16 matmul: the H100 profile costs the least energy: {bf16:?}"
    );
    println!(
        "job array of 3 tasks: submitted, run, merged and compared in {:.1?}",
        started.elapsed()
    );
}

#[test]
fn a_cancelled_task_resubmitted_measures_every_point_exactly_once() {
    let Some(cluster) = cluster_or_skip() else {
        return;
    };
    let started = Instant::now();
    let cfg = write(cluster.dir.path(), "sweep.toml", LONGER_SWEEP);
    let results = cluster.results();
    let run = results.join("fault");
    let submit_args = |array: &'static str| {
        vec![
            "--results".to_string(),
            results.display().to_string(),
            "--run".into(),
            "fault".into(),
            "--backend".into(),
            "sim".into(),
            "--config".into(),
            cfg.display().to_string(),
            "--sim-profiles".into(),
            PROFILES.join(","),
            "--array".into(),
            array.into(),
        ]
    };
    let args = submit_args("0-2");
    let job = cluster.submit(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // cancel task 1 once its GPU has a few points
    let dev_file = run.join("1.dev0.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&dev_file)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 3
    {
        assert!(
            start.elapsed() < JOB_TIMEOUT,
            "task 1 wrote nothing\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = cluster.run("scancel", &[&format!("{job}_1")]);
    assert!(o.status.success(), "scancel: {}", text(&o));
    cluster.wait(&job);
    let states = cluster.states(&job);
    assert_eq!(
        states.get(&1).map(String::as_str),
        Some("CANCELLED"),
        "{states:?}\n{}",
        cluster.logs()
    );
    assert_eq!(
        states.get(&0).map(String::as_str),
        Some("COMPLETED"),
        "{states:?}\n{}",
        cluster.logs()
    );
    assert_eq!(
        states.get(&2).map(String::as_str),
        Some("COMPLETED"),
        "{states:?}\n{}",
        cluster.logs()
    );
    let partial = std::fs::read(&dev_file).unwrap();
    let partial_points = records(&dev_file).len();
    assert!(
        (3..LONGER_SWEEP_POINTS).contains(&partial_points),
        "task 1 was cancelled after {partial_points} points\n{}",
        cluster.logs()
    );

    // the same index again, same run: it continues
    let again = cluster.submit(
        &submit_args("1")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    cluster.wait(&again);
    assert_eq!(
        cluster.states(&again),
        BTreeMap::from([(1, "COMPLETED".to_string())]),
        "{}",
        cluster.logs()
    );
    let resumed = std::fs::read(&dev_file).unwrap();
    assert_eq!(
        &resumed[..partial.len()],
        &partial[..],
        "finished records were rewritten"
    );
    let log = std::fs::read_to_string(run.join(format!("logs/{again}_1.out"))).unwrap_or_default();
    assert!(
        log.contains(&format!(
            "resuming: {partial_points} of {LONGER_SWEEP_POINTS}"
        )),
        "{log}"
    );

    for task in 0..3 {
        for file in [format!("{task}.jsonl"), format!("{task}.dev0.jsonl")] {
            let recs = records(&run.join(&file));
            assert_eq!(recs.len(), LONGER_SWEEP_POINTS, "{file}");
            assert_eq!(
                point_keys(&recs).len(),
                LONGER_SWEEP_POINTS,
                "{file}: a point measured twice"
            );
        }
    }
    let o = cluster.run(
        "bash",
        &[
            script("collect.sh").to_str().unwrap(),
            run.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "collect.sh: {}", text(&o));
    let merged = records(&results.join("fault.jsonl"));
    assert_eq!(merged.len(), 3 * LONGER_SWEEP_POINTS);
    assert_eq!(
        point_keys(&merged).len(),
        merged.len(),
        "a point measured twice"
    );
    println!("cancel, resubmit and collect in {:.1?}", started.elapsed());
}
