//! The program joulebench runs: started in joulebench's process group (a terminal
//! treats it as joulebench's job), ended with joulebench if joulebench is killed,
//! and handed the signals joulebench receives. Its exit is seen without reaping it
//! first, so a signal passed on can never reach another process that took its pid.

use crate::guard::{forward_signals, signal_name, SignalForwarding, SignalOrigin};
use joulebench_core::clock::monotonic_s;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};

/// The third signal ends the program with SIGKILL; the fourth is no longer the
/// program's: joulebench restores and exits at once.
const KILL_ON_SIGNAL: usize = 3;

#[derive(Debug, Default)]
struct Shared {
    /// 0 until the program has started (and if it could not be).
    pid: i32,
    /// Set once the program is reaped: its pid may belong to another process then.
    reaped: bool,
    signals: usize,
    log: Vec<String>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A started program (see the module comment).
pub(crate) struct Program {
    child: Child,
    shared: Arc<Mutex<Shared>>,
    exited: Receiver<f64>,
    forwarding: Option<SignalForwarding>,
}

/// The path a program name runs from: as given where it holds a `/`, else the first
/// executable of that name on `PATH`.
pub(crate) fn find_program(name: &OsString) -> Option<PathBuf> {
    let p = Path::new(name);
    let executable = |p: &Path| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        }
        #[cfg(not(unix))]
        {
            p.is_file()
        }
    };
    if p.components().count() > 1 || name.to_string_lossy().contains('/') {
        return executable(p).then(|| p.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(p))
        .find(|c| executable(c))
}

impl Program {
    /// Start `command`, forwarding signals to it from now on.
    pub(crate) fn start(mut command: Command) -> std::io::Result<Program> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: getpid before the fork; in the child only async-signal-safe calls.
            let parent = unsafe { libc::getpid() };
            unsafe {
                command.pre_exec(move || {
                    // if joulebench is killed (SIGKILL), the program ends too instead of
                    // running on unmeasured under settings no one will restore
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0
                        || libc::getppid() != parent
                    {
                        return Err(std::io::Error::other(
                            "joulebench ended before the program started",
                        ));
                    }
                    Ok(())
                });
            }
        }
        // Forwarding is in place before the program exists, and a signal that arrives
        // while it starts waits on the lock held here until its pid is known: it reaches
        // the program instead of joulebench's own handler (restore and exit) with the
        // program left running.
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut starting = lock(&shared);
        let forwarding = {
            let shared = shared.clone();
            match forward_signals(move |sig, origin| pass_on(&shared, sig, origin)) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!("{e}: signals will not be passed on to the program");
                    None
                }
            }
        };
        // on failure the pid stays 0: no program, nothing for a signal to reach
        let child = command.spawn()?;
        let pid = child.id() as i32;
        starting.pid = pid;
        drop(starting);
        let (tx, exited) = channel();
        std::thread::Builder::new()
            .name("joulebench-wait".into())
            .spawn(move || {
                wait_exited(pid);
                let _ = tx.send(monotonic_s());
            })?;
        Ok(Program {
            child,
            shared,
            exited,
            forwarding,
        })
    }

    /// When the program ended (on the meters' clock), if it has.
    pub(crate) fn exited_at(&self, wait: std::time::Duration) -> Option<f64> {
        self.exited.recv_timeout(wait).ok()
    }

    /// Reap the program (after [`Program::exited_at`] said it ended) and keep
    /// forwarding signals — to nobody now — until this is dropped.
    pub(crate) fn reap(&mut self) -> std::io::Result<ExitStatus> {
        let mut s = lock(&self.shared);
        let status = self.child.wait()?;
        s.reaped = true;
        Ok(status)
    }

    /// The program's output, where it is piped to joulebench.
    pub(crate) fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub(crate) fn stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// The signals joulebench received during the run and what it did with them.
    pub(crate) fn signal_log(&self) -> Vec<String> {
        lock(&self.shared).log.clone()
    }

    /// Hand over the forwarding, to be dropped when joulebench is done.
    pub(crate) fn into_forwarding(self) -> Option<SignalForwarding> {
        self.forwarding
    }
}

/// What joulebench does with a signal while the program runs: passes it on (unless
/// a terminal sent it to the whole process group, program included), kills the
/// program on the third, and lets the fourth end joulebench.
fn pass_on(shared: &Mutex<Shared>, sig: i32, origin: SignalOrigin) -> bool {
    let mut s = lock(shared);
    s.signals += 1;
    let name = signal_name(sig);
    if s.signals > KILL_ON_SIGNAL {
        s.log.push(format!("{name}: joulebench stopped waiting"));
        return false;
    }
    let what = if s.reaped || s.pid <= 0 {
        "the program had ended; joulebench is finishing its records".to_string()
    } else if s.signals == KILL_ON_SIGNAL {
        // SAFETY: the pid is our unreaped child (checked under the lock).
        unsafe { libc::kill(s.pid, libc::SIGKILL) };
        "the program killed (SIGKILL); joulebench restores once it has ended (a fourth signal \
         stops waiting)"
            .to_string()
    } else if origin == SignalOrigin::Kernel {
        "the program has it too (sent to the terminal's process group); joulebench waits for it \
         to end, then restores (a third signal kills it)"
            .to_string()
    } else {
        // SAFETY: as above.
        unsafe { libc::kill(s.pid, sig) };
        format!(
            "passed on to the program (pid {}); joulebench waits for it to end, then restores \
             (a third signal kills it)",
            s.pid
        )
    };
    tracing::warn!("{name}: {what}");
    s.log.push(format!("{name}: {what}"));
    true
}

/// Block until `pid` has exited, leaving it unreaped.
fn wait_exited(pid: i32) {
    loop {
        // SAFETY: waitid fills a zeroed siginfo_t it is given.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return; // no such child: nothing to wait for
        }
    }
}

/// The code, or the signal, a program ended with.
pub(crate) fn exit_parts(status: ExitStatus) -> (Option<i32>, Option<i32>) {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        (status.code(), status.signal())
    }
    #[cfg(not(unix))]
    {
        (status.code(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(child: &mut Child) -> bool {
        std::thread::sleep(std::time::Duration::from_millis(50));
        child.try_wait().unwrap().is_none()
    }

    #[test]
    fn a_terminals_signal_is_not_sent_twice_a_kill_is_passed_on_and_the_third_kills() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let shared = Mutex::new(Shared {
            pid: child.id() as i32,
            ..Shared::default()
        });
        // Ctrl-C at a terminal reaches the whole process group: the program has it
        // already (here it did not, so it lives on)
        assert!(pass_on(&shared, libc::SIGINT, SignalOrigin::Kernel));
        assert!(alive(&mut child));
        // a `kill` of joulebench is passed on
        assert!(pass_on(&shared, libc::SIGTERM, SignalOrigin::Process));
        assert!(!alive(&mut child));
        let mut stubborn = Command::new("sh")
            .args(["-c", "trap '' INT TERM; sleep 3"])
            .spawn()
            .unwrap();
        let shared = Mutex::new(Shared {
            pid: stubborn.id() as i32,
            ..Shared::default()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(pass_on(&shared, libc::SIGTERM, SignalOrigin::Process));
        assert!(pass_on(&shared, libc::SIGTERM, SignalOrigin::Process));
        assert!(alive(&mut stubborn), "a program may ignore two signals");
        assert!(pass_on(&shared, libc::SIGTERM, SignalOrigin::Process));
        assert!(!alive(&mut stubborn), "the third kills it");
        lock(&shared).reaped = true;
        // the fourth is joulebench's own: restore and exit
        assert!(!pass_on(&shared, libc::SIGTERM, SignalOrigin::Process));
        assert_eq!(lock(&shared).log.len(), 4);
    }
}
