//! The correctness check run before any point is measured (docs/ARCHITECTURE.md §3): fresh
//! seeded inputs, output poisoned by the backend, relative error against the f64
//! reference. Large outputs are compared on a seeded sample of elements, but every
//! element must be finite, so an element the kernel never wrote (still NaN) fails.

use crate::backend::{BackendError, PreparedKernel};
use crate::inputs::InputDistribution;
use crate::precision::Precision;
use crate::reference::{reference_at, relative_error, CheckInputs};
use crate::workload::Workload;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Outputs up to this many elements are compared whole.
pub const FULL_CHECK_ELEMENTS: usize = 1 << 16;
/// Elements compared on larger outputs.
pub const SAMPLED_ELEMENTS: usize = 2048;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// ‖out − ref‖₂ / ‖ref‖₂ over the compared elements.
    pub relative_error: f64,
    pub tolerance: f64,
    pub passed: bool,
    pub compared_elements: usize,
    pub output_elements: usize,
    /// Output elements that were NaN or infinite (unwritten poison, overflow).
    pub non_finite_elements: usize,
    pub seed: u64,
}

/// Indices of the output compared against the reference: all of a small output;
/// otherwise the first and last element plus a seeded random sample.
pub fn check_indices(output_len: usize, seed: u64) -> Vec<usize> {
    if output_len <= FULL_CHECK_ELEMENTS {
        return (0..output_len).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c4ec);
    let mut idx: Vec<usize> = (0..SAMPLED_ELEMENTS - 2)
        .map(|_| rng.random_range(0..output_len))
        .collect();
    idx.push(0);
    idx.push(output_len - 1);
    idx.sort_unstable();
    idx.dedup();
    idx
}

/// Indices compared for `workload`: [`check_indices`] of its output, except for a
/// large attention backward, whose dK and dV are sampled from its last (batch,
/// head) block only: each of their elements needs the softmax of every query row of
/// its block (seq_q·seq_kv·head_dim work), where a dQ element needs only its own row.
pub fn check_indices_for(workload: &Workload, seed: u64) -> Vec<usize> {
    let len = workload.output_len();
    let Workload::AttentionBackward(s) = workload else {
        return check_indices(len, seed);
    };
    if len <= FULL_CHECK_ELEMENTS {
        return (0..len).collect();
    }
    let bh = (s.batch * s.heads) as usize;
    let (sq, skv, d) = (s.seq_q as usize, s.seq_kv as usize, s.head_dim as usize);
    let (dq_len, kv_len, block) = (bh * sq * d, bh * skv * d, skv * d);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c4ec);
    let mut idx: Vec<usize> = (0..SAMPLED_ELEMENTS / 2)
        .map(|_| rng.random_range(0..dq_len))
        .collect();
    for tensor_start in [dq_len, dq_len + kv_len] {
        let start = tensor_start + (bh - 1) * block;
        idx.extend((0..SAMPLED_ELEMENTS / 4 - 1).map(|_| rng.random_range(start..start + block)));
    }
    idx.push(0);
    idx.push(len - 1);
    idx.sort_unstable();
    idx.dedup();
    idx
}

/// Compare a backend's output with the reference.
pub fn compare(
    workload: &Workload,
    precision: Precision,
    inputs: &CheckInputs,
    output: &[f32],
    seed: u64,
) -> Verification {
    let expected_len = workload.output_len();
    let non_finite = output.iter().filter(|x| !x.is_finite()).count();
    let indices = check_indices_for(workload, seed);
    let tolerance = precision.tolerance();
    if output.len() != expected_len {
        return Verification {
            relative_error: f64::INFINITY,
            tolerance,
            passed: false,
            compared_elements: 0,
            output_elements: output.len(),
            non_finite_elements: non_finite,
            seed,
        };
    }
    let reference = reference_at(workload, inputs, &indices);
    let err = relative_error(indices.iter().map(|&i| output[i] as f64), reference);
    Verification {
        relative_error: err,
        tolerance,
        passed: non_finite == 0 && err.is_finite() && err <= tolerance,
        compared_elements: indices.len(),
        output_elements: expected_len,
        non_finite_elements: non_finite,
        seed,
    }
}

/// Generate fresh random normal inputs from `seed`, run the kernel once and compare.
pub fn verify(
    kernel: &mut dyn PreparedKernel,
    workload: &Workload,
    precision: Precision,
    seed: u64,
) -> Result<Verification, BackendError> {
    verify_with(kernel, workload, precision, seed, InputDistribution::Normal)
}

/// As [`verify`], with inputs drawn from `dist`: the check runs on the values the
/// point is measured on, which it leaves in the kernel's buffers. On `zeros` it can
/// only confirm that every output is a finite zero.
pub fn verify_with(
    kernel: &mut dyn PreparedKernel,
    workload: &Workload,
    precision: Precision,
    seed: u64,
    dist: InputDistribution,
) -> Result<Verification, BackendError> {
    let checked = kernel.check_workload(workload);
    let inputs = CheckInputs::generate_with(&checked, precision, seed, dist);
    let output = kernel.run_for_check(&inputs)?;
    Ok(compare(&checked, precision, &inputs, &output, seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::reference_output;
    use crate::workload::MatmulShape;

    fn w() -> Workload {
        Workload::Matmul(MatmulShape {
            batch: 1,
            m: 8,
            n: 8,
            k: 8,
        })
    }

    #[test]
    fn exact_output_passes() {
        let inputs = CheckInputs::generate(&w(), Precision::F32, 1);
        let out: Vec<f32> = reference_output(&w(), &inputs)
            .iter()
            .map(|&x| x as f32)
            .collect();
        let v = compare(&w(), Precision::F32, &inputs, &out, 1);
        assert!(v.passed, "{v:?}");
        assert!(v.relative_error < 1e-6);
    }

    #[test]
    fn one_unwritten_element_fails() {
        let inputs = CheckInputs::generate(&w(), Precision::F32, 1);
        let mut out: Vec<f32> = reference_output(&w(), &inputs)
            .iter()
            .map(|&x| x as f32)
            .collect();
        out[5] = f32::NAN;
        let v = compare(&w(), Precision::F32, &inputs, &out, 1);
        assert!(!v.passed);
        assert_eq!(v.non_finite_elements, 1);
    }

    #[test]
    fn error_above_tolerance_fails() {
        let inputs = CheckInputs::generate(&w(), Precision::F16, 1);
        let out: Vec<f32> = reference_output(&w(), &inputs)
            .iter()
            .map(|&x| (x * 1.02) as f32)
            .collect();
        let v = compare(&w(), Precision::F16, &inputs, &out, 1);
        assert!(!v.passed && (v.relative_error - 0.02).abs() < 1e-3, "{v:?}");
    }

    #[test]
    fn attention_backward_samples_dk_and_dv_from_one_block() {
        let s = crate::workload::AttentionShape {
            batch: 2,
            heads: 4,
            seq_q: 512,
            seq_kv: 512,
            head_dim: 64,
            causal: true,
        };
        let w = Workload::AttentionBackward(s);
        let idx = check_indices_for(&w, 9);
        assert!(idx.len() <= SAMPLED_ELEMENTS && idx.len() > SAMPLED_ELEMENTS - 50);
        let blocks: std::collections::BTreeSet<(usize, usize)> = idx
            .iter()
            .map(|&i| crate::reference::attention_backward_position(&s, i))
            .filter(|p| p.0 > 0)
            .map(|p| (p.0, p.1))
            .collect();
        assert_eq!(
            blocks.into_iter().collect::<Vec<_>>(),
            vec![(1, 7), (2, 7)],
            "dK and dV from the last of 8 blocks"
        );
        let dq_blocks: std::collections::BTreeSet<usize> = idx
            .iter()
            .map(|&i| crate::reference::attention_backward_position(&s, i))
            .filter(|p| p.0 == 0)
            .map(|p| p.1)
            .collect();
        assert_eq!(dq_blocks.len(), 8, "dQ rows from every block");
    }

    #[test]
    fn large_outputs_are_sampled() {
        let idx = check_indices(10_000_000, 4);
        assert!(idx.len() <= SAMPLED_ELEMENTS && idx.len() > SAMPLED_ELEMENTS - 50);
        assert_eq!(idx[0], 0);
        assert_eq!(*idx.last().unwrap(), 9_999_999);
        assert_eq!(check_indices(100, 4), (0..100).collect::<Vec<_>>());
    }
}
