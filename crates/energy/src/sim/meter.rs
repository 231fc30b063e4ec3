//! The simulated device's energy meter: a counter in whole millijoules that
//! changes about every 100 ms by what a partial-time sensor saw, its updates
//! stamped when a polling thread would have seen them, and telemetry sampled every
//! 50 ms while time passes — the readings a real meter's background thread would
//! collect, when it would collect them.

use super::Shared;
use joulebench_core::meter::{
    CounterUpdate, EnergyMeter, MeterError, MeterSource, Telemetry, TelemetrySample,
};

pub struct SimMeter {
    shared: Shared,
}

impl SimMeter {
    pub(crate) fn new(shared: Shared) -> Self {
        SimMeter { shared }
    }
}

impl EnergyMeter for SimMeter {
    fn source(&self) -> MeterSource {
        MeterSource::Simulated
    }

    fn energy_j(&mut self) -> Result<f64, MeterError> {
        Ok(self.shared.lock().counter.reading_j)
    }

    fn update_period_s(&self) -> f64 {
        self.shared.lock().profile.counter_period_s
    }

    fn take_updates(&mut self) -> Result<Vec<CounterUpdate>, MeterError> {
        Ok(self.shared.lock().take_updates())
    }

    fn take_telemetry(&mut self) -> Result<Vec<TelemetrySample>, MeterError> {
        Ok(self.shared.lock().take_samples())
    }

    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        Ok(self.shared.lock().reading())
    }
}
