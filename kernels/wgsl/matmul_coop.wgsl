// Batched matmul on the matrix units (tensor cores, matrix cores, simdgroup matrices)
// through wgpu's cooperative matrices: f16 inputs, f32 accumulation, f16 output.
//
// A workgroup of SG_M × SG_N subgroups computes a BM × BN block of C. Each subgroup
// owns a WM × WN tile of it, 4 × 2 fragments of F × F, kept as eight accumulator
// matrices (named, not an array: the fragments are opaque to the shader and stay in
// the subgroup's registers). Per BK-deep step of k, the workgroup stages the A and B
// blocks in workgroup memory as f16 (rows padded by 8 halves: every row starts on a
// 16-byte boundary, as matrix loads want, and consecutive rows fall in different
// banks); each subgroup then loads its A and B fragments from there (row-major,
// `coopLoadT`) and multiplies-accumulates. The accumulators go out through a small
// per-subgroup f32 scratch, converted to f16 on the way to C.
//
// Builds, chosen by the host with `#if`:
// - FIT: m, n, k are multiples of the block, A and B are read as vec4 of f16 and C
//   written unchecked; otherwise every load and store is tested against m, n, k
//   (zeros outside), so any shape is correct.
// - DOUBLE_BUFFER: the next k-step is read into registers before the current one is
//   multiplied and stored into the other buffer after, one barrier per step.
//
// Cooperative operations must run in uniform control flow: every loop and branch
// around them depends only on the shape. A subgroup finds its tile from its
// subgroup_id; where the driver makes subgroups smaller than SUBGROUP (the adapter's
// largest), there are more subgroups than tiles and they share tiles, computing and
// writing the same values.
//
// The host prepends: `enable f16; enable wgpu_cooperative_matrix;`, `alias elem = f16;`,
// the fragment types `frag_a`, `frag_b` (F × F, f16) and `frag_c` (F × F, f32), and the
// constants F, SG_M, SG_N, BK, SUBGROUP and BUFFERS.
// Layout (row-major): A [batch][m][k], B [batch][k][n], C [batch][m][n].

struct Params {
    batch: u32,
    m: u32,
    n: u32,
    k: u32,
}

const SG_TILES: u32 = SG_M * SG_N;
const THREADS: u32 = SG_TILES * SUBGROUP;
const WM: u32 = 4u * F;
const WN: u32 = 2u * F;
const BM: u32 = SG_M * WM;
const BN: u32 = SG_N * WN;
const BK4: u32 = BK / 4u;
const BN4: u32 = BN / 4u;
const A_STRIDE: u32 = BK + 8u;
const B_STRIDE: u32 = BN + 8u;
const A_TILE: u32 = BM * A_STRIDE;
const B_TILE: u32 = BK * B_STRIDE;
// vec4 loads each invocation makes per step (the last may fall past the block).
const A_LOADS: u32 = (BM * BK4 + THREADS - 1u) / THREADS;
const B_LOADS: u32 = (BK * BN4 + THREADS - 1u) / THREADS;

@group(0) @binding(0) var<uniform> params: Params;

#if FIT
@group(0) @binding(1) var<storage, read> a: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<elem>>;
@group(0) @binding(3) var<storage, read_write> c: array<elem>;

fn load_a(base: u32, row: u32, col: u32) -> vec4<f16> {
    return a[(base + row * params.k + col) / 4u];
}

fn load_b(base: u32, row: u32, col: u32) -> vec4<f16> {
    return b[(base + row * params.n + col) / 4u];
}

fn store_c(base: u32, row: u32, col: u32, value: f32) {
    c[base + row * params.n + col] = elem(value);
}
#else
@group(0) @binding(1) var<storage, read> a: array<elem>;
@group(0) @binding(2) var<storage, read> b: array<elem>;
@group(0) @binding(3) var<storage, read_write> c: array<elem>;

// Rows and columns past the matrix read as zero, so they add nothing to the sums.
fn load_a(base: u32, row: u32, col: u32) -> vec4<f16> {
    var v = vec4<f16>(0.0h);
    if row < params.m {
        for (var i = 0u; i < 4u; i++) {
            if col + i < params.k {
                v[i] = a[base + row * params.k + col + i];
            }
        }
    }
    return v;
}

fn load_b(base: u32, row: u32, col: u32) -> vec4<f16> {
    var v = vec4<f16>(0.0h);
    if row < params.k {
        for (var i = 0u; i < 4u; i++) {
            if col + i < params.n {
                v[i] = b[base + row * params.n + col + i];
            }
        }
    }
    return v;
}

fn store_c(base: u32, row: u32, col: u32, value: f32) {
    if row < params.m && col < params.n {
        c[base + row * params.n + col] = elem(value);
    }
}
#endif

// a_s[buffer * A_TILE + r * A_STRIDE + k]; b_s[buffer * B_TILE + k * B_STRIDE + col].
var<workgroup> a_s: array<f16, BUFFERS * A_TILE>;
var<workgroup> b_s: array<f16, BUFFERS * B_TILE>;
// One F × F f32 fragment per subgroup tile, on its way out.
var<workgroup> c_s: array<f32, SG_TILES * F * F>;

// The e-th vec4 of the A block (row e / BK4, column 4·(e % BK4)) into buffer `buf`.
fn stage_a(buf: u32, e: u32, v: vec4<f16>) {
    if e < BM * BK4 {
        let at = buf * A_TILE + (e / BK4) * A_STRIDE + (e % BK4) * 4u;
        a_s[at] = v.x;
        a_s[at + 1u] = v.y;
        a_s[at + 2u] = v.z;
        a_s[at + 3u] = v.w;
    }
}

fn stage_b(buf: u32, e: u32, v: vec4<f16>) {
    if e < BK * BN4 {
        let at = buf * B_TILE + (e / BN4) * B_STRIDE + (e % BN4) * 4u;
        b_s[at] = v.x;
        b_s[at + 1u] = v.y;
        b_s[at + 2u] = v.z;
        b_s[at + 3u] = v.w;
    }
}

// The e-th vec4 of the A block of the step starting at k0, from global memory.
fn fetch_a(base: u32, row0: u32, k0: u32, e: u32) -> vec4<f16> {
    if e < BM * BK4 {
        return load_a(base, row0 + e / BK4, k0 + (e % BK4) * 4u);
    }
    return vec4<f16>(0.0h);
}

fn fetch_b(base: u32, col0: u32, k0: u32, e: u32) -> vec4<f16> {
    if e < BK * BN4 {
        return load_b(base, k0 + e / BN4, col0 + (e % BN4) * 4u);
    }
    return vec4<f16>(0.0h);
}

// One accumulator out: through this tile's scratch, each lane of the subgroup
// converting and writing every `lanes`-th element. The barriers order the scratch
// between the subgroup's store and its lanes' reads, and before the next fragment.
fn write_fragment(frag: frag_c, slot: u32, c_base: u32, row: u32, col: u32, lane: u32, lanes: u32) {
    coopStoreT(frag, &c_s[slot * F * F], F);
    workgroupBarrier();
    for (var e = lane; e < F * F; e += lanes) {
        store_c(c_base, row + e / F, col + e % F, c_s[slot * F * F + e]);
    }
    workgroupBarrier();
}

@compute @workgroup_size(THREADS, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    let batch = wid.z;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let a_base = batch * params.m * params.k;
    let b_base = batch * params.k * params.n;
    let c_base = batch * params.m * params.n;
    let tile = sg_id % SG_TILES;
    let tile_row = (tile / SG_N) * WM;
    let tile_col = (tile % SG_N) * WN;

    var c00 = frag_c();
    var c01 = frag_c();
    var c10 = frag_c();
    var c11 = frag_c();
    var c20 = frag_c();
    var c21 = frag_c();
    var c30 = frag_c();
    var c31 = frag_c();

    let k_steps = (params.k + BK - 1u) / BK;
#if DOUBLE_BUFFER
    var a_next: array<vec4<f16>, A_LOADS>;
    var b_next: array<vec4<f16>, B_LOADS>;
    for (var i = 0u; i < A_LOADS; i++) {
        stage_a(0u, lidx + i * THREADS, fetch_a(a_base, row0, 0u, lidx + i * THREADS));
    }
    for (var i = 0u; i < B_LOADS; i++) {
        stage_b(0u, lidx + i * THREADS, fetch_b(b_base, col0, 0u, lidx + i * THREADS));
    }
    workgroupBarrier();
#endif
    for (var t = 0u; t < k_steps; t++) {
#if DOUBLE_BUFFER
        let buffer = t % 2u;
        let has_next = t + 1u < k_steps;
        if has_next {
            for (var i = 0u; i < A_LOADS; i++) {
                a_next[i] = fetch_a(a_base, row0, (t + 1u) * BK, lidx + i * THREADS);
            }
            for (var i = 0u; i < B_LOADS; i++) {
                b_next[i] = fetch_b(b_base, col0, (t + 1u) * BK, lidx + i * THREADS);
            }
        }
#else
        let buffer = 0u;
        for (var i = 0u; i < A_LOADS; i++) {
            stage_a(0u, lidx + i * THREADS, fetch_a(a_base, row0, t * BK, lidx + i * THREADS));
        }
        for (var i = 0u; i < B_LOADS; i++) {
            stage_b(0u, lidx + i * THREADS, fetch_b(b_base, col0, t * BK, lidx + i * THREADS));
        }
        workgroupBarrier();
#endif
        for (var kk = 0u; kk < BK; kk += F) {
            let a_at = buffer * A_TILE + tile_row * A_STRIDE + kk;
            let a0 = coopLoadT<frag_a>(&a_s[a_at], A_STRIDE);
            let a1 = coopLoadT<frag_a>(&a_s[a_at + F * A_STRIDE], A_STRIDE);
            let a2 = coopLoadT<frag_a>(&a_s[a_at + 2u * F * A_STRIDE], A_STRIDE);
            let a3 = coopLoadT<frag_a>(&a_s[a_at + 3u * F * A_STRIDE], A_STRIDE);
            let b_at = buffer * B_TILE + kk * B_STRIDE + tile_col;
            let b0 = coopLoadT<frag_b>(&b_s[b_at], B_STRIDE);
            let b1 = coopLoadT<frag_b>(&b_s[b_at + F], B_STRIDE);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
        }
#if DOUBLE_BUFFER
        if has_next {
            for (var i = 0u; i < A_LOADS; i++) {
                stage_a(1u - buffer, lidx + i * THREADS, a_next[i]);
            }
            for (var i = 0u; i < B_LOADS; i++) {
                stage_b(1u - buffer, lidx + i * THREADS, b_next[i]);
            }
        }
#endif
        // The next step overwrites a buffer: every subgroup must be done with it.
        workgroupBarrier();
    }

    let row = row0 + tile_row;
    let col = col0 + tile_col;
    write_fragment(c00, tile, c_base, row, col, lane, lanes);
    write_fragment(c01, tile, c_base, row, col + F, lane, lanes);
    write_fragment(c10, tile, c_base, row + F, col, lane, lanes);
    write_fragment(c11, tile, c_base, row + F, col + F, lane, lanes);
    write_fragment(c20, tile, c_base, row + 2u * F, col, lane, lanes);
    write_fragment(c21, tile, c_base, row + 2u * F, col + F, lane, lanes);
    write_fragment(c30, tile, c_base, row + 3u * F, col, lane, lanes);
    write_fragment(c31, tile, c_base, row + 3u * F, col + F, lane, lanes);
}
