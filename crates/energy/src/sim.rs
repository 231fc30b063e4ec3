//! The simulated device (DESIGN.md §8): a model GPU so the whole pipeline, power
//! caps included, runs and is tested on any machine. Its backend, meter, power
//! control and clock share one state, advanced in virtual time, so a sweep that
//! would take an hour on a GPU takes seconds here. Every record from it says
//! `simulated: true`.
//!
//! # The model
//!
//! For a kernel with efficiency η_k on a workload of F FLOP and B bytes, at SM
//! clock fraction φ = f / f_max (φ_min ≤ φ ≤ 1):
//!
//! - size efficiency η_s = F / (F + F_half), F_half = 10⁹ FLOP (small ops fill fewer SMs);
//! - compute time t_c = F / (R_p · φ · η_k · η_s), R_p the profile's peak FLOP/s at f_max
//!   for precision p; memory time t_m = B / BW;
//! - time per op t = max(t_c, t_m) + t_launch (t_c + t_m for the unfused attention
//!   baseline, whose softmax pass runs between its GEMMs), t_launch = 5 µs;
//! - utilisations u_c = t_c / t, u_m = t_m / t;
//! - power P(φ) = P_idle + P_static + α_p · P_dyn · φ³ · u_c + P_mem · u_m, with α_p the
//!   precision's switching activity (f32 SIMT 0.75, tf32 0.85, f16/bf16 1.0, fp8 0.9);
//! - under a cap C the device runs at the largest φ with P(φ) ≤ C (bisection); if even
//!   φ_min exceeds C it runs at φ_min;
//! - idle: P_idle; the energy counter integrates P exactly and is read, like NVML's,
//!   in whole millijoules that change every 100 ms;
//! - noise: each run's time × (1 + N(0, 0.3%)) and power × (1 + N(0, 0.5%)), seeded.

use joulebench_core::backend::{
    Backend, BackendError, KernelInfo, PreparedKernel, RunTiming, Support,
};
use joulebench_core::clock::Clock;
use joulebench_core::device::DeviceInfo;
use joulebench_core::meter::{EnergyMeter, MeterError, MeterSource, Telemetry};
use joulebench_core::power::{PowerControl, PowerError, PowerLimits};
use joulebench_core::precision::Precision;
use joulebench_core::reference::CheckInputs;
use joulebench_core::workload::{AttentionShape, MatmulShape, Op, Workload};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Half-saturation size of the size efficiency, FLOP.
const F_HALF_FLOP: f64 = 1e9;
const LAUNCH_S: f64 = 5e-6;
const TIME_NOISE: f64 = 0.003;
const POWER_NOISE: f64 = 0.005;

/// The parameters of one simulated GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct SimProfile {
    pub name: &'static str,
    pub description: &'static str,
    /// Dense peak TFLOP/s at the maximum clock, per precision it supports.
    pub peak_tflops: &'static [(Precision, f64)],
    pub mem_bandwidth_tb_s: f64,
    pub max_sm_clock_mhz: u32,
    pub min_sm_clock_mhz: u32,
    pub idle_w: f64,
    /// Extra power whenever a kernel runs, whatever the clock (leakage, uncore).
    pub busy_static_w: f64,
    /// Switching power at the maximum clock and full compute utilisation (α = 1).
    pub dynamic_w: f64,
    /// Memory power at full bandwidth.
    pub memory_w: f64,
    pub min_cap_w: f64,
    pub max_cap_w: f64,
    pub default_cap_w: f64,
    pub memory_bytes: u64,
    pub counter_period_s: f64,
}

/// Profiles resembling three datacenter GPUs (datasheet peaks; powers chosen so
/// the default limit is reached at full tensor-core load).
pub const PROFILES: &[SimProfile] = &[
    SimProfile {
        name: "sim-h100",
        description: "resembles an H100 SXM: 700 W, HBM3, fp8 tensor cores",
        peak_tflops: &[
            (Precision::F32, 67.0),
            (Precision::Tf32, 495.0),
            (Precision::F16, 989.0),
            (Precision::Bf16, 989.0),
            (Precision::Fp8E4m3, 1979.0),
        ],
        mem_bandwidth_tb_s: 3.35,
        max_sm_clock_mhz: 1980,
        min_sm_clock_mhz: 345,
        idle_w: 70.0,
        busy_static_w: 80.0,
        dynamic_w: 480.0,
        memory_w: 120.0,
        min_cap_w: 200.0,
        max_cap_w: 700.0,
        default_cap_w: 700.0,
        memory_bytes: 80 << 30,
        counter_period_s: 0.1,
    },
    SimProfile {
        name: "sim-a100",
        description: "resembles an A100 SXM: 400 W, HBM2e, no fp8",
        peak_tflops: &[
            (Precision::F32, 19.5),
            (Precision::Tf32, 156.0),
            (Precision::F16, 312.0),
            (Precision::Bf16, 312.0),
        ],
        mem_bandwidth_tb_s: 2.04,
        max_sm_clock_mhz: 1410,
        min_sm_clock_mhz: 210,
        idle_w: 55.0,
        busy_static_w: 50.0,
        dynamic_w: 260.0,
        memory_w: 70.0,
        min_cap_w: 150.0,
        max_cap_w: 400.0,
        default_cap_w: 400.0,
        memory_bytes: 80 << 30,
        counter_period_s: 0.1,
    },
    SimProfile {
        name: "sim-l40s",
        description: "resembles an L40S: 350 W, GDDR6, fp8 tensor cores",
        peak_tflops: &[
            (Precision::F32, 91.6),
            (Precision::Tf32, 183.0),
            (Precision::F16, 362.0),
            (Precision::Bf16, 362.0),
            (Precision::Fp8E4m3, 733.0),
        ],
        mem_bandwidth_tb_s: 0.864,
        max_sm_clock_mhz: 2520,
        min_sm_clock_mhz: 210,
        idle_w: 35.0,
        busy_static_w: 45.0,
        dynamic_w: 240.0,
        memory_w: 40.0,
        min_cap_w: 100.0,
        max_cap_w: 350.0,
        default_cap_w: 350.0,
        memory_bytes: 48 << 30,
        counter_period_s: 0.1,
    },
];

pub fn profile(name: &str) -> Option<&'static SimProfile> {
    PROFILES.iter().find(|p| p.name == name)
}

pub fn profile_names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).collect()
}

/// One of the simulated device's kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimKernel {
    pub name: &'static str,
    pub op: Op,
    pub vendor: bool,
    /// Fraction of peak it reaches on a large op.
    pub efficiency: f64,
    /// Writes and re-reads the score matrix (the unfused attention baseline).
    pub unfused: bool,
    pub description: &'static str,
}

pub const KERNELS: &[SimKernel] = &[
    SimKernel {
        name: "sim-ours",
        op: Op::Matmul,
        vendor: false,
        efficiency: 0.70,
        unfused: false,
        description: "a model of our own tiled matmul (70% of peak on large shapes)",
    },
    SimKernel {
        name: "sim-vendor",
        op: Op::Matmul,
        vendor: true,
        efficiency: 0.85,
        unfused: false,
        description: "a model of a vendor BLAS matmul (85% of peak)",
    },
    SimKernel {
        name: "sim-fused",
        op: Op::Attention,
        vendor: false,
        efficiency: 0.55,
        unfused: false,
        description: "a model of a fused FlashAttention-style kernel (55% of peak)",
    },
    SimKernel {
        name: "sim-unfused",
        op: Op::Attention,
        vendor: true,
        efficiency: 0.75,
        unfused: true,
        description: "a model of attention from vendor GEMMs and a softmax pass over a materialised score matrix",
    },
];

fn kernel(name: &str) -> Option<&'static SimKernel> {
    KERNELS.iter().find(|k| k.name == name)
}

fn activity(p: Precision) -> f64 {
    match p {
        Precision::F32 => 0.75,
        Precision::Tf32 => 0.85,
        Precision::F16 | Precision::Bf16 => 1.0,
        Precision::Fp8E4m3 => 0.9,
    }
}

/// Bytes a kernel moves: the minimum, plus the score matrix written and read
/// twice (scores, then probabilities) by the unfused baseline.
fn kernel_bytes(k: &SimKernel, precision: Precision, w: &Workload) -> f64 {
    let mut bytes = w.min_bytes(precision) as f64;
    if let (true, Workload::Attention(s)) = (k.unfused, w) {
        let scores = (s.batch * s.heads * s.seq_q * s.seq_kv) as f64;
        bytes += 4.0 * scores * precision.output_bytes() as f64;
    }
    bytes
}

/// Where the model settles for one op: clock, time and power.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OperatingPoint {
    pub clock_fraction: f64,
    pub seconds_per_op: f64,
    pub power_w: f64,
    pub compute_utilisation: f64,
    pub memory_utilisation: f64,
}

impl SimProfile {
    pub fn peak_tflops(&self, p: Precision) -> Option<f64> {
        self.peak_tflops
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, t)| *t)
    }

    fn min_clock_fraction(&self) -> f64 {
        self.min_sm_clock_mhz as f64 / self.max_sm_clock_mhz as f64
    }

    /// Time and power at clock fraction φ (no noise).
    pub fn at_clock(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        phi: f64,
    ) -> OperatingPoint {
        let flop = w.flop().unwrap_or(0) as f64;
        let peak = self.peak_tflops(precision).unwrap_or(1.0) * 1e12;
        let size_eff = flop / (flop + F_HALF_FLOP);
        let t_c = flop / (peak * phi * k.efficiency * size_eff);
        let t_m = kernel_bytes(k, precision, w) / (self.mem_bandwidth_tb_s * 1e12);
        let t = if k.unfused { t_c + t_m } else { t_c.max(t_m) } + LAUNCH_S;
        let (u_c, u_m) = (t_c / t, t_m / t);
        let power = self.idle_w
            + self.busy_static_w
            + activity(precision) * self.dynamic_w * phi.powi(3) * u_c
            + self.memory_w * u_m;
        OperatingPoint {
            clock_fraction: phi,
            seconds_per_op: t,
            power_w: power,
            compute_utilisation: u_c,
            memory_utilisation: u_m,
        }
    }

    /// The fastest operating point whose power fits under `cap_w`.
    pub fn operating_point(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        cap_w: f64,
    ) -> OperatingPoint {
        let top = self.at_clock(k, precision, w, 1.0);
        if top.power_w <= cap_w {
            return top;
        }
        let (mut lo, mut hi) = (self.min_clock_fraction(), 1.0);
        if self.at_clock(k, precision, w, lo).power_w > cap_w {
            return self.at_clock(k, precision, w, lo);
        }
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if self.at_clock(k, precision, w, mid).power_w <= cap_w {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.at_clock(k, precision, w, lo)
    }
}

/// The state every part of one simulated device shares.
struct SimState {
    profile: &'static SimProfile,
    now_s: f64,
    energy_j: f64,
    /// The counter as a reader sees it: whole mJ, updated every counter period.
    counter_j: f64,
    next_tick_s: f64,
    cap_w: f64,
    power_w: f64,
    clock_mhz: u32,
    rng: ChaCha8Rng,
}

impl SimState {
    /// Let `dt` seconds pass at `power_w`, updating the counter at its ticks.
    fn advance(&mut self, dt: f64, power_w: f64) {
        let end = self.now_s + dt.max(0.0);
        while self.next_tick_s <= end {
            self.energy_j += power_w * (self.next_tick_s - self.now_s);
            self.now_s = self.next_tick_s;
            self.counter_j = (self.energy_j * 1000.0).floor() / 1000.0;
            self.next_tick_s += self.profile.counter_period_s;
        }
        self.energy_j += power_w * (end - self.now_s);
        self.now_s = end;
        self.power_w = power_w;
    }

    fn noise(&mut self, sigma: f64) -> f64 {
        1.0 + sigma * self.rng.sample::<f64, _>(StandardNormal)
    }
}

#[derive(Clone)]
struct Shared(Arc<Mutex<SimState>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock leaves plain numbers behind: keep going.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One simulated GPU: its backend, meter, power control and clock.
pub struct SimDevice {
    pub backend: SimBackend,
    pub meter: SimMeter,
    pub power: SimPowerControl,
    pub clock: Arc<SimClock>,
}

impl SimDevice {
    /// Open profile `name` as device number `index` (several simulated GPUs can
    /// exist at once; each has its own UUID); `seed` drives its noise.
    pub fn open(name: &str, index: usize, seed: u64) -> Result<SimDevice, BackendError> {
        let profile = profile(name).ok_or_else(|| {
            BackendError::Unavailable(format!(
                "unknown simulated device profile '{name}': available {}",
                profile_names().join(", ")
            ))
        })?;
        let shared = Shared(Arc::new(Mutex::new(SimState {
            profile,
            now_s: 0.0,
            energy_j: 0.0,
            counter_j: 0.0,
            next_tick_s: profile.counter_period_s,
            cap_w: profile.default_cap_w,
            power_w: profile.idle_w,
            clock_mhz: profile.min_sm_clock_mhz,
            rng: ChaCha8Rng::seed_from_u64(
                seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
        })));
        let device = DeviceInfo {
            name: format!("{} (simulated)", profile.name),
            uuid: Some(format!("SIM-{}-{index}", profile.name)),
            pci_bus_id: Some(format!("sim:{index:02x}:00.0")),
            architecture: Some("simulated".into()),
            compute_capability: None,
            driver: Some(format!("joulebench-sim {}", env!("CARGO_PKG_VERSION"))),
            memory_bytes: Some(profile.memory_bytes),
            adapter: None,
            cpu_emulation: false,
            simulated: true,
        };
        Ok(SimDevice {
            backend: SimBackend {
                shared: shared.clone(),
                device,
            },
            meter: SimMeter {
                shared: shared.clone(),
            },
            power: SimPowerControl {
                shared: shared.clone(),
            },
            clock: Arc::new(SimClock { shared }),
        })
    }
}

pub struct SimBackend {
    shared: Shared,
    device: DeviceInfo,
}

impl SimBackend {
    pub fn profile(&self) -> &'static SimProfile {
        self.shared.lock().profile
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
        if k.op == Op::Attention && !matches!(precision, Precision::F16 | Precision::Bf16) {
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
        _seed: u64,
    ) -> Result<Box<dyn PreparedKernel + '_>, BackendError> {
        if let Support::Unsupported(r) = self.support(kernel_name, precision, workload) {
            return Err(BackendError::Unsupported(r));
        }
        let kernel =
            *kernel(kernel_name).ok_or_else(|| BackendError::Unsupported(kernel_name.into()))?;
        Ok(Box::new(SimPrepared {
            shared: self.shared.clone(),
            kernel,
            precision,
            workload: *workload,
        }))
    }
}

struct SimPrepared {
    shared: Shared,
    kernel: SimKernel,
    precision: Precision,
    workload: Workload,
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
            Workload::Attention(s) => Workload::Attention(AttentionShape {
                batch: 1,
                heads: s.heads.min(2),
                seq_q: s.seq_q.min(32),
                seq_kv: s.seq_kv.min(64),
                ..s
            }),
        }
    }

    fn run_for_check(&mut self, inputs: &CheckInputs) -> Result<Vec<f32>, BackendError> {
        let w = self.check_workload(&self.workload);
        let p = self.precision;
        Ok(match (w, inputs) {
            (Workload::Matmul(s), CheckInputs::Matmul { a, b }) => matmul_f32(&s, a, b, p),
            (Workload::Attention(s), CheckInputs::Attention { q, k, v }) => {
                attention_f32(&s, q, k, v, p)
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
        let op = st
            .profile
            .operating_point(&self.kernel, self.precision, &self.workload, st.cap_w);
        let seconds = op.seconds_per_op * iterations as f64 * st.noise(TIME_NOISE);
        let power = op.power_w * st.noise(POWER_NOISE);
        st.clock_mhz = (op.clock_fraction * st.profile.max_sm_clock_mhz as f64).round() as u32;
        st.advance(seconds, power);
        // a queue sync costs a little wall time on top of the device time
        let idle = st.profile.idle_w;
        st.advance(20e-6, idle);
        Ok(RunTiming {
            wall_s: seconds + 20e-6,
            device_s: Some(seconds),
        })
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
        let visible = if s.causal {
            (i + skv + 1).saturating_sub(sq).min(skv)
        } else {
            skv
        };
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

/// The simulated device's energy counter.
pub struct SimMeter {
    shared: Shared,
}

impl EnergyMeter for SimMeter {
    fn source(&self) -> MeterSource {
        MeterSource::Simulated
    }

    fn energy_j(&mut self) -> Result<f64, MeterError> {
        Ok(self.shared.lock().counter_j)
    }

    fn update_period_s(&self) -> f64 {
        self.shared.lock().profile.counter_period_s
    }

    fn telemetry(&mut self) -> Result<Telemetry, MeterError> {
        let st = self.shared.lock();
        let capped =
            st.clock_mhz < st.profile.max_sm_clock_mhz && st.cap_w < st.profile.default_cap_w;
        Ok(Telemetry {
            sm_clock_mhz: Some(st.clock_mhz),
            mem_clock_mhz: Some(2619),
            default_sm_clock_mhz: Some(st.profile.max_sm_clock_mhz),
            temperature_c: Some((35.0 + 0.06 * (st.power_w - st.profile.idle_w)).round() as u32),
            throttle_reasons: if capped {
                vec!["sw-power-cap".into()]
            } else {
                Vec::new()
            },
            enforced_power_limit_w: Some(st.cap_w),
            performance_state: Some("P0".into()),
            power_w: Some(st.power_w),
        })
    }
}

/// The simulated device's power limit: changing it needs no rights and touches
/// no hardware.
pub struct SimPowerControl {
    shared: Shared,
}

impl PowerControl for SimPowerControl {
    fn limits(&mut self) -> Result<PowerLimits, PowerError> {
        let st = self.shared.lock();
        Ok(PowerLimits {
            min_w: st.profile.min_cap_w,
            max_w: st.profile.max_cap_w,
            default_w: st.profile.default_cap_w,
            current_w: st.cap_w,
        })
    }

    fn set_limit_w(&mut self, watts: f64) -> Result<(), PowerError> {
        let limits = self.limits()?;
        limits.check(watts)?;
        self.shared.lock().cap_w = watts;
        Ok(())
    }

    fn enforced_limit_w(&mut self) -> Result<f64, PowerError> {
        Ok(self.shared.lock().cap_w)
    }
}

/// Virtual time: kernels advance it by their modelled duration, sleeps at idle power.
pub struct SimClock {
    shared: Shared,
}

impl Clock for SimClock {
    fn now_s(&self) -> f64 {
        self.shared.lock().now_s
    }

    fn sleep(&self, duration: Duration) {
        let mut st = self.shared.lock();
        let idle = st.profile.idle_w;
        st.advance(duration.as_secs_f64(), idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big_bf16() -> Workload {
        Workload::Matmul(MatmulShape {
            batch: 1,
            m: 8192,
            n: 8192,
            k: 8192,
        })
    }

    #[test]
    fn lower_cap_means_lower_power_and_longer_time() {
        let p = profile("sim-h100").unwrap();
        let k = kernel("sim-vendor").unwrap();
        let mut last: Option<OperatingPoint> = None;
        for cap in [700.0, 600.0, 500.0, 400.0, 300.0] {
            let op = p.operating_point(k, Precision::Bf16, &big_bf16(), cap);
            assert!(op.power_w <= cap + 1e-6, "cap {cap}: {op:?}");
            if let Some(prev) = last {
                assert!(op.power_w < prev.power_w, "power must fall with the cap");
                assert!(
                    op.seconds_per_op > prev.seconds_per_op,
                    "time must grow as the cap falls"
                );
            }
            last = Some(op);
        }
    }

    #[test]
    fn moderate_cap_saves_energy_on_compute_bound_work() {
        let p = profile("sim-h100").unwrap();
        let k = kernel("sim-vendor").unwrap();
        let full = p.operating_point(k, Precision::Bf16, &big_bf16(), 700.0);
        let capped = p.operating_point(k, Precision::Bf16, &big_bf16(), 450.0);
        let e = |o: OperatingPoint| o.power_w * o.seconds_per_op;
        assert!(e(capped) < 0.9 * e(full), "{} vs {}", e(capped), e(full));
    }

    #[test]
    fn memory_bound_work_barely_notices_the_cap() {
        let p = profile("sim-h100").unwrap();
        let k = kernel("sim-vendor").unwrap();
        let w = Workload::Matmul(MatmulShape {
            batch: 64,
            m: 1,
            n: 8192,
            k: 8192,
        });
        let full = p.operating_point(k, Precision::F16, &w, 700.0);
        let capped = p.operating_point(k, Precision::F16, &w, 400.0);
        assert!(full.memory_utilisation > 0.9);
        assert!((capped.seconds_per_op / full.seconds_per_op) < 1.02);
    }

    #[test]
    fn counter_is_quantised_to_its_period_and_millijoules() {
        let mut dev = SimDevice::open("sim-h100", 0, 1).unwrap();
        dev.clock.sleep(Duration::from_millis(50));
        assert_eq!(dev.meter.energy_j().unwrap(), 0.0, "no tick yet");
        dev.clock.sleep(Duration::from_millis(60));
        let e = dev.meter.energy_j().unwrap();
        assert!((e - 7.0).abs() < 1e-3, "one 100 ms tick at 70 W idle: {e}");
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
        let mut k = dev
            .backend
            .prepare("sim-vendor", Precision::F16, &w, 1)
            .unwrap();
        let t = k.run(10_000).unwrap(); // ~0.7 s: several counter ticks
        drop(k);
        assert!((dev.clock.now_s() - t.wall_s).abs() < 1e-9);
        let e = dev.meter.energy_j().unwrap();
        assert!(e > 55.0 * t.wall_s * 0.9, "energy {e} over {} s", t.wall_s);
    }

    #[test]
    fn unsupported_precision_has_a_reason() {
        let dev = SimDevice::open("sim-a100", 0, 1).unwrap();
        match dev
            .backend
            .support("sim-vendor", Precision::Fp8E4m3, &big_bf16())
        {
            Support::Unsupported(r) => assert!(r.contains("fp8"), "{r}"),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn cap_outside_range_is_refused() {
        let mut dev = SimDevice::open("sim-h100", 0, 1).unwrap();
        assert!(matches!(
            dev.power.set_limit_w(100.0),
            Err(PowerError::OutOfRange { .. })
        ));
        assert!(dev.power.set_limit_w(350.0).is_ok());
        assert_eq!(dev.power.enforced_limit_w().unwrap(), 350.0);
    }
}
