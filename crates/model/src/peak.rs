//! The dense tensor-core peaks MFU is measured against, by card: the vendor's
//! published datasheet figures without sparsity. A card not listed has no MFU rather
//! than a guessed one; the simulated device's profiles carry their own peaks.

use joulebench_core::precision::Precision;

/// Dense peak TFLOP/s by precision: f32 (CUDA cores), tf32, f16/bf16, fp8.
struct CardPeak {
    /// Matched against the device name, in order (the first match wins).
    name_contains: &'static [&'static str],
    f32: f64,
    tf32: f64,
    bf16: f64,
    fp8: Option<f64>,
}

/// NVIDIA datasheets: H100 and H200 (SXM5, "H100 80GB HBM3"), H100 NVL, H100 PCIe,
/// A100 (SXM4 and PCIe), L40S; sparsity figures halved.
const CARDS: &[CardPeak] = &[
    CardPeak {
        name_contains: &["H200"],
        f32: 66.9,
        tf32: 494.7,
        bf16: 989.4,
        fp8: Some(1978.9),
    },
    CardPeak {
        name_contains: &["H100", "NVL"],
        f32: 60.0,
        tf32: 417.5,
        bf16: 835.0,
        fp8: Some(1670.5),
    },
    CardPeak {
        name_contains: &["H100", "PCIe"],
        f32: 51.2,
        tf32: 378.0,
        bf16: 756.0,
        fp8: Some(1513.0),
    },
    CardPeak {
        name_contains: &["H100"],
        f32: 66.9,
        tf32: 494.7,
        bf16: 989.4,
        fp8: Some(1978.9),
    },
    CardPeak {
        name_contains: &["A100"],
        f32: 19.5,
        tf32: 156.0,
        bf16: 312.0,
        fp8: None,
    },
    CardPeak {
        name_contains: &["L40S"],
        f32: 91.6,
        tf32: 183.0,
        bf16: 362.1,
        fp8: Some(733.0),
    },
];

/// The published dense peak of the card named `device_name` at `precision`, TFLOP/s.
pub fn published_dense_tflops(device_name: &str, precision: Precision) -> Option<f64> {
    // drivers and the simulated profiles spell names differently ("PCIe", "sim-h200")
    let upper = device_name.to_ascii_uppercase();
    let card = CARDS.iter().find(|c| {
        c.name_contains
            .iter()
            .all(|n| upper.contains(&n.to_ascii_uppercase()))
    })?;
    match precision {
        Precision::F32 => Some(card.f32),
        Precision::Tf32 => Some(card.tf32),
        Precision::F16 | Precision::Bf16 => Some(card.bf16),
        Precision::Fp8E4m3 => card.fp8,
    }
}

/// Every precision's published dense peak of a card, for [`crate::plan::PlanOptions`].
pub fn published_dense_peaks(device_name: &str) -> Vec<(Precision, f64)> {
    Precision::ALL
        .into_iter()
        .filter_map(|p| Some((p, published_dense_tflops(device_name, p)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvml_names_find_their_card_and_unknown_cards_have_no_peak() {
        let bf16 = |n: &str| published_dense_tflops(n, Precision::Bf16);
        assert_eq!(bf16("NVIDIA H100 80GB HBM3"), Some(989.4));
        assert_eq!(bf16("NVIDIA H100 PCIe"), Some(756.0));
        assert_eq!(bf16("NVIDIA H100 NVL"), Some(835.0));
        assert_eq!(bf16("NVIDIA H200"), Some(989.4));
        assert_eq!(bf16("NVIDIA A100-SXM4-80GB"), Some(312.0));
        assert_eq!(
            published_dense_tflops("NVIDIA A100-SXM4-80GB", Precision::Fp8E4m3),
            None
        );
        assert_eq!(bf16("NVIDIA GeForce RTX 4090"), None);
        assert_eq!(published_dense_peaks("NVIDIA H200").len(), 5);
    }
}
