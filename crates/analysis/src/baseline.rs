//! What advice is measured against: the setting a user runs today. One spec, one
//! parser and one rule for both levels of advice — an op's settings (`recommend
//! --baseline`) and a training step's (`model --baseline`) — so the same words
//! mean the same baseline everywhere (docs/ARCHITECTURE.md §7).

use joulebench_core::{PowerCap, Precision};

/// The baseline, as named. Unset parts resolve among what was measured: the vendor
/// kernels where measured, bf16 where measured, the batch by [`BatchDefault`], the
/// default power limit; always the default clocks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BaselineSpec {
    /// Kernel names the setting must use (one for an op; for a step, each of its
    /// ops' kernels must be among them); `["vendor"]`: the vendor libraries'.
    pub kernels: Option<Vec<String>>,
    pub precision: Option<Precision>,
    /// An op's batch, or a step's micro-batch.
    pub batch: Option<u64>,
    pub cap: Option<PowerCap>,
}

/// Which batch an unnamed baseline batch resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchDefault {
    /// This batch where the baseline was measured at it, else the smallest (an op's
    /// batch usually follows the model, so compare like with like).
    Near(u64),
    /// The largest measured (a training step's micro-batch: what a run uses when it fits).
    Largest,
}

/// What a baseline is looked for among.
pub trait BaselineCandidate {
    fn precision(&self) -> Precision;
    fn batch(&self) -> u64;
    /// The cap the setting ran at; `None` for a "default" point whose GPU was not at
    /// its default limit (`cap-not-default`): never a default-limit baseline.
    fn cap(&self) -> Option<PowerCap>;
    fn kernel_names(&self) -> Vec<&str>;
    /// Every kernel of it is a vendor library's.
    fn all_vendor(&self) -> bool;
    fn at_default_clocks(&self) -> bool;
}

impl<B: BaselineCandidate + ?Sized> BaselineCandidate for Box<B> {
    fn precision(&self) -> Precision {
        (**self).precision()
    }
    fn batch(&self) -> u64 {
        (**self).batch()
    }
    fn cap(&self) -> Option<PowerCap> {
        (**self).cap()
    }
    fn kernel_names(&self) -> Vec<&str> {
        (**self).kernel_names()
    }
    fn all_vendor(&self) -> bool {
        (**self).all_vendor()
    }
    fn at_default_clocks(&self) -> bool {
        (**self).at_default_clocks()
    }
}

const KEYS: &str = "kernel (or kernels), precision, batch (or micro-batch), cap";

impl BaselineSpec {
    /// `kernel=cublas,precision=bf16,batch=4,cap=default`, any subset. Kernel names
    /// are joined by `+` (`kernels=cublas+cuda-flash`); `kernels=vendor` names the
    /// vendor libraries' kernels; `batch` and `micro-batch` are one key.
    pub fn parse(s: &str) -> Result<BaselineSpec, String> {
        let mut b = BaselineSpec::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("baseline '{part}' is not KEY=VALUE (keys: {KEYS})"))?;
            let value = value.trim();
            match key.trim() {
                "kernel" | "kernels" => {
                    let names: Vec<String> = value
                        .split('+')
                        .map(|k| k.trim().to_string())
                        .filter(|k| !k.is_empty())
                        .collect();
                    if names.is_empty() {
                        return Err(format!("baseline {key} '{value}' names no kernel"));
                    }
                    b.kernels = Some(names);
                }
                "precision" => {
                    b.precision = Some(value.parse().map_err(|e| format!("baseline: {e}"))?)
                }
                "batch" | "batch_size" | "micro-batch" | "micro_batch" => {
                    b.batch = Some(match value.parse::<u64>() {
                        Ok(v) if v > 0 => v,
                        _ => {
                            return Err(format!(
                                "baseline {key} '{value}' must be a whole number ≥ 1"
                            ))
                        }
                    })
                }
                "cap" | "power-cap" | "power_cap" => {
                    b.cap = Some(
                        PowerCap::parse_list(value)
                            .ok()
                            .filter(|c| c.len() == 1)
                            .map(|c| c[0])
                            .ok_or_else(|| {
                                format!(
                                "baseline cap '{value}' is not one power cap (default, 80%, 300W)"
                            )
                            })?,
                    )
                }
                other => return Err(format!("unknown baseline key '{other}': expected {KEYS}")),
            }
        }
        Ok(b)
    }

    pub fn is_default(&self) -> bool {
        *self == BaselineSpec::default()
    }

    fn vendor_named(&self) -> bool {
        matches!(&self.kernels, Some(k) if k.len() == 1 && k[0] == "vendor")
    }

    /// How tables and settings files name it; `batch_word` is "batch" or
    /// "micro-batch", `batch_default` how an unnamed one resolves.
    pub fn describe(&self, batch_word: &str, batch_default: BatchDefault) -> String {
        let kernels = match &self.kernels {
            _ if self.vendor_named() => "the vendor kernels".to_string(),
            Some(k) => k.join(" + "),
            None => "the vendor kernel(s) where measured (else the first measured)".into(),
        };
        let precision = self
            .precision
            .map(|p| p.to_string())
            .unwrap_or_else(|| "bf16 where measured (else the first)".into());
        let batch = match (self.batch, batch_default) {
            (Some(b), _) => format!("{batch_word} {b}"),
            (None, BatchDefault::Near(_)) => {
                format!("the chosen {batch_word} where measured (else the smallest)")
            }
            (None, BatchDefault::Largest) => format!("the largest {batch_word} measured"),
        };
        let cap = match self.cap {
            Some(c) if !c.is_default() => format!("power cap {c}"),
            _ => "the default power limit".into(),
        };
        format!("{kernels}, {precision}, {batch}, at {cap} and the default clocks")
    }

    /// The baseline among `among` (indices of `items`), or `None` where nothing
    /// measured matches what was named.
    pub fn find<C: BaselineCandidate>(
        &self,
        items: &[C],
        among: &[usize],
        batch_default: BatchDefault,
    ) -> Option<usize> {
        let cap = self.cap.unwrap_or(PowerCap::Default);
        let mut left: Vec<usize> = among
            .iter()
            .copied()
            .filter(|&i| items[i].at_default_clocks() && items[i].cap() == Some(cap))
            .collect();
        let keep = |left: &mut Vec<usize>, f: &dyn Fn(&C) -> bool| left.retain(|&i| f(&items[i]));
        let prefer = |left: &mut Vec<usize>, f: &dyn Fn(&C) -> bool| {
            if left.iter().any(|&i| f(&items[i])) {
                left.retain(|&i| f(&items[i]));
            }
        };
        match &self.kernels {
            _ if self.vendor_named() => keep(&mut left, &|c| c.all_vendor()),
            Some(names) => keep(&mut left, &|c| {
                let ks = c.kernel_names();
                ks.iter().all(|k| names.iter().any(|n| n == k))
            }),
            None => prefer(&mut left, &|c| c.all_vendor()),
        }
        match self.precision {
            Some(p) => keep(&mut left, &|c| c.precision() == p),
            None => prefer(&mut left, &|c| c.precision() == Precision::Bf16),
        }
        match (self.batch, batch_default) {
            (Some(b), _) => keep(&mut left, &|c| c.batch() == b),
            (None, BatchDefault::Near(b)) => {
                if left.iter().any(|&i| items[i].batch() == b) {
                    left.retain(|&i| items[i].batch() == b);
                } else if let Some(min) = left.iter().map(|&i| items[i].batch()).min() {
                    left.retain(|&i| items[i].batch() == min);
                }
            }
            (None, BatchDefault::Largest) => {
                if let Some(max) = left.iter().map(|&i| items[i].batch()).max() {
                    left.retain(|&i| items[i].batch() == max);
                }
            }
        }
        left.first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parser_reads_both_levels_keys() {
        let b =
            BaselineSpec::parse("precision=bf16,micro-batch=8,cap=80%,kernels=cublas+cuda-flash")
                .unwrap();
        assert_eq!(b.precision, Some(Precision::Bf16));
        assert_eq!(b.batch, Some(8));
        assert_eq!(b.cap, Some(PowerCap::PercentOfDefault(80.0)));
        assert_eq!(
            b.kernels,
            Some(vec!["cublas".to_string(), "cuda-flash".to_string()])
        );
        // the op level's words name the same fields
        let op = BaselineSpec::parse("kernel=cublas, precision=bf16, batch=8, cap=80%").unwrap();
        assert_eq!(op.kernels, Some(vec!["cublas".to_string()]));
        assert_eq!((op.batch, op.cap), (b.batch, b.cap));
        assert!(BaselineSpec::parse("size=2")
            .unwrap_err()
            .contains("unknown baseline key 'size'"));
        assert!(BaselineSpec::parse("micro-batch=0")
            .unwrap_err()
            .contains("≥ 1"));
        assert!(BaselineSpec::parse("bf16")
            .unwrap_err()
            .contains("KEY=VALUE"));
        assert!(BaselineSpec::parse("cap=lots").is_err());
        assert!(BaselineSpec::parse("").unwrap().is_default());
    }
}
