//! Opens the device a sweep runs on: its backend, energy meter, power control and
//! clock. This is the one place that knows which crate provides which part.

use crate::args::{BackendChoice, SweepArgs};
use crate::error::{runtime, usage, CliError};
use joulebench_core::{Backend, Clock, EnergyMeter, PowerControl};
use joulebench_energy::sim::{self, SimDevice};
use std::sync::Arc;

pub struct OpenDevice {
    pub backend: Box<dyn Backend>,
    pub meter: Box<dyn EnergyMeter>,
    pub power: Option<Box<dyn PowerControl>>,
    pub clock: Arc<dyn Clock>,
    /// Lines worth telling the user before the sweep (e.g. which meter was chosen).
    pub notes: Vec<String>,
}

pub fn open(args: &SweepArgs, seed: u64) -> Result<OpenDevice, CliError> {
    match args.backend {
        BackendChoice::Sim => open_sim(&args.sim_profile, 0, seed),
        BackendChoice::Wgpu => Err(runtime("wgpu: this build of joulebench has no wgpu backend")),
        BackendChoice::Cuda => Err(runtime("CUDA: this build of joulebench has no CUDA backend")),
        BackendChoice::Auto => {
            let mut dev = open_sim(&args.sim_profile, 0, seed)?;
            dev.notes.push("no GPU backend found: using the simulated device (records say simulated)".into());
            Ok(dev)
        }
    }
}

pub fn open_sim(profile: &str, index: usize, seed: u64) -> Result<OpenDevice, CliError> {
    let dev = SimDevice::open(profile, index, seed).map_err(usage)?;
    Ok(OpenDevice {
        clock: dev.clock,
        backend: Box::new(dev.backend),
        meter: Box::new(dev.meter),
        power: Some(Box::new(dev.power)),
        notes: vec![format!(
            "simulated device {profile}: {}",
            sim::profile(profile).map(|p| p.description).unwrap_or("")
        )],
    })
}
