//! NVML's throttle-reason bits as the kebab-case words records and reports use.
//! Core's throttle rule reads them: "thermal", "power-brake" and "hw-slowdown" mean
//! the clock was pulled down by heat or a brake; "sw-power-cap" is what a cap does.

/// Each nvmlClocksThrottleReason* bit (nvml.h) and its name.
pub const THROTTLE_REASON_BITS: [(u64, &str); 9] = [
    (0x1, "idle"),
    (0x2, "applications-clocks-setting"),
    (0x4, "sw-power-cap"),
    (0x8, "hw-slowdown"),
    (0x10, "sync-boost"),
    (0x20, "sw-thermal-slowdown"),
    (0x40, "hw-thermal-slowdown"),
    (0x80, "hw-power-brake-slowdown"),
    (0x100, "display-clock-setting"),
];

/// The name of one bit; `None` for a bit this version does not know.
pub fn throttle_reason_name(bit: u64) -> Option<&'static str> {
    THROTTLE_REASON_BITS
        .iter()
        .find(|(b, _)| *b == bit)
        .map(|(_, n)| *n)
}

/// Every set bit as a name, in bit order; unknown bits as "unknown-0x…" so a newer
/// driver's reason is shown rather than dropped.
pub fn decode_throttle_reasons(bits: u64) -> Vec<String> {
    (0..64)
        .map(|i| 1u64 << i)
        .filter(|b| bits & b != 0)
        .map(|b| match throttle_reason_name(b) {
            Some(n) => n.to_string(),
            None => format!("unknown-{b:#x}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::Telemetry;

    #[test]
    fn decodes_each_bit_and_keeps_unknown_ones() {
        assert!(decode_throttle_reasons(0).is_empty());
        assert_eq!(decode_throttle_reasons(0x1), ["idle"]);
        assert_eq!(
            decode_throttle_reasons(0x4 | 0x40 | 0x8),
            ["sw-power-cap", "hw-slowdown", "hw-thermal-slowdown"]
        );
        assert_eq!(
            decode_throttle_reasons(0x80 | 0x20 | 0x1000),
            [
                "sw-thermal-slowdown",
                "hw-power-brake-slowdown",
                "unknown-0x1000"
            ]
        );
    }

    #[test]
    fn a_power_cap_is_not_a_brake_but_heat_and_brakes_are() {
        let with = |bits| Telemetry {
            throttle_reasons: decode_throttle_reasons(bits),
            ..Default::default()
        };
        assert!(!with(0x4).has_brake_reason());
        assert!(!with(0x1 | 0x2 | 0x10 | 0x100).has_brake_reason());
        for brake in [0x8, 0x20, 0x40, 0x80] {
            assert!(with(brake).has_brake_reason(), "{brake:#x}");
        }
    }
}
