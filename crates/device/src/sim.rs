//! The simulated device opened: its backend, meter, clock and controls from one
//! model. Its controls change nothing that outlives the process, so they need no
//! guard — except where a test puts a fake NVML device behind it to drive the
//! guarded path end to end.

use crate::device::{Controls, OpenDevice};
use crate::error::OpenError;
use crate::options::OpenOptions;
use joulebench_core::meter::NoMeter;
use joulebench_core::{Backend, EnergyMeter};
use joulebench_energy::attach::{match_nvml, nvml_controls};
use joulebench_energy::nvml;
use joulebench_energy::sim::{self, SimDevice};

pub(crate) fn open_sim(opts: &OpenOptions) -> Result<OpenDevice, OpenError> {
    let dev = SimDevice::open(&opts.sim_profile, opts.sim_index, opts.seed)
        .map_err(|e| OpenError::BadOption(e.to_string()))?;
    let mut notes = vec![format!(
        "simulated device {}: {}",
        opts.sim_profile,
        sim::profile(&opts.sim_profile)
            .map(|p| p.description)
            .unwrap_or("")
    )];
    let info = dev.backend.device().clone();
    // Tests drive the guarded NVML power path with a fake device in a state file;
    // the simulated device then keeps its own meter and clock.
    let controls = if nvml::fake_in_use() {
        let (dev_nvml, id) = match_nvml(&info).map_err(OpenError::PowerControl)?;
        notes.push(format!("power control: fake NVML device {}", id.describe()));
        let a = nvml_controls(&dev_nvml, &id);
        Controls::guarded(a.power, a.clocks, a.guard_target)
    } else {
        Controls::free(Some(Box::new(dev.power)), Some(Box::new(dev.clocks)))
    };
    let meter: Box<dyn EnergyMeter> = match opts.meter {
        Some(_) => Box::new(dev.meter),
        None => Box::new(NoMeter {
            reason: "energy meter turned off with --meter none".into(),
        }),
    };
    Ok(OpenDevice::new(
        Box::new(dev.backend),
        meter,
        dev.clock,
        notes,
        controls,
    ))
}
