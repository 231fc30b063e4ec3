//! How a `--devices` worker and its parent talk, typed in both directions: the
//! worker sends one JSON [`Event`] per line on stderr (its device, progress, and how
//! it ended), so the parent draws its bar and reports its end; the parent sends
//! [`ParentMessage`] lines on the worker's stdin (a stop request), and a closed
//! stdin means the same, so a worker never outlives its parent by more than a point.

use crate::error::CliError;
use joulebench_core::plan::PlanPoint;
use joulebench_core::record::{PointStatus, Record};
use joulebench_core::sweep::{SweepObserver, SweepOutcome};
use joulebench_core::DeviceInfo;
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Every worker line starts with this; any other stderr line is a driver's message.
pub const PREFIX: &str = "joulebench-progress ";
/// Every parent line starts with this.
pub const PARENT_PREFIX: &str = "joulebench-parent ";

/// Worker → parent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The worker opened its device.
    Device {
        name: String,
        uuid: Option<String>,
        backend: String,
        out: String,
    },
    Started {
        total: usize,
        done: usize,
    },
    Point {
        label: String,
    },
    Finished {
        status: PointStatus,
        label: String,
        reason: Option<String>,
    },
    Note {
        message: String,
    },
    /// The sweep ended: its counts.
    Done {
        measured: usize,
        invalid: usize,
        skipped: usize,
        failed: usize,
        resumed: usize,
        out: String,
    },
    /// The worker failed (or was stopped): its message and the exit code it ends with.
    Error {
        message: String,
        exit_code: i32,
    },
}

/// Parent → worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub enum ParentMessage {
    /// Finish the point being measured, then stop.
    Stop,
}

impl Event {
    pub fn line(&self) -> String {
        format!(
            "{PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// The event of a worker line; `None` for any other line.
    pub fn parse(line: &str) -> Option<Event> {
        serde_json::from_str(line.strip_prefix(PREFIX)?).ok()
    }

    fn emit(&self) {
        eprintln!("{}", self.line());
    }
}

impl ParentMessage {
    pub fn line(&self) -> String {
        format!(
            "{PARENT_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    pub fn parse(line: &str) -> Option<ParentMessage> {
        serde_json::from_str(line.trim_end().strip_prefix(PARENT_PREFIX)?).ok()
    }
}

/// Tell the parent which device this worker measures, and into which file.
pub fn announce(device: &DeviceInfo, backend: &str, out: &Path) {
    Event::Device {
        name: device.name.clone(),
        uuid: device.uuid.clone().or_else(|| device.pci_bus_id.clone()),
        backend: backend.to_string(),
        out: out.display().to_string(),
    }
    .emit();
}

/// Tell the parent how the sweep ended.
pub fn report_end(result: &Result<(SweepOutcome, std::path::PathBuf), CliError>) {
    match result {
        Ok((o, out)) => Event::Done {
            measured: o.measured,
            invalid: o.invalid,
            skipped: o.skipped,
            failed: o.failed,
            resumed: o.resumed,
            out: out.display().to_string(),
        },
        Err(e) => Event::Error {
            message: e.to_string(),
            exit_code: e.exit_code(),
        },
    }
    .emit();
}

/// The worker's observer: every event as a line on stderr.
pub struct ProgressLines;

fn point_label(
    kernel: &str,
    precision: impl std::fmt::Display,
    group: &str,
    batch: u64,
    cap: impl std::fmt::Display,
) -> String {
    format!("{kernel} {precision} {group} b{batch} cap {cap}")
}

impl SweepObserver for ProgressLines {
    fn started(&mut self, total: usize, already_done: usize) {
        Event::Started {
            total,
            done: already_done,
        }
        .emit();
    }

    fn point_started(&mut self, p: &PlanPoint) {
        Event::Point {
            label: point_label(&p.kernel, p.precision, &p.group, p.batch_size, p.cap),
        }
        .emit();
    }

    fn point_finished(&mut self, r: &Record) {
        Event::Finished {
            status: r.status,
            label: point_label(
                &r.kernel,
                r.precision,
                &r.group,
                r.batch_size,
                r.power_cap.requested,
            ),
            reason: r.reason.clone(),
        }
        .emit();
    }

    fn note(&mut self, message: &str) {
        Event::Note {
            message: message.to_string(),
        }
        .emit();
    }
}

/// Stop the sweep after its current point once the parent says so, or once stdin
/// closes (the parent died).
pub fn stop_when_parent_asks(stop: Arc<AtomicBool>, stop_signal: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
        let mut line = String::new();
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        loop {
            line.clear();
            match lock.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if ParentMessage::parse(&line) == Some(ParentMessage::Stop) => break,
                Ok(_) => {}
            }
        }
        let _ = stop_signal.compare_exchange(
            0,
            signal_hook::consts::SIGTERM as usize,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        stop.store(true, Ordering::SeqCst);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_a_round_trip_and_other_lines_are_not_messages() {
        let events = [
            Event::Device {
                name: "sim-h100 (simulated)".into(),
                uuid: Some("SIM-sim-h100-0".into()),
                backend: "sim".into(),
                out: "r.dev0.jsonl".into(),
            },
            Event::Started { total: 36, done: 4 },
            Event::Point {
                label: "sim-vendor bf16 matmul b1 cap default".into(),
            },
            Event::Finished {
                status: PointStatus::Invalid,
                label: "x".into(),
                reason: Some("error 0.5".into()),
            },
            Event::Note {
                message: "idle baseline".into(),
            },
            Event::Done {
                measured: 3,
                invalid: 0,
                skipped: 1,
                failed: 0,
                resumed: 2,
                out: "r.dev0.jsonl".into(),
            },
            Event::Error {
                message: "unknown simulated device profile 'sim-z9'".into(),
                exit_code: 2,
            },
        ];
        for e in events {
            assert_eq!(Event::parse(&e.line()), Some(e));
        }
        assert_eq!(
            Event::parse("error: unknown simulated device profile 'sim-z9'"),
            None
        );
        assert_eq!(Event::parse("joulebench-progress {not json"), None);
        let stop = ParentMessage::Stop.line();
        assert_eq!(
            ParentMessage::parse(&format!("{stop}\n")),
            Some(ParentMessage::Stop)
        );
        assert_eq!(ParentMessage::parse("stop"), None);
    }
}
