//! How a program tells joulebench where it is: lines written to a FIFO whose path it
//! finds in `JOULEBENCH_PHASE_FIFO` (any process of the program's tree can open it,
//! unlike an inherited descriptor, which launchers close), or its own output matched
//! against patterns while it is passed through byte for byte. Each mark is stamped
//! with the time it was read.

use joulebench_core::clock::monotonic_s;
use regex::bytes::Regex;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The variable that tells the program where to write its marks.
pub const PHASE_FIFO_ENV: &str = "JOULEBENCH_PHASE_FIFO";

/// The longest line looked at (a longer one is passed through whole, matched on its start).
const MAX_LINE_BYTES: usize = 64 << 10;

/// A phase name is kept to this many characters.
const MAX_NAME_CHARS: usize = 80;

/// What a program said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mark {
    /// A phase of this name starts (and the one before it ends).
    Phase(String),
    /// The phase in progress ends; none starts.
    End,
    /// This many more tokens were processed.
    Tokens(u64),
}

/// A mark and when it was read, on the meters' clock.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedMark {
    pub time_s: f64,
    pub mark: Mark,
}

/// A phase name as records keep it: printable, trimmed, bounded.
fn clean_name(raw: &str) -> Option<String> {
    let name: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// A count as programs print it: "4096", "4,096", "4_096".
fn parse_count(s: &str) -> Option<u64> {
    let digits: String = s
        .trim()
        .chars()
        .filter(|c| *c != ',' && *c != '_')
        .collect();
    digits.parse().ok()
}

/// One line of the phase FIFO: `tokens N`, `end`, `phase NAME`, or a bare name.
pub fn parse_fifo_line(line: &str) -> Option<Mark> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    match word {
        "tokens" => parse_count(rest).map(Mark::Tokens),
        "end" if rest.trim().is_empty() => Some(Mark::End),
        "phase" if !rest.trim().is_empty() => clean_name(rest).map(Mark::Phase),
        _ => clean_name(line).map(Mark::Phase),
    }
}

/// The patterns matched on each line of the program's output.
#[derive(Clone, Debug, Default)]
pub struct OutputPatterns {
    /// A match starts a phase named by its group `phase`, else its first group, else
    /// the whole match.
    pub phase: Option<Regex>,
    /// A match adds the tokens of its group `tokens`, else its first group.
    pub tokens: Option<Regex>,
}

impl OutputPatterns {
    pub fn any(&self) -> bool {
        self.phase.is_some() || self.tokens.is_some()
    }

    fn group<'a>(re: &Regex, caps: &regex::bytes::Captures<'a>, name: &str) -> Option<&'a [u8]> {
        caps.name(name)
            .or_else(|| (re.captures_len() > 1).then(|| caps.get(1)).flatten())
            .or_else(|| caps.get(0))
            .map(|m| m.as_bytes())
    }

    /// The marks of one line of output.
    pub fn marks(&self, line: &[u8]) -> Vec<Mark> {
        let mut out = Vec::new();
        if let Some(re) = &self.phase {
            if let Some(c) = re.captures(line) {
                if let Some(name) = Self::group(re, &c, "phase")
                    .and_then(|b| clean_name(&String::from_utf8_lossy(b)))
                {
                    out.push(Mark::Phase(name));
                }
            }
        }
        if let Some(re) = &self.tokens {
            for c in re.captures_iter(line) {
                if let Some(n) = Self::group(re, &c, "tokens")
                    .and_then(|b| parse_count(&String::from_utf8_lossy(b)))
                {
                    out.push(Mark::Tokens(n));
                }
            }
        }
        out
    }
}

/// Copies one of the program's output streams to ours as it comes, unchanged, and
/// sends the marks its lines hold. When our side cannot be written any more (a
/// closed pipe), it stops reading, so the program meets the closed pipe as it would
/// have without joulebench.
pub(crate) fn tee(
    name: &str,
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    patterns: Arc<OutputPatterns>,
    marks: Sender<TimedMark>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("joulebench-{name}"))
        .spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            let mut line: Vec<u8> = Vec::new();
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let t = monotonic_s();
                if to.write_all(&buf[..n]).and_then(|_| to.flush()).is_err() {
                    break;
                }
                for &b in &buf[..n] {
                    if b == b'\n' {
                        for mark in patterns.marks(&line) {
                            let _ = marks.send(TimedMark { time_s: t, mark });
                        }
                        line.clear();
                    } else if line.len() < MAX_LINE_BYTES {
                        line.push(b);
                    }
                }
            }
            if !line.is_empty() {
                for mark in patterns.marks(&line) {
                    let _ = marks.send(TimedMark {
                        time_s: monotonic_s(),
                        mark,
                    });
                }
            }
        })
}

/// The FIFO a program writes its marks to, and the thread that reads it; removed
/// with its private directory when dropped.
pub(crate) struct PhaseFifo {
    path: PathBuf,
    _dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PhaseFifo {
    /// A FIFO in a directory of its own (mode 0700, under the runtime or temporary
    /// directory), read from now on.
    #[cfg(unix)]
    pub(crate) fn open(marks: Sender<TimedMark>) -> std::io::Result<PhaseFifo> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::OpenOptionsExt;
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("joulebench-run-")
            .tempdir_in(base)?;
        let path = dir.path().join("phases");
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("the FIFO's path holds a NUL byte"))?;
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)?;
        // a writer end of our own: with none open, a reader sees end-of-file between
        // the program's writes instead of waiting for the next one
        let keep_open = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("joulebench-phases".into())
                .spawn(move || read_fifo(reader, keep_open, &stop, &marks))?
        };
        Ok(PhaseFifo {
            path,
            _dir: dir,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Read what is left and stop.
    pub(crate) fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PhaseFifo {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(unix)]
fn read_fifo(
    mut reader: std::fs::File,
    _keep_open: std::fs::File,
    stop: &AtomicBool,
    marks: &Sender<TimedMark>,
) {
    use std::os::unix::io::AsRawFd;
    let mut buf = [0u8; 4096];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut pfd = libc::pollfd {
            fd: reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd of a descriptor this thread owns.
        unsafe { libc::poll(&mut pfd, 1, if stopping { 0 } else { 20 }) };
        let mut read_any = false;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    read_any = true;
                    let t = monotonic_s();
                    for &b in &buf[..n] {
                        if b == b'\n' {
                            if let Some(mark) = parse_fifo_line(&String::from_utf8_lossy(&line)) {
                                let _ = marks.send(TimedMark { time_s: t, mark });
                            }
                            line.clear();
                        } else if line.len() < MAX_LINE_BYTES {
                            line.push(b);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break, // EAGAIN: nothing more now
            }
        }
        if stopping && !read_any {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_lines_name_phases_count_tokens_and_end() {
        assert_eq!(
            parse_fifo_line("warmup"),
            Some(Mark::Phase("warmup".into()))
        );
        assert_eq!(
            parse_fifo_line("phase steady state\n"),
            Some(Mark::Phase("steady state".into()))
        );
        assert_eq!(parse_fifo_line("tokens 4,096"), Some(Mark::Tokens(4096)));
        assert_eq!(parse_fifo_line("end"), Some(Mark::End));
        assert_eq!(parse_fifo_line("   "), None);
        assert_eq!(parse_fifo_line("tokens many"), None);
        let long = "x".repeat(500);
        match parse_fifo_line(&long) {
            Some(Mark::Phase(n)) => assert_eq!(n.chars().count(), MAX_NAME_CHARS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn output_patterns_take_named_or_first_groups() {
        let p = OutputPatterns {
            phase: Some(Regex::new(r"^== (?P<phase>\w+) ==").unwrap()),
            tokens: Some(Regex::new(r"tokens=(\d+)").unwrap()),
        };
        assert_eq!(p.marks(b"== train =="), vec![Mark::Phase("train".into())]);
        assert_eq!(
            p.marks(b"step 3 tokens=512 loss 2.1 tokens=8"),
            vec![Mark::Tokens(512), Mark::Tokens(8)]
        );
        assert!(p.marks(b"nothing here").is_empty());
        // a pattern without groups names the phase by its whole match
        let whole = OutputPatterns {
            phase: Some(Regex::new(r"warm\w*").unwrap()),
            tokens: None,
        };
        assert_eq!(
            whole.marks(b"[warmup] 1/3"),
            vec![Mark::Phase("warmup".into())]
        );
        // output that is not UTF-8 is matched all the same
        assert_eq!(p.marks(b"\xff\xfe tokens=7"), vec![Mark::Tokens(7)]);
    }
}
