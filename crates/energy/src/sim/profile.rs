//! What a simulated GPU is: its peaks, clocks, power, thermal and sensor
//! parameters, how each kernel runs on it, and how its readings are imperfect (one
//! `SimProfile` per modelled part). `sim-h200` is fitted to the records of a real
//! H200 in `results/h200-2026-11-29/`; `sim-h100` is the same GH100 die with the
//! H100 SXM's own memory; the others resemble their parts.

use super::imperfections::Imperfections;
use super::kernels::{KernelFit, GENERIC_FITS};
use joulebench_core::precision::Precision;

/// The parameters of one simulated GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct SimProfile {
    pub name: &'static str,
    pub description: &'static str,
    /// Dense peak TFLOP/s at the maximum SM clock, per precision it supports.
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
    /// Board power follows the work within `power_rise_tau_s` while it runs, and
    /// falls in two parts when it stops: most within `power_fall_fast_tau_s`, the
    /// rest (`power_fall_slow_share`) within `power_fall_slow_tau_s`.
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
    /// … from a power sensor that averages only `sensor_window_s` of each period
    /// (about a quarter on A100/H100, Yang et al., SC'24).
    pub sensor_window_s: f64,
    /// How each kernel runs on this part.
    pub kernel_fits: &'static [KernelFit],
    /// Switching power of compute on all-zero operands, relative to random data.
    pub zero_data_activity: f64,
    /// How its readings and pace differ from an ideal device's.
    pub imperfections: Imperfections,
}

/// A peak quoted at `quoted_mhz`, scaled to the maximum SM clock `max_mhz`.
const fn at_max_clock(tflops: f64, quoted_mhz: f64, max_mhz: f64) -> f64 {
    tflops * max_mhz / quoted_mhz
}

/// GH100 (H100 SXM5 and H200 SXM), from NVIDIA's H100 and H200 datasheets: dense
/// FP32 67 TFLOP/s, TF32 494.5, BF16/FP16 989.5, FP8 1979 (the datasheets quote half
/// of the "with sparsity" figures). The tensor figures are 132 SMs × 4096 bf16
/// FLOP per clock at 1830 MHz (the FP32 figure is at the 1980 MHz maximum), so they
/// are scaled to 1980 MHz here.
const GH100_PEAKS: &[(Precision, f64)] = &[
    (Precision::F32, 67.0),
    (Precision::Tf32, at_max_clock(494.5, 1830.0, 1980.0)),
    (Precision::F16, at_max_clock(989.5, 1830.0, 1980.0)),
    (Precision::Bf16, at_max_clock(989.5, 1830.0, 1980.0)),
    (Precision::Fp8E4m3, at_max_clock(1979.0, 1830.0, 1980.0)),
];

/// How the kernels ran on the H200 of `results/h200-2026-11-29/` (CUDA records,
/// 700 W limit as found). Each fit reproduces a record's TFLOP/s at the clock its
/// telemetry showed, and its power: the limit, or under it the record's power less
/// the 2% bias of its gapped windows and this board's gain error, at the die's
/// steady temperature; `crates/energy/tests/sim_fidelity_tests.rs` compares the
/// profile with those records. The simulated kernels stand for the card's: `sim-vendor` for
/// cuBLAS (cuBLASLt at fp8), `sim-ours` for cuda-simt (f32) and cuda-mma (f16,
/// bf16), `sim-fused` for cuda-flash, `sim-unfused` for cublas-unfused.
pub const GH100_FITS: &[KernelFit] = &[
    // cuBLAS 8192³: bf16 679 TFLOP/s at ~1400 MHz, tf32 364 at ~1700, fp8 (cuBLASLt)
    // 1220 at ~1320 (fitted at 1180, between its 4096³ and 8192³ points), all at the
    // 700 W limit; f32 51.2 at 1980 MHz under it
    fit("sim-vendor", Precision::Bf16, 0.898, 0.869),
    fit("sim-vendor", Precision::F16, 0.898, 0.869),
    fit("sim-vendor", Precision::Fp8E4m3, 0.828, 0.993),
    fit("sim-vendor", Precision::Tf32, 0.786, 0.530),
    fit("sim-vendor", Precision::F32, 0.764, 0.334),
    // ours: cuda-mma bf16 266 TFLOP/s (0.39× cuBLAS) at the limit, ~1600 MHz;
    // cuda-simt f32 25.9 (0.51×) at 1980 MHz, 422 W (between its 4096³ and 8192³
    // points). Not measured at tf32 and fp8:
    // the bf16 kernel's ratios to the vendor's (0.343× the efficiency, 0.726× the
    // activity) applied to the vendor's fits
    fit("sim-ours", Precision::Bf16, 0.308, 0.631),
    fit("sim-ours", Precision::F16, 0.308, 0.631),
    fit("sim-ours", Precision::Tf32, 0.270, 0.385),
    fit("sim-ours", Precision::Fp8E4m3, 0.284, 0.721),
    fit("sim-ours", Precision::F32, 0.387, 0.159),
    // cuda-flash: 248 TFLOP/s at the limit at ~1900 MHz (h16 d128, seq 4096, and
    // seq 16384 causal alike); cublas-unfused 141 TFLOP/s at seq 4096 at the limit
    // (fitted at 143.5, between it and seq 16384 causal), its GEMM phase hungrier
    // per clock than a large GEMM for the kernel to reach the limit at ~1400 MHz
    fit("sim-fused", Precision::Bf16, 0.242, 0.392),
    fit("sim-fused", Precision::F16, 0.242, 0.392),
    fit("sim-unfused", Precision::Bf16, 0.367, 1.410),
    fit("sim-unfused", Precision::F16, 0.367, 1.410),
    // not measured: a fused backward at 0.8× the forward's efficiency (as
    // FlashAttention-2 reports), the unfused backward's GEMMs as the forward's
    fit("sim-fused-bwd", Precision::Bf16, 0.194, 0.392),
    fit("sim-fused-bwd", Precision::F16, 0.194, 0.392),
    fit("sim-unfused-bwd", Precision::Bf16, 0.367, 1.410),
    fit("sim-unfused-bwd", Precision::F16, 0.367, 1.410),
];

const fn fit(kernel: &'static str, p: Precision, efficiency: f64, activity: f64) -> KernelFit {
    KernelFit {
        kernel,
        precision: Some(p),
        efficiency,
        activity,
    }
}

/// The GH100 parts' power, thermal and sensor model (H100 SXM and H200 share the
/// die and the 700 W board limit); each profile fills in its memory, idle power and
/// imperfections.
const GH100: SimProfile = SimProfile {
    name: "",
    description: "",
    peak_tflops: GH100_PEAKS,
    mem_bandwidth_tb_s: 0.0,
    max_sm_clock_mhz: 1980,
    min_sm_clock_mhz: 345,
    sm_clock_step_mhz: 15,
    mem_clock_mhz: 0,
    idle_w: 0.0,
    busy_static_w: 60.0,
    dynamic_w: 1400.0,
    memory_w: 0.0,
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
    power_rise_tau_s: 0.001,
    power_fall_fast_tau_s: 0.025,
    power_fall_slow_tau_s: 0.4,
    power_fall_slow_share: 0.3,
    min_cap_w: 200.0,
    max_cap_w: 700.0,
    default_cap_w: 700.0,
    memory_bytes: 0,
    counter_period_s: 0.1,
    sensor_window_s: 0.025,
    kernel_fits: GH100_FITS,
    // a public measurement of an H800 GEMM: under 200 W on zeros against about
    // 350 W on random data, most of it the tensor cores' switching
    zero_data_activity: 0.4,
    imperfections: Imperfections::REALISTIC,
};

/// The profiles. sim-h200 first: it is the default, the one fitted to a card.
pub const PROFILES: &[SimProfile] = &[
    // NVIDIA H200 SXM datasheet: 141 GB HBM3e (the card reports 143 155 MiB), 4.8 TB/s,
    // up to 700 W. Measured on the card (results/h200-2026-11-29/): idle 125 W, the
    // 700 W limit as found (200–700 W allowed), memory clock 3201 MHz, a counter
    // updating every 100 ms, temperatures of 52–65 °C under load. Its counter read
    // 711–734 W at the 700 W limit even after removing the 2% bias of its gapped
    // windows: this board's counter reads 2.5% above the power its limiter holds.
    SimProfile {
        name: "sim-h200",
        description: "fitted to an NVIDIA H200 SXM's records: 141 GB HBM3e at 4.8 TB/s, 700 W, fp8 tensor cores; at the limit under tensor-core load",
        mem_bandwidth_tb_s: 4.8,
        mem_clock_mhz: 3201,
        memory_bytes: 150_109_880_320,
        // six HBM3e stacks at full bandwidth: an estimate
        memory_w: 180.0,
        idle_w: 125.0,
        imperfections: Imperfections {
            counter_gain_error: 0.025,
            ..Imperfections::REALISTIC
        },
        ..GH100
    },
    // NVIDIA H100 SXM datasheet: 80 GB HBM3, 3.35 TB/s, up to 700 W, the same peaks
    // as the H200 (same die, same clocks); its HBM3 runs at 2619 MHz. Not from a
    // datasheet, and not measured: idle 120 W, and a counter gain error of +1%
    // (within NVML's stated accuracy).
    SimProfile {
        name: "sim-h100",
        description: "the H200's die with an H100 SXM's memory: 80 GB HBM3 at 3.35 TB/s, 700 W, fp8 tensor cores",
        mem_bandwidth_tb_s: 3.35,
        mem_clock_mhz: 2619,
        memory_bytes: 80 << 30,
        // five HBM3 stacks at full bandwidth: an estimate
        memory_w: 150.0,
        idle_w: 120.0,
        imperfections: Imperfections {
            counter_gain_error: 0.01,
            ..Imperfections::REALISTIC
        },
        ..GH100
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
        kernel_fits: GENERIC_FITS,
        zero_data_activity: 0.4,
        imperfections: Imperfections::REALISTIC,
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
        kernel_fits: GENERIC_FITS,
        zero_data_activity: 0.4,
        imperfections: Imperfections::REALISTIC,
    },
];

/// The profile `--sim-profile` uses when none is named.
pub const DEFAULT_PROFILE: &str = "sim-h200";

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

    /// The same part with other imperfections (tests turn them on and off).
    pub fn with_imperfections(&self, imperfections: Imperfections) -> SimProfile {
        SimProfile {
            imperfections,
            ..self.clone()
        }
    }
}
