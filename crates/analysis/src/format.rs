//! One place for units and rounding, so the terminal, Markdown and CSV agree.

/// Round to `sig` significant digits, without exponent for everyday magnitudes.
pub fn sig(x: f64, sig: usize) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (sig as i32 - 1 - magnitude).max(0) as usize;
    if !(-4..=9).contains(&magnitude) {
        return format!("{:.*e}", sig.saturating_sub(1), x);
    }
    format!("{:.*}", decimals, x)
}

pub fn opt(x: Option<f64>, digits: usize) -> String {
    x.map(|v| sig(v, digits)).unwrap_or_else(|| "–".into())
}

/// A signed percentage: "+4.2%", "-15.1%".
pub fn pct(fraction: f64) -> String {
    if !fraction.is_finite() {
        return "–".into();
    }
    format!("{:+.1}%", fraction * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_significant_digits() {
        assert_eq!(sig(1234.567, 3), "1235");
        assert_eq!(sig(0.012345, 3), "0.0123");
        assert_eq!(sig(1.23456, 3), "1.23");
        assert_eq!(sig(f64::NAN, 3), "–");
        assert_eq!(pct(-0.1512), "-15.1%");
        assert_eq!(pct(0.042), "+4.2%");
    }
}
