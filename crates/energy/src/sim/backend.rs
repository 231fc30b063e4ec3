//! The simulated device's `Backend`: its kernels run the model in virtual time, on
//! the input distribution asked for (the model's power depends on it), and its
//! correctness check computes a reduced shape for real, in f32 from inputs rounded
//! to the precision, so the checked error is real arithmetic error.

use super::kernels::{kernel, kernel_bytes, KERNELS};
use super::physics::Job;
use super::Shared;
use joulebench_core::backend::{
    Backend, BackendError, KernelInfo, PreparedKernel, RunTiming, Support,
};
use joulebench_core::device::DeviceInfo;
use joulebench_core::inputs::InputDistribution;
use joulebench_core::precision::Precision;
use joulebench_core::reference::CheckInputs;
use joulebench_core::workload::{AttentionShape, MatmulShape, Op, Workload};

pub struct SimBackend {
    shared: Shared,
    device: DeviceInfo,
}

impl SimBackend {
    pub(crate) fn new(shared: Shared, device: DeviceInfo) -> SimBackend {
        SimBackend { shared, device }
    }

    pub fn profile(&self) -> super::SimProfile {
        self.shared.lock().profile.clone()
    }
}

impl Backend for SimBackend {
    fn name(&self) -> &str {
        "sim"
    }

    fn device(&self) -> &DeviceInfo {
        &self.device
    }

    fn kernels(&self) -> Vec<KernelInfo> {
        let profile = self.profile();
        KERNELS
            .iter()
            .map(|k| KernelInfo {
                name: k.name.into(),
                op: k.op,
                precisions: profile
                    .peak_tflops
                    .iter()
                    .map(|(p, _)| *p)
                    .filter(|p| k.op == Op::Matmul || matches!(p, Precision::F16 | Precision::Bf16))
                    .collect(),
                vendor: k.vendor,
                description: k.description.into(),
            })
            .collect()
    }

    fn support(&self, kernel_name: &str, precision: Precision, workload: &Workload) -> Support {
        let Some(k) = kernel(kernel_name) else {
            return Support::Unsupported(format!("no simulated kernel '{kernel_name}'"));
        };
        if k.op != workload.op() {
            return Support::Unsupported(format!(
                "{kernel_name} runs {}, not {}",
                k.op,
                workload.op()
            ));
        }
        let profile = self.profile();
        if profile.peak_tflops(precision).is_none() {
            return Support::Unsupported(format!("{} has no {precision} units", profile.name));
        }
        if k.op != Op::Matmul && !matches!(precision, Precision::F16 | Precision::Bf16) {
            return Support::Unsupported(format!("{kernel_name} runs f16 and bf16 only"));
        }
        let bytes = kernel_bytes(k, precision, workload);
        if bytes > profile.memory_bytes as f64 {
            return Support::Unsupported(format!(
                "needs {:.1} GiB, {} has {:.0} GiB",
                bytes / (1u64 << 30) as f64,
                profile.name,
                profile.memory_bytes as f64 / (1u64 << 30) as f64
            ));
        }
        Support::Supported
    }

    fn prepare(
        &mut self,
        kernel_name: &str,
        precision: Precision,
        workload: &Workload,
        seed: u64,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        self.prepare_with_inputs(
            kernel_name,
            precision,
            workload,
            seed,
            InputDistribution::Normal,
        )
    }

    fn prepare_with_inputs(
        &mut self,
        kernel_name: &str,
        precision: Precision,
        workload: &Workload,
        _seed: u64,
        inputs: InputDistribution,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        if let Support::Unsupported(r) = self.support(kernel_name, precision, workload) {
            return Err(BackendError::Unsupported(r));
        }
        let kernel =
            *kernel(kernel_name).ok_or_else(|| BackendError::Unsupported(kernel_name.into()))?;
        Ok(Box::new(SimPrepared {
            shared: self.shared.clone(),
            job: Job {
                kernel,
                precision,
                workload: *workload,
                inputs,
            },
        }))
    }
}

struct SimPrepared {
    shared: Shared,
    job: Job,
}

impl PreparedKernel for SimPrepared {
    /// The model is checked on a reduced shape, computed in f32 from inputs rounded
    /// to the precision: the error is real arithmetic error, at a size a CPU affords.
    fn check_workload(&self, workload: &Workload) -> Workload {
        match *workload {
            Workload::Matmul(s) => Workload::Matmul(MatmulShape {
                batch: s.batch.min(2),
                m: s.m.min(48),
                n: s.n.min(40),
                k: s.k.min(256),
            }),
            Workload::Attention(s) => Workload::Attention(reduced_attention(s)),
            Workload::AttentionBackward(s) => Workload::AttentionBackward(reduced_attention(s)),
        }
    }

    fn run_for_check(&mut self, inputs: &CheckInputs) -> Result<Vec<f32>, BackendError> {
        let w = self.check_workload(&self.job.workload);
        let p = self.job.precision;
        Ok(match (w, inputs) {
            (Workload::Matmul(s), CheckInputs::Matmul { a, b }) => matmul_f32(&s, a, b, p),
            (Workload::Attention(s), CheckInputs::Attention { q, k, v }) => {
                attention_f32(&s, q, k, v, p)
            }
            (Workload::AttentionBackward(s), CheckInputs::AttentionBackward { q, k, v, d_o })
                if !self.job.kernel.unfused =>
            {
                super::flash_backward::flash_attention_backward(
                    &s,
                    [q, k, v, d_o],
                    p,
                    (
                        super::flash_backward::BLOCK_M,
                        super::flash_backward::BLOCK_N,
                    ),
                )
            }
            (Workload::AttentionBackward(s), CheckInputs::AttentionBackward { q, k, v, d_o }) => {
                attention_backward_f32(&s, [q, k, v, d_o], p)
            }
            _ => {
                return Err(BackendError::Device(
                    "check inputs do not match the op".into(),
                ))
            }
        })
    }

    fn run(&mut self, iterations: u64) -> Result<RunTiming, BackendError> {
        let mut st = self.shared.lock();
        let seconds = st.run(&self.job, iterations);
        // the host's sync (and, as wgpu does, its encoding) with the device idle
        let gap = st.profile.imperfections.host_gaps.after_block_s(iterations);
        st.idle(gap);
        Ok(RunTiming {
            wall_s: seconds + gap,
            device_s: Some(seconds),
        })
    }
}

fn reduced_attention(s: AttentionShape) -> AttentionShape {
    AttentionShape {
        batch: 1,
        heads: s.heads.min(2),
        seq_q: s.seq_q.min(32),
        seq_kv: s.seq_kv.min(64),
        ..s
    }
}

/// C = A·B with f32 accumulation, stored at the kernel's output precision.
fn matmul_f32(s: &MatmulShape, a: &[f32], b: &[f32], p: Precision) -> Vec<f32> {
    let (m, n, k) = (s.m as usize, s.n as usize, s.k as usize);
    let mut c = vec![f32::NAN; s.batch as usize * m * n];
    for bi in 0..s.batch as usize {
        for i in 0..m {
            for j in 0..n {
                let acc: f32 = (0..k)
                    .map(|x| a[bi * m * k + i * k + x] * b[bi * k * n + x * n + j])
                    .sum();
                c[bi * m * n + i * n + j] = p.round_output(acc);
            }
        }
    }
    c
}

/// Attention with f32 scores and accumulation, stored at the output precision.
fn attention_f32(s: &AttentionShape, q: &[f32], k: &[f32], v: &[f32], p: Precision) -> Vec<f32> {
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let rows = (s.batch * s.heads) as usize * sq;
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![f32::NAN; rows * d];
    for row in 0..rows {
        let (bh, i) = (row / sq, row % sq);
        let visible = s.visible_keys(i as u64) as usize;
        let base = bh * skv * d;
        let scores: Vec<f32> = (0..visible)
            .map(|j| {
                (0..d)
                    .map(|x| q[row * d + x] * k[base + j * d + x])
                    .sum::<f32>()
                    * scale
            })
            .collect();
        let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f32> = scores.iter().map(|x| (x - max).exp()).collect();
        let total: f32 = weights.iter().sum();
        for x in 0..d {
            let acc: f32 = weights
                .iter()
                .enumerate()
                .map(|(j, w)| w * v[base + j * d + x])
                .sum();
            out[row * d + x] = p.round_output(if total > 0.0 { acc / total } else { 0.0 });
        }
    }
    out
}

/// Attention backward in f32, as the unfused path computes it: P recomputed from
/// Q·Kᵀ, dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)) / √d, dQ = dS·K,
/// dK = dSᵀ·Q; stored at the output precision as dQ, then dK, then dV.
fn attention_backward_f32(
    s: &AttentionShape,
    [q, k, v, d_o]: [&[f32]; 4],
    p: Precision,
) -> Vec<f32> {
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let bh = (s.batch * s.heads) as usize;
    let scale = 1.0 / (d as f32).sqrt();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut dq = vec![0.0f32; bh * sq * d];
    let (mut dk, mut dv) = (vec![0.0f32; bh * skv * d], vec![0.0f32; bh * skv * d]);
    for row in 0..bh * sq {
        let (b, i) = (row / sq, row % sq);
        let visible = s.visible_keys(i as u64) as usize;
        let kv = |j: usize| (b * skv + j) * d..(b * skv + j + 1) * d;
        let q_row = &q[row * d..(row + 1) * d];
        let do_row = &d_o[row * d..(row + 1) * d];
        let scores: Vec<f32> = (0..visible)
            .map(|j| dot(q_row, &k[kv(j)]) * scale)
            .collect();
        let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f32> = scores.iter().map(|x| (x - max).exp()).collect();
        let total: f32 = weights.iter().sum();
        let probs: Vec<f32> = weights.iter().map(|w| w / total).collect();
        let dp: Vec<f32> = (0..visible).map(|j| dot(do_row, &v[kv(j)])).collect();
        let delta: f32 = probs.iter().zip(&dp).map(|(a, b)| a * b).sum();
        for j in 0..visible {
            let ds = probs[j] * (dp[j] - delta) * scale;
            let r = kv(j);
            for x in 0..d {
                dq[row * d + x] += ds * k[r.start + x];
                dk[r.start + x] += ds * q_row[x];
                dv[r.start + x] += probs[j] * do_row[x];
            }
        }
    }
    dq.into_iter()
        .chain(dk)
        .chain(dv)
        .map(|x| p.round_output(x))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::SimDevice;
    use super::*;
    use joulebench_core::Clock;

    fn big() -> Workload {
        Workload::Matmul(MatmulShape {
            batch: 1,
            m: 8192,
            n: 8192,
            k: 8192,
        })
    }

    #[test]
    fn runs_advance_virtual_time_and_energy() {
        let mut dev = SimDevice::open("sim-a100", 0, 1).unwrap();
        let w = Workload::Matmul(MatmulShape {
            batch: 1,
            m: 2048,
            n: 2048,
            k: 2048,
        });
        let truth = dev.truth();
        let mut k = dev
            .backend
            .prepare("sim-vendor", Precision::F16, &w, 1)
            .unwrap();
        let t = k.run(10_000).unwrap(); // ~0.7 s: several counter ticks
        drop(k);
        assert!((dev.clock.now_s() - t.wall_s).abs() < 1e-9);
        let e = truth.snapshot().energy_j;
        assert!(e > 55.0 * t.wall_s * 1.5, "energy {e} over {} s", t.wall_s);
        assert_eq!(truth.snapshot().busy_iterations, 10_000.0);
    }

    #[test]
    fn unsupported_precision_has_a_reason() {
        let dev = SimDevice::open("sim-a100", 0, 1).unwrap();
        match dev
            .backend
            .support("sim-vendor", Precision::Fp8E4m3, &big())
        {
            Support::Unsupported(r) => assert!(r.contains("fp8"), "{r}"),
            s => panic!("{s:?}"),
        }
    }
}
