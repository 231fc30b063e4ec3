//! The shared correctness suite on the simulated device: its model kernels compute
//! the reduced check shapes in f32 from precision-rounded inputs, so the suite's
//! plumbing (inputs, poison, sampling, tolerances) is exercised on every machine.

fn open() -> Result<Box<dyn joulebench_core::Backend>, String> {
    joulebench_energy::sim::SimDevice::open("sim-h100", 0, 1)
        .map(|d| Box::new(d.backend) as Box<dyn joulebench_core::Backend>)
        .map_err(|e| e.to_string())
}

joulebench_core::correctness_suite!(open, required_in_ci = true);
