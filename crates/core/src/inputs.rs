//! How a point's input tensors are drawn. A GPU's power depends on the values it
//! multiplies (tensor cores draw far less on zeros than on random data), so the
//! distribution is a measured factor: a sweep axis (`inputs`), and a field of every
//! record (docs/ARCHITECTURE.md §3).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The distribution every input tensor of a point is drawn from, seeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputDistribution {
    /// N(0, 1) per element: what a normalised activation (the output of a LayerNorm or
    /// RMSNorm) and a per-tensor-scaled FP8 tensor look like. The default, and what
    /// every record without an `inputs` field used.
    #[default]
    Normal,
    /// Uniform on ±√3 (the same variance as `normal`), so only the shape differs.
    Uniform,
    /// Every element zero: a best case no training tensor reaches.
    Zeros,
    /// `normal`, with this percentage of the elements set to zero, each at random
    /// (`sparse` alone: 50%, as after a ReLU).
    Sparse { zero_percent: u8 },
}

/// The zero share of `sparse` without a percentage.
pub const DEFAULT_SPARSE_PERCENT: u8 = 50;

impl InputDistribution {
    /// Every distribution the sweep axis offers, `sparse` at its default share.
    pub const ALL: [InputDistribution; 4] = [
        InputDistribution::Normal,
        InputDistribution::Uniform,
        InputDistribution::Zeros,
        InputDistribution::Sparse {
            zero_percent: DEFAULT_SPARSE_PERCENT,
        },
    ];

    /// What the distribution is, for reports and help.
    pub fn meaning(self) -> String {
        match self {
            InputDistribution::Normal => {
                "N(0, 1) per element, as normalised activations and scaled FP8 tensors".into()
            }
            InputDistribution::Uniform => "uniform on ±√3 (the variance of N(0, 1))".into(),
            InputDistribution::Zeros => "every element zero".into(),
            InputDistribution::Sparse { zero_percent } => {
                format!("N(0, 1) with {zero_percent}% of the elements zero")
            }
        }
    }

    /// The share of the products a multiply sees with both operands non-zero, when
    /// both operands are drawn from this distribution.
    pub fn nonzero_product_fraction(self) -> f64 {
        match self {
            InputDistribution::Normal | InputDistribution::Uniform => 1.0,
            InputDistribution::Zeros => 0.0,
            InputDistribution::Sparse { zero_percent } => {
                let kept = 1.0 - f64::from(zero_percent) / 100.0;
                kept * kept
            }
        }
    }

    pub fn is_default(self) -> bool {
        self == InputDistribution::Normal
    }

    /// Parse a comma-separated list (`normal,zeros,sparse:90%`).
    pub fn parse_list(s: &str) -> Result<Vec<InputDistribution>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::parse)
            .collect()
    }
}

/// What a point key adds for a non-default distribution, so `--resume` tells a
/// point on zeros from the same point on normal inputs ("" for `normal`, keeping the
/// keys of older records).
pub fn inputs_key(inputs: InputDistribution) -> String {
    if inputs.is_default() {
        String::new()
    } else {
        format!("|inputs={inputs}")
    }
}

impl fmt::Display for InputDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputDistribution::Normal => f.write_str("normal"),
            InputDistribution::Uniform => f.write_str("uniform"),
            InputDistribution::Zeros => f.write_str("zeros"),
            InputDistribution::Sparse { zero_percent } => write!(f, "sparse:{zero_percent}%"),
        }
    }
}

impl FromStr for InputDistribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let expected = "expected normal, uniform, zeros or sparse[:P%] (P from 1 to 99)";
        match s {
            "normal" => return Ok(InputDistribution::Normal),
            "uniform" => return Ok(InputDistribution::Uniform),
            "zeros" => return Ok(InputDistribution::Zeros),
            "sparse" => {
                return Ok(InputDistribution::Sparse {
                    zero_percent: DEFAULT_SPARSE_PERCENT,
                })
            }
            _ => {}
        }
        let Some(share) = s.strip_prefix("sparse:") else {
            return Err(format!("unknown input distribution '{s}': {expected}"));
        };
        match share.trim_end_matches('%').trim().parse::<u8>() {
            Ok(p) if (1..=99).contains(&p) => Ok(InputDistribution::Sparse { zero_percent: p }),
            _ => Err(format!(
                "sparse share '{share}' must be a whole percentage from 1 to 99: {expected}"
            )),
        }
    }
}

impl Serialize for InputDistribution {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InputDistribution {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_both_ways() {
        for d in InputDistribution::ALL
            .into_iter()
            .chain([InputDistribution::Sparse { zero_percent: 90 }])
        {
            assert_eq!(d.to_string().parse::<InputDistribution>(), Ok(d));
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<InputDistribution>(&json).unwrap(), d);
        }
        assert_eq!(
            InputDistribution::parse_list("normal, zeros,sparse:90").unwrap(),
            vec![
                InputDistribution::Normal,
                InputDistribution::Zeros,
                InputDistribution::Sparse { zero_percent: 90 }
            ]
        );
        for bad in ["gaussian", "sparse:0%", "sparse:100", "sparse:x"] {
            let e = bad.parse::<InputDistribution>().unwrap_err();
            assert!(e.contains("normal, uniform, zeros or sparse"), "{bad}: {e}");
        }
    }

    #[test]
    fn keys_change_only_off_the_default() {
        assert_eq!(inputs_key(InputDistribution::Normal), "");
        assert_eq!(inputs_key(InputDistribution::Zeros), "|inputs=zeros");
        assert_eq!(
            InputDistribution::Sparse { zero_percent: 50 }.nonzero_product_fraction(),
            0.25
        );
    }
}
