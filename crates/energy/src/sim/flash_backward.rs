//! The fused attention backward's algorithm on the CPU, as the CUDA kernel runs it
//! (kernels/cuda/flash_attention_backward.cu, FlashAttention-2): a forward pass that
//! keeps each row's log-sum-exp, D = rowsum(dO ∘ O), then per block of keys a walk
//! over the query tiles that can see them, recomputing P from the log-sum-exp, with P
//! and dS rounded to the element type where the kernel stores them in shared memory.
//! The simulated device's fused backward checks its output with it, so the
//! algorithm — tile skipping under the causal mask included — meets the f64 reference.

use joulebench_core::precision::Precision;
use joulebench_core::workload::AttentionShape;

/// The tiles of the CUDA kernel: 64 keys per block, 64 query rows per step.
pub const BLOCK_N: usize = 64;
pub const BLOCK_M: usize = 64;

/// The first query tile whose rows can see key `k0` under the causal mask (query q
/// sees key k when q ≥ k − (seq_kv − seq_q)), as the kernel computes it.
pub fn first_query_tile(s: &AttentionShape, k0: usize, block_m: usize) -> usize {
    if !s.causal {
        return 0;
    }
    let shift = s.seq_kv as i64 - s.seq_q as i64;
    let first = (k0 as i64 - shift).max(0) as usize;
    first / block_m * block_m
}

/// dQ, then dK, then dV (each `[batch·heads][seq][head_dim]`), stored at the output
/// precision; `block_m` × `block_n` tiles.
pub fn flash_attention_backward(
    s: &AttentionShape,
    [q, k, v, d_o]: [&[f32]; 4],
    p: Precision,
    (block_m, block_n): (usize, usize),
) -> Vec<f32> {
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let bh = (s.batch * s.heads) as usize;
    let scale = 1.0 / (d as f32).sqrt();
    let scale_log2 = std::f32::consts::LOG2_E * scale;
    let shift = skv as i64 - sq as i64;
    let sees = |qi: usize, kj: usize| !s.causal || kj as i64 <= qi as i64 + shift;
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let store = |x: f32| p.round_output(x);

    let mut dq = vec![0.0f32; bh * sq * d];
    let (mut dk, mut dv) = (vec![0.0f32; bh * skv * d], vec![0.0f32; bh * skv * d]);
    for h in 0..bh {
        let q_row = |i: usize| &q[(h * sq + i) * d..(h * sq + i + 1) * d];
        let do_row = |i: usize| &d_o[(h * sq + i) * d..(h * sq + i + 1) * d];
        let k_row = |j: usize| &k[(h * skv + j) * d..(h * skv + j + 1) * d];
        let v_row = |j: usize| &v[(h * skv + j) * d..(h * skv + j + 1) * d];

        // The forward pass: online softmax over key tiles in log2 units, P rounded
        // where the forward kernel packs it for P·V, O stored in the element type.
        let mut lse = vec![f32::INFINITY; sq];
        let mut big_d = vec![0.0f32; sq];
        for i in 0..sq {
            let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
            let mut o = vec![0.0f32; d];
            for j0 in (0..skv).step_by(block_n) {
                let keys: Vec<usize> = (j0..(j0 + block_n).min(skv))
                    .filter(|&j| sees(i, j))
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                let scores: Vec<f32> = keys
                    .iter()
                    .map(|&j| dot(q_row(i), k_row(j)) * scale_log2)
                    .collect();
                let m_new = scores.iter().cloned().fold(m, f32::max);
                let alpha = (m - m_new).exp2();
                l *= alpha;
                o.iter_mut().for_each(|x| *x *= alpha);
                for (&j, &sc) in keys.iter().zip(&scores) {
                    let pr = (sc - m_new).exp2();
                    l += pr;
                    let pr = p.round(pr);
                    for (x, &vv) in o.iter_mut().zip(v_row(j)) {
                        *x += pr * vv;
                    }
                }
                m = m_new;
            }
            if l > 0.0 {
                lse[i] = m + l.log2();
                let o: Vec<f32> = o.iter().map(|x| store(x / l)).collect();
                big_d[i] = dot(do_row(i), &o);
            }
        }

        // The backward pass, one key block at a time.
        for j0 in (0..skv).step_by(block_n) {
            let j1 = (j0 + block_n).min(skv);
            let mut i0 = first_query_tile(s, j0, block_m);
            while i0 < sq {
                let i1 = (i0 + block_m).min(sq);
                for i in i0..i1 {
                    for j in j0..j1 {
                        if !sees(i, j) {
                            continue;
                        }
                        let pr = (dot(q_row(i), k_row(j)) * scale_log2 - lse[i]).exp2();
                        let dp = dot(do_row(i), v_row(j));
                        let ds = p.round(pr * (dp - big_d[i]));
                        let pr = p.round(pr);
                        for x in 0..d {
                            dv[(h * skv + j) * d + x] += pr * do_row(i)[x];
                            dk[(h * skv + j) * d + x] += ds * q_row(i)[x];
                            dq[(h * sq + i) * d + x] += ds * k_row(j)[x];
                        }
                    }
                }
                i0 += block_m;
            }
        }
    }
    dq.iter()
        .chain(&dk)
        .map(|x| store(x * scale))
        .chain(dv.iter().map(|&x| store(x)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::reference::{reference_output, relative_error, CheckInputs};
    use joulebench_core::suite::cases;
    use joulebench_core::workload::{Op, Workload};

    /// The kernel's algorithm meets the f64 reference on the shared correctness
    /// suite's shapes (ragged, causal with fewer and with more queries than keys).
    #[test]
    fn the_tiled_algorithm_meets_the_f64_reference() {
        // Tiles smaller than the kernel's so that every shape spans several; the suite's
        // two largest shapes are left out to keep the test cheap in a debug build.
        for (precision, tiles) in [(Precision::F16, (16, 16)), (Precision::Bf16, (32, 16))] {
            for w in cases(Op::AttentionBackward) {
                let Workload::AttentionBackward(s) = w else {
                    unreachable!()
                };
                if s.batch * s.heads * s.seq_q * s.seq_kv * s.head_dim > 2_000_000 {
                    continue;
                }
                let inputs = CheckInputs::generate(&w, precision, 7);
                let CheckInputs::AttentionBackward { q, k, v, d_o } = &inputs else {
                    unreachable!()
                };
                let reference = reference_output(&w, &inputs);
                let out = flash_attention_backward(&s, [q, k, v, d_o], precision, tiles);
                assert_eq!(out.len(), reference.len());
                assert!(out.iter().all(|x| x.is_finite()), "{s:?}");
                let err = relative_error(out.iter().map(|&x| x as f64), reference);
                assert!(
                    err < precision.tolerance(),
                    "{precision} {s:?} tiles {tiles:?}: relative error {err}"
                );
            }
        }
    }

    /// Skipping the query tiles that see none of a key block is what makes the causal
    /// backward cheaper; starting one tile too late loses gradient. Every visible pair
    /// must lie at or after the first tile walked.
    #[test]
    fn causal_walks_start_at_or_before_the_first_query_that_sees_the_block() {
        for (sq, skv) in [
            (64, 64),
            (53, 37),
            (37, 53),
            (200, 200),
            (16, 300),
            (300, 16),
        ] {
            let s = AttentionShape {
                batch: 1,
                heads: 1,
                seq_q: sq,
                seq_kv: skv,
                head_dim: 64,
                causal: true,
            };
            for block in [16usize, 64] {
                for k0 in (0..skv as usize).step_by(block) {
                    let start = first_query_tile(&s, k0, block);
                    let first_seeing = (0..sq as usize).find(|&i| {
                        (k0..(k0 + block).min(skv as usize))
                            .any(|j| (j as u64) < s.visible_keys(i as u64))
                    });
                    if let Some(i) = first_seeing {
                        assert!(start <= i, "{s:?} block {block} k0 {k0}: {start} > {i}");
                        // and no whole tile before it is walked for nothing
                        assert!(i - start < block, "{s:?} k0 {k0}");
                    }
                }
            }
        }
    }
}
