//! What the root benches share: which backends, kernels, precisions and shapes to
//! run (narrowed by `JOULEBENCH_BENCH_*` variables, since `cargo bench` takes no
//! flags of its own), opening each device with its meter, checking each kernel
//! against the f64 reference, and measuring every case twice — time in a
//! `Criterion<WallTime>` group, joules in a `Criterion<Energy>` group.

use criterion::measurement::WallTime;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use joulebench_core::verify::verify;
use joulebench_core::{
    Backend, DeviceInfo, MeterSource, Op, Precision, Support, ValidityFlag, Workload,
};
use joulebench_criterion::{criterion_test_mode, Energy, EnergyBench, WindowConfig};
use joulebench_device::{open, BackendKind, OpenOptions};
use std::time::Duration;

const SEED: u64 = 42;

/// The environment variables that narrow a bench run, documented in docs/kernel-developers.md.
pub const ENV_BACKENDS: &str = "JOULEBENCH_BENCH_BACKENDS";
pub const ENV_KERNELS: &str = "JOULEBENCH_BENCH_KERNELS";
pub const ENV_PRECISIONS: &str = "JOULEBENCH_BENCH_PRECISIONS";
pub const ENV_SIZES: &str = "JOULEBENCH_BENCH_SIZES";
pub const ENV_SIM_PROFILE: &str = "JOULEBENCH_BENCH_SIM_PROFILE";
pub const ENV_MIN_WINDOW_S: &str = "JOULEBENCH_BENCH_MIN_WINDOW_S";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sim,
    Wgpu,
    Cuda,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Sim, Kind::Wgpu, Kind::Cuda];

    fn name(self) -> &'static str {
        match self {
            Kind::Sim => "sim",
            Kind::Wgpu => "wgpu",
            Kind::Cuda => "cuda",
        }
    }

    fn backend(self) -> BackendKind {
        match self {
            Kind::Sim => BackendKind::Sim,
            Kind::Wgpu => BackendKind::Wgpu,
            Kind::Cuda => BackendKind::Cuda,
        }
    }
}

/// What to run, from the environment.
pub struct Selection {
    /// `None`: every backend found (a missing one is skipped, or fails under CI=true
    /// where it is expected).
    backends: Option<Vec<Kind>>,
    kernels: Option<Vec<String>>,
    precisions: Option<Vec<Precision>>,
    /// Square matmul sizes / attention sequence lengths.
    pub sizes: Option<Vec<u64>>,
    sim_profile: String,
    min_window_s: Option<f64>,
}

fn list(var: &str) -> Option<Vec<String>> {
    let v = std::env::var(var).ok()?;
    let items: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    (!items.is_empty()).then_some(items)
}

impl Selection {
    pub fn from_env() -> Result<Selection, String> {
        let backends = list(ENV_BACKENDS)
            .map(|v| {
                v.iter()
                    .map(|b| {
                        Kind::ALL
                            .into_iter()
                            .find(|k| k.name() == b.to_ascii_lowercase())
                            .ok_or_else(|| {
                                format!("{ENV_BACKENDS}: '{b}' is not one of sim, wgpu, cuda")
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let precisions = list(ENV_PRECISIONS)
            .map(|v| {
                v.iter()
                    .map(|p| {
                        p.parse::<Precision>()
                            .map_err(|e| format!("{ENV_PRECISIONS}: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let sizes = list(ENV_SIZES)
            .map(|v| {
                v.iter()
                    .map(|s| match s.parse::<u64>() {
                        Ok(n) if n > 0 => Ok(n),
                        _ => Err(format!("{ENV_SIZES}: '{s}' is not a positive integer")),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let min_window_s = match std::env::var(ENV_MIN_WINDOW_S) {
            Ok(v) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 => Some(s),
                _ => {
                    return Err(format!(
                        "{ENV_MIN_WINDOW_S}: '{v}' is not a positive number of seconds"
                    ))
                }
            },
            Err(_) => None,
        };
        Ok(Selection {
            backends,
            kernels: list(ENV_KERNELS),
            precisions,
            sizes,
            sim_profile: std::env::var(ENV_SIM_PROFILE)
                .unwrap_or_else(|_| joulebench_energy::sim::DEFAULT_PROFILE.into()),
            min_window_s,
        })
    }

    fn wants_kernel(&self, name: &str) -> bool {
        self.kernels
            .as_ref()
            .is_none_or(|k| k.iter().any(|x| x == name))
    }

    fn wants_precision(&self, p: Precision) -> bool {
        self.precisions.as_ref().is_none_or(|v| v.contains(&p))
    }
}

/// Whether CI=true: a missing lavapipe then fails the run instead of skipping.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// One opened device: its backend, and its meter and clock inside an `EnergyBench`.
struct Device {
    kind: Kind,
    backend: Box<dyn Backend>,
    bench: EnergyBench,
    /// Why energy cannot be measured here, if it cannot.
    no_energy: Option<String>,
}

fn window_config(sel: &Selection, info: &DeviceInfo, test_mode: bool) -> WindowConfig {
    // The simulated device's windows pass in virtual time: keep the protocol's
    // windows even in test mode, so CI runs the real path in milliseconds.
    if test_mode && !info.simulated {
        return WindowConfig::smoke_test();
    }
    let mut cfg = WindowConfig::default();
    if let Some(s) = sel.min_window_s {
        cfg.protocol.min_window_s = s;
    }
    if info.simulated && !test_mode {
        cfg.virtual_pacing = Some(SIM_PACING);
    }
    cfg
}

fn open_device(kind: Kind, sel: &Selection, test_mode: bool) -> Result<Device, String> {
    let dev = open(&OpenOptions {
        sim_profile: sel.sim_profile.clone(),
        seed: SEED,
        ..OpenOptions::new(kind.backend())
    })
    .map_err(|e| e.to_string())?;
    let info = dev.backend.device().clone();
    let cfg = window_config(sel, &info, test_mode);
    let mut bench = EnergyBench::new(dev.meter, dev.clock, cfg);
    let no_energy = match bench.meter_source() {
        MeterSource::None => Some(match bench.check_meter() {
            Err(e) => e.to_string(),
            Ok(()) => "no energy meter".into(),
        }),
        _ => bench.check_meter().err().map(|e| e.to_string()),
    };
    println!(
        "== {}: {}{}",
        kind.name(),
        info.name,
        if info.cpu_emulation {
            " [CPU emulation]"
        } else {
            ""
        }
    );
    for note in &dev.notes {
        println!("   {note}");
    }
    match &no_energy {
        None => println!(
            "   energy: {} meter, updates every {:.0} ms; windows of at least {:.2} s{}{}",
            bench.meter_source().name(),
            bench.update_period_s() * 1e3,
            bench.window_target_s(),
            if info.simulated {
                " of virtual time"
            } else {
                ""
            },
            if bench.window_target_s()
                < joulebench_criterion::min_trustworthy_window_s(bench.update_period_s())
            {
                " (shorter than max(1 s, 10 updates): flagged short-window)"
            } else {
                ""
            }
        ),
        Some(why) => println!("   energy: none ({why}); time only"),
    }
    Ok(Device {
        kind,
        backend: dev.backend,
        bench,
        no_energy,
    })
}

fn open_devices(sel: &Selection, test_mode: bool) -> Result<Vec<Device>, String> {
    let mut devices = Vec::new();
    for kind in Kind::ALL {
        let asked = sel.backends.as_ref().map(|b| b.contains(&kind));
        if asked == Some(false) {
            continue;
        }
        match open_device(kind, sel, test_mode) {
            Ok(d) => devices.push(d),
            Err(why) if asked == Some(true) => {
                return Err(format!("{} asked for in {ENV_BACKENDS} but unavailable: {why}", kind.name()))
            }
            Err(why) if kind == Kind::Wgpu && under_ci() => {
                return Err(format!(
                    "wgpu unavailable under CI=true (lavapipe is expected; scripts/setup-test-deps.sh installs it): {why}"
                ))
            }
            Err(why) => println!("== {}: skipped: {why}", kind.name()),
        }
    }
    Ok(devices)
}

/// Real seconds per virtual second on the simulated device in `cargo bench`: it
/// runs 33× faster than a real GPU would, and each energy sample is one window.
const SIM_PACING: f64 = 0.03;

/// Criterion settings per group, in real seconds.
struct GroupTimes {
    warm_up: Duration,
    measurement: Duration,
}

const SAMPLES: usize = 10;

/// `scale`: real seconds per device-clock second (1, or the simulated pacing).
fn time_group_times(scale: f64) -> GroupTimes {
    GroupTimes {
        warm_up: Duration::from_secs_f64(scale),
        measurement: Duration::from_secs_f64(3.0 * scale),
    }
}

fn energy_group_times(scale: f64, window_s: f64, period_s: f64) -> GroupTimes {
    // One window per sample: its length, plus up to a meter period at each end
    // for alignment. 1.5× leaves criterion two iterations per sample (one window).
    let per_sample_s = window_s + 2.0 * period_s;
    GroupTimes {
        warm_up: Duration::from_secs_f64(scale * window_s.max(1.0)),
        measurement: Duration::from_secs_f64(scale * 1.5 * per_sample_s * SAMPLES as f64),
    }
}

/// Shapes for one device: from `JOULEBENCH_BENCH_SIZES` if set, else the bench's defaults.
pub type ShapesFor = fn(&DeviceInfo, Option<&[u64]>) -> Vec<Workload>;

/// The body of a root bench: every available backend's kernels for `op`, at every
/// precision and shape selected. Returns the process exit code.
pub fn run(op: Op, shapes_for: ShapesFor) -> i32 {
    // the libraries' warnings (a failed energy read) on stderr, as the CLI shows them
    joulebench_cli::logging::init();
    let test_mode = criterion_test_mode();
    let sel = match Selection::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut devices = match open_devices(&sel, test_mode) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    // criterion's report charts draw with plotters, whose bundled-font renderer (used
    // by joulebench's own plots in this build) only knows registered fonts
    joulebench_analysis::chart::register_fonts();
    let mut time = Criterion::default()
        .sample_size(SAMPLES)
        .configure_from_args();
    let mut energy = Criterion::default()
        .with_measurement(Energy::default())
        .sample_size(SAMPLES)
        .configure_from_args();
    let mut failures: Vec<String> = Vec::new();
    let mut cases = 0usize;
    for dev in &mut devices {
        let info = dev.backend.device().clone();
        let kernels: Vec<_> = dev
            .backend
            .kernels()
            .into_iter()
            .filter(|k| k.op == op && sel.wants_kernel(&k.name))
            .collect();
        for kernel in &kernels {
            for &precision in kernel
                .precisions
                .iter()
                .filter(|p| sel.wants_precision(**p))
            {
                for w in shapes_for(&info, sel.sizes.as_deref()) {
                    let case = Case {
                        op,
                        kernel: &kernel.name,
                        precision,
                        workload: w,
                    };
                    match bench_case(dev, &case, &mut time, &mut energy) {
                        Ok(true) => cases += 1,
                        Ok(false) => {}
                        Err(e) => {
                            eprintln!("FAILED {}: {e}", case.describe(dev.kind));
                            failures.push(format!("{}: {e}", case.describe(dev.kind)));
                        }
                    }
                }
            }
        }
    }
    time.final_summary();
    energy.final_summary();
    println!(
        "{op}: {cases} case(s) measured on {} backend(s){}",
        devices.len(),
        if test_mode {
            " (criterion test mode: each once)"
        } else {
            ""
        }
    );
    if failures.is_empty() {
        0
    } else {
        eprintln!("{} case(s) failed:", failures.len());
        for f in &failures {
            eprintln!("  {f}");
        }
        1
    }
}

struct Case<'a> {
    op: Op,
    kernel: &'a str,
    precision: Precision,
    workload: Workload,
}

impl Case<'_> {
    fn describe(&self, kind: Kind) -> String {
        format!(
            "{}/{}/{}/{}",
            kind.name(),
            self.kernel,
            self.precision,
            self.workload.compact_label()
        )
    }
}

/// Verify, then measure one case in both groups. `Ok(false)`: skipped, with a
/// message (unsupported here, or failed its correctness check).
fn bench_case(
    dev: &mut Device,
    case: &Case<'_>,
    time: &mut Criterion<WallTime>,
    energy: &mut Criterion<Energy>,
) -> Result<bool, String> {
    let kind = dev.kind;
    let what = case.describe(kind);
    let w = case.workload;
    if let Support::Unsupported(why) = dev.backend.support(case.kernel, case.precision, &w) {
        println!("skip {what}: {why}");
        return Ok(false);
    }
    let flop = w.flop().map_err(|e| e.to_string())?;
    let simulated = dev.backend.device().simulated;
    let scale = dev.bench.config().virtual_pacing.unwrap_or(1.0);
    let bench = &mut dev.bench;
    let mut kernel = match dev.backend.prepare(case.kernel, case.precision, &w, SEED) {
        Ok(k) => k,
        Err(e) => {
            println!("skip {what}: {e}");
            return Ok(false);
        }
    };
    match verify(kernel.as_mut(), &w, case.precision, SEED) {
        Ok(v) if v.passed => {}
        Ok(v) => {
            println!(
                "skip {what}: failed its correctness check (relative error {:.2e} > {:.0e}, {} non-finite of {})",
                v.relative_error, v.tolerance, v.non_finite_elements, v.output_elements
            );
            return Ok(false);
        }
        Err(e) => {
            println!("skip {what}: correctness check could not run: {e}");
            return Ok(false);
        }
    }
    let mut run = |n: u64| kernel.run(n);
    let cal = bench.calibrate(&mut run).map_err(|e| e.to_string())?;
    let function = format!("{}/{}", case.kernel, case.precision);
    let parameter = w.compact_label();
    // criterion's time is the device's own (timestamps, CUDA events), named so;
    // the energy windows below give the time every energy figure is over
    let time_kind = if cal.device_timer {
        "device-time"
    } else {
        "wall-time"
    };
    let t = time_group_times(scale);
    let mut group = time.benchmark_group(format!("{}/{}/{time_kind}", case.op, kind.name()));
    group
        .sample_size(SAMPLES)
        .warm_up_time(t.warm_up)
        .measurement_time(t.measurement)
        .throughput(Throughput::Elements(flop));
    // a failed run ends the group with its error: never a sample of zero seconds
    let timed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        group.bench_function(BenchmarkId::new(&function, &parameter), |b| {
            b.iter_custom(|iters| match bench.device_time(iters, &cal, &mut run) {
                Ok(d) => d,
                Err(e) => panic!("no time sample: {e}"),
            })
        });
    }));
    drop(group);
    if let Err(panic) = timed {
        return Err(panic_message(panic.as_ref()));
    }

    if dev.no_energy.is_some() {
        println!("   {what}: {time_kind} only; no energy meter");
        return Ok(true);
    }
    let t = energy_group_times(scale, bench.window_target_s(), bench.update_period_s());
    let mut group = energy.benchmark_group(format!("{}/{}/energy", case.op, kind.name()));
    group
        .sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(t.warm_up)
        .measurement_time(t.measurement)
        .throughput(Throughput::Elements(flop));
    bench.take_windows();
    // a window whose energy cannot be measured ends the group with the meter's
    // error (criterion cannot skip a sample); it never becomes a 0 J sample
    let measured = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        group.bench_function(BenchmarkId::new(&function, &parameter), |b| {
            bench.iter_joules(b, &cal, &mut run)
        });
    }));
    drop(group);
    if let Err(panic) = measured {
        return Err(panic_message(panic.as_ref()));
    }
    let windows = bench.take_windows();
    if let Some(line) = windows_line(&windows, flop, bench, simulated) {
        println!("   {what}: {line}");
    }
    Ok(true)
}

/// What a panic carried: the message of `panic!`, or a plain word.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the energy measurement stopped".into())
}

/// One line for the energy group's windows: medians of J/FLOP, TFLOP/s and
/// average power, all over the windows' own time (host syncs included), and the
/// device's own throughput beside it, named as such.
pub fn windows_line(
    windows: &[joulebench_core::Window],
    flop: u64,
    bench: &EnergyBench,
    simulated: bool,
) -> Option<String> {
    let s = joulebench_core::protocol::summarize(windows, flop, None);
    let pj = s.picojoules_per_flop()?;
    let watts = s.average_w?;
    let mut flags = Vec::new();
    if windows.iter().any(|w| bench.is_short(w)) {
        flags.push(ValidityFlag::ShortWindow.name());
    }
    if windows.iter().any(|w| {
        w.idle_share
            .is_some_and(|x| x > joulebench_core::protocol::MAX_IDLE_SHARE)
    }) {
        flags.push(ValidityFlag::IdleInWindow.name());
    }
    if simulated {
        flags.push("simulated");
    }
    let device = s
        .device_tflops
        .map(|t| format!("; device time alone {t:.0} TFLOP/s"))
        .unwrap_or_default();
    let seconds: Vec<f64> = windows.iter().map(|w| w.seconds).collect();
    Some(format!(
        "{pj:.3} pJ/FLOP, {:.0} TFLOP/s, {watts:.0} W over windows of {:.2} s{device}{}",
        s.tflops,
        joulebench_core::stats::median(&seconds),
        if flags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", flags.join(", "))
        }
    ))
}
