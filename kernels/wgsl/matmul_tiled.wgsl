// Tiled batched matmul: a workgroup computes a TILE_M × TILE_N block of C, staging
// TILE_K-deep slices of A and B in workgroup memory so each global element is read
// once per tile instead of once per output; each invocation keeps a TM × (4·TN4)
// block of accumulators in registers (register blocking) and reads workgroup memory
// as vec4, so one shared load feeds four FMAs.
//
// Two builds of this file, chosen by the host with `#if FIT`:
// - FIT: m, n, k are multiples of the tile, so every access is in range; A, B and C
//   are bound as vec4 arrays (16-byte loads and stores) and the module is created
//   without runtime bounds checks.
// - otherwise: scalar storage, every load and store tested against m, n, k (zeros
//   outside), so any shape is correct.
//
// With DOUBLE_BUFFER, two buffers of each tile alternate (see the k loop); without,
// one.
//
// The host prepends: `enable f16;` for f16, `alias elem = f32|f16;` (storage type;
// arithmetic is f32), and the constants TILE_K, TM, TN4, WG_X, WG_Y and BUFFERS (1,
// or 2 with DOUBLE_BUFFER).
// Layout (row-major): A [batch][m][k], B [batch][k][n], C [batch][m][n].

struct Params {
    batch: u32,
    m: u32,
    n: u32,
    k: u32,
}

const TILE_M: u32 = TM * WG_Y;
const TILE_N: u32 = 4u * TN4 * WG_X;
const THREADS: u32 = WG_X * WG_Y;
const TILE_K4: u32 = TILE_K / 4u;
const TILE_N4: u32 = TILE_N / 4u;
// vec4 loads each invocation makes per tile; the variants make these whole numbers.
const A_LOADS: u32 = TILE_M * TILE_K4 / THREADS;
const B_LOADS: u32 = TILE_K * TILE_N4 / THREADS;
const A_TILE4: u32 = TILE_M * TILE_K4;
const B_TILE4: u32 = TILE_K * TILE_N4;

@group(0) @binding(0) var<uniform> params: Params;

#if FIT
@group(0) @binding(1) var<storage, read> a: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<elem>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<elem>>;

// `col` is a multiple of 4 and the row length too, so the vec4 index is exact.
fn load_a(base: u32, row: u32, col: u32) -> vec4<f32> {
    return vec4<f32>(a[(base + row * params.k + col) / 4u]);
}

fn load_b(base: u32, row: u32, col: u32) -> vec4<f32> {
    return vec4<f32>(b[(base + row * params.n + col) / 4u]);
}

fn store_c(base: u32, row: u32, col: u32, value: vec4<f32>) {
    c[(base + row * params.n + col) / 4u] = vec4<elem>(value);
}
#else
@group(0) @binding(1) var<storage, read> a: array<elem>;
@group(0) @binding(2) var<storage, read> b: array<elem>;
@group(0) @binding(3) var<storage, read_write> c: array<elem>;

// Rows and columns past the matrix read as zero, so they add nothing to the sums.
fn load_a(base: u32, row: u32, col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if row < params.m {
        for (var i = 0u; i < 4u; i++) {
            if col + i < params.k {
                v[i] = f32(a[base + row * params.k + col + i]);
            }
        }
    }
    return v;
}

fn load_b(base: u32, row: u32, col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if row < params.k {
        for (var i = 0u; i < 4u; i++) {
            if col + i < params.n {
                v[i] = f32(b[base + row * params.n + col + i]);
            }
        }
    }
    return v;
}

fn store_c(base: u32, row: u32, col: u32, value: vec4<f32>) {
    if row < params.m {
        for (var i = 0u; i < 4u; i++) {
            if col + i < params.n {
                c[base + row * params.n + col + i] = elem(value[i]);
            }
        }
    }
}
#endif

// A tile row-major with k in vec4s: a_tile[buffer * A_TILE4 + r * TILE_K4 + k4].
var<workgroup> a_tile: array<vec4<f32>, BUFFERS * A_TILE4>;
// B tile row-major with n in vec4s: b_tile[buffer * B_TILE4 + k * TILE_N4 + n4].
var<workgroup> b_tile: array<vec4<f32>, BUFFERS * B_TILE4>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let batch = wid.z;
    let row0 = wid.y * TILE_M;
    let col0 = wid.x * TILE_N;
    let a_base = batch * params.m * params.k;
    let b_base = batch * params.k * params.n;
    let c_base = batch * params.m * params.n;

    // acc[i * TN4 + j]: row (i * WG_Y + lid.y), columns 4·(j * WG_X + lid.x) .. +4.
    // Rows and vec4 columns are strided by the workgroup shape so that neighbouring
    // invocations read neighbouring vec4s of b_tile.
    var acc: array<vec4<f32>, TM * TN4>;
    var b_reg: array<vec4<f32>, 4u * TN4>;

    let k_tiles = (params.k + TILE_K - 1u) / TILE_K;
#if DOUBLE_BUFFER
    // Double buffering: the next k-tile is read from global memory into registers
    // before the current one is multiplied, and stored into the other buffer after,
    // so its latency overlaps the arithmetic and one barrier per tile suffices (the
    // buffer written in step t was last read in step t - 1, before its barrier).
    var a_next: array<vec4<f32>, A_LOADS>;
    var b_next: array<vec4<f32>, B_LOADS>;
    for (var i = 0u; i < A_LOADS; i++) {
        let e = lidx + i * THREADS;
        a_tile[e] = load_a(a_base, row0 + e / TILE_K4, (e % TILE_K4) * 4u);
    }
    for (var i = 0u; i < B_LOADS; i++) {
        let e = lidx + i * THREADS;
        b_tile[e] = load_b(b_base, e / TILE_N4, col0 + (e % TILE_N4) * 4u);
    }
    workgroupBarrier();
#endif
    for (var t = 0u; t < k_tiles; t++) {
#if DOUBLE_BUFFER
        let buffer = t % 2u;
        let has_next = t + 1u < k_tiles;
        if has_next {
            let k0 = (t + 1u) * TILE_K;
            for (var i = 0u; i < A_LOADS; i++) {
                let e = lidx + i * THREADS;
                a_next[i] = load_a(a_base, row0 + e / TILE_K4, k0 + (e % TILE_K4) * 4u);
            }
            for (var i = 0u; i < B_LOADS; i++) {
                let e = lidx + i * THREADS;
                b_next[i] = load_b(b_base, k0 + e / TILE_N4, col0 + (e % TILE_N4) * 4u);
            }
        }
#else
        let buffer = 0u;
        let k0 = t * TILE_K;
        for (var i = 0u; i < A_LOADS; i++) {
            let e = lidx + i * THREADS;
            a_tile[e] = load_a(a_base, row0 + e / TILE_K4, k0 + (e % TILE_K4) * 4u);
        }
        for (var i = 0u; i < B_LOADS; i++) {
            let e = lidx + i * THREADS;
            b_tile[e] = load_b(b_base, k0 + e / TILE_N4, col0 + (e % TILE_N4) * 4u);
        }
        workgroupBarrier();
#endif
        let a_off = buffer * A_TILE4;
        let b_off = buffer * B_TILE4;

        for (var k4 = 0u; k4 < TILE_K4; k4++) {
            for (var j = 0u; j < TN4; j++) {
                for (var s = 0u; s < 4u; s++) {
                    b_reg[j * 4u + s] = b_tile[b_off + (k4 * 4u + s) * TILE_N4 + j * WG_X + lid.x];
                }
            }
            for (var i = 0u; i < TM; i++) {
                let av = a_tile[a_off + (i * WG_Y + lid.y) * TILE_K4 + k4];
                for (var j = 0u; j < TN4; j++) {
                    var sum = acc[i * TN4 + j];
                    sum = fma(vec4<f32>(av.x), b_reg[j * 4u], sum);
                    sum = fma(vec4<f32>(av.y), b_reg[j * 4u + 1u], sum);
                    sum = fma(vec4<f32>(av.z), b_reg[j * 4u + 2u], sum);
                    sum = fma(vec4<f32>(av.w), b_reg[j * 4u + 3u], sum);
                    acc[i * TN4 + j] = sum;
                }
            }
        }
#if DOUBLE_BUFFER
        if has_next {
            let next = (1u - buffer);
            for (var i = 0u; i < A_LOADS; i++) {
                a_tile[next * A_TILE4 + lidx + i * THREADS] = a_next[i];
            }
            for (var i = 0u; i < B_LOADS; i++) {
                b_tile[next * B_TILE4 + lidx + i * THREADS] = b_next[i];
            }
        }
#endif
        // The next tile overwrites a tile buffer: everyone must be done with it.
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN4; j++) {
            let row = row0 + i * WG_Y + lid.y;
            let col = col0 + (j * WG_X + lid.x) * 4u;
            store_c(c_base, row, col, acc[i * TN4 + j]);
        }
    }
}
