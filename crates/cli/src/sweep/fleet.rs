//! `joulebench sweep --devices`: every GPU of a node measured at once, one worker
//! process per GPU (this same binary, pinned to its device) so each has its own
//! meter, results file and failure. The parent draws a bar per device from the
//! workers' progress lines, reports each device's end, and merges the files.

mod merge;
mod slots;

pub use slots::single_profile;

use super::setup::{default_out, stop_on_signals, Overrides};
use super::worker::{Event, ParentMessage};
use crate::args::SweepArgs;
use crate::error::{interrupted, runtime, usage, CliError, EXIT_USAGE};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use joulebench_core::plan::SweepConfig;
use joulebench_core::record::PointStatus;
use joulebench_device::host_name;
use joulebench_device::BackendKind;
use slots::{inherited_args, parse_device_list, worker_args, Slot};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the parent learnt from one worker's stderr.
#[derive(Default)]
struct WorkerLog {
    device: Option<String>,
    /// The worker's `Done` event, as a line for the user.
    done: Option<String>,
    /// Its `Error` event: message and exit code.
    error: Option<(String, i32)>,
    /// Its last lines that are not events (a driver's messages), where it failed
    /// without saying why.
    tail: Vec<String>,
}

struct Worker {
    slot: Slot,
    child: Option<Child>,
    /// Closed to ask the worker to stop after its point.
    stdin: Option<ChildStdin>,
    status: Option<ExitStatus>,
    /// Why the worker could not be started or waited for.
    lost: Option<String>,
    log: Arc<Mutex<WorkerLog>>,
    reader: Option<JoinHandle<()>>,
}

/// A line for the user: above the bars on a terminal, plain on stderr otherwise
/// (a Slurm log), where the bars are not drawn.
fn say(multi: &MultiProgress, line: impl AsRef<str>) {
    if multi.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        let _ = multi.println(line);
    }
}

/// The sweep of `args` on every device of `devices`; `sweep::run` has checked the
/// flags, and `--out` where given.
pub fn run(args: &SweepArgs, devices: &str, ov: &Overrides) -> Result<(), CliError> {
    let list = parse_device_list(devices).map_err(usage)?;
    // a bad config: one message now, not one per device
    if let Some(path) = &args.config {
        SweepConfig::from_toml_file(path)?;
    }
    let backend = joulebench_device::resolve_backend(args.backend);
    let backend_name = backend.name();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(backend_name, &host_name()));
    super::check_results_path(&out, args.resume)?;
    let slots = slots::slots(args, backend, &list, &out)?;
    for s in &slots {
        super::check_results_path(&s.out, args.resume)?;
    }
    if args.dry_run {
        return dry_run(&slots, backend, &out);
    }
    let existed = out.exists();
    // held until the merge: a second sweep of this node into the same file is refused
    let (mut writer, _) = super::resume::open_results(&out, args.resume)?;
    if args.backend == BackendKind::Auto && backend == BackendKind::Sim {
        eprintln!("no CUDA device and no GPU wgpu adapter found (see `joulebench devices`): using simulated devices; records say simulated");
    }
    let exe = std::env::current_exe().map_err(|e| {
        runtime(format!(
            "cannot find the joulebench binary to start workers: {e}"
        ))
    })?;
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let inherited = inherited_args(&argv);

    // the first signal stops every worker after its point; a second ends this process
    let (stop, stop_signal) = stop_on_signals();

    let n = slots.len();
    eprintln!(
        "sweep: {n} {} ({backend_name} backend), one worker each → {}",
        if n == 1 { "device" } else { "devices" },
        out.display()
    );
    let multi = MultiProgress::new();
    let mut workers: Vec<Worker> = slots
        .into_iter()
        .map(|slot| Worker::start(slot, &exe, &inherited, backend, &multi))
        .collect();
    let stopped = wait_all(&mut workers, &stop, &multi);
    let failures = report(&workers, stopped);

    // whatever was measured is merged, also after a failure or a stop
    let parts: Vec<PathBuf> = workers.iter().map(|w| w.slot.out.clone()).collect();
    let merged = merge::append_new_records(&mut writer, &parts)
        .map_err(|e| CliError::from(e).context("merging the device files"))?;
    drop(writer);
    if !existed && std::fs::metadata(&out).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(&out);
    }
    let already = match merged.already_there {
        0 => String::new(),
        k => format!(" ({k} already there)"),
    };
    eprintln!(
        "merged: {} records appended to {}{already}",
        merged.appended,
        out.display()
    );

    if stopped {
        return Err(interrupted(&out, stop_signal.load(Ordering::SeqCst) as i32));
    }
    super::recommend_from(&out, ov.max_slowdown, &ov.baseline)?;
    if failures.is_empty() {
        return Ok(());
    }
    let message = format!(
        "{} of {n} devices failed: {}; the others' records are in {} (retry with --resume --out {})",
        failures.len(),
        failures.iter().map(|f| format!("dev{} ({})", f.index, f.why)).collect::<Vec<_>>().join("; "),
        out.display(),
        out.display()
    );
    // every device refused the same bad input: exit 2, as a single sweep would
    Err(
        if failures.len() == n && failures.iter().all(|f| f.code == Some(EXIT_USAGE)) {
            usage(message)
        } else {
            runtime(message)
        },
    )
}

/// `--devices --dry-run`: each device's plan, from its worker run with `--dry-run`
/// in turn (so each is planned on its own device, as the sweep would), nothing
/// measured and no file written.
fn dry_run(slots: &[Slot], backend: BackendKind, out: &Path) -> Result<(), CliError> {
    let exe = std::env::current_exe().map_err(|e| {
        runtime(format!(
            "cannot find the joulebench binary to plan each device: {e}"
        ))
    })?;
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let inherited = inherited_args(&argv);
    crate::out::line(&format!(
        "Dry run of {} device(s) ({} backend): each device's records would go to its own file, merged into {} at the end.",
        slots.len(),
        backend.name(),
        out.display()
    ))?;
    let mut failed = 0;
    for slot in slots {
        let mut cmd = Command::new(&exe);
        let pin: Vec<OsString> = worker_args(backend, slot)
            .into_iter()
            .filter(|a| a != "--progress-lines")
            .collect();
        cmd.args(&inherited).args(pin);
        if let slots::Pin::Cuda { visible } = &slot.pin {
            cmd.env("CUDA_VISIBLE_DEVICES", visible);
        }
        crate::out::line(&format!("\n== dev{} → {}", slot.index, slot.out.display()))?;
        match cmd.stdin(Stdio::null()).output() {
            Ok(o) if o.status.success() => crate::out::print(&String::from_utf8_lossy(&o.stdout))?,
            Ok(o) => {
                failed += 1;
                crate::out::line(&format!(
                    "dev{}: cannot plan: {}",
                    slot.index,
                    String::from_utf8_lossy(&o.stderr).trim()
                ))?;
            }
            Err(e) => {
                failed += 1;
                crate::out::line(&format!("dev{}: cannot start its worker: {e}", slot.index))?;
            }
        }
    }
    if failed > 0 {
        return Err(runtime(format!(
            "{failed} of {} devices could not be planned (see above)",
            slots.len()
        )));
    }
    Ok(())
}

impl Worker {
    /// Start the worker of `slot`; a worker that cannot start is a failed device.
    fn start(
        slot: Slot,
        exe: &Path,
        inherited: &[OsString],
        backend: BackendKind,
        multi: &MultiProgress,
    ) -> Worker {
        let style = ProgressStyle::with_template(
            "{prefix:.bold} {bar:25.cyan/blue} {pos}/{len} ETA {eta} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = multi.add(
            ProgressBar::new(0)
                .with_style(style)
                .with_prefix(format!("dev{}", slot.index)),
        );
        let mut cmd = Command::new(exe);
        cmd.args(inherited).args(worker_args(backend, &slot));
        // the worker's records keep what the user typed, not the worker's pinned command
        cmd.env(
            super::setup::USER_COMMAND_ENV,
            joulebench_device::process_command_line(),
        );
        if let slots::Pin::Cuda { visible } = &slot.pin {
            cmd.env("CUDA_VISIBLE_DEVICES", visible);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let log = Arc::new(Mutex::new(WorkerLog::default()));
        let mut w = Worker {
            slot,
            child: None,
            stdin: None,
            status: None,
            lost: None,
            log,
            reader: None,
        };
        match cmd.spawn() {
            Ok(mut child) => {
                w.stdin = child.stdin.take();
                w.reader = child.stderr.take().map(|err| {
                    read_worker(err, w.slot.index, bar, multi.clone(), Arc::clone(&w.log))
                });
                w.child = Some(child);
            }
            Err(e) => w.lost = Some(format!("could not start its worker: {e}")),
        }
        w
    }

    fn running(&self) -> bool {
        self.child.is_some() && self.status.is_none() && self.lost.is_none()
    }
}

/// Wait for every worker; on SIGINT/SIGTERM tell each to stop after its point (and
/// close its stdin, which means the same). Whether the sweep was stopped.
fn wait_all(workers: &mut [Worker], stop: &AtomicBool, multi: &MultiProgress) -> bool {
    let mut stopping = false;
    while workers.iter().any(Worker::running) {
        for w in workers.iter_mut().filter(|w| w.running()) {
            if let Some(child) = &mut w.child {
                match child.try_wait() {
                    Ok(Some(st)) => w.status = Some(st),
                    Ok(None) => {}
                    Err(e) => w.lost = Some(format!("lost its worker: {e}")),
                }
            }
        }
        if stop.load(Ordering::SeqCst) && !stopping {
            stopping = true;
            say(
                multi,
                "stopping: each device ends the point it is measuring, unrecorded (--resume measures it again)",
            );
            for w in workers.iter_mut() {
                if let Some(mut stdin) = w.stdin.take() {
                    let _ = writeln!(stdin, "{}", ParentMessage::Stop.line());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for w in workers.iter_mut() {
        if let Some(r) = w.reader.take() {
            let _ = r.join();
        }
    }
    let _ = multi.clear();
    stopping
}

struct Failure {
    index: usize,
    why: String,
    code: Option<i32>,
}

/// One line per device — its worker's summary, or why it failed — and the failures.
fn report(workers: &[Worker], stopped: bool) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut identities: Vec<(usize, String)> = Vec::new();
    for w in workers {
        let index = w.slot.index;
        let log = w.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = &log.device {
            if let Some((other, _)) = identities.iter().find(|(_, id)| id == d) {
                eprintln!(
                    "warning: dev{other} and dev{index} both report themselves as {d} (no UUID or PCI bus id): their records cannot be told apart"
                );
            }
            identities.push((index, d.clone()));
        }
        let who = match &log.device {
            Some(d) => format!("dev{index} {d}"),
            None => format!("dev{index}"),
        };
        let code = w.status.and_then(|s| s.code());
        let outcome = match (&w.lost, w.status) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(st)) if st.success() => {
                Ok(log.done.clone().unwrap_or_else(|| "done".into()))
            }
            // stopped as asked: 128 + the signal, or killed by it
            (None, Some(_)) if stopped && code.is_none_or(|c| c >= 128) => Ok(format!(
                "interrupted; its finished points are in {}",
                w.slot.out.display()
            )),
            (None, st) => Err(describe_failure(st, &log)),
        };
        match outcome {
            Ok(line) => eprintln!("{who}: {line}"),
            Err(why) => {
                eprintln!("{who}: FAILED: {why}");
                failures.push(Failure { index, why, code });
            }
        }
    }
    failures
}

fn describe_failure(status: Option<ExitStatus>, log: &WorkerLog) -> String {
    let how = match status.map(|s| (s.code(), std::os::unix::process::ExitStatusExt::signal(&s))) {
        Some((Some(c), _)) => format!("exit code {c}"),
        Some((None, Some(sig))) => format!("killed by signal {sig}"),
        _ => "ended".into(),
    };
    // the worker's own Error event; else the last lines it printed (a driver's)
    match &log.error {
        Some((message, _)) => format!("{message} ({how})"),
        None if log.tail.is_empty() => how,
        None => format!(
            "{} ({how})",
            log.tail
                .iter()
                .map(|l| l.trim_start_matches("error: "))
                .collect::<Vec<_>>()
                .join(" / ")
        ),
    }
}

/// Follow one worker's stderr: progress lines drive its bar, other lines are shown
/// with the device's name and kept for the closing report.
fn read_worker(
    stderr: std::process::ChildStderr,
    index: usize,
    bar: ProgressBar,
    multi: MultiProgress,
    log: Arc<Mutex<WorkerLog>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last_tenth = 0;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            match Event::parse(&line) {
                Some(Event::Device {
                    name,
                    uuid,
                    backend,
                    out,
                }) => {
                    let who = match uuid {
                        Some(u) => format!("{name} [{u}]"),
                        None => name,
                    };
                    bar.set_prefix(format!("dev{index} {who}"));
                    say(&multi, format!("dev{index}: {who} ({backend}) → {out}"));
                    log.device = Some(who);
                }
                Some(Event::Started { total, done }) => {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                    bar.reset_eta();
                    last_tenth = tenths(done, total);
                    if done > 0 {
                        say(&multi, format!("dev{index}: resuming: {done} of {total} points already in its file"));
                    }
                }
                Some(Event::Point { label }) => bar.set_message(label),
                Some(Event::Note { message }) => bar.set_message(message),
                Some(Event::Finished {
                    status,
                    label,
                    reason,
                }) => {
                    bar.inc(1);
                    if matches!(status, PointStatus::Invalid | PointStatus::Failed) {
                        say(
                            &multi,
                            format!(
                                "dev{index}: {status:?}: {label}: {}",
                                reason.unwrap_or_default()
                            ),
                        );
                    }
                    let total = bar.length().unwrap_or(0) as usize;
                    let tenth = tenths(bar.position() as usize, total);
                    if multi.is_hidden() && tenth > last_tenth {
                        say(
                            &multi,
                            format!("dev{index}: {}/{total} points", bar.position()),
                        );
                    }
                    last_tenth = tenth;
                }
                Some(Event::Done {
                    measured,
                    invalid,
                    skipped,
                    failed,
                    resumed,
                    out,
                }) => {
                    let resumed = match resumed {
                        0 => String::new(),
                        k => format!(", {k} already there"),
                    };
                    log.done = Some(format!(
                        "done: {measured} measured, {invalid} invalid, {skipped} skipped, {failed} failed{resumed} → {out}"
                    ));
                }
                Some(Event::Error { message, exit_code }) => {
                    log.error = Some((message, exit_code));
                }
                None => {
                    // what the worker prints for a person is said by its events;
                    // keep and show the rest (a driver's messages)
                    let own = ["done:", "sweep:", "error:"];
                    if !own.iter().any(|q| line.starts_with(q)) {
                        log.tail.push(line.clone());
                        if log.tail.len() > 5 {
                            log.tail.remove(0);
                        }
                        say(&multi, format!("dev{index}: {line}"));
                    }
                }
            }
        }
        bar.finish_and_clear();
    })
}

fn tenths(done: usize, total: usize) -> usize {
    (done * 10).checked_div(total).unwrap_or(0)
}
