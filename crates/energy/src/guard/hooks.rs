//! The exit paths that bypass `Drop`: SIGINT, SIGTERM and SIGHUP, and panics. One
//! thread owns the signals. While nothing is owed, the first signal sets the stop
//! flags an application registered ([`stop_on_signals`]) and a second ends the
//! process at once. Once a GPU is changed, or a restore runs, a signal starts the
//! restore of every guard and the process exits 128 + signal (130, 143, 129) only
//! after it: a second signal waits for it (bounded, and says so), and only a third
//! abandons it — after saying what is still owed and how to restore it. A
//! scheduler's TERM-then-KILL (or `timeout`'s TERM to the process and its group)
//! therefore gets the GPU back whenever its grace period is longer than a restore.
//! A program that runs a child for the length of a change (`joulebench run`)
//! registers a forwarder ([`forward_signals`]): while it is registered, signals are
//! its to handle — passed on to the child, which ends, after which the program
//! restores — and only a signal the forwarder declines takes the path above.
//! Panics restore the panicking thread's guards before the panic message (every
//! guard when panics abort). Installed once per process; restoring is idempotent,
//! so a guard that is also dropped afterwards restores nothing twice. Messages are
//! `tracing` events: the program embedding the guard decides where they go.

use super::{GuardInner, GuardShared};
use joulebench_core::PowerError;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// How long a signal waits for a restore in progress (and for each guard's lock)
/// before the process exits anyway, saying what is left.
pub const RESTORE_WAIT: Duration = Duration::from_secs(30);

static REGISTRY: Mutex<Vec<Weak<GuardShared>>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
/// What each guard, and each restore running outside a guard, still owes: said
/// when a restore is abandoned. Keyed by a number of their own.
static OWED: Mutex<BTreeMap<u64, String>> = Mutex::new(BTreeMap::new());
static BUSY: Mutex<BTreeMap<u64, String>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static STOPS: Mutex<Vec<StopSignal>> = Mutex::new(Vec::new());
static FORWARDER: Mutex<Option<(u64, Arc<ForwardFn>)>> = Mutex::new(None);

/// Where a signal came from, as far as the system says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalOrigin {
    /// Sent by the kernel: a terminal's Ctrl-C or hang-up, which reaches the whole
    /// foreground process group (a child in the group has it already).
    Kernel,
    /// Sent by a process (`kill`, a scheduler, `timeout`) to this process.
    Process,
    Unknown,
}

/// A forwarder's answer: `true` when it took the signal.
type ForwardFn = Box<dyn Fn(i32, SignalOrigin) -> bool + Send + Sync>;

/// While this lives, signals go to its forwarder first (see the module comment).
pub struct SignalForwarding {
    id: u64,
}

/// Installs the signal thread (once) and makes `forward` the first to hear every
/// SIGINT, SIGTERM and SIGHUP, with where it came from; a signal it declines
/// (returns `false`) is handled as without it. One forwarder at a time: a new one
/// replaces the last.
pub fn forward_signals(
    forward: impl Fn(i32, SignalOrigin) -> bool + Send + Sync + 'static,
) -> Result<SignalForwarding, PowerError> {
    install_restore_hooks()?;
    let id = next_id();
    *lock(&FORWARDER) = Some((id, Arc::new(Box::new(forward))));
    Ok(SignalForwarding { id })
}

impl Drop for SignalForwarding {
    fn drop(&mut self) {
        let mut f = lock(&FORWARDER);
        if f.as_ref().is_some_and(|(id, _)| *id == self.id) {
            *f = None;
        }
    }
}

/// Offer a signal to the forwarder, if one is registered: whether it took it.
fn forwarded(sig: i32, origin: SignalOrigin) -> bool {
    // called outside the registry's lock, so a forwarder may take its time
    let forward = lock(&FORWARDER).as_ref().map(|(_, f)| f.clone());
    forward.is_some_and(|f| f(sig, origin))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

pub(super) fn register(guard: &Arc<GuardShared>) {
    let mut reg = lock(&REGISTRY);
    reg.retain(|w| w.strong_count() > 0);
    reg.push(Arc::downgrade(guard));
}

/// Say what guard `id` owes now (`None`: nothing).
pub(super) fn set_owed(id: u64, owed: Option<String>) {
    let mut map = lock(&OWED);
    match owed {
        Some(what) => map.insert(id, what),
        None => map.remove(&id),
    };
}

fn owed_now() -> Vec<String> {
    let owed = lock(&OWED);
    let busy = lock(&BUSY);
    owed.values().chain(busy.values()).cloned().collect()
}

/// A restore running outside a guard (`joulebench power restore`): while one is
/// held, a signal waits for it the way it waits for a guard's restore.
pub struct RestoreInProgress {
    id: u64,
}

impl RestoreInProgress {
    /// `what`: what is being restored and how to restore it if it is abandoned.
    pub fn begin(what: &str) -> RestoreInProgress {
        if let Err(e) = install_restore_hooks() {
            say(Level::Warn, &e.to_string());
        }
        let id = next_id();
        lock(&BUSY).insert(
            id,
            format!("{what}; run `joulebench power restore` again to finish it"),
        );
        RestoreInProgress { id }
    }
}

impl Drop for RestoreInProgress {
    fn drop(&mut self) {
        lock(&BUSY).remove(&self.id);
    }
}

/// The flags a program's main loop watches: set by the first SIGINT, SIGTERM or
/// SIGHUP while no restore is owed, so the program can stop after its current
/// step. (While one is owed the signal restores and exits instead.)
#[derive(Clone, Debug)]
pub struct StopSignal {
    pub stop: Arc<AtomicBool>,
    /// The number of the signal that set it.
    pub signal: Arc<AtomicUsize>,
}

/// Installs the signal thread (once) and registers a fresh pair of stop flags.
pub fn stop_on_signals() -> Result<StopSignal, PowerError> {
    install_restore_hooks()?;
    let s = StopSignal {
        stop: Arc::new(AtomicBool::new(false)),
        signal: Arc::new(AtomicUsize::new(0)),
    };
    lock(&STOPS).push(s.clone());
    Ok(s)
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
        restore_all("after a panic", only, Instant::now() + wait, false, || {});
        previous(info);
    }));
}

/// "SIGINT", "SIGTERM", "SIGHUP".
pub fn signal_name(sig: i32) -> &'static str {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        match sig {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            SIGHUP => "SIGHUP",
            _ => "a signal",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = sig;
        "a signal"
    }
}

#[cfg(unix)]
fn install_signal_thread() -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::exfiltrator::WithOrigin;
    use signal_hook::iterator::SignalsInfo;
    use signal_hook::low_level::siginfo::Cause;
    let mut signals =
        SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("joulebench-signals".into())
        .spawn(move || {
            let mut stopping = false;
            let mut restoring: Option<usize> = None;
            for info in signals.forever() {
                let sig = info.signal;
                let origin = match info.cause {
                    Cause::Kernel => SignalOrigin::Kernel,
                    Cause::Sent(_) => SignalOrigin::Process,
                    _ => SignalOrigin::Unknown,
                };
                if forwarded(sig, origin) {
                    continue;
                }
                let name = signal_name(sig);
                if let Some(seen) = restoring.as_mut() {
                    *seen += 1;
                    let left = owed_now();
                    if *seen == 2 {
                        say(
                            Level::Warn,
                            &format!(
                                "{name} again: the restore of {} is in progress; waiting up to \
                                 {} s for it to finish (a third signal abandons it)",
                                list(&left),
                                RESTORE_WAIT.as_secs()
                            ),
                        );
                    } else {
                        abandon(&format!("{name} a third time"), &left);
                        std::process::exit(128 + sig);
                    }
                    continue;
                }
                if !owed_now().is_empty() {
                    restoring = Some(1);
                    start_restorer(sig);
                    continue;
                }
                let stops = lock(&STOPS).clone();
                if stopping || stops.is_empty() {
                    std::process::exit(128 + sig);
                }
                for s in &stops {
                    s.signal.store(sig as usize, Ordering::SeqCst);
                    s.stop.store(true, Ordering::SeqCst);
                }
                stopping = true;
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the signal thread: {e}"))
}

#[cfg(not(unix))]
fn install_signal_thread() -> Result<(), String> {
    Ok(())
}

/// Restores every guard, waits for restores running outside guards, then exits
/// 128 + `sig`: in a thread of its own, so the signal thread hears later signals.
#[cfg(unix)]
fn start_restorer(sig: i32) {
    let cause = format!("on {}", signal_name(sig));
    let spawned = std::thread::Builder::new()
        .name("joulebench-restore".into())
        .spawn(move || {
            let deadline = Instant::now() + RESTORE_WAIT;
            restore_all(&cause, None, deadline, true, || {
                while !lock(&BUSY).is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let left = owed_now();
                if !left.is_empty() {
                    abandon(
                        &format!(
                            "{cause}: the restore did not finish within {} s",
                            RESTORE_WAIT.as_secs()
                        ),
                        &left,
                    );
                }
                std::process::exit(128 + sig);
            });
            std::process::exit(128 + sig);
        });
    if spawned.is_err() {
        // no thread for it: restore here, deaf to later signals meanwhile
        let cause = format!("on {}", signal_name(sig));
        restore_all(&cause, None, Instant::now() + RESTORE_WAIT, true, || {
            std::process::exit(128 + sig)
        });
        std::process::exit(128 + sig);
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join("; ")
    }
}

/// Say, before exiting without a finished restore, what is still owed and how to
/// put it back.
fn abandon(cause: &str, left: &[String]) {
    if left.is_empty() {
        say(
            Level::Warn,
            &format!("{cause}: exiting; nothing is left to restore"),
        );
    } else {
        say(
            Level::Error,
            &format!(
                "{cause}: exiting before the restore finished; still owed (the state files keep \
                 it): {}",
                list(left)
            ),
        );
    }
}

/// Restores the armed guards (those owned by `only`, or all), each waited for until
/// `deadline`, then runs `then` with every guard it restored (with `close`: every
/// guard) still locked and closed, so no thread can change a GPU after its restore
/// — the signal path exits inside `then`.
fn restore_all(
    cause: &str,
    only: Option<ThreadId>,
    deadline: Instant,
    close: bool,
    then: impl FnOnce(),
) {
    let guards: Vec<Arc<GuardShared>> = match lock_until(&REGISTRY, deadline) {
        Some(reg) => reg.iter().filter_map(Weak::upgrade).collect(),
        None => Vec::new(),
    };
    let mut held: Vec<MutexGuard<'_, GuardInner>> = Vec::new();
    for g in &guards {
        let Some(mut inner) = lock_until(&g.inner, deadline) else {
            say(
                Level::Error,
                &format!(
                    "{cause}: the power control stayed busy for {} s; run `joulebench power restore`",
                    RESTORE_WAIT.as_secs()
                ),
            );
            continue;
        };
        let owned_here = match (&inner.armed, only) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(a), Some(t)) => a.owner == t,
        };
        if owned_here {
            report(cause, &mut inner);
        }
        if owned_here || close {
            inner.closed = Some(format!("restored {cause}"));
            held.push(inner);
        }
    }
    then();
    drop(held);
}

fn report(cause: &str, inner: &mut GuardInner) {
    let name = inner.config.device.name.clone();
    match inner.restore() {
        Ok(Some(r)) => {
            let clocks = r.clocks_reset.join(" and ");
            let what = match (r.limit_restored, clocks.is_empty()) {
                (true, true) => format!(
                    "restored the power limit of {name} to {:.0} W",
                    r.restored_w
                ),
                (true, false) => format!(
                    "restored the power limit of {name} to {:.0} W and reset its {clocks} clocks",
                    r.restored_w
                ),
                (false, false) => format!("reset the {clocks} clocks of {name} to the default"),
                (false, true) => return,
            };
            say(Level::Warn, &format!("{cause}: {what}"));
        }
        Ok(None) => {}
        Err(e) => say(
            Level::Error,
            &format!(
                "{cause}: {e}; run `{}`",
                super::state::restore_command(&inner.config.state_path)
            ),
        ),
    }
}

#[derive(Clone, Copy)]
pub(super) enum Level {
    Warn,
    Error,
}

/// A `tracing` event, for the embedding program to route; where the program
/// installed no subscriber, the same line on stderr — a restore that failed (or
/// happened on a signal) is never silent.
pub(super) fn say(level: Level, message: &str) {
    if tracing::dispatcher::has_been_set() {
        match level {
            Level::Warn => tracing::warn!("{message}"),
            Level::Error => tracing::error!("{message}"),
        }
    } else {
        eprintln!("joulebench: {message}");
    }
}

fn lock_until<T>(m: &Mutex<T>, deadline: Instant) -> Option<MutexGuard<'_, T>> {
    loop {
        match m.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}
