//! amdgpu's ASIC-independent throttle bits (`indep_throttle_status` of gpu_metrics,
//! SMU_THROTTLER_*_BIT in the kernel's amdgpu_smu.h) as the kebab-case words records
//! use. Power-limit bits read as "sw-power-cap", as NVML's, so that core tells a card
//! at its cap from one slowed by heat ("thermal…") or current ("hw-slowdown…").

/// Each bit and its name.
pub const INDEP_THROTTLE_BITS: [(u32, &str); 34] = [
    (0, "sw-power-cap"), // PPT0
    (1, "sw-power-cap"), // PPT1
    (2, "sw-power-cap"), // PPT2
    (3, "sw-power-cap"), // PPT3
    (4, "sw-power-cap"), // SPL
    (5, "sw-power-cap"), // FPPT
    (6, "sw-power-cap"), // SPPT
    (7, "sw-power-cap"), // SPPT_APU
    (16, "hw-slowdown-tdc-gfx"),
    (17, "hw-slowdown-tdc-soc"),
    (18, "hw-slowdown-tdc-mem"),
    (19, "hw-slowdown-tdc-vdd"),
    (20, "hw-slowdown-tdc-cvip"),
    (21, "hw-slowdown-edc-cpu"),
    (22, "hw-slowdown-edc-gfx"),
    (23, "hw-slowdown-apcc"),
    (32, "thermal-gpu"),
    (33, "thermal-core"),
    (34, "thermal-mem"),
    (35, "thermal-edge"),
    (36, "thermal-hotspot"),
    (37, "thermal-soc"),
    (38, "thermal-vr-gfx"),
    (39, "thermal-vr-soc"),
    (40, "thermal-vr-mem0"),
    (41, "thermal-vr-mem1"),
    (42, "thermal-liquid0"),
    (43, "thermal-liquid1"),
    (44, "hw-slowdown-vrhot0"),
    (45, "hw-slowdown-vrhot1"),
    (46, "hw-slowdown-prochot-cpu"),
    (47, "hw-slowdown-prochot-gfx"),
    (56, "ppm"),
    (57, "fit"),
];

/// Every set bit as a name, each name once, in bit order; unknown bits as
/// "unknown-amd-bit-N".
pub fn decode_indep_throttle_status(bits: u64) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for i in 0..64u32 {
        if bits & (1u64 << i) == 0 {
            continue;
        }
        let name = INDEP_THROTTLE_BITS
            .iter()
            .find(|(b, _)| *b == i)
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| format!("unknown-amd-bit-{i}"));
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::Telemetry;

    #[test]
    fn power_bits_mean_power_limited_and_heat_means_throttled() {
        assert_eq!(decode_indep_throttle_status(0b11), ["sw-power-cap"]);
        let t = |bits| Telemetry {
            throttle_reasons: decode_indep_throttle_status(bits),
            ..Default::default()
        };
        assert!(!t(1).has_brake_reason());
        assert!(t(1 << 36).has_brake_reason());
        assert!(t(1 << 16).has_brake_reason());
        assert_eq!(
            decode_indep_throttle_status(1 << 60),
            ["unknown-amd-bit-60"]
        );
    }
}
