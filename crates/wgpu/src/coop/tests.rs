//! wgsl-coop without matrix units: the kernel source validated and translated to
//! SPIR-V by naga with cooperative matrices on (what wgpu does before a driver sees
//! it), and the kernel's tile logic run on the CPU — the same blocks, staging, padded
//! strides, fragment loads, multiply-accumulates and write-out, index for index —
//! against the f64 reference through the check every measured point passes.

use super::*;
use crate::adapter::{test_report, CooperativeMatrixShape};
use crate::shader::{self, Element};
use joulebench_core::reference::CheckInputs;
use joulebench_core::verify::verify;
use joulebench_core::{BackendError, Precision, PreparedKernel, RunTiming, Workload};

fn shape(batch: u64, m: u64, n: u64, k: u64) -> MatmulShape {
    MatmulShape { batch, m, n, k }
}

fn wgsl(v: &CoopVariant, s: &MatmulShape) -> String {
    shader::specialise_with(
        shader::MATMUL_COOP,
        Element::F16,
        &["wgpu_cooperative_matrix"],
        &v.aliases(),
        &v.consts(),
        &v.flags(s),
    )
    .unwrap()
}

fn every_variant() -> Vec<CoopVariant> {
    let mut all = Vec::new();
    for fragment in FRAGMENTS {
        for subgroup in [32, 64] {
            all.extend(variants(fragment, subgroup));
        }
    }
    all
}

/// A fitting and a ragged shape for `v`.
fn shapes_for(v: &CoopVariant) -> [MatmulShape; 2] {
    let (bm, bn, bk) = (
        u64::from(v.tile_m()),
        u64::from(v.tile_n()),
        u64::from(v.bk),
    );
    [
        shape(1, bm, 2 * bn, 2 * bk),
        shape(2, bm + 13, bn / 2 + 3, bk + 5),
    ]
}

#[test]
fn the_kernel_validates_and_translates_with_cooperative_matrices() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let caps =
        Capabilities::COOPERATIVE_MATRIX | Capabilities::SUBGROUP | Capabilities::SHADER_FLOAT16;
    for v in every_variant() {
        for s in shapes_for(&v) {
            let source = wgsl(&v, &s);
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{}: {}", v.name(), e.emit_to_string(&source)));
            let info = Validator::new(ValidationFlags::all(), caps)
                .validate(&module)
                .unwrap_or_else(|e| panic!("{}: {}", v.name(), e.emit_to_string(&source)));
            // The workgroup memory the host accounts for is what the shader declares.
            let mut layouter = naga::proc::Layouter::default();
            layouter.update(module.to_ctx()).unwrap();
            let declared: u32 = module
                .global_variables
                .iter()
                .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
                .map(|(_, g)| layouter[g.ty].size)
                .sum();
            assert_eq!(declared, v.workgroup_bytes(), "{}", v.name());
            let options = naga::back::spv::Options {
                lang_version: (1, 6),
                ..Default::default()
            };
            let pipeline = naga::back::spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: "main".into(),
            };
            let words = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
                .unwrap_or_else(|e| panic!("{}: {e}", v.name()));
            // OpCapability CooperativeMatrixKHR (6022): the matrix units are used.
            assert!(
                words.windows(2).any(|w| w == [(2 << 16) | 17, 6022]),
                "{}: no CooperativeMatrixKHR capability in the SPIR-V",
                v.name()
            );
        }
    }
}

#[test]
fn without_the_extension_the_kernel_does_not_validate() {
    // The check above can fail: the same source is refused without the capability.
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let v = variants(16, 32)[0];
    let source = wgsl(&v, &shape(1, 128, 128, 64));
    let module = naga::front::wgsl::parse_str(&source).unwrap();
    let caps = Capabilities::SUBGROUP | Capabilities::SHADER_FLOAT16;
    assert!(Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .is_err());
}

/// `matmul_coop.wgsl` on the CPU for one variant and shape. Every workgroup memory
/// index is checked by Rust's bounds checks, every matrix load and store against the
/// 16-byte alignment matrix units want, and unstaged memory is NaN so reading it
/// shows in the output.
struct Emulated {
    v: CoopVariant,
    s: MatmulShape,
}

impl Emulated {
    fn multiply(&self, a: &[f32], b: &[f32]) -> Vec<f32> {
        let (v, s) = (self.v, self.s);
        let f = v.fragment as usize;
        let (m, n, k) = (s.m as usize, s.n as usize, s.k as usize);
        let (bm, bn, bk) = (v.tile_m() as usize, v.tile_n() as usize, v.bk as usize);
        let (a_stride, b_stride) = (bk + 8, bn + 8);
        let (a_tile, b_tile) = (a_stride * bm, b_stride * bk);
        let fit = v.fits(&s);
        let (sg_m, sg_n) = (v.sg_m as usize, v.sg_n as usize);
        let (wm, wn) = (4 * f, 2 * f);
        let aligned = |halves: usize| assert_eq!(halves * 2 % 16, 0, "{}", v.name());
        for stride in [a_stride, b_stride] {
            aligned(stride);
        }
        let mut c = vec![f32::NAN; s.batch as usize * m * n];
        let [gx, gy, gz] = v.workgroups(&s).map(|g| g as usize);
        for batch in 0..gz {
            for wy in 0..gy {
                for wx in 0..gx {
                    let (row0, col0) = (wy * bm, wx * bn);
                    let (a_base, b_base, c_base) = (batch * m * k, batch * k * n, batch * m * n);
                    let mut a_s = vec![f32::NAN; v.buffers() as usize * a_tile];
                    let mut b_s = vec![f32::NAN; v.buffers() as usize * b_tile];
                    // stage_a / stage_b of fetch_a / fetch_b, every e of the block.
                    let stage = |a_s: &mut [f32], b_s: &mut [f32], buf: usize, k0: usize| {
                        for e in 0..bm * bk / 4 {
                            let (r, c4) = (e / (bk / 4), e % (bk / 4));
                            for i in 0..4 {
                                let (row, col) = (row0 + r, k0 + c4 * 4 + i);
                                let value = if fit || (row < m && col < k) {
                                    a[a_base + row * k + col]
                                } else {
                                    0.0
                                };
                                a_s[buf * a_tile + r * a_stride + c4 * 4 + i] = value;
                            }
                        }
                        for e in 0..bk * bn / 4 {
                            let (r, c4) = (e / (bn / 4), e % (bn / 4));
                            for i in 0..4 {
                                let (row, col) = (k0 + r, col0 + c4 * 4 + i);
                                let value = if fit || (row < k && col < n) {
                                    b[b_base + row * n + col]
                                } else {
                                    0.0
                                };
                                b_s[buf * b_tile + r * b_stride + c4 * 4 + i] = value;
                            }
                        }
                    };
                    // Per subgroup tile, the eight accumulators c00 … c31, row-major F × F.
                    let mut acc = vec![vec![vec![0.0f32; f * f]; 8]; sg_m * sg_n];
                    let k_steps = k.div_ceil(bk);
                    if v.double_buffer {
                        stage(&mut a_s, &mut b_s, 0, 0);
                    }
                    for t in 0..k_steps {
                        let buffer = if v.double_buffer { t % 2 } else { 0 };
                        if !v.double_buffer {
                            stage(&mut a_s, &mut b_s, 0, t * bk);
                        }
                        for (tile, tile_acc) in acc.iter_mut().enumerate() {
                            let (tile_row, tile_col) = ((tile / sg_n) * wm, (tile % sg_n) * wn);
                            for kk in (0..bk).step_by(f) {
                                let a_at = buffer * a_tile + tile_row * a_stride + kk;
                                let b_at = buffer * b_tile + kk * b_stride + tile_col;
                                for fm in 0..4 {
                                    let a_frag = a_at + fm * f * a_stride;
                                    aligned(a_frag);
                                    for fn_ in 0..2 {
                                        let b_frag = b_at + fn_ * f;
                                        aligned(b_frag);
                                        // coopMultiplyAdd of the row-major (coopLoadT)
                                        // fragments: C += A · B, f32 accumulation.
                                        let out = &mut tile_acc[fm * 2 + fn_];
                                        for r in 0..f {
                                            for cc in 0..f {
                                                let mut sum = out[r * f + cc];
                                                for q in 0..f {
                                                    sum += a_s[a_frag + r * a_stride + q]
                                                        * b_s[b_frag + q * b_stride + cc];
                                                }
                                                out[r * f + cc] = sum;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        if v.double_buffer && t + 1 < k_steps {
                            stage(&mut a_s, &mut b_s, 1 - buffer, (t + 1) * bk);
                        }
                    }
                    // write_fragment: coopStoreT into the tile's f32 scratch (F apart),
                    // then each element converted to f16 and written if in range.
                    for (tile, tile_acc) in acc.iter().enumerate() {
                        let (tile_row, tile_col) = ((tile / sg_n) * wm, (tile % sg_n) * wn);
                        assert_eq!(tile * f * f * 4 % 16, 0);
                        for (index, scratch) in tile_acc.iter().enumerate() {
                            let (fm, fn_) = (index / 2, index % 2);
                            for (e, value) in scratch.iter().enumerate() {
                                let row = row0 + tile_row + fm * f + e / f;
                                let col = col0 + tile_col + fn_ * f + e % f;
                                if fit || (row < m && col < n) {
                                    c[c_base + row * n + col] =
                                        half::f16::from_f32(*value).to_f32();
                                }
                            }
                        }
                    }
                }
            }
        }
        c
    }
}

impl PreparedKernel for Emulated {
    fn run_for_check(&mut self, inputs: &CheckInputs) -> Result<Vec<f32>, BackendError> {
        match inputs {
            CheckInputs::Matmul { a, b } => Ok(self.multiply(a, b)),
            _ => Err(BackendError::Device("not a matmul".into())),
        }
    }

    fn run(&mut self, _iterations: u64) -> Result<RunTiming, BackendError> {
        Err(BackendError::Unavailable(
            "an emulation has no device time".into(),
        ))
    }
}

#[test]
fn the_tile_logic_computes_the_matmul_for_every_variant() {
    for v in every_variant().into_iter().filter(|v| v.subgroup == 32) {
        for s in shapes_for(&v) {
            let w = Workload::Matmul(s);
            let mut emulated = Emulated { v, s };
            let check = verify(&mut emulated, &w, Precision::F16, 17).unwrap();
            assert!(check.passed, "{} {w}: {check:?}", v.name());
            assert!(!v.fits(&s) || s.m % u64::from(v.tile_m()) == 0);
        }
    }
}

#[test]
fn a_wrong_stride_is_caught() {
    // The emulation is only a check if a mistake in the tile logic shows: B read
    // with a row stride one too long (n + 1) makes the same comparison fail.
    let v = variants(16, 32)[1];
    let s = shape(1, 128, 128, 64);
    let w = Workload::Matmul(s);
    let inputs = CheckInputs::generate(&w, Precision::F16, 3);
    let CheckInputs::Matmul { a, b } = &inputs else {
        unreachable!()
    };
    // Element (r, c) taken from r · (n + 1) + c.
    let shifted: Vec<f32> = (0..b.len()).map(|i| b[(i + i / 128) % b.len()]).collect();
    let out = Emulated { v, s }.multiply(a, &shifted);
    let check = joulebench_core::verify::compare(&w, Precision::F16, &inputs, &out, 3);
    assert!(!check.passed, "{check:?}");
}

fn adapter_with(shapes: &[(u32, &str, &str)]) -> AdapterReport {
    let mut a = test_report(0, "gpu", "DiscreteGpu", "Vulkan");
    a.subgroups = true;
    a.subgroup_min_size = 32;
    a.subgroup_max_size = 32;
    a.max_workgroup_storage_bytes = 49152;
    a.max_invocations_per_workgroup = 1024;
    a.cooperative_matrix = !shapes.is_empty();
    a.cooperative_matrix_shapes = shapes
        .iter()
        .map(|&(side, ab, c)| CooperativeMatrixShape {
            m: side,
            n: side,
            k: side,
            ab_type: ab.into(),
            c_type: c.into(),
            saturating: false,
        })
        .collect();
    a
}

#[test]
fn the_fragment_follows_the_adapter_and_absence_says_why() {
    let none = adapter_with(&[]);
    assert_eq!(
        choose(&none).unwrap_err(),
        "adapter offers no cooperative-matrix shapes"
    );
    let nvidia = adapter_with(&[(16, "f16", "f16"), (16, "f16", "f32")]);
    let v = choose(&nvidia).unwrap();
    assert_eq!((v.fragment, v.tile_m(), v.tile_n()), (16, 128, 128));
    assert!(v.workgroup_bytes() <= 49152 && v.double_buffer);
    let apple = adapter_with(&[(8, "f32", "f32"), (8, "f16", "f32")]);
    assert_eq!(choose(&apple).unwrap().fragment, 8);
    let f32_only = adapter_with(&[(8, "f32", "f32")]);
    let why = choose(&f32_only).unwrap_err();
    assert!(
        why.contains("8x8x8 f32->f32") && why.contains("f16 inputs"),
        "{why}"
    );
    let mut small = adapter_with(&[(16, "f16", "f32")]);
    small.max_workgroup_storage_bytes = 16384;
    let v = choose(&small).unwrap();
    assert!(v.workgroup_bytes() <= 16384, "{}", v.name());
    small.subgroups = false;
    assert!(choose(&small).unwrap_err().contains("subgroup"));
}
