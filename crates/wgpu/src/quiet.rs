//! Graphics drivers print to the process's stderr while wgpu probes them (Mesa and
//! NVIDIA's EGL complain about a missing XDG_RUNTIME_DIR on a server), and a user
//! reads those lines as joulebench's own errors. Probing runs with file descriptor 2
//! captured; the lines are kept for `joulebench devices` to summarise and for an
//! error to quote. `JOULEBENCH_SHOW_DRIVER_OUTPUT=1` lets them through instead.

use std::sync::Mutex;

/// Set to 1 to see what the drivers print while they are probed.
pub const SHOW_DRIVER_OUTPUT_ENV: &str = "JOULEBENCH_SHOW_DRIVER_OUTPUT";

/// Every line the drivers printed while probed, in order, for this process.
static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// One capture at a time: fd 2 is the process's, not a thread's.
static CAPTURING: Mutex<()> = Mutex::new(());

fn show_requested() -> bool {
    std::env::var(SHOW_DRIVER_OUTPUT_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Run `f` with what is written to fd 2 meanwhile kept from the terminal; the
/// lines it wrote are returned and remembered for [`driver_messages`].
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    if show_requested() {
        return (f(), Vec::new());
    }
    let _one = CAPTURING.lock().unwrap_or_else(|p| p.into_inner());
    let (value, bytes) = capture::stderr_of(f);
    let lines: Vec<String> = String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    CAPTURED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(lines.iter().cloned());
    (value, lines)
}

/// What the drivers printed while probed so far, each distinct line with how often.
pub fn driver_messages() -> Vec<(String, usize)> {
    let all = CAPTURED.lock().unwrap_or_else(|p| p.into_inner());
    let mut out: Vec<(String, usize)> = Vec::new();
    for line in all.iter() {
        match out.iter_mut().find(|(l, _)| l == line) {
            Some((_, n)) => *n += 1,
            None => out.push((line.clone(), 1)),
        }
    }
    out
}

/// One line saying what was kept back, or `None` where the drivers were silent.
pub fn driver_messages_summary() -> Option<String> {
    let messages = driver_messages();
    let total: usize = messages.iter().map(|(_, n)| n).sum();
    let (first, n) = messages.first()?;
    let more = match messages.len() {
        1 => String::new(),
        k => format!(" and {} other line(s)", k - 1),
    };
    let times = if *n > 1 {
        format!(" ×{n}")
    } else {
        String::new()
    };
    Some(format!(
        "{total} line(s) the graphics drivers printed while probed were kept off the terminal \
         (\"{first}\"{times}{more}); {SHOW_DRIVER_OUTPUT_ENV}=1 shows them"
    ))
}

#[cfg(unix)]
mod capture {
    use std::io::Read;
    use std::os::fd::{FromRawFd, RawFd};

    /// `f`'s value and the bytes written to fd 2 while it ran. Where fd 2 cannot be
    /// redirected, `f` runs with stderr as it is.
    pub fn stderr_of<T>(f: impl FnOnce() -> T) -> (T, Vec<u8>) {
        let mut fds: [RawFd; 2] = [-1, -1];
        // SAFETY: plain POSIX calls on descriptors this function owns; fd 2 is
        // restored from its duplicate before returning on every path.
        unsafe {
            if libc::pipe(fds.as_mut_ptr()) != 0 {
                return (f(), Vec::new());
            }
            let saved = libc::dup(2);
            if saved < 0 {
                libc::close(fds[0]);
                libc::close(fds[1]);
                return (f(), Vec::new());
            }
            // a reader drains the pipe so a chatty driver never blocks on a full one
            let mut reader = std::fs::File::from_raw_fd(fds[0]);
            let drain = std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = reader.read_to_end(&mut bytes);
                bytes
            });
            if libc::dup2(fds[1], 2) < 0 {
                libc::close(fds[1]);
                libc::close(saved);
                let _ = drain.join();
                return (f(), Vec::new());
            }
            libc::close(fds[1]);
            let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            // restoring fd 2 closes the pipe's last writer: the reader sees its end
            libc::dup2(saved, 2);
            libc::close(saved);
            let bytes = drain.join().unwrap_or_default();
            match value {
                Ok(v) => (v, bytes),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    }
}

#[cfg(not(unix))]
mod capture {
    pub fn stderr_of<T>(f: impl FnOnce() -> T) -> (T, Vec<u8>) {
        (f(), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn what_a_library_writes_to_fd_2_is_captured_not_shown() {
        let (v, lines) = quietly(|| {
            let msg = b"error: XDG_RUNTIME_DIR is invalid or not set in the environment.\n";
            // SAFETY: writes a byte buffer to fd 2, as a C library would.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            7
        });
        assert_eq!(v, 7);
        assert_eq!(
            lines,
            ["error: XDG_RUNTIME_DIR is invalid or not set in the environment."]
        );
        let summary = driver_messages_summary().expect("a summary");
        assert!(summary.contains("XDG_RUNTIME_DIR"), "{summary}");
        // fd 2 works again afterwards
        let (_, none) = quietly(|| ());
        assert!(none.is_empty());
    }
}
