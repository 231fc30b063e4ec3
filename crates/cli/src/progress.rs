//! The sweep's progress bar on stderr: points done, points left and an ETA.

use indicatif::{ProgressBar, ProgressStyle};
use joulebench_core::plan::PlanPoint;
use joulebench_core::record::{PointStatus, Record};
use joulebench_core::sweep::SweepObserver;

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new() -> Progress {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} points, ETA {eta} — {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress { bar }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl SweepObserver for Progress {
    fn started(&mut self, total: usize, already_done: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(already_done as u64);
        // the ETA counts only points measured in this run
        self.bar.reset_eta();
        if already_done > 0 {
            self.bar.println(format!(
                "resuming: {already_done} of {total} points already in the results file"
            ));
        }
    }

    fn point_started(&mut self, p: &PlanPoint) {
        self.bar.set_message(format!(
            "{} {} {} b{} cap {}",
            p.kernel, p.precision, p.group, p.batch_size, p.cap
        ));
    }

    fn point_finished(&mut self, r: &Record) {
        if matches!(r.status, PointStatus::Invalid | PointStatus::Failed) {
            self.bar.println(format!(
                "{:?}: {} {} {}: {}",
                r.status,
                r.kernel,
                r.precision,
                r.workload,
                r.reason.as_deref().unwrap_or("")
            ));
        }
        self.bar.inc(1);
    }

    fn note(&mut self, message: &str) {
        self.bar.set_message(message.to_string());
    }
}
