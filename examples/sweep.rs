//! Run a sweep from your own program, without the `joulebench` command: open a
//! device, plan the quick preset on it, continue a results file (points already in
//! it are skipped), measure with a line per point, and print the recommendation —
//! the same library calls `joulebench sweep` makes (docs/ARCHITECTURE.md §1.2).
//!
//!     cargo run --release --example sweep                          # simulated device
//!     cargo run --release --example sweep -- auto results/mine.jsonl
//!
//! The first argument is the backend (sim, wgpu, cuda, auto; default sim), the second
//! the results file (default: a file in the system's temporary directory). Run it
//! twice: the second run measures nothing new.

use joulebench_analysis::recommend::{recommend, Objective};
use joulebench_analysis::recommend_table::recommendation_table;
use joulebench_analysis::table::TableFormat;
use joulebench_core::plan::{PlanPoint, Preset, SweepConfig};
use joulebench_core::record::{read_records, Record};
use joulebench_core::resume::open_results;
use joulebench_core::sweep::SweepObserver;
use joulebench_device::{open, BackendKind, OpenOptions, Sweep};
use std::error::Error;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// One line per point as it finishes.
struct Lines;

impl SweepObserver for Lines {
    fn started(&mut self, total: usize, already_done: usize) {
        println!("{total} runs, {already_done} already in the results file");
    }
    fn point_started(&mut self, p: &PlanPoint) {
        print!("{} {} {} … ", p.kernel, p.precision, p.group);
    }
    fn point_finished(&mut self, r: &Record) {
        match r
            .measurement
            .as_ref()
            .and_then(|m| m.summary.joules_per_flop.as_ref())
        {
            Some(j) => println!("{:.3} pJ/FLOP", j.median * 1e12),
            None => println!("{:?}: {}", r.status, r.reason.as_deref().unwrap_or("")),
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let backend: BackendKind = args.next().as_deref().unwrap_or("sim").parse()?;
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("joulebench-example-sweep.jsonl"));

    let mut dev = open(&OpenOptions::new(backend))?;
    let config = SweepConfig::preset(Preset::Quick, dev.backend.as_ref());
    let mut planned = Sweep::new(config).plan(&mut dev)?;
    println!(
        "{} on {}: {} points, about {:.0} s of device time",
        planned.backend(),
        planned.device().name,
        planned.estimate().points,
        planned.estimate().typical_s
    );

    // the results file, held under its lock while the sweep appends to it
    let mut results = open_results(&out, true)?;
    planned.resume_from(&results.existing, &out, false)?;
    let run = planned.run(
        &mut dev,
        &mut results.writer,
        &mut Lines,
        &AtomicBool::new(false),
    )?;
    if let Some(restored) = run.restored? {
        println!("{}", restored.describe());
    }
    let outcome = run.outcome?;
    println!(
        "{} measured, {} skipped, {} already there → {}",
        outcome.measured,
        outcome.skipped,
        outcome.resumed,
        out.display()
    );

    let records = read_records(&out)?;
    let objective = Objective::WithinSlowdown { max_slowdown: 0.1 };
    let table = recommendation_table(&recommend(&records, objective), objective);
    println!("{}", table.render(TableFormat::Table));
    Ok(())
}
