//! What a simulated GPU is: its peaks, clocks, power, thermal and sensor
//! parameters (one `SimProfile` per modelled part), and the kernels it offers.
//! The numbers resemble the datacenter GPUs joulebench has measured; the
//! sim-h100 profile is tuned to the H200 run in `results/h200-2026-11-29/`.

use joulebench_core::precision::Precision;
use joulebench_core::workload::{Op, Workload};

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
    /// The SM clocks a locked clock can be set to: min..=max in steps of this.
    pub sm_clock_step_mhz: u32,
    pub mem_clock_mhz: u32,
    pub idle_w: f64,
    /// Extra power whenever a kernel runs, whatever the clock (uncore, fabric).
    pub busy_static_w: f64,
    /// Switching power at the maximum clock and voltage, full activity.
    pub dynamic_w: f64,
    /// Memory power at full bandwidth.
    pub memory_w: f64,
    /// Leakage that grows with temperature, W per °C above `leakage_ref_c`.
    pub leakage_w_per_c: f64,
    pub leakage_ref_c: f64,
    /// The voltage–frequency curve, relative to the voltage at the maximum clock:
    /// flat at `v_min` up to the knee (a fraction of the maximum clock), then
    /// rising, slowly at first, to 1: V = v_min + (1 − v_min)·x^v_exponent, with x
    /// the distance from the knee to the maximum clock, 0 to 1.
    pub v_min: f64,
    pub v_knee_fraction: f64,
    pub v_exponent: f64,
    /// Thermal model: steady temperature = ambient + R·P, reached through a fast
    /// (die) and a slow (heat sink) pole.
    pub ambient_c: f64,
    pub thermal_c_per_w: f64,
    pub thermal_fast_share: f64,
    pub thermal_fast_tau_s: f64,
    pub thermal_slow_tau_s: f64,
    /// Board power rises within `power_rise_tau_s` when work starts, and falls in
    /// two parts when it stops: most within `power_fall_fast_tau_s`, the rest
    /// (`power_fall_slow_share`) within `power_fall_slow_tau_s`.
    pub power_rise_tau_s: f64,
    pub power_fall_fast_tau_s: f64,
    pub power_fall_slow_tau_s: f64,
    pub power_fall_slow_share: f64,
    pub min_cap_w: f64,
    pub max_cap_w: f64,
    pub default_cap_w: f64,
    pub memory_bytes: u64,
    /// The energy counter updates this often …
    pub counter_period_s: f64,
    /// … from a power sensor that sees only the last `sensor_window_s` of each
    /// period (about a quarter on A100/H100, Yang et al., SC'24).
    pub sensor_window_s: f64,
}

/// Profiles resembling three datacenter GPUs (datasheet peaks; power parameters
/// chosen so that heavy tensor-core work runs at the power limit at a lowered
/// clock, as the H200 did at 1290–1500 MHz under its 700 W limit).
pub const PROFILES: &[SimProfile] = &[
    SimProfile {
        name: "sim-h100",
        description: "resembles an H100/H200 SXM: 700 W, HBM3, fp8 tensor cores; at the limit under tensor-core load",
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
        sm_clock_step_mhz: 15,
        mem_clock_mhz: 3201,
        idle_w: 120.0,
        busy_static_w: 60.0,
        dynamic_w: 1400.0,
        memory_w: 100.0,
        leakage_w_per_c: 1.0,
        leakage_ref_c: 35.0,
        v_min: 0.6,
        v_knee_fraction: 0.4,
        v_exponent: 1.5,
        ambient_c: 30.0,
        thermal_c_per_w: 0.045,
        thermal_fast_share: 0.65,
        thermal_fast_tau_s: 4.0,
        thermal_slow_tau_s: 60.0,
        power_rise_tau_s: 0.005,
        power_fall_fast_tau_s: 0.025,
        power_fall_slow_tau_s: 0.4,
        power_fall_slow_share: 0.3,
        min_cap_w: 200.0,
        max_cap_w: 700.0,
        default_cap_w: 700.0,
        memory_bytes: 80 << 30,
        counter_period_s: 0.1,
        sensor_window_s: 0.025,
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
        sm_clock_step_mhz: 15,
        mem_clock_mhz: 1593,
        idle_w: 55.0,
        busy_static_w: 40.0,
        dynamic_w: 640.0,
        memory_w: 70.0,
        leakage_w_per_c: 0.6,
        leakage_ref_c: 33.0,
        v_min: 0.62,
        v_knee_fraction: 0.4,
        v_exponent: 1.5,
        ambient_c: 28.0,
        thermal_c_per_w: 0.08,
        thermal_fast_share: 0.65,
        thermal_fast_tau_s: 4.0,
        thermal_slow_tau_s: 60.0,
        power_rise_tau_s: 0.005,
        power_fall_fast_tau_s: 0.025,
        power_fall_slow_tau_s: 0.4,
        power_fall_slow_share: 0.3,
        min_cap_w: 150.0,
        max_cap_w: 400.0,
        default_cap_w: 400.0,
        memory_bytes: 80 << 30,
        counter_period_s: 0.1,
        sensor_window_s: 0.025,
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
        sm_clock_step_mhz: 15,
        mem_clock_mhz: 9001,
        idle_w: 35.0,
        busy_static_w: 35.0,
        dynamic_w: 520.0,
        memory_w: 40.0,
        leakage_w_per_c: 0.5,
        leakage_ref_c: 33.0,
        v_min: 0.62,
        v_knee_fraction: 0.4,
        v_exponent: 1.5,
        ambient_c: 28.0,
        thermal_c_per_w: 0.11,
        thermal_fast_share: 0.6,
        thermal_fast_tau_s: 5.0,
        thermal_slow_tau_s: 80.0,
        power_rise_tau_s: 0.005,
        power_fall_fast_tau_s: 0.03,
        power_fall_slow_tau_s: 0.4,
        power_fall_slow_share: 0.3,
        min_cap_w: 100.0,
        max_cap_w: 350.0,
        default_cap_w: 350.0,
        memory_bytes: 48 << 30,
        counter_period_s: 0.1,
        sensor_window_s: 0.025,
    },
];

pub fn profile(name: &str) -> Option<&'static SimProfile> {
    PROFILES.iter().find(|p| p.name == name)
}

pub fn profile_names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).collect()
}

impl SimProfile {
    pub fn peak_tflops(&self, p: Precision) -> Option<f64> {
        self.peak_tflops
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, t)| *t)
    }

    pub fn min_clock_fraction(&self) -> f64 {
        self.min_sm_clock_mhz as f64 / self.max_sm_clock_mhz as f64
    }

    /// Relative voltage at clock fraction φ.
    pub fn voltage(&self, phi: f64) -> f64 {
        if phi <= self.v_knee_fraction {
            self.v_min
        } else {
            let x = (phi - self.v_knee_fraction) / (1.0 - self.v_knee_fraction);
            self.v_min + (1.0 - self.v_min) * x.powf(self.v_exponent)
        }
    }

    /// The steady temperature at `power_w`.
    pub fn steady_temperature_c(&self, power_w: f64) -> f64 {
        self.ambient_c + self.thermal_c_per_w * power_w
    }

    /// Every SM clock a locked clock may be set to, lowest first.
    pub fn supported_sm_clocks_mhz(&self) -> Vec<u32> {
        let step = self.sm_clock_step_mhz.max(1) as usize;
        let mut v: Vec<u32> = (self.min_sm_clock_mhz..=self.max_sm_clock_mhz)
            .step_by(step)
            .collect();
        if v.last() != Some(&self.max_sm_clock_mhz) {
            v.push(self.max_sm_clock_mhz);
        }
        v
    }
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
    // Backward kernels reach less of the peak than forward ones (FlashAttention-2
    // reports its backward well below its forward): more matmuls per tile, more state.
    SimKernel {
        name: "sim-fused-bwd",
        op: Op::AttentionBackward,
        vendor: false,
        efficiency: 0.45,
        unfused: false,
        description: "a model of a fused FlashAttention-2-style backward that recomputes the scores (45% of peak)",
    },
    SimKernel {
        name: "sim-unfused-bwd",
        op: Op::AttentionBackward,
        vendor: true,
        efficiency: 0.75,
        unfused: true,
        description: "a model of attention backward from vendor GEMMs and a softmax-backward pass over materialised score matrices",
    },
];

pub fn kernel(name: &str) -> Option<&'static SimKernel> {
    KERNELS.iter().find(|k| k.name == name)
}

/// Switching activity of a precision's arithmetic, relative to f16/bf16 tensor cores.
pub fn activity(p: Precision) -> f64 {
    match p {
        Precision::F32 => 0.38,
        Precision::Tf32 => 0.61,
        Precision::F16 | Precision::Bf16 => 1.0,
        Precision::Fp8E4m3 => 1.07,
    }
}

/// Bytes a kernel moves: the minimum, plus what the unfused baselines move through
/// score-sized matrices. Forward: the scores written and read, then the
/// probabilities written and read (4 passes). Backward: S written and read, P
/// written and read twice (dV, softmax backward), dP written and read, dS written
/// and read twice (dQ, dK): 10 passes.
pub fn kernel_bytes(k: &SimKernel, precision: Precision, w: &Workload) -> f64 {
    let mut bytes = w.min_bytes(precision) as f64;
    let passes = match w {
        Workload::Matmul(_) => 0.0,
        Workload::Attention(_) => 4.0,
        Workload::AttentionBackward(_) => 10.0,
    };
    if let (true, Some(s)) = (k.unfused, w.attention_shape()) {
        let scores = (s.batch * s.heads * s.seq_q * s.seq_kv) as f64;
        bytes += passes * scores * precision.output_bytes() as f64;
    }
    bytes
}
