//! The exit paths that bypass `Drop`: SIGINT, SIGTERM and SIGHUP (a thread that
//! restores every guard, then exits 128 + signal: 130, 143, 129), and panics (a hook
//! that restores the panicking thread's guards before the panic message — and every
//! guard when panics abort, since then nothing unwinds). Installed once per process,
//! on the first change; restoring is idempotent, so a guard that is also dropped
//! afterwards restores nothing twice.

use super::{GuardInner, GuardShared};
use joulebench_core::PowerError;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

static REGISTRY: Mutex<Vec<Weak<GuardShared>>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

pub(super) fn register(guard: &Arc<GuardShared>) {
    let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.retain(|w| w.strong_count() > 0);
    reg.push(Arc::downgrade(guard));
}

/// Installs the signal thread and the panic hook, once per process. Guards call it
/// before their first change; a binary may call it earlier. A panic hook set later
/// by someone else must chain to the previous one, or panics stop restoring.
pub fn install_restore_hooks() -> Result<(), PowerError> {
    INSTALLED
        .get_or_init(|| {
            install_signal_thread()?;
            install_panic_hook();
            Ok(())
        })
        .clone()
        .map_err(|e| {
            PowerError::Failed(format!(
                "cannot install the handlers that restore the power limit ({e}); no limit was changed"
            ))
        })
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // With unwinding, other threads' guards stay: their owners go on (or drop
        // them). With panic=abort nothing unwinds and the process is about to end.
        let only = if cfg!(panic = "abort") {
            None
        } else {
            Some(std::thread::current().id())
        };
        let wait = if cfg!(panic = "abort") {
            Duration::from_secs(5)
        } else {
            // The panicking thread may itself hold a guard's lock (a panic inside the
            // power control); then unwinding and `Drop` restore instead.
            Duration::from_millis(200)
        };
        restore_all("after a panic", only, wait, None);
        previous(info);
    }));
}

#[cfg(unix)]
fn install_signal_thread() -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("joulebench-power-restore".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let name = match sig {
                    SIGINT => "SIGINT",
                    SIGTERM => "SIGTERM",
                    SIGHUP => "SIGHUP",
                    _ => "a signal",
                };
                restore_all(
                    &format!("on {name}"),
                    None,
                    Duration::from_secs(10),
                    Some(128 + sig),
                );
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the signal thread: {e}"))
}

#[cfg(not(unix))]
fn install_signal_thread() -> Result<(), String> {
    Ok(())
}

/// Restores the armed guards (those owned by `only`, or all), then exits with
/// `exit_code` if given — with every guard still locked, so no thread can change a
/// limit again after its restore. Messages go to stderr: no caller is left to hear them.
fn restore_all(cause: &str, only: Option<ThreadId>, wait: Duration, exit_code: Option<i32>) {
    let guards: Vec<Arc<GuardShared>> = match lock_within(&REGISTRY, wait) {
        Some(reg) => reg.iter().filter_map(Weak::upgrade).collect(),
        None => Vec::new(),
    };
    let mut held: Vec<MutexGuard<'_, GuardInner>> = Vec::new();
    for g in &guards {
        let Some(mut inner) = lock_within(&g.inner, wait) else {
            eprintln!(
                "joulebench: {cause}: the power control was busy; run `joulebench power restore`"
            );
            continue;
        };
        let owned_here = match (&inner.armed, only) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(a), Some(t)) => a.owner == t,
        };
        if owned_here {
            let name = inner.config.device.name.clone();
            match inner.restore() {
                Ok(Some(r)) => eprintln!(
                    "joulebench: {cause}: restored the power limit of {name} to {:.0} W{}",
                    r.restored_w,
                    if r.clocks_reset.is_empty() {
                        String::new()
                    } else {
                        format!(" and reset its {} clocks", r.clocks_reset.join(" and "))
                    }
                ),
                Ok(None) => {}
                Err(e) => eprintln!(
                    "joulebench: {cause}: could not restore the power limit of {name}: {e}; \
                     run `joulebench power restore` (state kept in {})",
                    inner.config.state_path.display()
                ),
            }
        }
        if owned_here || exit_code.is_some() {
            inner.closed = Some(format!("restored {cause}"));
            held.push(inner);
        }
    }
    if let Some(code) = exit_code {
        std::process::exit(code);
    }
}

fn lock_within<T>(m: &Mutex<T>, wait: Duration) -> Option<MutexGuard<'_, T>> {
    let deadline = Instant::now() + wait;
    loop {
        match m.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}
