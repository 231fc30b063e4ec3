//! Command-line arguments. Help text is written for someone who has never used
//! joulebench: each flag says what it changes and its default.

use clap::{Args, Parser, Subcommand, ValueEnum};
use joulebench_device::BackendKind;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "joulebench",
    version,
    about = "Measure what a GPU matmul or attention costs in joules, and recommend the kernel, \
             precision, batch size and power cap that cost the fewest joules per FLOP.",
    long_about = None,
    after_help = "Start with `joulebench devices`, then `joulebench sweep --preset quick`.\n\
                  Without a GPU, `--backend sim` runs the whole pipeline on a simulated device.\n\n\
                  Exit codes: 0 success; 1 a device, driver, meter or run failure; 2 bad input \
                  (flags, configs, shapes, results files, output paths); 3 a file that could not \
                  be read or written (a full disk); 128+N stopped by signal N (130 Ctrl-C, \
                  143 SIGTERM). A sweep that stops keeps every finished point and says where."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every backend, device, energy meter and power control found, and why any is missing.
    Devices(DevicesArgs),
    /// Measure a sweep of kernels × precisions × shapes × batch sizes × power caps.
    Sweep(Box<SweepArgs>),
    /// Measure a transformer's training step (its GEMMs and attention, forward and
    /// backward) — or with --inference its prefill and decode — and report joules per
    /// token for each precision, micro-batch, power cap, clock and kernel choice.
    Model(Box<ModelArgs>),
    /// Print every record of one or more results files.
    Report(ReportArgs),
    /// Recommend, per device and workload, the setting with the fewest joules per FLOP.
    Recommend(RecommendArgs),
    /// Join results files from several machines into one, dropping exact duplicates.
    Merge(MergeArgs),
    /// Rank devices per workload and precision by energy per FLOP (and cost, CO₂e).
    Compare(CompareArgs),
    /// Compare two runs point by point (after a driver update, or two cards): the
    /// change in J/FLOP, TFLOP/s and average power, regressions first, each marked
    /// significant only beyond both runs' uncertainty.
    Diff(DiffArgs),
    /// Show a GPU's power limits, or restore one a killed sweep left capped.
    #[command(subcommand)]
    Power(PowerCommand),
    /// Run a program and measure its energy on every GPU and the host, from its start
    /// to its end, under the power cap and clocks of a settings file (applied for the
    /// program's duration, restored after it), with the phases and tokens it marks,
    /// and what `joulebench model` predicted beside the measurement.
    Run(Box<RunArgs>),
}

#[derive(Args, Debug)]
#[command(after_help = "Phases: the program writes lines to the FIFO named by \
    $JOULEBENCH_PHASE_FIFO: a phase name (`warmup`, `train`) starts that phase, `end` ends \
    the one in progress, `tokens N` counts N tokens in it; or --phase-pattern and \
    --tokens-pattern match its output (which is then read and passed through unchanged). \
    Phases whose name starts with \"warm\" are warm-up; the others are the steady state \
    (--steady-phases names them instead).\n\n\
    Signals sent to joulebench are passed on to the program (a terminal's Ctrl-C reaches \
    it directly); joulebench waits for it to end and restores the GPUs after it. A third \
    signal kills the program (SIGKILL); a fourth makes joulebench restore and exit at once. \
    If joulebench itself is killed, the program gets SIGTERM, and `joulebench power \
    restore` puts the GPUs back.\n\n\
    Exit status: the program's (its code, or 128 + the signal that ended it); when it \
    succeeded, 1 if a restore or a meter failed, 3 if the records could not be written; 2 \
    for bad input (nothing changed, nothing started).")]
pub struct RunArgs {
    /// A settings file from `joulebench recommend --emit` or `joulebench model --emit`
    /// (TOML; JSON when its name ends in .json): each GPU runs under the power cap and
    /// clocks of its [[device]] entry (the one listing its UUID, else the one of its
    /// model). From `model`, the run is compared with the prediction.
    #[arg(long, value_name = "FILE")]
    pub settings: Option<PathBuf>,
    /// The [[model.NAME]] entry of --settings the run is compared with, when the file
    /// holds several models.
    #[arg(long, value_name = "NAME", requires = "settings")]
    pub model: Option<String>,
    /// A power cap for every GPU of the run, over the settings file's: "default" (the
    /// limit as found, not changed), watts ("300") or a percentage of the default
    /// limit ("80%").
    #[arg(long, value_name = "CAP")]
    pub power_cap: Option<String>,
    /// An SM clock to lock every GPU of the run at, in MHz, over the settings file's
    /// ("default": not locked).
    #[arg(long, value_name = "MHZ")]
    pub sm_clocks: Option<String>,
    /// Allow joulebench to change a GPU's power limit for the program's duration (it
    /// is restored after the program ends). Needs root.
    #[arg(long)]
    pub allow_power_changes: bool,
    /// Allow joulebench to lock a GPU's clocks for the program's duration (reset after
    /// it ends). Needs root.
    #[arg(long)]
    pub allow_clock_changes: bool,
    /// Which GPUs to measure (and apply settings to): "all" (the default), or indices
    /// (NVML's order, as nvidia-smi numbers them, then AMD and Intel GPUs), UUIDs or
    /// PCI bus ids, comma-separated. The program's own GPU selection
    /// (CUDA_VISIBLE_DEVICES) is left to you.
    #[arg(long, value_name = "all|LIST")]
    pub devices: Option<String>,
    /// Results file (JSONL) the run's records are appended to: one for the run and one
    /// per GPU. Default: results/run-<time>.jsonl.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// A regular expression matched on each line of the program's output: a match
    /// starts a phase named by its group `phase` (else its first group, else the whole
    /// match).
    #[arg(long, value_name = "REGEX")]
    pub phase_pattern: Option<String>,
    /// A regular expression matched on each line of the program's output: each match
    /// adds the tokens of its group `tokens` (else its first group), e.g. "tokens=(\d+)".
    #[arg(long, value_name = "REGEX", conflicts_with = "tokens")]
    pub tokens_pattern: Option<String>,
    /// The tokens the whole run processes (for its joules per token; per-phase
    /// figures need the program to count them, by the FIFO or --tokens-pattern).
    #[arg(long, value_name = "N")]
    pub tokens: Option<u64>,
    /// The phases the steady state is made of, comma-separated (default: every phase
    /// whose name does not start with "warm").
    #[arg(long, value_name = "LIST")]
    pub steady_phases: Option<String>,
    /// Energy source on NVIDIA GPUs: auto, counter, sampled, check, or none (time only).
    #[arg(
        long,
        default_value = "auto",
        value_name = "auto|counter|sampled|check|none"
    )]
    pub meter: String,
    /// Interval of a power-sampling meter, milliseconds.
    #[arg(long, default_value_t = 10, value_name = "MS")]
    pub sample_interval_ms: u64,
    /// Format of the report printed (on stderr) when the program has ended.
    #[arg(long, default_value = "table", value_name = "table|markdown|csv|json")]
    pub format: String,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub program: Vec<std::ffi::OsString>,
}

#[derive(Subcommand, Debug)]
pub enum PowerCommand {
    /// Current, default and allowed power limits of every NVIDIA GPU, and any pending restore.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Restore the power limits (and reset the locked clocks) recorded in the state files
    /// of sweeps that were killed (SIGKILL, power loss) before they could restore them.
    Restore {
        /// Restore even if the process that wrote the state file still seems to run.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--backend`: the backends `joulebench-device` registers, each with its own help
/// line, and `auto`.
fn backend_parser() -> impl clap::builder::TypedValueParser<Value = BackendKind> {
    use clap::builder::TypedValueParser;
    let choices = BackendKind::choices()
        .map(|k| clap::builder::PossibleValue::new(k.name()).help(k.description()));
    clap::builder::PossibleValuesParser::new(choices).try_map(|s| s.parse::<BackendKind>())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PresetChoice {
    /// Minutes on a GPU (seconds on the simulated device).
    Quick,
    /// The reference sweep: square matmuls 1024–8192, transformer linear layers,
    /// attention at seq 1k–16k, batch sizes 1–16.
    Standard,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// A built-in sweep. Used when no --config is given (default: quick).
    #[arg(long, value_enum, conflicts_with = "config")]
    pub preset: Option<PresetChoice>,
    /// A sweep config (TOML): every axis and protocol parameter. See examples/sweep.toml.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Locked SM clocks to sweep: "default" (not locked), MHz ("1410"), or a range
    /// min:max:step in MHz snapped to the clocks the GPU supports; comma-separated.
    /// Overrides the config. A clock the GPU does not support is refused before
    /// anything changes.
    #[arg(long, value_name = "LIST")]
    pub sm_clocks: Option<String>,
    /// Locked memory clocks to sweep, as --sm-clocks, where the GPU offers more than one.
    #[arg(long, value_name = "LIST")]
    pub mem_clocks: Option<String>,
    /// Allow joulebench to lock a real GPU's clocks (they are reset to the default on
    /// exit, and by `joulebench power restore` after a kill). Needs root. The
    /// simulated device needs no permission.
    #[arg(long)]
    pub allow_clock_changes: bool,
    /// How the inputs are drawn, a sweep axis: normal (the default: N(0, 1), as
    /// normalised activations and scaled FP8 tensors look), uniform, zeros, sparse
    /// (half the elements zero) or sparse:P%; comma-separated. Overrides the config.
    /// Points on other inputs than normal are compared only with each other.
    #[arg(long, value_name = "LIST")]
    pub inputs: Option<String>,
    /// Ops to measure (matmul, attention, attention-backward), comma-separated.
    /// Overrides the config.
    #[arg(long, value_name = "LIST")]
    pub ops: Option<String>,
    /// Batch sizes (linear-layer token multiples and attention batches), comma-separated.
    #[arg(long, value_name = "LIST")]
    pub batch_sizes: Option<String>,
    /// Measure several GPUs of this node at once: "all", or device indices ("0,2" or
    /// "0-3"; see `joulebench devices`). One worker process per GPU, each with its own
    /// energy meter and results file <out-stem>.dev<N>.jsonl; the files are merged into
    /// --out at the end. A failure on one GPU does not stop the others.
    #[arg(long, value_name = "all|LIST", conflicts_with_all = ["adapter", "cuda_device", "sim_index"])]
    pub devices: Option<String>,
    /// How many simulated GPUs the node has, for --backend sim --devices
    /// (default: one per --sim-profile entry).
    #[arg(long, value_name = "N", requires = "devices")]
    pub sim_devices: Option<usize>,
    /// Which simulated GPU of the node this sweep measures (set by --devices for its workers).
    #[arg(long, default_value_t = 0, value_name = "N", hide = true)]
    pub sim_index: usize,
    /// Report progress as machine-readable lines on stderr and stop when stdin closes
    /// (how --devices runs its workers).
    #[arg(long, hide = true)]
    pub progress_lines: bool,
    /// The closing recommendation's baseline, as `recommend --baseline`.
    #[arg(long, value_name = "kernel=K,precision=P")]
    pub baseline: Option<String>,
    #[command(flatten)]
    pub measure: MeasureArgs,
}

/// The sweep code reads the flags it shares with `model` as its own.
impl std::ops::Deref for SweepArgs {
    type Target = MeasureArgs;
    fn deref(&self) -> &MeasureArgs {
        &self.measure
    }
}

impl SweepArgs {
    /// A single-device sweep of `measure`'s device with no sweep config of its own
    /// (`model` plans its points itself).
    pub fn single(measure: MeasureArgs) -> SweepArgs {
        SweepArgs {
            preset: None,
            config: None,
            sm_clocks: None,
            mem_clocks: None,
            allow_clock_changes: false,
            inputs: None,
            ops: None,
            batch_sizes: None,
            devices: None,
            sim_devices: None,
            sim_index: 0,
            progress_lines: false,
            baseline: None,
            measure,
        }
    }
}

/// What `sweep` and `model` share: which device measures and how, where the records
/// go, and the axes and protocol both have.
#[derive(Args, Debug, Clone)]
pub struct MeasureArgs {
    /// Which backend measures.
    #[arg(long, value_parser = backend_parser(), default_value = "auto")]
    pub backend: BackendKind,
    /// Results file (JSONL, one record per point). Default: results/<backend>-<device>-<time>.jsonl.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Continue the --out file: skip points already in it, append the rest. An
    /// incomplete last record (a crash or a full disk while writing) is cut off first,
    /// after a copy is kept beside the file.
    #[arg(long)]
    pub resume: bool,
    /// With --resume, add to a file whose records were measured with other protocol
    /// settings, another --seed or another --repeat (refused otherwise).
    #[arg(long, requires = "resume")]
    pub allow_config_mismatch: bool,
    /// Power caps to sweep: "default", watts ("300"), % of the default limit ("80%"),
    /// or a range min:max:step in watts; comma-separated. Overrides the config.
    #[arg(long, value_name = "LIST")]
    pub power_caps: Option<String>,
    /// Allow joulebench to change a real GPU's power limit (it is restored on exit).
    /// The simulated device needs no permission.
    #[arg(long)]
    pub allow_power_changes: bool,
    /// Precisions (f32, tf32, f16, bf16, fp8-e4m3), comma-separated. Overrides the config.
    #[arg(long, value_name = "LIST")]
    pub precisions: Option<String>,
    /// Kernels by name (see `joulebench devices`), comma-separated. Default: all.
    #[arg(long, value_name = "LIST")]
    pub kernels: Option<String>,
    /// Seed of the random inputs (recorded).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Simulated device profile (sim-h200: fitted to a measured H200; sim-h100, sim-a100,
    /// sim-l40s). With --devices, a comma list gives each simulated GPU its own profile
    /// ("sim-h200,sim-a100"); one name is used for all.
    #[arg(long, default_value = "sim-h200", value_name = "NAME[,NAME…]")]
    pub sim_profile: String,
    /// wgpu adapter: index or part of its name (see `joulebench devices`).
    #[arg(long, value_name = "INDEX|NAME")]
    pub adapter: Option<String>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub cuda_device: usize,
    /// Flush the L2 cache before every timed iteration (CUDA; "cold" as nvbench calls it).
    #[arg(long)]
    pub cold_l2: bool,
    /// Energy source: auto (NVML's energy counter, else sampled power), counter, sampled,
    /// check (both over the same windows; records their agreement), or none (time only,
    /// to measure the meter's own overhead).
    #[arg(
        long,
        default_value = "auto",
        value_name = "auto|counter|sampled|check|none"
    )]
    pub meter: String,
    /// Interval of the power-sampling meter, milliseconds.
    #[arg(long, default_value_t = 10, value_name = "MS")]
    pub sample_interval_ms: u64,
    /// Slowdown allowed by the closing recommendation (and `model`'s within-slowdown
    /// objective): "10%", or a fraction ≤ 1 ("0.1"). Default: 10%.
    #[arg(long, value_name = "PCT")]
    pub max_slowdown: Option<String>,
    /// Measure every point N times, in an order shuffled with the seed, so `report`
    /// can show the run-to-run spread beside the spread within one run. Default:
    /// the config's `repeat` (the standard preset: 3), else 1.
    #[arg(long, value_name = "N")]
    pub repeat: Option<u32>,
    /// Show the plan — every point, which would be measured or skipped and why, the
    /// estimated device time, where the records would go — and stop: nothing is
    /// measured, no power limit or clock is changed, no file is written.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("model_source").required(true).args(["preset", "config"])))]
pub struct ModelArgs {
    /// A built-in model: llama3-8b, llama3-70b, gpt2, or tiny (two small layers, for a
    /// CPU emulation).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// A model file (TOML): name, hidden_size, layers, attention_heads, kv_heads,
    /// head_dim, mlp_size, gated_mlp, vocab_size, seq_len. See examples/model.toml.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Micro-batches to compare, in sequences per step (tokens per step = micro-batch ×
    /// the model's sequence length), comma-separated. Default: 1 and the largest of 2,
    /// 4 and 8 whose memory fits the card (1, 2 and 4 with --all).
    #[arg(long, value_name = "LIST")]
    pub micro_batches: Option<String>,
    /// Measure every combination of precision, micro-batch, cap, clock and kernels.
    /// Without it: the baseline (the vendor libraries' kernels, bf16, the cap as found,
    /// micro-batch 1) and the settings most likely to matter (FP8 where the card has
    /// it, our fused attention, a larger micro-batch that fits).
    #[arg(long)]
    pub all: bool,
    /// Which table: summary (the baseline, each precision's best and the Pareto
    /// front) or full (every setting, and where its energy goes).
    #[arg(long, default_value = "summary", value_name = "summary|full")]
    pub table: String,
    /// GPUs of a tensor-parallel group (Megatron-LM): every GEMM and the attention
    /// heads are split across them, and each GPU's share is what is measured.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub tensor_parallel: u64,
    /// Pipeline stages: each GPU runs layers / N of them; the step's time is the
    /// busiest stage's.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub pipeline_parallel: u64,
    /// Data-parallel copies of the model: no change to what one GPU computes; the
    /// job's tokens per second, and its memory with --zero-stage.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub data_parallel: u64,
    /// What the data-parallel copies share out (ZeRO): 0 nothing, 1 optimizer states
    /// (Megatron-LM's distributed optimizer), 2 also gradients, 3 also weights.
    #[arg(long, default_value_t = 0, value_name = "0-3")]
    pub zero_stage: u8,
    /// Locked SM clocks to compare, as `sweep --sm-clocks`: "default", MHz, or a range
    /// min:max:step; comma-separated.
    #[arg(long, value_name = "LIST")]
    pub sm_clocks: Option<String>,
    /// Allow joulebench to lock a real GPU's clocks (reset to the default on exit).
    #[arg(long)]
    pub allow_clock_changes: bool,
    /// Measure serving instead of training: the prefill of a prompt and decode steps
    /// (one new token per sequence against the KV cache).
    #[arg(long)]
    pub inference: bool,
    /// With --inference: tokens per prompt.
    #[arg(long, default_value_t = 1024, value_name = "N", requires = "inference")]
    pub prompt_len: u64,
    /// With --inference: tokens generated per request.
    #[arg(long, default_value_t = 256, value_name = "N", requires = "inference")]
    pub output_len: u64,
    /// With --inference: sequences decoded together, comma-separated.
    #[arg(
        long,
        default_value = "1,16,64",
        value_name = "LIST",
        requires = "inference"
    )]
    pub decode_batches: String,
    /// With --inference: KV-cache lengths decode is measured at, comma-separated.
    /// Default: a request's mean, prompt + (output + 1) / 2.
    #[arg(long, value_name = "LIST", requires = "inference")]
    pub kv_lens: Option<String>,
    /// What "best" means, per token.
    #[arg(long, value_enum, default_value = "within-slowdown")]
    pub objective: ObjectiveChoice,
    /// η of --objective zeus: 1 = least energy, 0 = least time. Default: 0.5.
    #[arg(long, value_name = "ETA")]
    pub eta: Option<f64>,
    /// The least uncertainty a step's figure is given without repeats ("1%" or
    /// "0.01"), as `recommend --noise-floor`.
    #[arg(long, default_value = "1%", value_name = "PCT")]
    pub noise_floor: String,
    /// The setting energy saved and slowdown are measured against, as KEY=VALUE pairs:
    /// precision, micro-batch, cap, kernels ("vendor", or names joined by '+'), e.g.
    /// "precision=bf16,micro-batch=4" (the same keys as `recommend --baseline`). Unset:
    /// bf16, micro-batch 1, the default cap and clocks, the vendor libraries' kernels where
    /// they fit. With some keys set, the unset ones are bf16 where measured, the largest
    /// micro-batch measured, the default cap, the vendor kernels where measured.
    #[arg(long, value_name = "SPEC")]
    pub baseline: Option<String>,
    /// Output format of the tables.
    #[arg(long, default_value = "table", value_name = "table|markdown|csv|json")]
    pub format: String,
    /// Also draw energy per token against tokens per second, Pareto front and choice
    /// ringed (SVG and PNG), into DIR.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Also write the chosen setting, keyed by model name, to FILE as TOML or JSON
    /// (format `joulebench-settings` v1, `[[model.<name>]]`; see docs/settings-file.md), or as
    /// `sh`: a script applying each GPU's power cap by UUID, and undoing it.
    #[arg(long, num_args = 2, value_names = ["toml|json|sh", "FILE"])]
    pub emit: Option<Vec<String>>,
    /// Replace an existing --emit file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub measure: MeasureArgs,
}

/// Measurement-protocol overrides (docs/ARCHITECTURE.md §4); unset flags keep the config's values.
#[derive(Args, Debug, Default, Clone)]
pub struct ProtocolArgs {
    /// Seconds of idle power measured once per device (0 to skip).
    #[arg(long, value_name = "S")]
    pub idle_baseline_s: Option<f64>,
    /// Shortest warm-up per point, seconds.
    #[arg(long, value_name = "S")]
    pub warmup_s: Option<f64>,
    /// Longest warm-up per point, seconds: a point whose power and temperature have
    /// not settled by then is measured anyway and flagged `unsettled`.
    #[arg(long, value_name = "S")]
    pub warmup_max_s: Option<f64>,
    /// Settled when the temperature changes by at most this many °C per second
    /// (and power and pace by at most their fractions) over the last
    /// --settle-window-s at load.
    #[arg(long, value_name = "C_PER_S")]
    pub settle_temp_c_per_s: Option<f64>,
    /// Settled when power changes by at most this fraction of itself per second.
    #[arg(long, value_name = "FRACTION")]
    pub settle_power_per_s: Option<f64>,
    /// Seconds at load the settling slopes are fitted over: also the least warm-up
    /// that can be called settled (long enough for whole-degree temperatures).
    #[arg(long, value_name = "S")]
    pub settle_window_s: Option<f64>,
    /// Shortest measurement window in seconds.
    #[arg(long, value_name = "S")]
    pub min_window_s: Option<f64>,
    /// A window also spans at least this many energy-counter updates.
    #[arg(long, value_name = "N")]
    pub min_counter_updates: Option<u32>,
    /// Shift the phase of the work between windows (true, the default) or let
    /// windows follow each other on shared counter updates (false).
    #[arg(long, value_name = "true|false")]
    pub phase_shift: Option<bool>,
    /// Which rule judges a point's windows converged (the window counts and the
    /// budget hold whatever the rule): rel-spread (spread under --target-spread),
    /// std-error (standard error of the mean under the config's target_std_error),
    /// stable-estimate (the estimate stopped moving), or fixed-count (exactly
    /// --min-windows). A noisy point also ends once its estimate stops moving, and
    /// is flagged high-spread (the config's stop_when_stable).
    #[arg(long, value_name = "rel-spread|std-error|stable-estimate|fixed-count")]
    pub stop_rule: Option<String>,
    /// Stop when the relative spread of J/FLOP across windows is under this (1% or 0.01).
    #[arg(long, value_name = "PCT")]
    pub target_spread: Option<String>,
    /// Fewest windows per point.
    #[arg(long, value_name = "N")]
    pub min_windows: Option<u32>,
    /// Most windows per point.
    #[arg(long, value_name = "N")]
    pub max_windows: Option<u32>,
    /// Time budget per point, seconds (min-windows is always met).
    #[arg(long, value_name = "S")]
    pub point_budget_s: Option<f64>,
    /// Drop windows run throttled for a thermal or hardware reason (not at the power
    /// limit) as they happen, let the GPU cool down (longer after each), and count
    /// them in the record; without it they are kept and flagged `throttled`.
    #[arg(long, value_name = "true|false")]
    pub drop_throttled: Option<bool>,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Results files (JSONL).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format. `markdown` writes a whole report document: devices, protocol,
    /// recommendations, plots, flags and the commands that made the data.
    #[arg(long, default_value = "table", value_name = "table|markdown|csv|json")]
    pub format: String,
    /// Write the output to FILE instead of standard output (refused if FILE exists, unless --force).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also draw plots (SVG and PNG) into DIR: energy vs time with the Pareto front,
    /// and energy beside throughput against power cap, SM clock and batch size, per
    /// device and workload.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Slowdown allowed by the report's recommendation (10% or 0.1).
    #[arg(long, default_value = "10%", value_name = "PCT")]
    pub max_slowdown: String,
    /// The report's recommendation baseline, as `recommend --baseline`.
    #[arg(long, value_name = "kernel=K,precision=P")]
    pub baseline: Option<String>,
    /// The model whose `joulebench model` records give energy per token (a preset
    /// name or a model TOML); by default the --preset each such record's command names.
    #[arg(long, value_name = "NAME|FILE.toml")]
    pub model: Option<String>,
    #[command(flatten)]
    pub cost: CostArgs,
    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
}

/// What turns measured energy into a review's figures: facility energy, money, CO₂e.
#[derive(Args, Debug, Clone, Default)]
pub struct CostArgs {
    /// Electricity price per kWh, in --currency: adds what the work costs (per 10¹⁸
    /// FLOP, and per 10⁶ tokens for `model` records).
    #[arg(long, value_name = "X", requires = "currency")]
    pub price_per_kwh: Option<f64>,
    /// Currency of --price-per-kwh (USD, EUR…), named in every cost header.
    #[arg(long, value_name = "CODE", requires = "price_per_kwh")]
    pub currency: Option<String>,
    /// Grid carbon intensity in g CO₂e per kWh: adds kg CO₂e.
    #[arg(long, value_name = "G")]
    pub grid_gco2_per_kwh: Option<f64>,
    /// The data centre's power usage effectiveness (facility energy over IT energy,
    /// ≥ 1), applied to energy, cost and CO₂e. Unset: the GPU board's energy alone.
    #[arg(long, value_name = "PUE")]
    pub pue: Option<f64>,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Results files (JSONL) to join, in order.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The merged results file (refused if it exists, unless --force).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Merge simulated and real records together (each keeps its "simulated" field).
    #[arg(long)]
    pub allow_mixed: bool,
    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CapCompareChoice {
    /// Each device at its default power limit, as it ships.
    Default,
    /// Each device at whichever measured power cap costs it the least energy.
    Any,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Results files (JSONL), from one or more devices.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Which power caps compete for a device's place.
    #[arg(long, value_enum, default_value = "default")]
    pub cap: CapCompareChoice,
    #[command(flatten)]
    pub cost: CostArgs,
    /// Consider only these precisions (comma-separated).
    #[arg(long, value_name = "LIST")]
    pub precisions: Option<String>,
    /// Compare simulated and real records in one table (simulated rows are marked).
    #[arg(long)]
    pub allow_mixed: bool,
    /// Also draw the devices side by side (SVG and PNG), one plot per workload, into DIR.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Output format.
    #[arg(long, default_value = "table", value_name = "table|markdown|csv|json")]
    pub format: String,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Exit codes: 0 no regression beyond --fail-on-regression (or none asked); \
                        1 a significant regression beyond it; 2 bad input; 3 a file that \
                        could not be read."
)]
pub struct DiffArgs {
    /// The earlier run's results file (JSONL): the reference.
    #[arg(value_name = "OLD")]
    pub old: PathBuf,
    /// The later run's results file (JSONL), compared with OLD.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// Exit with code 1 when a point got significantly worse (more J/FLOP or fewer
    /// TFLOP/s, beyond both runs' uncertainty) by more than this (2% or 0.02): for CI.
    #[arg(long, value_name = "PCT")]
    pub fail_on_regression: Option<String>,
    /// Compare simulated and real records (refused otherwise).
    #[arg(long)]
    pub allow_mixed: bool,
    /// Output format.
    #[arg(long, default_value = "table", value_name = "table|markdown|csv|json")]
    pub format: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveChoice {
    /// Fewest joules per FLOP within --max-slowdown of the fastest setting.
    WithinSlowdown,
    /// Fewest joules per FLOP, however slow.
    LeastEnergy,
    /// Smallest energy × time.
    EnergyDelay,
    /// Zeus's cost η·E + (1−η)·P_max·T (set η with --eta).
    Zeus,
}

#[derive(Args, Debug)]
pub struct RecommendArgs {
    /// Results files (JSONL).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// What "best" means.
    #[arg(long, value_enum, default_value = "within-slowdown")]
    pub objective: ObjectiveChoice,
    /// Slowdown allowed against the fastest setting, for --objective within-slowdown:
    /// "10%", or a fraction ≤ 1 ("0.1"). Default: 10%.
    #[arg(long, value_name = "PCT")]
    pub max_slowdown: Option<String>,
    /// η of --objective zeus: 1 = least energy, 0 = least time. Default: 0.5.
    #[arg(long, value_name = "ETA")]
    pub eta: Option<f64>,
    /// P_max of --objective zeus in watts (default: the device's default power limit).
    #[arg(long, value_name = "W")]
    pub max_power_w: Option<f64>,
    /// The least uncertainty a figure without repeats is given ("1%" or "0.01"): a
    /// lever is advised only when its saving beats the combined uncertainty of the
    /// two figures compared. Schema-1 (gapped) records get at least 3%.
    #[arg(long, default_value = "1%", value_name = "PCT")]
    pub noise_floor: String,
    /// Consider only these precisions (comma-separated), e.g. to keep a training run's precision.
    #[arg(long, value_name = "LIST")]
    pub precisions: Option<String>,
    /// What energy saved and slowdown are measured against: what you run today, as
    /// "kernel=NAME,precision=P[,batch=N][,cap=C]" (at the default clocks). Default:
    /// the vendor kernel at bf16 where measured, at the default power limit.
    #[arg(long, value_name = "kernel=K,precision=P")]
    pub baseline: Option<String>,
    /// Shares of each GPU's time per workload, for the one power cap and clock the
    /// settings give each GPU: a TOML file of `"workload" = share` lines (names as
    /// the tables print them). Default: equal shares.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Also write the advice to FILE: `toml` or `json` (settings file `joulebench-settings`
    /// v1: one cap and clock per device model, each workload's setting; see docs/settings-file.md),
    /// or `sh` (a script applying each GPU's cap and clocks by UUID, and undoing them).
    #[arg(long, num_args = 2, value_names = ["toml|json|sh", "FILE"])]
    pub emit: Option<Vec<String>>,
    /// Replace an existing --emit file.
    #[arg(long)]
    pub force: bool,
    /// Output format.
    #[arg(long, default_value = "table", value_name = "table|markdown|csv|json")]
    pub format: String,
}

/// The slowdown a within-slowdown objective allows where `--max-slowdown` is not given.
pub const DEFAULT_MAX_SLOWDOWN: &str = "10%";

/// "10%" or "0.1" → 0.1; a bare number above 1 is refused (it would be over 100%).
pub fn parse_fraction(s: &str, what: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|x| x / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("{what} '{s}' is not a percentage (10%) or a fraction (0.1)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{what} '{s}' must be ≥ 0"));
    }
    if !t.ends_with('%') && v > 1.0 {
        return Err(format!(
            "{what} '{s}': a bare number is a fraction (0.1 = 10%), so {t} would mean {:.0}%; write {t}% for {t} percent",
            v * 100.0
        ));
    }
    Ok(v)
}

/// A comma-separated list parsed item by item.
pub fn parse_list<T>(
    s: &str,
    what: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let items: Vec<T> = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(parse)
        .collect::<Result<_, _>>()?;
    if items.is_empty() {
        return Err(format!("empty {what} list"));
    }
    Ok(items)
}
