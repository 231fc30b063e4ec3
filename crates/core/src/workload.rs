//! The operations joulebench measures (matmul, attention forward and attention
//! backward), their shapes, and the FLOP and minimum-byte counts of docs/ARCHITECTURE.md §2 —
//! checked, because a FLOP count that silently wraps would make every J/FLOP figure
//! wrong.

use crate::precision::Precision;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest single dimension accepted (2^24): anything larger is a typo, not a GPU workload.
pub const MAX_DIM: u64 = 1 << 24;
/// Largest tensor accepted, in elements (2^40, a few TB in any precision).
pub const MAX_TENSOR_ELEMENTS: u128 = 1 << 40;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    #[error("{op}: dimension {name} is 0; every dimension must be at least 1")]
    ZeroDimension {
        op: &'static str,
        name: &'static str,
    },
    #[error("{op}: dimension {name} = {value} exceeds the largest accepted dimension {max}")]
    DimensionTooLarge {
        op: &'static str,
        name: &'static str,
        value: u64,
        max: u64,
    },
    #[error("{op}: tensor {tensor} would hold {elements} elements, more than any GPU can hold (limit {limit})")]
    TensorTooLarge {
        op: &'static str,
        tensor: &'static str,
        elements: u128,
        limit: u128,
    },
    #[error("{op}: the FLOP count overflows a 64-bit integer; reduce the shape")]
    FlopOverflow { op: &'static str },
}

/// `C[b] = A[b] · B[b]` with A m×k and B k×n, row-major, `batch` independent products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MatmulShape {
    pub batch: u64,
    pub m: u64,
    pub n: u64,
    pub k: u64,
}

/// Attention forward over Q (batch × heads × seq_q × head_dim) and K, V
/// (batch × heads × seq_kv × head_dim); output shaped like Q.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttentionShape {
    pub batch: u64,
    pub heads: u64,
    pub seq_q: u64,
    pub seq_kv: u64,
    pub head_dim: u64,
    pub causal: bool,
}

impl AttentionShape {
    /// Keys query `query` sees. Without a mask, all of them; causal masks are
    /// bottom-right aligned (as FlashAttention's): query i sees keys
    /// j ≤ i + (seq_kv − seq_q), and none when that is negative.
    pub fn visible_keys(&self, query: u64) -> u64 {
        if self.causal {
            (query + self.seq_kv + 1)
                .saturating_sub(self.seq_q)
                .min(self.seq_kv)
        } else {
            self.seq_kv
        }
    }

    /// (query, key) pairs the mask lets through in one (batch, head), counted exactly.
    pub fn visible_pairs(&self) -> u128 {
        let (sq, skv) = (self.seq_q as u128, self.seq_kv as u128);
        if !self.causal {
            sq * skv
        } else if skv >= sq {
            // query i sees i + (skv − sq) + 1 keys
            sq * (skv - sq + 1) + sq * (sq - 1) / 2
        } else {
            // the first sq − skv queries see nothing, the rest 1, 2, …, skv keys
            skv * (skv + 1) / 2
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Matmul,
    Attention,
    /// The gradients of attention (dQ, dK, dV) from Q, K, V and dO: a training
    /// step's backward pass through the attention core.
    #[serde(rename = "attention-backward")]
    AttentionBackward,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Matmul => "matmul",
            Op::Attention => "attention",
            Op::AttentionBackward => "attention-backward",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Op {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "matmul" | "gemm" => Ok(Op::Matmul),
            "attention" | "attn" => Ok(Op::Attention),
            "attention-backward" | "attention-bwd" | "attn-bwd" => Ok(Op::AttentionBackward),
            other => Err(format!(
                "unknown op '{other}': expected matmul, attention or attention-backward"
            )),
        }
    }
}

/// One operation at one shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Workload {
    Matmul(MatmulShape),
    Attention(AttentionShape),
    /// Attention backward over the forward pass of the same shape: reads Q, K, V and
    /// dO, writes dQ, dK and dV (see [`crate::reference`] for the layout).
    #[serde(rename = "attention-backward")]
    AttentionBackward(AttentionShape),
}

fn check_dim(op: &'static str, name: &'static str, value: u64) -> Result<(), WorkloadError> {
    if value == 0 {
        return Err(WorkloadError::ZeroDimension { op, name });
    }
    if value > MAX_DIM {
        return Err(WorkloadError::DimensionTooLarge {
            op,
            name,
            value,
            max: MAX_DIM,
        });
    }
    Ok(())
}

fn check_tensor(
    op: &'static str,
    tensor: &'static str,
    dims: &[u64],
) -> Result<u128, WorkloadError> {
    let elements = dims
        .iter()
        .fold(1u128, |acc, &d| acc.saturating_mul(d as u128));
    if elements > MAX_TENSOR_ELEMENTS {
        return Err(WorkloadError::TensorTooLarge {
            op,
            tensor,
            elements,
            limit: MAX_TENSOR_ELEMENTS,
        });
    }
    Ok(elements)
}

impl Workload {
    pub fn op(&self) -> Op {
        match self {
            Workload::Matmul(_) => Op::Matmul,
            Workload::Attention(_) => Op::Attention,
            Workload::AttentionBackward(_) => Op::AttentionBackward,
        }
    }

    pub fn batch(&self) -> u64 {
        match self {
            Workload::Matmul(s) => s.batch,
            Workload::Attention(s) | Workload::AttentionBackward(s) => s.batch,
        }
    }

    /// The attention shape of an attention op, forward or backward.
    pub fn attention_shape(&self) -> Option<&AttentionShape> {
        match self {
            Workload::Matmul(_) => None,
            Workload::Attention(s) | Workload::AttentionBackward(s) => Some(s),
        }
    }

    /// The same workload with another batch size (the sweep's batch axis).
    pub fn with_batch(&self, batch: u64) -> Workload {
        match *self {
            Workload::Matmul(s) => Workload::Matmul(MatmulShape { batch, ..s }),
            Workload::Attention(s) => Workload::Attention(AttentionShape { batch, ..s }),
            Workload::AttentionBackward(s) => {
                Workload::AttentionBackward(AttentionShape { batch, ..s })
            }
        }
    }

    /// Reject zero, absurd and overflowing shapes with a message that names the culprit.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        match self {
            Workload::Matmul(s) => {
                let op = "matmul";
                for (name, v) in [("batch", s.batch), ("m", s.m), ("n", s.n), ("k", s.k)] {
                    check_dim(op, name, v)?;
                }
                check_tensor(op, "A", &[s.batch, s.m, s.k])?;
                check_tensor(op, "B", &[s.batch, s.k, s.n])?;
                check_tensor(op, "C", &[s.batch, s.m, s.n])?;
            }
            Workload::Attention(s) | Workload::AttentionBackward(s) => {
                let op = self.op().name();
                for (name, v) in [
                    ("batch", s.batch),
                    ("heads", s.heads),
                    ("seq_q", s.seq_q),
                    ("seq_kv", s.seq_kv),
                    ("head_dim", s.head_dim),
                ] {
                    check_dim(op, name, v)?;
                }
                check_tensor(op, "Q", &[s.batch, s.heads, s.seq_q, s.head_dim])?;
                check_tensor(op, "K", &[s.batch, s.heads, s.seq_kv, s.head_dim])?;
            }
        }
        self.flop().map(|_| ())
    }

    /// FLOP by the conventions of docs/ARCHITECTURE.md §2: 2·b·m·n·k for matmul;
    /// 4·b·h·d per visible (query, key) pair for attention (softmax not counted):
    /// 4·b·h·s_q·s_kv·d without a mask, and for a causal mask the pairs it lets
    /// through, counted exactly (about half for square shapes, far fewer when
    /// seq_kv is much shorter than seq_q).
    ///
    /// Attention backward by FlashAttention-2's convention, 2.5× the forward:
    /// 10·b·h·d per visible pair, five matmuls of 2·d each — the scores recomputed
    /// (S = Q·Kᵀ), dV = Pᵀ·dO, dP = dO·Vᵀ, dQ = dS·K and dK = dSᵀ·Q — with the
    /// softmax backward not counted.
    pub fn flop(&self) -> Result<u64, WorkloadError> {
        let per_pair = |s: &AttentionShape, flop_per_pair_and_dim: u128| {
            flop_per_pair_and_dim
                * s.batch as u128
                * s.heads as u128
                * s.head_dim as u128
                * s.visible_pairs()
        };
        let flop = match self {
            Workload::Matmul(s) => {
                2u128 * s.batch as u128 * s.m as u128 * s.n as u128 * s.k as u128
            }
            Workload::Attention(s) => per_pair(s, 4),
            Workload::AttentionBackward(s) => per_pair(s, 10),
        };
        u64::try_from(flop).map_err(|_| WorkloadError::FlopOverflow {
            op: self.op().name(),
        })
    }

    /// The minimum bytes moved: each input read once, each output written once.
    pub fn min_bytes(&self, precision: Precision) -> u64 {
        let inp = precision.input_bytes() as u128;
        let out = precision.output_bytes() as u128;
        let bytes = match self {
            Workload::Matmul(s) => {
                let (b, m, n, k) = (s.batch as u128, s.m as u128, s.n as u128, s.k as u128);
                inp * b * (m * k + k * n) + out * b * m * n
            }
            Workload::Attention(s) => {
                let bh = s.batch as u128 * s.heads as u128;
                let d = s.head_dim as u128;
                inp * bh * d * (s.seq_q as u128 + 2 * s.seq_kv as u128)
                    + out * bh * d * s.seq_q as u128
            }
            // reads Q, dO (seq_q rows) and K, V (seq_kv rows); writes dQ, dK, dV
            Workload::AttentionBackward(s) => {
                let bh = s.batch as u128 * s.heads as u128;
                let d = s.head_dim as u128;
                let (sq, skv) = (s.seq_q as u128, s.seq_kv as u128);
                inp * bh * d * (2 * sq + 2 * skv) + out * bh * d * (sq + 2 * skv)
            }
        };
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    /// Number of output elements (used by correctness checks).
    pub fn output_len(&self) -> usize {
        match self {
            Workload::Matmul(s) => (s.batch * s.m * s.n) as usize,
            Workload::Attention(s) => (s.batch * s.heads * s.seq_q * s.head_dim) as usize,
            Workload::AttentionBackward(s) => {
                (s.batch * s.heads * (s.seq_q + 2 * s.seq_kv) * s.head_dim) as usize
            }
        }
    }

    /// A compact, path-safe label with the batch, for bench ids and file names:
    /// "4096x4096x4096", "2x64x64x64", "b1h16q2048kv2048d128-causal", and
    /// "bwd-b1h16q2048kv2048d128-causal" for attention backward.
    pub fn compact_label(&self) -> String {
        let attention = |s: &AttentionShape| {
            format!(
                "b{}h{}q{}kv{}d{}{}",
                s.batch,
                s.heads,
                s.seq_q,
                s.seq_kv,
                s.head_dim,
                if s.causal { "-causal" } else { "" }
            )
        };
        match self {
            Workload::Matmul(s) if s.batch == 1 => format!("{}x{}x{}", s.m, s.n, s.k),
            Workload::Matmul(s) => format!("{}x{}x{}x{}", s.batch, s.m, s.n, s.k),
            Workload::Attention(s) => attention(s),
            Workload::AttentionBackward(s) => format!("bwd-{}", attention(s)),
        }
    }

    /// The shape without its batch: what a recommendation groups settings by.
    pub fn shape_label(&self) -> String {
        match self {
            Workload::Matmul(s) => format!("matmul {}x{}x{}", s.m, s.n, s.k),
            Workload::Attention(s) | Workload::AttentionBackward(s) => format!(
                "{} h{} q{} kv{} d{}{}",
                self.op(),
                s.heads,
                s.seq_q,
                s.seq_kv,
                s.head_dim,
                if s.causal { " causal" } else { "" }
            ),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} b{}", self.shape_label(), self.batch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mm(batch: u64, m: u64, n: u64, k: u64) -> Workload {
        Workload::Matmul(MatmulShape { batch, m, n, k })
    }

    fn attn(causal: bool) -> Workload {
        Workload::Attention(AttentionShape {
            batch: 2,
            heads: 8,
            seq_q: 1024,
            seq_kv: 2048,
            head_dim: 64,
            causal,
        })
    }

    #[test]
    fn matmul_flop_and_bytes() {
        let w = mm(3, 128, 256, 64);
        assert_eq!(w.flop().unwrap(), 2 * 3 * 128 * 256 * 64);
        // f16: A and B at 2 bytes, C at 2 bytes.
        assert_eq!(
            w.min_bytes(Precision::F16),
            2 * 3 * (128 * 64 + 64 * 256) + 2 * 3 * 128 * 256
        );
        // fp8 reads 1-byte inputs and writes bf16.
        assert_eq!(
            w.min_bytes(Precision::Fp8E4m3),
            3 * (128 * 64 + 64 * 256) + 2 * 3 * 128 * 256
        );
    }

    fn causal(seq_q: u64, seq_kv: u64) -> AttentionShape {
        AttentionShape {
            batch: 1,
            heads: 1,
            seq_q,
            seq_kv,
            head_dim: 64,
            causal: true,
        }
    }

    /// Visible pairs by brute force, query by query.
    fn brute_pairs(s: &AttentionShape) -> u128 {
        (0..s.seq_q).map(|i| s.visible_keys(i) as u128).sum()
    }

    #[test]
    fn causal_pairs_are_counted_exactly_for_every_shape() {
        for (sq, skv) in [
            (1, 1),
            (4, 4),
            (4, 9),
            (9, 4),
            (1, 4096),
            (4096, 1),
            (4096, 64),
            (37, 50),
        ] {
            let s = causal(sq, skv);
            assert_eq!(s.visible_pairs(), brute_pairs(&s), "q{sq} kv{skv}");
        }
        // square: n(n+1)/2 pairs, just over half
        assert_eq!(causal(4, 4).visible_pairs(), 10);
        // kv much shorter than q: most queries see nothing (bottom-right aligned)
        assert_eq!(causal(4096, 64).visible_pairs(), 64 * 65 / 2);
        let w = Workload::Attention(causal(4096, 64));
        assert_eq!(w.flop().unwrap(), 4 * 64 * 65 / 2 * 64);
        // "half of the full product" would be 63× too large here
        assert!(4 * 4096 * 64 * 64 / 2 > 63 * w.flop().unwrap());
    }

    #[test]
    fn attention_flop_counts_visible_pairs() {
        let full = attn(false).flop().unwrap();
        assert_eq!(full, 4 * 2 * 8 * 1024 * 2048 * 64);
        // q1024 kv2048 causal: query i sees i + 1025 keys
        let pairs: u64 = (0..1024).map(|i| i + 1025).sum();
        assert_eq!(attn(true).flop().unwrap(), 4 * 2 * 8 * 64 * pairs);
        assert_eq!(
            attn(false).min_bytes(Precision::F32),
            4 * 2 * 8 * 64 * (1024 + 2 * 2048) + 4 * 2 * 8 * 64 * 1024
        );
    }

    #[test]
    fn zero_dimension_is_named() {
        let err = mm(1, 128, 0, 64).validate().unwrap_err();
        assert_eq!(
            err,
            WorkloadError::ZeroDimension {
                op: "matmul",
                name: "n"
            }
        );
        assert!(err.to_string().contains("dimension n is 0"));
    }

    #[test]
    fn absurd_dimension_and_tensor_are_rejected() {
        assert!(matches!(
            mm(1, MAX_DIM + 1, 1, 1).validate(),
            Err(WorkloadError::DimensionTooLarge { name: "m", .. })
        ));
        assert!(matches!(
            mm(1, MAX_DIM, MAX_DIM, 1).validate(),
            Err(WorkloadError::TensorTooLarge { tensor: "C", .. })
        ));
    }

    #[test]
    fn flop_overflow_is_an_error_not_a_wrap() {
        // Every tensor is within limits, but 4·b·h·s_q·s_kv·d exceeds u64.
        let w = Workload::Attention(AttentionShape {
            batch: 1 << 8,
            heads: 1 << 8,
            seq_q: MAX_DIM,
            seq_kv: MAX_DIM,
            head_dim: 1,
            causal: false,
        });
        assert_eq!(
            w.validate(),
            Err(WorkloadError::FlopOverflow { op: "attention" })
        );
        let w = mm(1, 1 << 22, 1 << 22, 1 << 22);
        assert_eq!(w.flop(), Err(WorkloadError::FlopOverflow { op: "matmul" }));
    }

    #[test]
    fn attention_backward_is_five_matmuls_per_visible_pair() {
        for causal in [false, true] {
            let Workload::Attention(s) = attn(causal) else {
                unreachable!()
            };
            let bwd = Workload::AttentionBackward(s);
            // FlashAttention-2's convention: backward = 2.5 × forward
            assert_eq!(2 * bwd.flop().unwrap(), 5 * attn(causal).flop().unwrap());
            assert_eq!(bwd.op(), Op::AttentionBackward);
            assert_eq!(bwd.with_batch(7).batch(), 7);
        }
        let Workload::Attention(s) = attn(false) else {
            unreachable!()
        };
        let bwd = Workload::AttentionBackward(s);
        // dQ (seq_q rows), dK and dV (seq_kv rows each)
        assert_eq!(bwd.output_len(), 2 * 8 * (1024 + 2 * 2048) * 64);
        // f16: Q, K, V, dO read, dQ, dK, dV written, 2 bytes each
        assert_eq!(
            bwd.min_bytes(Precision::F16),
            2 * 2 * 8 * 64 * (2 * 1024 + 2 * 2048) + 2 * 2 * 8 * 64 * (1024 + 2 * 2048)
        );
        assert_eq!(bwd.shape_label(), "attention-backward h8 q1024 kv2048 d64");
        assert_eq!(bwd.compact_label(), "bwd-b2h8q1024kv2048d64");
        let json = serde_json::to_string(&bwd).unwrap();
        assert!(json.contains("\"op\":\"attention-backward\""), "{json}");
        assert_eq!(serde_json::from_str::<Workload>(&json).unwrap(), bwd);
        assert_eq!("attn-bwd".parse::<Op>(), Ok(Op::AttentionBackward));
        let zero = Workload::AttentionBackward(AttentionShape { head_dim: 0, ..s });
        assert_eq!(
            zero.validate(),
            Err(WorkloadError::ZeroDimension {
                op: "attention-backward",
                name: "head_dim"
            })
        );
    }

    #[test]
    fn with_batch_changes_only_batch() {
        let w = attn(true).with_batch(16);
        assert_eq!(w.batch(), 16);
        assert_eq!(w.shape_label(), attn(true).shape_label());
    }
}
