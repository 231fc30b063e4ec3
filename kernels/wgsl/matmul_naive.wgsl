// Naive batched matmul C[b] = A[b] · B[b]: one invocation per output element, a scalar
// k loop straight from global memory. It is the baseline the tiled kernel's speed-up
// is measured against, and simple enough to trust when the tiled kernel disagrees.
//
// The host prepends a prelude: `enable f16;` for f16, `alias elem = f32|f16;` (the
// storage type; arithmetic is always f32), and WG_X / WG_Y (the workgroup shape).
// Layout (row-major): A [batch][m][k], B [batch][k][n], C [batch][m][n].

struct Params {
    batch: u32,
    m: u32,
    n: u32,
    k: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<elem>;
@group(0) @binding(2) var<storage, read> b: array<elem>;
@group(0) @binding(3) var<storage, read_write> c: array<elem>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let row = gid.y;
    let batch = gid.z;
    // The grid is rounded up to whole workgroups; the ragged edge has no element.
    if row >= params.m || col >= params.n {
        return;
    }
    let a_row = batch * params.m * params.k + row * params.k;
    let b_col = batch * params.k * params.n + col;
    var acc: f32 = 0.0;
    for (var p = 0u; p < params.k; p++) {
        acc += f32(a[a_row + p]) * f32(b[b_col + p * params.n]);
    }
    c[batch * params.m * params.n + row * params.n + col] = elem(acc);
}
