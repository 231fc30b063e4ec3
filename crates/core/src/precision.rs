//! Number formats a kernel can compute in, with the tolerance its output is held to
//! and how an input value is rounded to it, so the f64 reference sees exactly the
//! values the GPU sees.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A kernel's input precision. Every kernel accumulates in f32 (docs/ARCHITECTURE.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Precision {
    #[serde(rename = "f32")]
    F32,
    /// f32 storage, 10-bit-mantissa products on matrix units (CUDA only).
    #[serde(rename = "tf32")]
    Tf32,
    #[serde(rename = "f16")]
    F16,
    #[serde(rename = "bf16")]
    Bf16,
    /// 8-bit float, 4 exponent and 3 mantissa bits (sm_89 and newer, cuBLASLt).
    #[serde(rename = "fp8-e4m3")]
    Fp8E4m3,
}

impl Precision {
    pub const ALL: [Precision; 5] = [
        Precision::F32,
        Precision::Tf32,
        Precision::F16,
        Precision::Bf16,
        Precision::Fp8E4m3,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
            Precision::Fp8E4m3 => "fp8-e4m3",
        }
    }

    /// Bound on ‖out − ref‖ / ‖ref‖ against the f64 reference (docs/ARCHITECTURE.md §3).
    pub fn tolerance(self) -> f64 {
        match self {
            Precision::F32 => 1e-5,
            Precision::Tf32 => 1e-3,
            Precision::F16 | Precision::Bf16 => 1e-2,
            Precision::Fp8E4m3 => 5e-2,
        }
    }

    /// Bytes of one input element as stored in device memory.
    pub fn input_bytes(self) -> u64 {
        match self {
            Precision::F32 | Precision::Tf32 => 4,
            Precision::F16 | Precision::Bf16 => 2,
            Precision::Fp8E4m3 => 1,
        }
    }

    /// Bytes of one output element: f32 for f32/tf32, the input type for f16/bf16,
    /// and bf16 for fp8 (an fp8 GEMM writes a wider type).
    pub fn output_bytes(self) -> u64 {
        match self {
            Precision::F32 | Precision::Tf32 => 4,
            Precision::F16 | Precision::Bf16 | Precision::Fp8E4m3 => 2,
        }
    }

    /// Round an f32 to the nearest value this precision can hold (round to nearest even).
    pub fn round(self, x: f32) -> f32 {
        match self {
            Precision::F32 => x,
            Precision::Tf32 => round_mantissa(x, 10),
            Precision::F16 => half::f16::from_f32(x).to_f32(),
            Precision::Bf16 => half::bf16::from_f32(x).to_f32(),
            Precision::Fp8E4m3 => round_e4m3(x),
        }
    }

    /// Round an output value to the precision the kernel stores it in.
    pub fn round_output(self, x: f32) -> f32 {
        match self {
            Precision::F32 | Precision::Tf32 => x,
            Precision::F16 => half::f16::from_f32(x).to_f32(),
            Precision::Bf16 | Precision::Fp8E4m3 => half::bf16::from_f32(x).to_f32(),
        }
    }
}

/// Keep `bits` explicit mantissa bits of an f32, rounding to nearest even.
fn round_mantissa(x: f32, bits: u32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    let drop = 23 - bits;
    let u = x.to_bits();
    let half = 1u32 << (drop - 1);
    let lsb = (u >> drop) & 1;
    let rounded = u.wrapping_add(half - 1 + lsb) & !((1u32 << drop) - 1);
    f32::from_bits(rounded)
}

/// E4M3 (OCP FP8): bias 7, no infinities, max finite 448, subnormals down to 2^-9.
fn round_e4m3(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    if a == 0.0 {
        return x;
    }
    let sign = x.signum();
    if a >= 448.0 {
        return sign * 448.0;
    }
    let exp = a.log2().floor().max(-6.0);
    // 3 mantissa bits: the spacing at this exponent is 2^(exp-3).
    let step = (exp - 3.0).exp2();
    let q = a / step;
    let r = q.round();
    // round half to even
    let r = if (q - q.floor() - 0.5).abs() < f32::EPSILON && r % 2.0 != 0.0 {
        r - 1.0
    } else {
        r
    };
    sign * (r * step).min(448.0)
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown precision '{0}': expected one of f32, tf32, f16, bf16, fp8-e4m3 (or fp8)")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "tf32" => Ok(Precision::Tf32),
            "f16" | "fp16" | "half" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            "fp8" | "fp8-e4m3" | "e4m3" | "fp8_e4m3" => Ok(Precision::Fp8E4m3),
            _ => Err(UnknownPrecision(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert_eq!("FP16".parse::<Precision>().unwrap(), Precision::F16);
        assert!("int4".parse::<Precision>().is_err());
    }

    #[test]
    fn tolerances_follow_design() {
        assert_eq!(Precision::F32.tolerance(), 1e-5);
        assert_eq!(Precision::Tf32.tolerance(), 1e-3);
        assert_eq!(Precision::Bf16.tolerance(), 1e-2);
        assert_eq!(Precision::Fp8E4m3.tolerance(), 5e-2);
    }

    #[test]
    fn tf32_keeps_ten_mantissa_bits() {
        let x = 1.0 + 2f32.powi(-11); // below tf32 resolution → rounds to even (1.0)
        assert_eq!(Precision::Tf32.round(x), 1.0);
        let y = 1.0 + 2f32.powi(-10);
        assert_eq!(Precision::Tf32.round(y), y);
        let z = 1.0 + 3.0 * 2f32.powi(-11); // halfway up: rounds to 1 + 2^-9
        assert_eq!(Precision::Tf32.round(z), 1.0 + 2f32.powi(-9));
    }

    #[test]
    fn e4m3_rounds_to_representable_values() {
        assert_eq!(Precision::Fp8E4m3.round(1.0), 1.0);
        assert_eq!(Precision::Fp8E4m3.round(1.0625), 1.0); // halfway between 1 and 1.125, even
        assert_eq!(Precision::Fp8E4m3.round(1.1), 1.125);
        assert_eq!(Precision::Fp8E4m3.round(1000.0), 448.0);
        assert_eq!(Precision::Fp8E4m3.round(-3.3), -3.25);
        assert_eq!(Precision::Fp8E4m3.round(2f32.powi(-9)), 2f32.powi(-9));
    }
}
