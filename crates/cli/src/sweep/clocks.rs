//! The clock axes of a sweep, resolved against the clocks the GPU supports before
//! anything changes: a clock it does not support is refused with the nearest ones it
//! does, a range is snapped to them, and a memory-clock axis needs a GPU that offers
//! more than one memory clock.

use crate::error::{usage, CliError};
use joulebench_core::plan::SweepConfig;
use joulebench_core::ClockSpec;
use joulebench_device::OpenDevice;

/// Replace the config's clock axes by the supported clocks they mean.
pub fn resolve(cfg: &mut SweepConfig, dev: &mut OpenDevice, device: &str) -> Result<(), CliError> {
    let locks = |v: &[ClockSpec]| v.iter().any(|c| !c.is_default());
    let (sm, mem) = (locks(&cfg.sm_clocks), locks(&cfg.mem_clocks));
    if !sm && !mem {
        return Ok(());
    }
    let Some(control) = dev.clocks_mut() else {
        return Err(usage(format!(
            "{device} has no clock control, so its clocks cannot be locked (NVML GPUs and the \
             simulated device have one)"
        )));
    };
    let explicit = |specs: Vec<Option<u32>>| -> Vec<ClockSpec> {
        specs
            .into_iter()
            .map(|c| c.map_or(ClockSpec::Default, ClockSpec::Mhz))
            .collect()
    };
    if sm {
        let supported = control
            .supported_sm_clocks_mhz()
            .map_err(|e| CliError::from(e).context("reading the SM clocks the GPU supports"))?;
        let resolved = ClockSpec::resolve(&cfg.sm_clocks, &supported, "SM")
            .map_err(|e| usage(format!("SM clocks (--sm-clocks): {e}")))?;
        cfg.sm_clocks = explicit(resolved);
    }
    if mem {
        let supported = control
            .supported_mem_clocks_mhz()
            .map_err(|e| CliError::from(e).context("reading the memory clocks the GPU supports"))?;
        if let [only] = supported.as_slice() {
            return Err(usage(format!(
                "{device} offers one memory clock ({only} MHz): there is no memory clock to sweep; \
                 drop --mem-clocks"
            )));
        }
        let resolved = ClockSpec::resolve(&cfg.mem_clocks, &supported, "memory")
            .map_err(|e| usage(format!("memory clocks (--mem-clocks): {e}")))?;
        cfg.mem_clocks = explicit(resolved);
    }
    Ok(())
}
