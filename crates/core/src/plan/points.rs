//! A sweep config expanded into the points the runner measures (docs/ARCHITECTURE.md
//! §1.2), in an order that changes the power cap and the clocks as rarely as
//! possible; unknown kernels refused, combinations the backend lacks kept as points
//! it will record as skipped.

use super::config::SweepConfig;
use super::error::{PlanError, UnknownKernel};
use crate::backend::{Backend, KernelInfo};
use crate::clocks::{clock_key, ClockSpec};
use crate::device::DeviceInfo;
use crate::inputs::{inputs_key, InputDistribution};
use crate::power::PowerCap;
use crate::precision::Precision;
use crate::record::{point_key, repeat_key};
use crate::workload::{AttentionShape, MatmulShape, Op, Workload};

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
    /// The point's identity in a results file — run `repeat` of it on `device`
    /// through `backend` — as [`Record::point_key`](crate::record::Record::point_key)
    /// reads it back: what `--resume` skips by.
    pub fn key(&self, device: &DeviceInfo, backend: &str, repeat: Option<u32>) -> String {
        let key = point_key(
            device,
            backend,
            &self.kernel,
            self.precision,
            &self.workload,
            &self.cap,
        ) + &clock_key(self.sm_clock_mhz, self.mem_clock_mhz)
            + &inputs_key(self.inputs);
        repeat_key(key, repeat)
    }

    /// Asks for a change of the GPU's state: a power cap or a locked clock.
    pub fn changes_device(&self) -> bool {
        !self.cap.is_default() || self.sm_clock_mhz.is_some() || self.mem_clock_mhz.is_some()
    }
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

impl SweepConfig {
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
