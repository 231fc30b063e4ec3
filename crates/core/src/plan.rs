//! A sweep's axes (from a preset or a TOML file) and their expansion into the
//! list of points the runner measures, in an order that changes the power cap as
//! rarely as possible.

use crate::backend::{Backend, KernelInfo, Support};
use crate::clocks::ClockSpec;
use crate::inputs::InputDistribution;
use crate::power::PowerCap;
use crate::precision::Precision;
use crate::protocol::ProtocolConfig;
use crate::workload::{AttentionShape, MatmulShape, Op, Workload, WorkloadError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// An explicit matmul shape; `batch` independent products (not on the batch axis).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatmulSpec {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    #[serde(default = "one")]
    pub batch: u64,
}

/// A transformer linear layer: tokens = batch size × seq rows through an
/// in_features → out_features weight. The batch axis sets the token count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearSpec {
    pub in_features: u64,
    pub out_features: u64,
    pub seq: u64,
    /// A label for tables, e.g. "mlp-up".
    #[serde(default)]
    pub name: Option<String>,
}

/// Attention forward; the batch axis sets its batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionSpec {
    pub heads: u64,
    pub seq_q: u64,
    /// Defaults to seq_q.
    #[serde(default)]
    pub seq_kv: Option<u64>,
    pub head_dim: u64,
    #[serde(default)]
    pub causal: bool,
}

fn one() -> u64 {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepConfig {
    /// Ops to measure of the shapes below ("matmul" covers [[matmul]] and [[linear]],
    /// "attention" and "attention-backward" the [[attention]] shapes). Empty: matmul
    /// and attention forward, for every op that has shapes.
    pub ops: Vec<Op>,
    /// Empty: every precision the kernels support.
    pub precisions: Vec<Precision>,
    /// Empty: every kernel the backend has.
    pub kernels: Vec<String>,
    /// Precisions per kernel, for the kernels named here (`[kernel_precisions]`,
    /// `cublas = ["f32", "bf16"]`): instead of every kernel × every precision, each
    /// named kernel runs only its own list.
    pub kernel_precisions: BTreeMap<String, Vec<Precision>>,
    /// Empty: [1]. Applies to linear layers (tokens = batch × seq) and attention.
    pub batch_sizes: Vec<u64>,
    /// Empty: ["default"].
    pub power_caps: Vec<PowerCap>,
    /// Locked SM clocks (MHz, "default", or "min:max:step"); empty: the default
    /// clocks only. Resolved against the GPU's supported clocks before planning.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sm_clocks: Vec<ClockSpec>,
    /// Locked memory clocks, as `sm_clocks`, where the GPU offers more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mem_clocks: Vec<ClockSpec>,
    /// How the inputs are drawn (`normal`, `uniform`, `zeros`, `sparse[:P%]`);
    /// empty: `normal`, what training tensors look like. Points on other inputs are
    /// compared only with each other (their group says which inputs they had).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputDistribution>,
    pub seed: u64,
    pub matmul: Vec<MatmulSpec>,
    pub linear: Vec<LinearSpec>,
    pub attention: Vec<AttentionSpec>,
    pub protocol: ProtocolConfig,
    /// How many times to measure every point, in an order shuffled with the seed
    /// (`--repeat` overrides it), so that the spread between runs — what varies
    /// from one visit to the next: the die's temperature, the clock at the limit —
    /// is measured beside the spread within one. Absent: once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            ops: Vec::new(),
            precisions: Vec::new(),
            kernels: Vec::new(),
            kernel_precisions: BTreeMap::new(),
            batch_sizes: Vec::new(),
            power_caps: Vec::new(),
            sm_clocks: Vec::new(),
            mem_clocks: Vec::new(),
            inputs: Vec::new(),
            seed: 42,
            matmul: Vec::new(),
            linear: Vec::new(),
            attention: Vec::new(),
            protocol: ProtocolConfig::default(),
            repeat: None,
        }
    }
}

/// A kernel named that the backend does not have.
#[derive(Debug, thiserror::Error)]
#[error("unknown kernel '{kernel}' for backend {backend}; it has: {available}")]
pub struct UnknownKernel {
    pub kernel: String,
    pub backend: String,
    pub available: String,
}

/// Refuses the first of `names` that `backend` has no kernel of, listing those it has.
pub fn check_kernels_known<'a>(
    names: impl IntoIterator<Item = &'a String>,
    backend: &dyn Backend,
) -> Result<(), UnknownKernel> {
    let kernels = backend.kernels();
    match names
        .into_iter()
        .find(|name| !kernels.iter().any(|k| &k.name == *name))
    {
        None => Ok(()),
        Some(name) => Err(UnknownKernel {
            kernel: name.clone(),
            backend: backend.name().to_string(),
            available: kernels
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read sweep config {path}: {message}")]
    Config { path: String, message: String },
    #[error(transparent)]
    UnknownKernel(#[from] UnknownKernel),
    #[error("invalid shape in sweep config: {0}")]
    Shape(#[from] WorkloadError),
    #[error("sweep config: {0}")]
    Invalid(String),
}

/// Built-in sweeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// About a minute on an H100/H200-class GPU: the vendor GEMM at each precision
    /// the device has, our GEMM beside it, fused against unfused attention.
    Quick,
    /// The reference sweep: squares 1024–8192, a transformer's linear layers at
    /// several token counts, attention at seq 1k–16k.
    Standard,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quick" => Ok(Preset::Quick),
            "standard" => Ok(Preset::Standard),
            _ => Err(format!("unknown preset '{s}': expected quick or standard")),
        }
    }
}

impl SweepConfig {
    pub fn from_toml_file(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml_str(&text).map_err(|message| PlanError::Config {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// A built-in sweep for this backend and device. CPU emulations get small
    /// shapes, because they run a thousand times slower than a GPU; only the
    /// simulated device's presets sweep power caps (a real device's cap changes
    /// only when asked).
    pub fn preset(preset: Preset, backend: &dyn Backend) -> SweepConfig {
        let device = backend.device();
        let mut cfg = SweepConfig::default();
        let caps = if device.simulated {
            vec![
                PowerCap::Default,
                PowerCap::PercentOfDefault(80.0),
                PowerCap::PercentOfDefault(60.0),
            ]
        } else {
            vec![PowerCap::Default]
        };
        let sq = |n: u64| MatmulSpec {
            m: n,
            n,
            k: n,
            batch: 1,
        };
        let attn = |seq: u64, head_dim: u64, causal: bool| AttentionSpec {
            heads: if device.cpu_emulation {
                2
            } else {
                2048 / head_dim
            },
            seq_q: seq,
            seq_kv: None,
            head_dim,
            causal,
        };
        if device.cpu_emulation {
            cfg.matmul = vec![sq(256), sq(512)];
            cfg.attention = vec![attn(256, 64, false), attn(256, 64, true)];
            cfg.precisions = vec![Precision::F32, Precision::F16];
            cfg.kernels = quick_kernels(backend, &[]);
            cfg.batch_sizes = vec![1];
            cfg.protocol = ProtocolConfig {
                idle_baseline_s: 0.0,
                warmup_s: 0.2,
                warmup_max_s: 0.2,
                min_window_s: 0.25,
                min_windows: 2,
                max_windows: 4,
                target_rel_spread: 0.05,
                point_budget_s: 5.0,
                ..ProtocolConfig::default()
            };
            cfg.power_caps = caps;
            return cfg;
        }
        match preset {
            Preset::Quick => {
                // one large GEMM and one attention shape, the kernels that matter at
                // the precisions each has: about eight measured points
                cfg.matmul = vec![sq(8192)];
                cfg.attention = vec![attn(4096, 128, false)];
                cfg.kernel_precisions = quick_kernel_precisions(backend);
                cfg.kernels = cfg.kernel_precisions.keys().cloned().collect();
                cfg.batch_sizes = vec![1];
                cfg.protocol = quick_protocol();
            }
            Preset::Standard => {
                cfg.matmul = [1024, 2048, 4096, 8192].into_iter().map(sq).collect();
                cfg.linear = [
                    ("attn-qkv", 4096, 12288),
                    ("attn-out", 4096, 4096),
                    ("mlp-up", 4096, 14336),
                    ("mlp-down", 14336, 4096),
                ]
                .into_iter()
                .map(|(name, i, o)| LinearSpec {
                    in_features: i,
                    out_features: o,
                    seq: 512,
                    name: Some(name.into()),
                })
                .collect();
                cfg.attention = [1024, 2048, 4096, 8192, 16384]
                    .into_iter()
                    .flat_map(|s| {
                        [
                            (s, 64, false),
                            (s, 64, true),
                            (s, 128, false),
                            (s, 128, true),
                        ]
                    })
                    .map(|(s, d, c)| attn(s, d, c))
                    .collect();
                cfg.batch_sizes = vec![1, 2, 4, 8, 16];
                // the reference sweep measures every point three times, in shuffled
                // order, so its uncertainty includes what varies between visits
                cfg.repeat = Some(STANDARD_REPEAT);
            }
        }
        cfg.power_caps = caps;
        cfg
    }

    /// Remove repeated values from every axis (a list that names a precision, a
    /// batch size, a cap or a shape twice would measure it twice), keeping the
    /// first; one note per axis that had any.
    pub fn dedup_axes(&mut self) -> Vec<String> {
        fn dedup<T: PartialEq>(v: &mut Vec<T>) {
            let mut kept: Vec<T> = Vec::with_capacity(v.len());
            for x in v.drain(..) {
                if !kept.contains(&x) {
                    kept.push(x);
                }
            }
            *v = kept;
        }
        let mut notes = Vec::new();
        let mut note = |name: &str, before: usize, after: usize| {
            if before > after {
                notes.push(format!(
                    "{name}: {} repeated value{} removed (each is measured once)",
                    before - after,
                    if before - after == 1 { "" } else { "s" }
                ));
            }
        };
        macro_rules! axis {
            ($($field:ident),*) => {$(
                let before = self.$field.len();
                dedup(&mut self.$field);
                note(stringify!($field), before, self.$field.len());
            )*};
        }
        axis!(
            ops,
            precisions,
            kernels,
            batch_sizes,
            power_caps,
            sm_clocks,
            mem_clocks,
            inputs,
            matmul,
            linear,
            attention
        );
        notes
    }

    /// The workloads of this config with their group labels and batch sizes.
    pub fn workloads(&self) -> Result<Vec<PlannedWorkload>, PlanError> {
        let batches = if self.batch_sizes.is_empty() {
            vec![1]
        } else {
            self.batch_sizes.clone()
        };
        if batches.contains(&0) {
            return Err(PlanError::Invalid("batch_sizes must be ≥ 1".into()));
        }
        let mut out = Vec::new();
        for m in &self.matmul {
            let w = Workload::Matmul(MatmulShape {
                batch: m.batch,
                m: m.m,
                n: m.n,
                k: m.k,
            });
            out.push(PlannedWorkload {
                group: w.shape_label(),
                batch_size: m.batch,
                workload: w,
            });
        }
        for l in &self.linear {
            for &b in &batches {
                let w = Workload::Matmul(MatmulShape {
                    batch: 1,
                    m: b.saturating_mul(l.seq),
                    n: l.out_features,
                    k: l.in_features,
                });
                let name = l
                    .name
                    .as_deref()
                    .map(|n| format!("{n} "))
                    .unwrap_or_default();
                out.push(PlannedWorkload {
                    group: format!(
                        "linear {name}{}→{} seq {}",
                        l.in_features, l.out_features, l.seq
                    ),
                    batch_size: b,
                    workload: w,
                });
            }
        }
        // the backward of each attention shape only when asked for by name
        let backward = self.ops.contains(&Op::AttentionBackward);
        for a in &self.attention {
            for &b in &batches {
                let s = AttentionShape {
                    batch: b,
                    heads: a.heads,
                    seq_q: a.seq_q,
                    seq_kv: a.seq_kv.unwrap_or(a.seq_q),
                    head_dim: a.head_dim,
                    causal: a.causal,
                };
                let mut shapes = vec![Workload::Attention(s)];
                if backward {
                    shapes.push(Workload::AttentionBackward(s));
                }
                for w in shapes {
                    out.push(PlannedWorkload {
                        group: w.shape_label(),
                        batch_size: b,
                        workload: w,
                    });
                }
            }
        }
        for p in &out {
            p.workload.validate()?;
        }
        if !self.ops.is_empty() {
            out.retain(|p| self.ops.contains(&p.workload.op()));
        }
        if out.is_empty() {
            return Err(PlanError::Invalid(
                "no workloads: add [[matmul]], [[linear]] or [[attention]] entries for the chosen ops".into(),
            ));
        }
        Ok(out)
    }

    /// Expand into points for one backend. Unknown kernel names are an error;
    /// kernel/precision combinations the backend lacks become skipped points.
    pub fn plan(&self, backend: &dyn Backend) -> Result<Vec<PlanPoint>, PlanError> {
        self.protocol
            .validate()
            .map_err(|e| PlanError::Invalid(e.to_string()))?;
        check_kernels_known(
            self.kernels.iter().chain(self.kernel_precisions.keys()),
            backend,
        )?;
        let kernels = backend.kernels();
        let chosen: Vec<&KernelInfo> = kernels
            .iter()
            .filter(|k| self.kernels.is_empty() || self.kernels.contains(&k.name))
            .collect();
        let caps = if self.power_caps.is_empty() {
            vec![PowerCap::Default]
        } else {
            self.power_caps.clone()
        };
        let clocks = |specs: &[ClockSpec], what: &str| -> Result<Vec<Option<u32>>, PlanError> {
            if specs.is_empty() {
                return Ok(vec![None]);
            }
            specs
                .iter()
                .map(|s| match s {
                    ClockSpec::Default => Ok(None),
                    ClockSpec::Mhz(m) => Ok(Some(*m)),
                    ClockSpec::Range { .. } => Err(PlanError::Invalid(format!(
                        "{what} clock range {s} must be resolved against the GPU's supported clocks first"
                    ))),
                })
                .collect()
        };
        let sm_clocks = clocks(&self.sm_clocks, "SM")?;
        let mem_clocks = clocks(&self.mem_clocks, "memory")?;
        let clock_pairs: Vec<(Option<u32>, Option<u32>)> = sm_clocks
            .iter()
            .flat_map(|&sm| mem_clocks.iter().map(move |&mem| (sm, mem)))
            .collect();
        let workloads = self.workloads()?;
        let inputs = if self.inputs.is_empty() {
            vec![InputDistribution::Normal]
        } else {
            self.inputs.clone()
        };
        let mut points = Vec::new();
        for cap in &caps {
            for &(sm_clock_mhz, mem_clock_mhz) in &clock_pairs {
                for &dist in &inputs {
                    for pw in &workloads {
                        for k in chosen.iter().filter(|k| k.op == pw.workload.op()) {
                            let precisions: Vec<Precision> =
                                match self.kernel_precisions.get(&k.name) {
                                    Some(own) => own.clone(),
                                    None if self.precisions.is_empty() => k.precisions.clone(),
                                    None => self.precisions.clone(),
                                };
                            for precision in precisions {
                                points.push(PlanPoint {
                                    kernel: k.name.clone(),
                                    vendor: k.vendor,
                                    precision,
                                    workload: pw.workload,
                                    group: group_with_inputs(&pw.group, dist),
                                    batch_size: pw.batch_size,
                                    cap: *cap,
                                    sm_clock_mhz,
                                    mem_clock_mhz,
                                    inputs: dist,
                                });
                            }
                        }
                    }
                }
            }
        }
        // two shapes of the config can make the same workload: measure it once
        let mut seen = std::collections::HashSet::new();
        points.retain(|p| {
            seen.insert(format!(
                "{}|{}|{:?}|{}|{:?}|{:?}|{}",
                p.kernel, p.precision, p.workload, p.cap, p.sm_clock_mhz, p.mem_clock_mhz, p.inputs
            ))
        });
        if points.is_empty() {
            return Err(PlanError::Invalid(format!(
                "no kernel of backend {} runs the requested ops",
                backend.name()
            )));
        }
        Ok(points)
    }
}

/// How many times the standard preset measures each point.
pub const STANDARD_REPEAT: u32 = 3;

/// The quick preset's protocol: a short settling warm-up and two or three
/// one-second windows per point (about 8 s per point at most).
fn quick_protocol() -> ProtocolConfig {
    ProtocolConfig {
        idle_baseline_s: 2.0,
        warmup_s: 1.0,
        warmup_max_s: 4.0,
        // settling judged over 3 s: a quick look, not the reference's 10 s
        settle_window_s: 3.0,
        min_windows: 2,
        max_windows: 3,
        point_budget_s: 8.0,
        ..ProtocolConfig::default()
    }
}

/// The quick preset's kernels and precisions on this backend: the vendor GEMM at
/// every precision the device has, our GEMM at its main precision beside it, and
/// every attention kernel (fused and unfused) at bf16 (f16 where bf16 is absent).
/// Baseline kernels kept only for comparison (a naive matmul) are left out.
fn quick_kernel_precisions(backend: &dyn Backend) -> BTreeMap<String, Vec<Precision>> {
    let mut out = BTreeMap::new();
    let has = |k: &KernelInfo, p: Precision| k.precisions.contains(&p);
    for k in backend.kernels() {
        if k.name.contains("naive") {
            continue;
        }
        let precisions: Vec<Precision> = match (k.op, k.vendor) {
            (Op::Matmul, true) => k
                .precisions
                .iter()
                .copied()
                .filter(|p| *p != Precision::F16 || !has(&k, Precision::Bf16))
                .collect(),
            (Op::Matmul, false) => {
                // ours: its tensor-core precision and f32, where it has them
                [Precision::Bf16, Precision::F16, Precision::F32]
                    .into_iter()
                    .filter(|p| has(&k, *p))
                    .filter(|p| *p != Precision::F16 || !has(&k, Precision::Bf16))
                    .collect()
            }
            (Op::Attention, _) => [Precision::Bf16, Precision::F16]
                .into_iter()
                .find(|p| has(&k, *p))
                .into_iter()
                .collect(),
            // measured by `joulebench model`, not by a first look at a GPU
            (Op::AttentionBackward, _) => Vec::new(),
        };
        if !precisions.is_empty() {
            out.insert(k.name.clone(), precisions);
        }
    }
    out
}

/// Every kernel but the naive baselines, for the small shapes of a CPU emulation.
fn quick_kernels(backend: &dyn Backend, _: &[&str]) -> Vec<String> {
    backend
        .kernels()
        .into_iter()
        .map(|k| k.name)
        .filter(|n| !n.contains("naive"))
        .collect()
}

/// What a plan will cost before it runs: how many points it has, how many the
/// backend can run (the rest are recorded as skipped at once), and their device
/// time by the protocol's settings — typical (shortest warm-up, fewest windows)
/// and at most (longest warm-up, every window the budget allows).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanEstimate {
    pub points: usize,
    pub runnable: usize,
    pub skipped: usize,
    pub typical_s: f64,
    pub bound_s: f64,
}

/// Preparing and checking one point (inputs, compilation, the correctness run),
/// seconds: what the estimate adds per runnable point.
pub const POINT_OVERHEAD_S: f64 = 1.0;

impl PlanEstimate {
    /// Estimate `points` run `repeat` times on `backend` under `protocol`, with a
    /// meter updating every `update_period_s` (0 without a meter).
    pub fn of(
        points: &[PlanPoint],
        backend: &dyn Backend,
        protocol: &ProtocolConfig,
        update_period_s: f64,
        repeat: u32,
    ) -> PlanEstimate {
        let runnable = points
            .iter()
            .filter(|p| backend.support(&p.kernel, p.precision, &p.workload) == Support::Supported)
            .count()
            * repeat.max(1) as usize;
        let total = points.len() * repeat.max(1) as usize;
        let idle = if update_period_s > 0.0 {
            protocol.idle_baseline_s
        } else {
            0.0
        };
        let per = |point_s: f64| point_s + POINT_OVERHEAD_S;
        PlanEstimate {
            points: total,
            runnable,
            skipped: total - runnable,
            typical_s: idle + runnable as f64 * per(protocol.point_typical_s(update_period_s)),
            bound_s: idle + runnable as f64 * per(protocol.point_bound_s(update_period_s)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedWorkload {
    /// What a recommendation compares settings within: the shape without its batch.
    pub group: String,
    pub batch_size: u64,
    pub workload: Workload,
}

/// One point of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanPoint {
    pub kernel: String,
    pub vendor: bool,
    pub precision: Precision,
    pub workload: Workload,
    pub group: String,
    pub batch_size: u64,
    pub cap: PowerCap,
    /// The locked SM clock, MHz; `None`: the default clocks.
    pub sm_clock_mhz: Option<u32>,
    /// The locked memory clock, MHz; `None`: the default.
    pub mem_clock_mhz: Option<u32>,
    /// How the point's inputs are drawn.
    pub inputs: InputDistribution,
}

/// A group label with the inputs named where they are not the default, so that
/// recommendations never weigh a point on zeros against one on normal inputs.
pub fn group_with_inputs(group: &str, inputs: InputDistribution) -> String {
    if inputs.is_default() {
        group.to_string()
    } else {
        format!("{group}, {inputs} inputs")
    }
}

impl PlanPoint {
    /// Asks for a change of the GPU's state: a power cap or a locked clock.
    pub fn changes_device(&self) -> bool {
        !self.cap.is_default() || self.sm_clock_mhz.is_some() || self.mem_clock_mhz.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config() {
        let cfg = SweepConfig::from_toml_str(
            r#"
            precisions = ["f32", "bf16"]
            batch_sizes = [1, 8]
            power_caps = ["default", "80%", "300W"]
            [[matmul]]
            m = 64
            n = 64
            k = 64
            [[linear]]
            in_features = 128
            out_features = 256
            seq = 16
            [[attention]]
            heads = 2
            seq_q = 32
            head_dim = 64
            causal = true
            [protocol]
            min_windows = 4
            "#,
        )
        .unwrap();
        assert_eq!(cfg.protocol.min_windows, 4);
        assert_eq!(cfg.power_caps.len(), 3);
        let w = cfg.workloads().unwrap();
        // 1 matmul + 2 linear batch sizes + 2 attention batch sizes
        assert_eq!(w.len(), 5);
        assert_eq!(
            w[2].workload,
            Workload::Matmul(MatmulShape {
                batch: 1,
                m: 128,
                n: 256,
                k: 128
            })
        );
        assert_eq!(w[2].batch_size, 8);
        assert_eq!(w[1].group, w[2].group);
    }

    #[test]
    fn the_inputs_axis_multiplies_the_points_and_names_their_group() {
        let mut cfg = SweepConfig::from_toml_str(
            r#"
            inputs = ["normal", "zeros", "sparse:90%"]
            [[matmul]]
            m = 64
            n = 64
            k = 64
            "#,
        )
        .unwrap();
        assert_eq!(
            cfg.inputs,
            vec![
                InputDistribution::Normal,
                InputDistribution::Zeros,
                InputDistribution::Sparse { zero_percent: 90 }
            ]
        );
        assert!(SweepConfig::from_toml_str("inputs = [\"gaussian\"]").is_err());
        cfg.inputs.push(InputDistribution::Zeros);
        assert_eq!(cfg.dedup_axes().len(), 1);
        let w = cfg.workloads().unwrap();
        assert_eq!(
            group_with_inputs(&w[0].group, InputDistribution::Normal),
            w[0].group
        );
        assert_eq!(
            group_with_inputs(&w[0].group, InputDistribution::Zeros),
            format!("{}, zeros inputs", w[0].group)
        );
    }

    #[test]
    fn ops_filter_the_shapes() {
        let mut cfg = SweepConfig::from_toml_str(
            "ops = [\"attention\"]\n[[matmul]]\nm = 8\nn = 8\nk = 8\n[[attention]]\nheads = 1\nseq_q = 8\nhead_dim = 64\n",
        )
        .unwrap();
        let w = cfg.workloads().unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].workload.op(), Op::Attention);
        cfg.ops = vec![Op::Attention, Op::AttentionBackward];
        let w = cfg.workloads().unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].workload.op(), Op::AttentionBackward);
        assert_eq!(
            w[0].workload.attention_shape(),
            w[1].workload.attention_shape()
        );
        cfg.attention.clear();
        assert!(matches!(cfg.workloads(), Err(PlanError::Invalid(_))));
    }

    #[test]
    fn kernel_precisions_replace_the_cross_product_for_the_kernels_they_name() {
        let cfg = SweepConfig::from_toml_str(
            "precisions = [\"f32\"]\n[kernel_precisions]\nk1 = [\"bf16\", \"fp8-e4m3\"]\n[[matmul]]\nm = 8\nn = 8\nk = 8\n",
        )
        .unwrap();
        assert_eq!(
            cfg.kernel_precisions.get("k1"),
            Some(&vec![Precision::Bf16, Precision::Fp8E4m3])
        );
    }

    /// A backend with the CUDA backend's kernels, for planning only.
    struct CudaLike(crate::device::DeviceInfo);

    impl Backend for CudaLike {
        fn name(&self) -> &str {
            "cuda"
        }
        fn device(&self) -> &crate::device::DeviceInfo {
            &self.0
        }
        fn kernels(&self) -> Vec<KernelInfo> {
            use Precision::*;
            let k = |name: &str, op, precisions: &[Precision], vendor| KernelInfo {
                name: name.into(),
                op,
                precisions: precisions.to_vec(),
                vendor,
                description: String::new(),
            };
            vec![
                k("cuda-simt", Op::Matmul, &[F32], false),
                k("cuda-mma", Op::Matmul, &[F16, Bf16], false),
                k("cublas", Op::Matmul, &[F32, Tf32, F16, Bf16], true),
                k("cublaslt-fp8", Op::Matmul, &[Fp8E4m3], true),
                k("cuda-flash", Op::Attention, &[F16, Bf16], false),
                k("cublas-unfused", Op::Attention, &[F16, Bf16], true),
            ]
        }
        fn support(&self, kernel: &str, precision: Precision, w: &Workload) -> Support {
            match self.kernels().iter().find(|k| k.name == kernel) {
                Some(k) if k.op == w.op() && k.precisions.contains(&precision) => {
                    Support::Supported
                }
                _ => Support::Unsupported("no".into()),
            }
        }
        fn prepare(
            &mut self,
            _: &str,
            _: Precision,
            _: &Workload,
            _: u64,
        ) -> Result<Box<dyn crate::backend::PreparedKernel + '_>, crate::backend::BackendError>
        {
            Err(crate::backend::BackendError::Unavailable(
                "planning only".into(),
            ))
        }
    }

    #[test]
    fn the_reference_preset_repeats_every_point_and_the_quick_one_does_not() {
        let gpu = CudaLike(crate::device::DeviceInfo {
            name: "an H200".into(),
            ..Default::default()
        });
        assert_eq!(
            SweepConfig::preset(Preset::Standard, &gpu).repeat,
            Some(STANDARD_REPEAT)
        );
        assert_eq!(SweepConfig::preset(Preset::Quick, &gpu).repeat, None);
        let toml = "repeat = 5\n[[matmul]]\nm = 8\nn = 8\nk = 8\n";
        assert_eq!(SweepConfig::from_toml_str(toml).unwrap().repeat, Some(5));
    }

    #[test]
    fn the_quick_preset_fits_ninety_seconds_on_a_gpu_by_its_own_estimate() {
        let gpu = CudaLike(crate::device::DeviceInfo {
            name: "an H200".into(),
            ..Default::default()
        });
        let cfg = SweepConfig::preset(Preset::Quick, &gpu);
        let points = cfg.plan(&gpu).unwrap();
        let e = PlanEstimate::of(&points, &gpu, &cfg.protocol, 0.1, 1);
        // cuBLAS f32, tf32, bf16; cuBLASLt fp8; ours bf16 and f32; fused and unfused attention
        assert_eq!((e.points, e.runnable, e.skipped), (8, 8, 0), "{points:#?}");
        assert!(e.bound_s <= 90.0, "{e:?}");
        assert!(e.typical_s < e.bound_s && e.typical_s > 20.0, "{e:?}");
        let kernels: Vec<(&str, Precision)> = points
            .iter()
            .map(|p| (p.kernel.as_str(), p.precision))
            .collect();
        assert!(kernels.contains(&("cublaslt-fp8", Precision::Fp8E4m3)));
        assert!(kernels.contains(&("cuda-mma", Precision::Bf16)));
        assert!(
            !kernels.contains(&("cublas", Precision::F16)),
            "bf16 stands for f16"
        );
    }

    #[test]
    fn repeated_axis_values_are_measured_once_with_a_note() {
        let mut cfg = SweepConfig::from_toml_str(
            "precisions = [\"bf16\", \"bf16\", \"f32\"]\nbatch_sizes = [1, 1, 1]\npower_caps = [\"80%\", \"default\", \"80%\"]\n\
             [[matmul]]\nm = 8\nn = 8\nk = 8\n[[matmul]]\nm = 8\nn = 8\nk = 8\n",
        )
        .unwrap();
        let notes = cfg.dedup_axes();
        assert_eq!(cfg.precisions, [Precision::Bf16, Precision::F32]);
        assert_eq!(cfg.batch_sizes, [1]);
        assert_eq!(
            cfg.power_caps,
            [PowerCap::PercentOfDefault(80.0), PowerCap::Default]
        );
        assert_eq!(cfg.matmul.len(), 1);
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(
            notes[0].starts_with("precisions: 1 repeated value removed"),
            "{notes:?}"
        );
        assert!(cfg.dedup_axes().is_empty());
    }

    #[test]
    fn rejects_unknown_keys_and_bad_shapes() {
        assert!(SweepConfig::from_toml_str("precisons = [\"f32\"]").is_err());
        assert!(SweepConfig::from_toml_str("precisions = [\"f64\"]").is_err());
        let cfg = SweepConfig::from_toml_str("[[matmul]]\nm = 0\nn = 4\nk = 4").unwrap();
        assert!(matches!(cfg.workloads(), Err(PlanError::Shape(_))));
    }
}
