//! The sweep's progress bar on stderr: points done, points left, and an ETA from
//! the points measured so far (points the backend cannot run are recorded at once
//! and do not count), starting from the plan's own estimate.

use indicatif::{ProgressBar, ProgressStyle};
use joulebench_core::plan::PlanPoint;
use joulebench_core::record::{PointStatus, Record};
use joulebench_core::sweep::SweepObserver;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: ProgressBar,
    /// Points left that will take time (not skipped), and the estimate per point
    /// until one has been measured.
    runnable_left: usize,
    estimate_per_point_s: f64,
    /// Wall time of the points that ran.
    ran: usize,
    ran_s: f64,
    point_started: Option<Instant>,
    /// Seconds of device time per second of wall time (a virtual clock runs faster).
    real_time: bool,
}

impl Progress {
    /// `runnable`: points of the plan that will run; `estimate_per_point_s`: the
    /// plan's estimate of one; `real_time`: false on the simulated device, whose
    /// points take milliseconds of wall time.
    pub fn new(runnable: usize, estimate_per_point_s: f64, real_time: bool) -> Progress {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} points, {prefix} — {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let p = Progress {
            bar,
            runnable_left: runnable,
            estimate_per_point_s,
            ran: 0,
            ran_s: 0.0,
            point_started: None,
            real_time,
        };
        p.show_eta();
        p
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Seconds left: the points that will still run × the mean of those measured
    /// (the plan's estimate before the first).
    pub fn eta_s(&self) -> f64 {
        let per = if self.ran > 0 {
            self.ran_s / self.ran as f64
        } else {
            self.estimate_per_point_s
        };
        self.runnable_left as f64 * per
    }

    fn show_eta(&self) {
        let eta = if self.real_time || self.ran > 0 {
            format!(
                "ETA {}",
                humantime::format_duration(Duration::from_secs(self.eta_s().round() as u64))
            )
        } else {
            "ETA –".into()
        };
        self.bar.set_prefix(eta);
    }
}

impl SweepObserver for Progress {
    fn started(&mut self, total: usize, already_done: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(already_done as u64);
        if already_done > 0 {
            self.runnable_left = self.runnable_left.saturating_sub(already_done);
            self.bar.println(format!(
                "resuming: {already_done} of {total} points already in the results file"
            ));
        }
        self.show_eta();
    }

    fn point_started(&mut self, p: &PlanPoint) {
        self.point_started = Some(Instant::now());
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
        if r.status != PointStatus::Skipped {
            self.runnable_left = self.runnable_left.saturating_sub(1);
            if let Some(t) = self.point_started.take() {
                self.ran += 1;
                self.ran_s += t.elapsed().as_secs_f64();
            }
        }
        self.bar.inc(1);
        self.show_eta();
    }

    fn note(&mut self, message: &str) {
        self.bar.set_message(message.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_starts_from_the_plan_and_follows_measured_points() {
        let mut p = Progress::new(4, 10.0, true);
        assert_eq!(p.eta_s(), 40.0);
        p.ran = 1;
        p.ran_s = 2.0;
        p.runnable_left = 3;
        assert_eq!(p.eta_s(), 6.0);
    }
}
