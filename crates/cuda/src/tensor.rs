//! Device tensors and the host-side encoding into them. The correctness check hands us
//! f32 values already rounded to the kernel's precision; this module writes them in the
//! kernel's element type and layout (padded, or transposed for cuBLASLt FP8) and reads
//! outputs back, so a kernel sees bit-exactly the values the f64 reference saw.

use cudarc::driver::{sys as drv_sys, CudaSlice, CudaStream, DevicePtr};
use joulebench_core::BackendError;
use rayon::prelude::*;
use std::sync::Arc;

/// Element type in device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    F32,
    F16,
    Bf16,
    /// OCP FP8 E4M3 (bias 7, no infinities, max 448).
    E4m3,
}

impl Elem {
    pub(crate) fn bytes(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F16 | Elem::Bf16 => 2,
            Elem::E4m3 => 1,
        }
    }

    fn encode_into(self, x: f32, out: &mut Vec<u8>) {
        match self {
            Elem::F32 => out.extend_from_slice(&x.to_le_bytes()),
            Elem::F16 => out.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
            Elem::Bf16 => out.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
            Elem::E4m3 => out.push(e4m3_from_f32(x)),
        }
    }

    fn decode(self, b: &[u8]) -> f32 {
        match self {
            Elem::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Elem::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            Elem::Bf16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            Elem::E4m3 => e4m3_to_f32(b[0]),
        }
    }
}

/// E4M3 encoding, round to nearest even, saturating at ±448 (what cuBLASLt's
/// "satfinite" conversions do); NaN maps to 0x7f.
pub(crate) fn e4m3_from_f32(x: f32) -> u8 {
    if x.is_nan() {
        return 0x7f;
    }
    let sign: u8 = if x.is_sign_negative() { 0x80 } else { 0 };
    let a = x.abs();
    if a >= 448.0 {
        return sign | 0x7e;
    }
    let min_normal = 2f32.powi(-6);
    if a < min_normal {
        // Subnormals are multiples of 2^-9; a count of 8 is exactly the code of 2^-6.
        let m = (a / 2f32.powi(-9)).round_ties_even() as u8;
        return sign | m;
    }
    // f32 exponent of a normal value; the E4M3 exponent range here is -6..=8.
    let mut e = ((a.to_bits() >> 23) & 0xff) as i32 - 127;
    let mut m = ((a / 2f32.powi(e) - 1.0) * 8.0).round_ties_even() as u8;
    if m == 8 {
        e += 1;
        m = 0;
    }
    if e > 8 || (e == 8 && m == 7) {
        return sign | 0x7e;
    }
    sign | (((e + 7) as u8) << 3) | m
}

pub(crate) fn e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = ((b >> 3) & 0x0f) as i32;
    let m = (b & 0x07) as f32;
    if e == 15 && m == 7.0 {
        return f32::NAN;
    }
    if e == 0 {
        return sign * m * 2f32.powi(-9);
    }
    sign * (1.0 + m / 8.0) * 2f32.powi(e - 7)
}

/// Where a logical row-major `[batch][rows][cols]` tensor sits in device memory: as is,
/// zero-padded to `stored_rows x stored_cols`, and/or stored transposed (`[cols][rows]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub batch: usize,
    pub rows: usize,
    pub cols: usize,
    pub stored_rows: usize,
    pub stored_cols: usize,
    pub transposed: bool,
}

impl Placement {
    pub(crate) fn dense(batch: usize, rows: usize, cols: usize) -> Self {
        Self {
            batch,
            rows,
            cols,
            stored_rows: rows,
            stored_cols: cols,
            transposed: false,
        }
    }

    /// Elements of the logical tensor.
    pub(crate) fn len(&self) -> usize {
        self.batch * self.rows * self.cols
    }

    /// Elements in device memory, padding included.
    pub(crate) fn stored_len(&self) -> usize {
        self.batch * self.stored_rows * self.stored_cols
    }

    /// Index in device memory of logical element (b, r, c).
    fn stored_index(&self, b: usize, r: usize, c: usize) -> usize {
        let (sr, sc) = if self.transposed { (c, r) } else { (r, c) };
        (b * self.stored_rows + sr) * self.stored_cols + sc
    }

    fn is_identity(&self) -> bool {
        !self.transposed && self.stored_rows == self.rows && self.stored_cols == self.cols
    }
}

/// Logical f32 values -> device bytes (padding is zero, which adds nothing to a GEMM).
pub(crate) fn encode(values: &[f32], elem: Elem, p: Placement) -> Vec<u8> {
    // in parallel: an 8192² bf16 input is 64 M conversions
    const CHUNK: usize = 1 << 16;
    let w = elem.bytes();
    let mut dense = vec![0u8; values.len() * w];
    dense
        .par_chunks_mut(CHUNK * w)
        .zip(values.par_chunks(CHUNK))
        .for_each(|(out, vals)| {
            let mut buf = Vec::with_capacity(vals.len() * w);
            for &v in vals {
                elem.encode_into(v, &mut buf);
            }
            out.copy_from_slice(&buf);
        });
    if p.is_identity() {
        return dense;
    }
    let mut out = vec![0u8; p.stored_len() * w];
    for b in 0..p.batch {
        for r in 0..p.rows {
            for c in 0..p.cols {
                let src = ((b * p.rows + r) * p.cols + c) * w;
                let dst = p.stored_index(b, r, c) * w;
                out[dst..dst + w].copy_from_slice(&dense[src..src + w]);
            }
        }
    }
    out
}

/// Device bytes -> logical f32 values.
pub(crate) fn decode(bytes: &[u8], elem: Elem, p: Placement) -> Vec<f32> {
    let w = elem.bytes();
    if p.is_identity() {
        const CHUNK: usize = 1 << 16;
        let mut out = vec![0f32; p.len()];
        out.par_chunks_mut(CHUNK)
            .zip(bytes.par_chunks(CHUNK * w))
            .for_each(|(vals, b)| {
                for (i, v) in vals.iter_mut().enumerate() {
                    *v = elem.decode(&b[i * w..i * w + w]);
                }
            });
        return out;
    }
    let mut out = Vec::with_capacity(p.len());
    for b in 0..p.batch {
        for r in 0..p.rows {
            for c in 0..p.cols {
                let i = p.stored_index(b, r, c) * w;
                out.push(elem.decode(&bytes[i..i + w]));
            }
        }
    }
    out
}

/// Every element NaN: what an unwritten output element still holds after the check.
fn nan_bytes(elem: Elem, n: usize) -> Vec<u8> {
    let one: Vec<u8> = match elem {
        Elem::F32 => f32::NAN.to_le_bytes().to_vec(),
        Elem::F16 => half::f16::NAN.to_le_bytes().to_vec(),
        Elem::Bf16 => half::bf16::NAN.to_le_bytes().to_vec(),
        Elem::E4m3 => vec![0x7f],
    };
    one.repeat(n)
}

pub(crate) fn device_error(
    what: &str,
) -> impl Fn(cudarc::driver::DriverError) -> BackendError + '_ {
    move |e| {
        if e.0 == drv_sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
            BackendError::DoesNotFit(format!("{what}: out of device memory"))
        } else {
            BackendError::Device(format!("{what}: {e}"))
        }
    }
}

/// Q, K and V uploaded and O allocated, dense `[batch·heads][seq][head_dim]`, as both
/// attention paths (fused and unfused) need them: the inputs, the output, and their
/// device addresses in the order Q, K, V, O.
pub(crate) fn attention_tensors(
    stream: &Arc<CudaStream>,
    elem: Elem,
    (bh, sq, skv, d): (usize, usize, usize, usize),
    qkv: [&[f32]; 3],
) -> Result<(Vec<Tensor>, Tensor, [u64; 4]), BackendError> {
    let mut inputs = vec![
        Tensor::alloc(stream, elem, Placement::dense(bh, sq, d))?,
        Tensor::alloc(stream, elem, Placement::dense(bh, skv, d))?,
        Tensor::alloc(stream, elem, Placement::dense(bh, skv, d))?,
    ];
    for (tensor, values) in inputs.iter_mut().zip(qkv) {
        tensor.upload(stream, values)?;
    }
    let output = Tensor::alloc(stream, elem, Placement::dense(bh, sq, d))?;
    let ptrs = [
        inputs[0].ptr(stream),
        inputs[1].ptr(stream),
        inputs[2].ptr(stream),
        output.ptr(stream),
    ];
    Ok((inputs, output, ptrs))
}

/// A tensor in device memory, as raw bytes of its element type.
pub(crate) struct Tensor {
    pub elem: Elem,
    pub placement: Placement,
    pub buf: CudaSlice<u8>,
}

impl Tensor {
    pub(crate) fn alloc(
        stream: &Arc<CudaStream>,
        elem: Elem,
        placement: Placement,
    ) -> Result<Self, BackendError> {
        let bytes = placement.stored_len() * elem.bytes();
        // SAFETY: the contents are written (upload, poison or kernel) before being read.
        let buf = unsafe { stream.alloc::<u8>(bytes.max(1)) }.map_err(device_error("allocate"))?;
        Ok(Self {
            elem,
            placement,
            buf,
        })
    }

    /// The device address, for kernel arguments and cuBLAS.
    pub(crate) fn ptr(&self, stream: &CudaStream) -> u64 {
        // Event tracking is off on our context, so the guard records nothing.
        let (ptr, _guard) = self.buf.device_ptr(stream);
        ptr
    }

    pub(crate) fn upload(
        &mut self,
        stream: &Arc<CudaStream>,
        values: &[f32],
    ) -> Result<(), BackendError> {
        if values.len() != self.placement.len() {
            return Err(BackendError::Device(format!(
                "input has {} elements, the prepared tensor {}",
                values.len(),
                self.placement.len()
            )));
        }
        let bytes = encode(values, self.elem, self.placement);
        self.write(stream, &bytes)
    }

    fn write(&mut self, stream: &Arc<CudaStream>, bytes: &[u8]) -> Result<(), BackendError> {
        if bytes.len() > self.buf.len() {
            return Err(BackendError::Device("upload larger than its buffer".into()));
        }
        stream
            .memcpy_htod(bytes, &mut self.buf)
            .map_err(device_error("upload"))
    }

    pub(crate) fn poison(&mut self, stream: &Arc<CudaStream>) -> Result<(), BackendError> {
        let bytes = nan_bytes(self.elem, self.placement.stored_len());
        self.write(stream, &bytes)
    }

    pub(crate) fn download(&self, stream: &Arc<CudaStream>) -> Result<Vec<f32>, BackendError> {
        let bytes = stream
            .clone_dtoh(&self.buf)
            .map_err(device_error("download"))?;
        Ok(decode(&bytes, self.elem, self.placement))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use joulebench_core::precision::Precision;
    use joulebench_core::reference::random_normal;

    #[test]
    fn e4m3_round_trips_every_code() {
        for code in 0..=255u8 {
            let x = e4m3_to_f32(code);
            if x.is_nan() {
                assert!(code & 0x7f == 0x7f);
                continue;
            }
            assert_eq!(e4m3_from_f32(x), code, "code {code:#04x} = {x}");
        }
        assert_eq!(e4m3_to_f32(0x7e), 448.0);
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
    }

    #[test]
    fn e4m3_encoding_agrees_with_core_rounding() {
        let xs = random_normal(20_000, Precision::F32, 11);
        for x in xs
            .iter()
            .map(|x| x * 40.0)
            .chain([1000.0, -3.3, 1.0625, 2f32.powi(-10)])
        {
            let ours = e4m3_to_f32(e4m3_from_f32(x));
            assert_eq!(ours, Precision::Fp8E4m3.round(x), "x = {x}");
        }
    }

    #[test]
    fn half_types_encode_exactly() {
        let xs = random_normal(1000, Precision::Bf16, 3);
        let bytes = encode(&xs, Elem::Bf16, Placement::dense(1, 10, 100));
        assert_eq!(bytes.len(), 2000);
        assert_eq!(decode(&bytes, Elem::Bf16, Placement::dense(1, 10, 100)), xs);
        let ys = random_normal(1000, Precision::F16, 3);
        let p = Placement::dense(2, 25, 20);
        assert_eq!(decode(&encode(&ys, Elem::F16, p), Elem::F16, p), ys);
    }

    #[test]
    fn padded_and_transposed_placement_round_trips() {
        // B of a 2-batch 3x5 (k x n) matmul stored as [n_pad][k_pad] = [16][16].
        let p = Placement {
            batch: 2,
            rows: 3,
            cols: 5,
            stored_rows: 16,
            stored_cols: 16,
            transposed: true,
        };
        let xs: Vec<f32> = (0..p.len()).map(|i| i as f32 / 4.0).collect();
        let bytes = encode(&xs, Elem::E4m3, p);
        assert_eq!(bytes.len(), 2 * 16 * 16);
        // logical (b=1, r=2, c=4) sits at stored row 4, column 2 of batch 1
        let v = xs[(3 + 2) * 5 + 4];
        assert_eq!(
            e4m3_to_f32(bytes[(16 + 4) * 16 + 2]),
            Precision::Fp8E4m3.round(v)
        );
        // padding is zero
        assert_eq!(bytes[15], 0);
        let back = decode(&bytes, Elem::E4m3, p);
        let rounded: Vec<f32> = xs.iter().map(|&x| Precision::Fp8E4m3.round(x)).collect();
        assert_eq!(back, rounded);
    }

    #[test]
    fn poison_is_nan_in_every_type() {
        for e in [Elem::F32, Elem::F16, Elem::Bf16, Elem::E4m3] {
            let b = nan_bytes(e, 3);
            let p = Placement::dense(1, 1, 3);
            assert!(decode(&b, e, p).iter().all(|x| x.is_nan()), "{e:?}");
        }
    }
}
