//! A sweep before it meets a device: its config (axes, seed, protocol), how many
//! times each point is measured, which changes of a real GPU the caller allows, and
//! what its records say about where they came from.

use super::clocks;
use super::error::SweepSetupError;
use super::planned::PlannedSweep;
use crate::device::OpenDevice;
use joulebench_core::plan::{PlanPoint, SweepConfig};

/// A sweep to run: built from a config, then planned on a device
/// ([`Sweep::plan`]), then run into a sink ([`PlannedSweep::run`]).
#[derive(Clone, Debug)]
pub struct Sweep {
    pub(crate) config: SweepConfig,
    pub(crate) repeat: u32,
    pub(crate) allow_power_changes: bool,
    pub(crate) allow_clock_changes: bool,
    pub(crate) command: String,
    pub(crate) host: String,
}

impl Sweep {
    /// Each point once, no change of a real GPU allowed, records naming this
    /// process's command line and this host.
    pub fn new(config: SweepConfig) -> Sweep {
        Sweep {
            // the config's own repeat (the standard preset measures each point 3 times)
            repeat: config.repeat.unwrap_or(1).max(1),
            config,
            allow_power_changes: false,
            allow_clock_changes: false,
            command: process_command_line(),
            host: host_name(),
        }
    }

    /// Measure every point `n` times, in an order shuffled within each cap and clock
    /// (docs/ARCHITECTURE.md §4.4); 1: each once, in plan order. Without it, the
    /// config's `repeat`, else once.
    pub fn repeat(mut self, n: u32) -> Sweep {
        self.repeat = n.max(1);
        self
    }

    /// Allow the sweep to change a real GPU's power limit (restored on every exit).
    pub fn allow_power_changes(mut self, allow: bool) -> Sweep {
        self.allow_power_changes = allow;
        self
    }

    /// Allow the sweep to lock a real GPU's clocks (reset on every exit).
    pub fn allow_clock_changes(mut self, allow: bool) -> Sweep {
        self.allow_clock_changes = allow;
        self
    }

    /// The command line its records say produced them.
    pub fn command(mut self, command: impl Into<String>) -> Sweep {
        self.command = command.into();
        self
    }

    pub fn host(mut self, host: impl Into<String>) -> Sweep {
        self.host = host.into();
        self
    }

    pub fn config(&self) -> &SweepConfig {
        &self.config
    }

    /// The config's clock axes resolved to clocks `dev` supports: what a planner of
    /// its own (a training step's ops) reads before [`Sweep::with_points`].
    pub fn resolve_clocks(mut self, dev: &mut OpenDevice) -> Result<Sweep, SweepSetupError> {
        clocks::resolve(&mut self.config, dev)?;
        Ok(self)
    }

    /// The config's clocks resolved, its axes expanded into points for `dev`'s
    /// backend, and every cap and clock checked against the device — nothing changed.
    pub fn plan(self, dev: &mut OpenDevice) -> Result<PlannedSweep, SweepSetupError> {
        let sweep = self.resolve_clocks(dev)?;
        let points = sweep.config.plan(dev.backend.as_ref())?;
        sweep.with_points(dev, points)
    }

    /// [`Sweep::plan`] with points another planner made from this sweep's config
    /// (after [`Sweep::resolve_clocks`]): checked the same way.
    pub fn with_points(
        self,
        dev: &mut OpenDevice,
        points: Vec<PlanPoint>,
    ) -> Result<PlannedSweep, SweepSetupError> {
        PlannedSweep::new(self, dev, points)
    }
}

/// This machine's host name, for records.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// This process's own command line, quoted where a shell would need it.
pub fn process_command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "\"'$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
