//! Seeded inputs and f64 CPU reference implementations that every backend's
//! correctness check uses (docs/ARCHITECTURE.md §3).
//!
//! Layout contract for every backend, all row-major:
//! - matmul: A is `[batch][m][k]`, B is `[batch][k][n]`, C is `[batch][m][n]`.
//! - attention: Q and O are `[batch][heads][seq_q][head_dim]`, K and V are
//!   `[batch][heads][seq_kv][head_dim]`; scores are scaled by 1/√head_dim; with
//!   `causal`, query i sees keys j ≤ i + (seq_kv − seq_q) (bottom-right aligned,
//!   as FlashAttention-2 does).
//! - attention backward: inputs Q, K, V as attention's and dO shaped like O; the
//!   output is dQ `[batch][heads][seq_q][head_dim]`, then dK and dV
//!   `[batch][heads][seq_kv][head_dim]` each, one after the other in one buffer.

use crate::inputs::InputDistribution;
use crate::precision::Precision;
use crate::workload::{AttentionShape, MatmulShape, Workload};
use rayon::prelude::*;

/// SplitMix64's finaliser: a fast, well-mixed hash of a 64-bit counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Element `index` of the standard normal stream `seed`: a counter-based generator
/// (a hash of seed and index, then Box–Muller), so any element is computed on its
/// own and a large tensor is filled in parallel, the same on every machine.
pub fn normal_at(seed: u64, index: u64) -> f32 {
    let h = mix(seed ^ mix(index));
    // two uniforms in (0, 1]: 32 bits each, never 0 (log(0) is -inf)
    let u1 = ((h >> 32) as f64 + 1.0) / 4_294_967_296.0;
    let u2 = ((h & 0xffff_ffff) as f64) / 4_294_967_296.0;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Element `index` of the uniform stream `seed`, on [−1, 1).
fn uniform_at(seed: u64, index: u64) -> f64 {
    let h = mix(seed ^ mix(index ^ 0x5bd1_e995));
    (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Element `index` of stream `seed` drawn from `dist`.
pub fn input_at(dist: InputDistribution, seed: u64, index: u64) -> f32 {
    match dist {
        InputDistribution::Normal => normal_at(seed, index),
        InputDistribution::Uniform => (3f64.sqrt() * uniform_at(seed, index)) as f32,
        InputDistribution::Zeros => 0.0,
        InputDistribution::Sparse { zero_percent } => {
            // an independent stream decides which elements are zero
            let zero =
                (uniform_at(seed ^ 0x2545_f491, index) + 1.0) * 50.0 < f64::from(zero_percent);
            if zero {
                0.0
            } else {
                normal_at(seed, index)
            }
        }
    }
}

/// Random normal values, rounded to `precision`, reproducible from `seed`, filled
/// in parallel. GEMM power depends on the values (docs/ARCHITECTURE.md §3): the default inputs.
pub fn random_normal(len: usize, precision: Precision, seed: u64) -> Vec<f32> {
    random_inputs(len, precision, seed, InputDistribution::Normal)
}

/// Values drawn from `dist`, rounded to `precision`, reproducible from `seed`,
/// filled in parallel.
pub fn random_inputs(
    len: usize,
    precision: Precision,
    seed: u64,
    dist: InputDistribution,
) -> Vec<f32> {
    let mut out = vec![0f32; len];
    const CHUNK: usize = 1 << 16;
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let base = (c * CHUNK) as u64;
            for (i, x) in chunk.iter_mut().enumerate() {
                *x = precision.round(input_at(dist, seed, base + i as u64));
            }
        });
    out
}

/// The inputs of one correctness check, already rounded to the kernel's precision.
#[derive(Clone, Debug)]
pub enum CheckInputs {
    Matmul {
        a: Vec<f32>,
        b: Vec<f32>,
    },
    Attention {
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
    },
    AttentionBackward {
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        /// The gradient of the loss with respect to attention's output.
        d_o: Vec<f32>,
    },
}

impl CheckInputs {
    /// Fresh random normal inputs for `workload`; each tensor gets its own stream
    /// derived from `seed`.
    pub fn generate(workload: &Workload, precision: Precision, seed: u64) -> Self {
        CheckInputs::generate_with(workload, precision, seed, InputDistribution::Normal)
    }

    /// Fresh inputs for `workload` drawn from `dist`; each tensor gets its own stream
    /// derived from `seed`.
    pub fn generate_with(
        workload: &Workload,
        precision: Precision,
        seed: u64,
        dist: InputDistribution,
    ) -> Self {
        let draw = |len: u64, seed: u64| random_inputs(len as usize, precision, seed, dist);
        match workload {
            Workload::Matmul(s) => CheckInputs::Matmul {
                a: draw(s.batch * s.m * s.k, seed),
                b: draw(s.batch * s.k * s.n, seed ^ 0x9e37_79b9),
            },
            Workload::Attention(s) => {
                let q_len = s.batch * s.heads * s.seq_q * s.head_dim;
                let kv_len = s.batch * s.heads * s.seq_kv * s.head_dim;
                CheckInputs::Attention {
                    q: draw(q_len, seed),
                    k: draw(kv_len, seed ^ 0x9e37_79b9),
                    v: draw(kv_len, seed ^ 0x7f4a_7c15),
                }
            }
            Workload::AttentionBackward(s) => {
                let q_len = s.batch * s.heads * s.seq_q * s.head_dim;
                let CheckInputs::Attention { q, k, v } =
                    CheckInputs::generate_with(&Workload::Attention(*s), precision, seed, dist)
                else {
                    unreachable!("attention inputs are generated as attention inputs")
                };
                CheckInputs::AttentionBackward {
                    q,
                    k,
                    v,
                    d_o: draw(q_len, seed ^ 0x3c6e_f372),
                }
            }
        }
    }

    /// The tensors in the order a backend binds them: A, B; Q, K, V; Q, K, V, dO.
    pub fn tensors(&self) -> Vec<&[f32]> {
        match self {
            CheckInputs::Matmul { a, b } => vec![a, b],
            CheckInputs::Attention { q, k, v } => vec![q, k, v],
            CheckInputs::AttentionBackward { q, k, v, d_o } => vec![q, k, v, d_o],
        }
    }
}

/// One element of C = A·B in f64.
pub fn matmul_element(s: &MatmulShape, a: &[f32], b: &[f32], index: usize) -> f64 {
    let (m, n, k) = (s.m as usize, s.n as usize, s.k as usize);
    let batch = index / (m * n);
    let row = (index / n) % m;
    let col = index % n;
    let a_off = batch * m * k + row * k;
    let b_off = batch * k * n + col;
    (0..k)
        .map(|p| a[a_off + p] as f64 * b[b_off + p * n] as f64)
        .sum()
}

/// One output row of attention (all head_dim values of one query) in f64.
pub fn attention_row(s: &AttentionShape, q: &[f32], k: &[f32], v: &[f32], row: usize) -> Vec<f64> {
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let bh = row / sq;
    let i = row % sq;
    let q_row = &q[row * d..(row + 1) * d];
    let kv_base = bh * skv * d;
    let visible = s.visible_keys(i as u64) as usize;
    let scale = 1.0 / (d as f64).sqrt();
    let scores: Vec<f64> = (0..visible)
        .map(|j| {
            let k_row = &k[kv_base + j * d..kv_base + (j + 1) * d];
            q_row
                .iter()
                .zip(k_row)
                .map(|(&x, &y)| x as f64 * y as f64)
                .sum::<f64>()
                * scale
        })
        .collect();
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut out = vec![0.0f64; d];
    for (j, w) in weights.iter().enumerate() {
        let v_row = &v[kv_base + j * d..kv_base + (j + 1) * d];
        for (o, &x) in out.iter_mut().zip(v_row) {
            *o += w * x as f64;
        }
    }
    if total > 0.0 {
        out.iter_mut().for_each(|o| *o /= total);
    }
    out
}

/// The softmax probabilities of one query row (as [`attention_row`] weighs V), in
/// f64: `visible` values, scaled by 1/√head_dim and max-subtracted.
fn probabilities(s: &AttentionShape, q: &[f32], k: &[f32], row: usize) -> Vec<f64> {
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let (bh, i) = (row / sq, row % sq);
    let q_row = &q[row * d..(row + 1) * d];
    let kv_base = bh * skv * d;
    let scale = 1.0 / (d as f64).sqrt();
    let scores: Vec<f64> = (0..s.visible_keys(i as u64) as usize)
        .map(|j| dot(q_row, &k[kv_base + j * d..kv_base + (j + 1) * d]) * scale)
        .collect();
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// dS of one query row: P ∘ (dP − D) / √head_dim with dP_j = dO·V_j and
/// D = Σ_j P_j·dP_j, over the keys the row sees; and P itself.
fn score_gradient_row(
    s: &AttentionShape,
    (q, k, v, d_o): (&[f32], &[f32], &[f32], &[f32]),
    row: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let kv_base = (row / sq) * skv * d;
    let p = probabilities(s, q, k, row);
    let do_row = &d_o[row * d..(row + 1) * d];
    let dp: Vec<f64> = (0..p.len())
        .map(|j| dot(do_row, &v[kv_base + j * d..kv_base + (j + 1) * d]))
        .collect();
    let delta: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
    let scale = 1.0 / (d as f64).sqrt();
    let ds = p
        .iter()
        .zip(&dp)
        .map(|(p, dp)| p * (dp - delta) * scale)
        .collect();
    (ds, p)
}

/// One row of dQ (all head_dim values of one query) in f64: Σ_j dS_j·K_j.
pub fn attention_backward_dq_row(
    s: &AttentionShape,
    tensors: (&[f32], &[f32], &[f32], &[f32]),
    row: usize,
) -> Vec<f64> {
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let kv_base = (row / sq) * skv * d;
    let (ds, _) = score_gradient_row(s, tensors, row);
    let k = tensors.1;
    let mut out = vec![0.0f64; d];
    for (j, g) in ds.iter().enumerate() {
        for (o, &x) in out
            .iter_mut()
            .zip(&k[kv_base + j * d..kv_base + (j + 1) * d])
        {
            *o += g * x as f64;
        }
    }
    out
}

/// dK and dV of one (batch, head) in f64, `[seq_kv][head_dim]` each: every query
/// row contributes dSᵀ·Q and Pᵀ·dO. Costs seq_q·seq_kv·head_dim per block, so a
/// check samples these from one block only (see [`crate::verify`]).
pub fn attention_backward_dkdv_block(
    s: &AttentionShape,
    tensors: (&[f32], &[f32], &[f32], &[f32]),
    bh: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let (q, _, _, d_o) = tensors;
    let (mut dk, mut dv) = (vec![0.0f64; skv * d], vec![0.0f64; skv * d]);
    for i in 0..sq {
        let row = bh * sq + i;
        let (ds, p) = score_gradient_row(s, tensors, row);
        let q_row = &q[row * d..(row + 1) * d];
        let do_row = &d_o[row * d..(row + 1) * d];
        for j in 0..ds.len() {
            let (dk_j, dv_j) = (&mut dk[j * d..(j + 1) * d], &mut dv[j * d..(j + 1) * d]);
            for x in 0..d {
                dk_j[x] += ds[j] * q_row[x] as f64;
                dv_j[x] += p[j] * do_row[x] as f64;
            }
        }
    }
    (dk, dv)
}

/// Where element `index` of attention backward's output lies: which tensor (0 dQ,
/// 1 dK, 2 dV), which (batch, head) block, which row within it, which column.
pub fn attention_backward_position(
    s: &AttentionShape,
    index: usize,
) -> (usize, usize, usize, usize) {
    let bh = (s.batch * s.heads) as usize;
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let dq_len = bh * sq * d;
    let kv_len = bh * skv * d;
    let (tensor, rest, rows) = if index < dq_len {
        (0, index, sq)
    } else if index < dq_len + kv_len {
        (1, index - dq_len, skv)
    } else {
        (2, index - dq_len - kv_len, skv)
    };
    (tensor, rest / (rows * d), (rest / d) % rows, rest % d)
}

fn backward_at(
    s: &AttentionShape,
    tensors: (&[f32], &[f32], &[f32], &[f32]),
    indices: &[usize],
) -> Vec<f64> {
    let d = s.head_dim as usize;
    let sq = s.seq_q as usize;
    let mut dq_rows: std::collections::HashMap<usize, Vec<f64>> = Default::default();
    let mut blocks: std::collections::HashMap<usize, (Vec<f64>, Vec<f64>)> = Default::default();
    indices
        .iter()
        .map(|&i| {
            let (tensor, bh, row, col) = attention_backward_position(s, i);
            match tensor {
                0 => dq_rows
                    .entry(bh * sq + row)
                    .or_insert_with(|| attention_backward_dq_row(s, tensors, bh * sq + row))[col],
                t => {
                    let (dk, dv) = blocks
                        .entry(bh)
                        .or_insert_with(|| attention_backward_dkdv_block(s, tensors, bh));
                    if t == 1 {
                        dk[row * d + col]
                    } else {
                        dv[row * d + col]
                    }
                }
            }
        })
        .collect()
}

/// The whole f64 reference output (for small shapes and tests).
pub fn reference_output(workload: &Workload, inputs: &CheckInputs) -> Vec<f64> {
    match (workload, inputs) {
        (Workload::Matmul(s), CheckInputs::Matmul { a, b }) => (0..workload.output_len())
            .map(|i| matmul_element(s, a, b, i))
            .collect(),
        (Workload::Attention(s), CheckInputs::Attention { q, k, v }) => {
            let rows = (s.batch * s.heads * s.seq_q) as usize;
            (0..rows)
                .flat_map(|r| attention_row(s, q, k, v, r))
                .collect()
        }
        (Workload::AttentionBackward(s), CheckInputs::AttentionBackward { q, k, v, d_o }) => {
            backward_at(
                s,
                (q, k, v, d_o),
                &(0..workload.output_len()).collect::<Vec<_>>(),
            )
        }
        _ => panic!("inputs do not match the workload's op"),
    }
}

/// Reference values at `indices` of the flattened output.
pub fn reference_at(workload: &Workload, inputs: &CheckInputs, indices: &[usize]) -> Vec<f64> {
    match (workload, inputs) {
        (Workload::Matmul(s), CheckInputs::Matmul { a, b }) => indices
            .iter()
            .map(|&i| matmul_element(s, a, b, i))
            .collect(),
        (Workload::Attention(s), CheckInputs::Attention { q, k, v }) => {
            let d = s.head_dim as usize;
            let mut cache: Option<(usize, Vec<f64>)> = None;
            indices
                .iter()
                .map(|&i| {
                    let row = i / d;
                    if cache.as_ref().map(|c| c.0) != Some(row) {
                        cache = Some((row, attention_row(s, q, k, v, row)));
                    }
                    cache.as_ref().map(|c| c.1[i % d]).unwrap_or(f64::NAN)
                })
                .collect()
        }
        (Workload::AttentionBackward(s), CheckInputs::AttentionBackward { q, k, v, d_o }) => {
            backward_at(s, (q, k, v, d_o), indices)
        }
        _ => panic!("inputs do not match the workload's op"),
    }
}

/// ‖out − ref‖₂ / ‖ref‖₂ over paired values.
pub fn relative_error(
    out: impl IntoIterator<Item = f64>,
    reference: impl IntoIterator<Item = f64>,
) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (o, r) in out.into_iter().zip(reference) {
        diff += (o - r) * (o - r);
        norm += r * r;
    }
    if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_stream_is_standard_and_the_same_however_it_is_filled() {
        let xs = random_normal(200_000, Precision::F32, 9);
        let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        assert!(xs.iter().all(|x| x.is_finite() && *x != 0.0));
        assert_eq!(xs[123_456], normal_at(9, 123_456));
        assert_ne!(
            random_normal(4, Precision::F32, 9),
            random_normal(4, Precision::F32, 10)
        );
    }

    #[test]
    fn inputs_are_seeded_normal_and_rounded() {
        let a = random_normal(10_000, Precision::Bf16, 7);
        assert_eq!(a, random_normal(10_000, Precision::Bf16, 7));
        assert_ne!(a, random_normal(10_000, Precision::Bf16, 8));
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "mean {mean} var {var}"
        );
        assert!(a.iter().all(|&x| Precision::Bf16.round(x) == x));
        assert!(a.iter().filter(|&&x| x == 0.0).count() < 10);
    }

    #[test]
    fn each_distribution_draws_what_it_says() {
        let stats = |d: InputDistribution| {
            let a = random_inputs(40_000, Precision::F32, 5, d);
            let n = a.len() as f64;
            let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
            let zeros = a.iter().filter(|&&x| x == 0.0).count() as f64 / n;
            let max = a.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
            (mean, var, zeros, max)
        };
        let (_, var, zeros, max) = stats(InputDistribution::Uniform);
        assert!((var - 1.0).abs() < 0.03 && zeros < 1e-3, "{var} {zeros}");
        assert!(max <= 3f32.sqrt() && max > 1.7, "{max}");
        assert_eq!(stats(InputDistribution::Zeros).2, 1.0);
        let (_, var, zeros, _) = stats(InputDistribution::Sparse { zero_percent: 90 });
        assert!(
            (zeros - 0.9).abs() < 0.01 && (var - 0.1).abs() < 0.01,
            "{zeros} {var}"
        );
        // the default is the normal stream every earlier record used
        assert_eq!(
            random_inputs(100, Precision::Bf16, 3, InputDistribution::Normal),
            random_normal(100, Precision::Bf16, 3)
        );
    }

    #[test]
    fn matmul_reference_matches_hand_computation() {
        let s = MatmulShape {
            batch: 2,
            m: 2,
            n: 2,
            k: 2,
        };
        let a = vec![1., 2., 3., 4., /* batch 1 */ 1., 0., 0., 1.];
        let b = vec![5., 6., 7., 8., /* batch 1 */ 2., 3., 4., 5.];
        let w = Workload::Matmul(s);
        let c = reference_output(&w, &CheckInputs::Matmul { a, b });
        assert_eq!(c, vec![19., 22., 43., 50., 2., 3., 4., 5.]);
    }

    #[test]
    fn attention_reference_one_key_returns_its_value() {
        let s = AttentionShape {
            batch: 1,
            heads: 1,
            seq_q: 2,
            seq_kv: 2,
            head_dim: 2,
            causal: true,
        };
        let q = vec![1., 0., 0., 1.];
        let k = vec![1., 0., 0., 1.];
        let v = vec![10., 20., 30., 40.];
        // causal: query 0 sees only key 0, so its output is exactly v[0]
        let row0 = attention_row(&s, &q, &k, &v, 0);
        assert_eq!(row0, vec![10., 20.]);
        // query 1 sees both keys, weights softmax([0, 1/√2])
        let w1 = (1.0f64 / 2f64.sqrt()).exp();
        let expect = (10.0 + 30.0 * w1) / (1.0 + w1);
        assert!((attention_row(&s, &q, &k, &v, 1)[0] - expect).abs() < 1e-12);
    }

    #[test]
    fn causal_query_before_the_first_key_sees_nothing() {
        // seq_q > seq_kv: query 0 may see keys j <= 0 + (1 - 2) = -1, i.e. none.
        let s = AttentionShape {
            batch: 1,
            heads: 1,
            seq_q: 2,
            seq_kv: 1,
            head_dim: 2,
            causal: true,
        };
        let (q, k, v) = (vec![1., 0., 0., 1.], vec![1., 0.], vec![10., 20.]);
        assert_eq!(attention_row(&s, &q, &k, &v, 0), vec![0., 0.]);
        assert_eq!(attention_row(&s, &q, &k, &v, 1), vec![10., 20.]);
    }

    #[test]
    fn sampled_reference_equals_full_reference() {
        let w = Workload::Attention(AttentionShape {
            batch: 1,
            heads: 2,
            seq_q: 5,
            seq_kv: 7,
            head_dim: 4,
            causal: true,
        });
        let inputs = CheckInputs::generate(&w, Precision::F32, 3);
        let full = reference_output(&w, &inputs);
        let idx = vec![0, 3, 4, 17, 39];
        let at = reference_at(&w, &inputs, &idx);
        for (i, v) in idx.iter().zip(at) {
            assert_eq!(full[*i], v);
        }
    }

    /// The loss L = Σ dO ∘ attention(Q, K, V), differentiated numerically.
    fn loss(s: &AttentionShape, q: &[f32], k: &[f32], v: &[f32], d_o: &[f32]) -> f64 {
        let rows = (s.batch * s.heads * s.seq_q) as usize;
        let d = s.head_dim as usize;
        (0..rows)
            .flat_map(|r| {
                attention_row(s, q, k, v, r)
                    .into_iter()
                    .enumerate()
                    .map(move |(x, o)| (r * d + x, o))
            })
            .map(|(i, o)| o * d_o[i] as f64)
            .sum()
    }

    #[test]
    fn attention_backward_matches_finite_differences() {
        for (causal, seq_q, seq_kv) in [(false, 5, 7), (true, 6, 4), (true, 4, 6)] {
            let s = AttentionShape {
                batch: 1,
                heads: 2,
                seq_q,
                seq_kv,
                head_dim: 3,
                causal,
            };
            let w = Workload::AttentionBackward(s);
            let inputs = CheckInputs::generate(&w, Precision::F32, 11);
            let CheckInputs::AttentionBackward { q, k, v, d_o } = &inputs else {
                unreachable!()
            };
            let grad = reference_output(&w, &inputs);
            assert_eq!(grad.len(), w.output_len());
            // central differences in f64 around the f32 inputs, one input at a time
            let h = 1e-3f32;
            let mut numeric = Vec::new();
            for tensor in 0..3 {
                let base = [q.clone(), k.clone(), v.clone()];
                for i in 0..base[tensor].len() {
                    let mut plus = base.clone();
                    let mut minus = base.clone();
                    plus[tensor][i] += h;
                    minus[tensor][i] -= h;
                    let lp = loss(&s, &plus[0], &plus[1], &plus[2], d_o);
                    let lm = loss(&s, &minus[0], &minus[1], &minus[2], d_o);
                    let step = plus[tensor][i] as f64 - minus[tensor][i] as f64;
                    numeric.push((lp - lm) / step);
                }
            }
            let err = relative_error(grad.iter().copied(), numeric.iter().copied());
            assert!(err < 1e-4, "causal {causal} q{seq_q} kv{seq_kv}: {err}");
            // sampled elements agree with the whole reference
            let idx = [0, 7, grad.len() / 2, grad.len() - 1];
            for (i, x) in idx.iter().zip(reference_at(&w, &inputs, &idx)) {
                assert_eq!(grad[*i], x);
            }
        }
    }

    #[test]
    fn relative_error_is_scale_free() {
        assert_eq!(relative_error([1.0, 2.0], [1.0, 2.0]), 0.0);
        let e = relative_error([1.1, 2.2], [1.0, 2.0]);
        assert!((e - 0.1).abs() < 1e-12);
    }
}
