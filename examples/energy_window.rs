//! Measure the energy of your own code with `EnergyMonitor`: open the best device
//! available (CUDA, else a wgpu GPU, else the simulated device — or the one named
//! on the command line), run a loop of matmul "steps", and print seconds, joules
//! and watts for the whole loop and for one step.
//!
//!     cargo run --release --example energy_window            # best available
//!     cargo run --release --example energy_window -- sim     # sim | wgpu | cuda
//!
//! One step is far shorter than max(1 s, 10 meter updates), so its window is
//! flagged `short-window`: measure many steps in one window and divide instead.

use joulebench_core::{MatmulShape, Op, Precision, Workload};
use joulebench_device::{open, BackendKind, OpenOptions};
use joulebench_energy::monitor::{EnergyMonitor, Measurement};
use std::error::Error;

const STEPS: u32 = 40;
/// Device time of one step, seconds: the loop lasts about 2 s.
const STEP_S: f64 = 0.05;

fn backend_kind() -> Result<BackendKind, String> {
    std::env::args()
        .nth(1)
        .map_or(Ok(BackendKind::Auto), |a| a.parse())
}

fn print(m: &Measurement) {
    let joules = m
        .joules
        .map(|j| format!("{j:.3} J"))
        .unwrap_or_else(|| "— J (no meter)".into());
    let watts = m
        .average_watts
        .map(|w| format!("{w:.1} W"))
        .unwrap_or_else(|| "— W".into());
    let flags: Vec<&str> = m.flags.iter().map(|f| f.name()).collect();
    println!(
        "{:<10} {:>9.4} s  {:>14}  {:>9}  {}",
        m.name,
        m.seconds,
        joules,
        watts,
        if m.trustworthy {
            "trustworthy".to_owned()
        } else {
            format!("NOT trustworthy: {}", flags.join(", "))
        }
    );
}

fn main() -> Result<(), Box<dyn Error>> {
    let dev = open(&OpenOptions::new(backend_kind()?))?;
    let mut backend = dev.backend;
    let info = backend.device().clone();
    println!("device: {}", info.name);
    for note in &dev.notes {
        println!("  {note}");
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
    println!(
        "workload: {STEPS} steps of {per_step} × {} {precision} ({})",
        kernel.name,
        w.shape_label()
    );

    let mut monitor = EnergyMonitor::new(dev.meter, dev.clock);
    println!(
        "meter: {}; windows under {:.2} s are not trustworthy",
        monitor.meter_source().name(),
        monitor.min_trustworthy_window_s()
    );
    monitor.begin_window("all-steps")?;
    for step in 0..STEPS {
        if step == 0 {
            monitor.begin_window("one-step")?;
        }
        // `run` returns once the device has finished, as `end_window` needs
        matmul.run(per_step)?;
        if step == 0 {
            print(&monitor.end_window("one-step")?);
        }
    }
    let all = monitor.end_window("all-steps")?;
    print(&all);
    if let Some(j) = all.joules {
        let flop = w.flop()? as f64 * per_step as f64 * STEPS as f64;
        println!("energy efficiency: {:.3} pJ/FLOP", j / flop * 1e12);
    }
    if info.simulated {
        println!("(simulated device: these numbers come from a model, not a measurement)");
    }
    Ok(())
}
