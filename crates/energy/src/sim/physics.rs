//! The static physics of the simulated device: the time and power of one op at a
//! clock and a die temperature, and the clock a power cap (or a locked clock)
//! settles it at. No state, no noise; `state` drives these in virtual time.

use super::kernels::{fit_of, kernel_bytes, kernel_flop, SimKernel};
use super::profile::SimProfile;
use joulebench_core::inputs::InputDistribution;
use joulebench_core::precision::Precision;
use joulebench_core::workload::Workload;

/// Half-saturation size of the size efficiency, FLOP.
const F_HALF_FLOP: f64 = 2.5e8;
pub(crate) const LAUNCH_S: f64 = 1e-6;

/// What the model needs to know of the work: the kernel, its precision, the
/// workload, and the inputs it runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Job {
    pub kernel: SimKernel,
    pub precision: Precision,
    pub workload: Workload,
    pub inputs: InputDistribution,
}

/// Where the model settles for one op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OperatingPoint {
    pub clock_fraction: f64,
    pub seconds_per_op: f64,
    /// Average board power over an iteration.
    pub power_w: f64,
    pub compute_utilisation: f64,
    pub memory_utilisation: f64,
    /// The power limit held the clock below the highest one allowed.
    pub power_limited: bool,
    /// A multi-phase kernel's GEMM phase and memory phase, in turn within each
    /// iteration: (seconds, W) each.
    pub phases: Option<[(f64, f64); 2]>,
}

impl SimProfile {
    /// `(efficiency, activity)` of a kernel at a precision on this part.
    pub fn kernel_fit(&self, k: &SimKernel, precision: Precision) -> (f64, f64) {
        fit_of(self.kernel_fits, k.name, precision).unwrap_or((0.5, 0.5))
    }

    /// Relative switching power of compute on `inputs`: products with a zero
    /// operand toggle little, so the power of compute falls towards
    /// `zero_data_activity` as the non-zero products do.
    pub fn data_activity(&self, inputs: InputDistribution) -> f64 {
        let z = self.zero_data_activity;
        z + (1.0 - z) * inputs.nonzero_product_fraction()
    }

    /// Time and power at clock fraction φ with the die at `temperature_c` (no noise):
    ///
    /// - size efficiency η_s = F / (F + F_half); compute time
    ///   t_c = F / (R_p · φ · η_k · η_s); memory time t_m = B / BW;
    /// - t = max(t_c, t_m) + t_launch (t_c + t_m for the unfused attention baseline,
    ///   whose F includes the masked half of a causal score matrix);
    /// - P = P_idle + P_static + k_leak·(T − T_ref)⁺ + a · P_dyn · φ·V(φ)² · u_c
    ///   \+ P_mem · u_m, with u_c = t_c / t and u_m = t_m / t, and the activity
    ///   a = α_k · (0.35 + 0.65·η_s) · D, where α_k is the kernel's fitted activity
    ///   at this precision and D the data's ([`SimProfile::data_activity`]);
    /// - V(φ) flat below the knee and rising above it.
    pub fn at_clock_and_temperature(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        phi: f64,
        temperature_c: f64,
    ) -> OperatingPoint {
        let job = Job {
            kernel: *k,
            precision,
            workload: *w,
            inputs: InputDistribution::Normal,
        };
        self.at(&job, phi, temperature_c)
    }

    /// [`SimProfile::at_clock_and_temperature`] for a job.
    pub fn at(&self, job: &Job, phi: f64, temperature_c: f64) -> OperatingPoint {
        let (k, w) = (&job.kernel, &job.workload);
        let (efficiency, activity) = self.kernel_fit(k, job.precision);
        let flop = kernel_flop(k, w);
        let peak = self.peak_tflops(job.precision).unwrap_or(1.0) * 1e12;
        let size_eff = flop / (flop + F_HALF_FLOP);
        let t_c = flop / (peak * phi * efficiency * size_eff);
        let t_m = kernel_bytes(k, job.precision, w) / (self.mem_bandwidth_tb_s * 1e12);
        let t = if k.unfused { t_c + t_m } else { t_c.max(t_m) } + LAUNCH_S;
        let (u_c, u_m) = (t_c / t, t_m / t);
        let a = activity * (0.35 + 0.65 * size_eff) * self.data_activity(job.inputs);
        let v = self.voltage(phi);
        let base = self.idle_w
            + self.busy_static_w
            + self.leakage_w_per_c * (temperature_c - self.leakage_ref_c).max(0.0);
        let compute_w = a * self.dynamic_w * phi * v * v;
        OperatingPoint {
            clock_fraction: phi,
            seconds_per_op: t,
            power_w: base + compute_w * u_c + self.memory_w * u_m,
            compute_utilisation: u_c,
            memory_utilisation: u_m,
            power_limited: false,
            phases: k.unfused.then_some([
                (t_c, base + compute_w),
                (
                    t_m + LAUNCH_S,
                    base + self.memory_w * t_m / (t_m + LAUNCH_S),
                ),
            ]),
        }
    }

    /// The fastest point whose power fits under `cap_w`, with the clock fraction in
    /// `clock_range` (a locked clock narrows it) and the die at `temperature_c`.
    pub fn operating_point_at(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        cap_w: f64,
        temperature_c: f64,
        clock_range: (f64, f64),
    ) -> OperatingPoint {
        let job = Job {
            kernel: *k,
            precision,
            workload: *w,
            inputs: InputDistribution::Normal,
        };
        self.limited_point(&job, cap_w, temperature_c, clock_range)
    }

    /// [`SimProfile::operating_point_at`] for a job.
    pub fn limited_point(
        &self,
        job: &Job,
        cap_w: f64,
        temperature_c: f64,
        clock_range: (f64, f64),
    ) -> OperatingPoint {
        let (lo0, hi0) = clock_range;
        let at = |phi| self.at(job, phi, temperature_c);
        let top = at(hi0);
        if top.power_w <= cap_w {
            return top;
        }
        let limited = |mut p: OperatingPoint| {
            p.power_limited = true;
            p
        };
        // a power limit wins over a locked clock, as on a GPU: below the locked
        // range if even its lowest clock draws more than the cap
        let (mut lo, mut hi) = (lo0, hi0);
        if at(lo).power_w > cap_w {
            hi = lo;
            lo = self.min_clock_fraction();
            if at(lo).power_w > cap_w {
                return limited(at(lo));
            }
        }
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if at(mid).power_w <= cap_w {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        limited(at(lo))
    }

    /// Where a kernel settles under `cap_w` once the die has reached its steady
    /// temperature at that power (no locked clock, no noise, normal inputs).
    pub fn operating_point(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        cap_w: f64,
    ) -> OperatingPoint {
        self.settled_point(k, precision, w, cap_w, (self.min_clock_fraction(), 1.0))
    }

    /// As [`SimProfile::operating_point`], with the clock fraction in `clock_range`.
    pub fn settled_point(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        cap_w: f64,
        clock_range: (f64, f64),
    ) -> OperatingPoint {
        let job = Job {
            kernel: *k,
            precision,
            workload: *w,
            inputs: InputDistribution::Normal,
        };
        self.settled_job(&job, cap_w, clock_range)
    }

    /// [`SimProfile::settled_point`] for a job.
    pub fn settled_job(&self, job: &Job, cap_w: f64, clock_range: (f64, f64)) -> OperatingPoint {
        let mut temp = self.steady_temperature_c(self.idle_w);
        let mut op = self.limited_point(job, cap_w, temp, clock_range);
        for _ in 0..20 {
            temp = self.steady_temperature_c(op.power_w);
            op = self.limited_point(job, cap_w, temp, clock_range);
        }
        op
    }

    /// Shorthand for tests and docs: time and power at clock fraction φ at the
    /// leakage reference temperature.
    pub fn at_clock(
        &self,
        k: &SimKernel,
        precision: Precision,
        w: &Workload,
        phi: f64,
    ) -> OperatingPoint {
        self.at_clock_and_temperature(k, precision, w, phi, self.leakage_ref_c)
    }
}
