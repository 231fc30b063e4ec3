//! Measure the energy of your own code with `EnergyMonitor`: open the best device
//! available (CUDA, else a wgpu GPU, else the simulated device — or the one named
//! on the command line), run a loop of matmul "steps", and print seconds, joules
//! and watts for the whole loop and for one step.
//!
//!     cargo run --release --example energy_window            # best available
//!     cargo run --release --example energy_window -- sim     # sim | wgpu | cuda
//!
//! One step is far shorter than the monitor's bound (max(1 s, 100 meter updates):
//! 10 s on NVML), so its window is flagged `short-window`: measure many steps in
//! one window and divide instead. docs/kernel-developers.md quotes this example's output on the
//! simulated device, and `tests/readme_outputs.rs` runs it and compares.

use joulebench_core::{MatmulShape, Op, Precision, Workload};
use joulebench_device::{open, BackendKind, OpenOptions};
use joulebench_energy::monitor::{EnergyMonitor, Measurement};
use std::error::Error;
use std::io::Write;

const STEPS: u32 = 40;
/// Device time of one step, seconds: the loop lasts about 12 s.
const STEP_S: f64 = 0.3;

fn backend_kind() -> Result<BackendKind, String> {
    std::env::args()
        .nth(1)
        .map_or(Ok(BackendKind::Auto), |a| a.parse())
}

fn line(m: &Measurement) -> String {
    let figures = match (m.joules, m.average_watts) {
        (Some(j), Some(w)) => format!("{j:>12.3} J  {w:>7.1} W"),
        _ => format!("{:>14}  {:>9}", "— J (no meter)", "— W"),
    };
    let flags: Vec<&str> = m.flags.iter().map(|f| f.name()).collect();
    format!(
        "{:<10} {:>9.4} s  {figures}  {}",
        m.name,
        m.seconds,
        if m.trustworthy {
            "trustworthy".to_owned()
        } else {
            format!("NOT trustworthy: {}", flags.join(", "))
        }
    )
}

/// The example on a device of `kind`, its output written to `out`.
pub fn run(kind: BackendKind, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let dev = open(&OpenOptions::new(kind))?;
    let mut backend = dev.backend;
    let info = backend.device().clone();
    writeln!(out, "device: {}", info.name)?;
    for note in &dev.notes {
        writeln!(out, "  {note}")?;
    }

    // Your workload goes here; this one is a square matmul in the best precision
    // the device's first matmul kernel has.
    let n = if info.cpu_emulation { 256 } else { 4096 };
    let w = Workload::Matmul(MatmulShape {
        batch: 1,
        m: n,
        n,
        k: n,
    });
    let kernel = backend
        .kernels()
        .into_iter()
        .find(|k| k.op == Op::Matmul)
        .ok_or("this backend has no matmul kernel")?;
    let precision = [Precision::Bf16, Precision::F16, Precision::F32]
        .into_iter()
        .find(|p| kernel.precisions.contains(p))
        .ok_or("the matmul kernel runs none of bf16, f16, f32")?;
    let mut matmul = backend.prepare(&kernel.name, precision, &w, 42)?;
    // iterations per step, from one timed run
    let t = matmul.run(1)?;
    let per_step = ((STEP_S / t.device_s.unwrap_or(t.wall_s).max(1e-9)).ceil() as u64).max(1);
    writeln!(
        out,
        "workload: {STEPS} steps of {per_step} × {} {precision} ({})",
        kernel.name,
        w.shape_label()
    )?;

    let mut monitor = EnergyMonitor::new(dev.meter, dev.clock);
    writeln!(
        out,
        "meter: {}; windows under {:.2} s are not trustworthy",
        monitor.meter_source().name(),
        monitor.min_trustworthy_window_s()
    )?;
    monitor.begin_window("all-steps")?;
    for step in 0..STEPS {
        if step == 0 {
            monitor.begin_window("one-step")?;
        }
        // `run` returns once the device has finished, as `end_window` needs
        matmul.run(per_step)?;
        if step == 0 {
            // waits for the counter's next update (at most a period)
            writeln!(out, "{}", line(&monitor.end_window("one-step")?))?;
        }
    }
    let all = monitor.end_window("all-steps")?;
    writeln!(out, "{}", line(&all))?;
    match all.joules {
        Some(j) if all.trustworthy => {
            let flop = w.flop()? as f64 * per_step as f64 * STEPS as f64;
            writeln!(out, "energy efficiency: {:.3} pJ/FLOP", j / flop * 1e12)?;
        }
        _ => writeln!(out, "energy efficiency: not measured (see the flags above)")?,
    }
    if info.simulated {
        writeln!(
            out,
            "(simulated device: these numbers come from a model, not a measurement)"
        )?;
    }
    Ok(())
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn Error>> {
    run(backend_kind()?, &mut std::io::stdout().lock())
}
