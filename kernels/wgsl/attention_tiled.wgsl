// Fused attention forward organised like a matmul: a workgroup owns BQ queries of one
// (batch, head) and walks the keys in tiles of BKV. Per tile it computes the BQ × BKV
// block of scores S = Q·Kᵀ as a register-tiled product (each invocation a TQ × 4·TK4
// sub-block, exactly the loop of matmul_tiled.wgsl with head_dim as the k dimension),
// updates the online softmax of its rows, and adds P·V into a TQ × 4·TD4 block of the
// output, again a register-tiled product. The score matrix never leaves the workgroup.
//
// The score sub-block and the output sub-block of an invocation cover the same rows,
// so the softmax state of a row (running max, running sum) lives in the registers of
// the WG_X invocations that share it; they agree on the row's max through one exchange
// in workgroup memory per tile and keep partial sums, added up once at the end.
//
// Workgroup memory, reused between phases:
// - stage: during S, a DK-wide slice of the Q block (row-major, vec4 over head_dim) and
//   the same slice of the K tile transposed (head_dim-major, vec4 over keys); during
//   P·V, the V tile (key-major, vec4 over head_dim).
// - p_tile: the tile's probabilities, row-major, vec4 over keys.
// - row_red: one value per (row, invocation column), for the max and the final sum.
//
// Causal masking is bottom-right aligned: query i sees keys j <= i + (seq_kv - seq_q);
// key tiles past the last key any query of the block can see are skipped, and a
// query that sees no key outputs zeros (as the reference does).
//
// The host prepends: `enable f16;` for f16, `alias elem = f32|f16;` (storage type;
// arithmetic is f32), and the constants HEAD_DIM, TQ, TK4, TD4, WG_X, WG_Y, DK.
// Layout (row-major): Q, O [batch][heads][seq_q][HEAD_DIM]; K, V [batch][heads][seq_kv][HEAD_DIM].

struct Params {
    batch_heads: u32,
    seq_q: u32,
    seq_kv: u32,
    causal: u32,
    // 1/sqrt(HEAD_DIM) · log2(e): scores are kept in base 2 so exp2 is the only exp.
    scale_log2: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const D4: u32 = HEAD_DIM / 4u;
const DK4: u32 = DK / 4u;
const BQ: u32 = TQ * WG_Y;
const BKV4: u32 = TK4 * WG_X;
const BKV: u32 = 4u * BKV4;
const THREADS: u32 = WG_X * WG_Y;
// stage during S: the Q slice at 0, the transposed K slice after it.
const Q_SLICE4: u32 = BQ * DK4;
const KT_SLICE4: u32 = DK * BKV4;
const V_TILE4: u32 = BKV * D4;
const STAGE4: u32 = max(Q_SLICE4 + KT_SLICE4, V_TILE4);
// A score no real score reaches; finite so that exp2 of differences never sees inf - inf.
const NO_SCORE: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<elem>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<elem>>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<elem>>;

var<workgroup> stage: array<vec4<f32>, STAGE4>;
var<workgroup> p_tile: array<vec4<f32>, BQ * BKV4>;
var<workgroup> row_red: array<f32, BQ * WG_X>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let bh = wid.y;
    let q0 = wid.x * BQ;
    let q_base4 = bh * params.seq_q * D4;
    let kv_base4 = bh * params.seq_kv * D4;

    // Rows of this invocation: i * WG_Y + lid.y, for i < TQ. Strided by the workgroup
    // shape, as in the matmul, so that neighbouring invocations read neighbouring vec4s.
    var s_acc: array<vec4<f32>, TQ * TK4>;
    var o_acc: array<vec4<f32>, TQ * TD4>;
    var m_run: array<f32, TQ>;
    var l_part: array<f32, TQ>;
    // Last key each row may see; signed, since it is negative for the first queries
    // when seq_q > seq_kv under the causal mask.
    var last_key: array<i32, TQ>;
    let shift = i32(params.seq_kv) - i32(params.seq_q);
    for (var i = 0u; i < TQ; i++) {
        m_run[i] = NO_SCORE;
        l_part[i] = 0.0;
        let qi = i32(q0 + i * WG_Y + lid.y);
        last_key[i] = select(i32(params.seq_kv) - 1, qi + shift, params.causal != 0u);
        last_key[i] = min(last_key[i], i32(params.seq_kv) - 1);
    }
    // End of the key range any query of this block sees (uniform across the workgroup).
    var kv_end = params.seq_kv;
    if params.causal != 0u {
        let block_last_q = i32(min(q0 + BQ, params.seq_q)) - 1;
        kv_end = u32(clamp(block_last_q + shift + 1, 0, i32(params.seq_kv)));
    }

    for (var kv0 = 0u; kv0 < kv_end; kv0 += BKV) {
        // ---- S = Q·Kᵀ for this tile, head_dim in DK-wide slices.
        for (var i = 0u; i < TQ * TK4; i++) {
            s_acc[i] = vec4<f32>(0.0);
        }
        for (var d0 = 0u; d0 < HEAD_DIM; d0 += DK) {
            for (var e = lidx; e < Q_SLICE4; e += THREADS) {
                let row = q0 + e / DK4;
                var value = vec4<f32>(0.0);
                if row < params.seq_q {
                    value = vec4<f32>(q[q_base4 + row * D4 + d0 / 4u + e % DK4]) * params.scale_log2;
                }
                stage[e] = value;
            }
            // Four keys by one vec4 of head_dim per step, transposed in registers so
            // that the stores are vec4s over keys.
            for (var e = lidx; e < BKV4 * DK4; e += THREADS) {
                let key4 = e / DK4;
                let dk4 = e % DK4;
                var rows: array<vec4<f32>, 4>;
                for (var c = 0u; c < 4u; c++) {
                    let key = kv0 + key4 * 4u + c;
                    rows[c] = vec4<f32>(0.0);
                    if key < params.seq_kv {
                        rows[c] = vec4<f32>(k[kv_base4 + key * D4 + d0 / 4u + dk4]);
                    }
                }
                let base = Q_SLICE4 + dk4 * 4u * BKV4 + key4;
                stage[base] = vec4<f32>(rows[0].x, rows[1].x, rows[2].x, rows[3].x);
                stage[base + BKV4] = vec4<f32>(rows[0].y, rows[1].y, rows[2].y, rows[3].y);
                stage[base + 2u * BKV4] = vec4<f32>(rows[0].z, rows[1].z, rows[2].z, rows[3].z);
                stage[base + 3u * BKV4] = vec4<f32>(rows[0].w, rows[1].w, rows[2].w, rows[3].w);
            }
            workgroupBarrier();

            var b_reg: array<vec4<f32>, 4u * TK4>;
            for (var dk4 = 0u; dk4 < DK4; dk4++) {
                for (var j = 0u; j < TK4; j++) {
                    for (var c = 0u; c < 4u; c++) {
                        b_reg[j * 4u + c] = stage[Q_SLICE4 + (dk4 * 4u + c) * BKV4 + j * WG_X + lid.x];
                    }
                }
                for (var i = 0u; i < TQ; i++) {
                    let a = stage[(i * WG_Y + lid.y) * DK4 + dk4];
                    for (var j = 0u; j < TK4; j++) {
                        var sum = s_acc[i * TK4 + j];
                        sum = fma(vec4<f32>(a.x), b_reg[j * 4u], sum);
                        sum = fma(vec4<f32>(a.y), b_reg[j * 4u + 1u], sum);
                        sum = fma(vec4<f32>(a.z), b_reg[j * 4u + 2u], sum);
                        sum = fma(vec4<f32>(a.w), b_reg[j * 4u + 3u], sum);
                        s_acc[i * TK4 + j] = sum;
                    }
                }
            }
            // The next slice (or the V tile) overwrites stage.
            workgroupBarrier();
        }

        // ---- Mask, and this invocation's share of each row's max.
        for (var i = 0u; i < TQ; i++) {
            var m_local = NO_SCORE;
            for (var j = 0u; j < TK4; j++) {
                let key0 = i32(kv0 + (j * WG_X + lid.x) * 4u);
                let keys = vec4<i32>(key0, key0 + 1, key0 + 2, key0 + 3);
                let s = select(vec4<f32>(NO_SCORE), s_acc[i * TK4 + j], keys <= vec4<i32>(last_key[i]));
                s_acc[i * TK4 + j] = s;
                m_local = max(m_local, max(max(s.x, s.y), max(s.z, s.w)));
            }
            row_red[(i * WG_Y + lid.y) * WG_X + lid.x] = m_local;
        }
        for (var e = lidx; e < V_TILE4; e += THREADS) {
            let key = kv0 + e / D4;
            var value = vec4<f32>(0.0);
            if key < params.seq_kv {
                value = vec4<f32>(v[kv_base4 + kv0 * D4 + e]);
            }
            stage[e] = value;
        }
        workgroupBarrier();

        // ---- Online softmax: every invocation of a row reads the same partial maxima
        // in the same order, so they agree exactly on the row's max.
        for (var i = 0u; i < TQ; i++) {
            let row = i * WG_Y + lid.y;
            var m_new = m_run[i];
            for (var x = 0u; x < WG_X; x++) {
                m_new = max(m_new, row_red[row * WG_X + x]);
            }
            let alpha = exp2(m_run[i] - m_new);
            m_run[i] = m_new;
            var l = l_part[i] * alpha;
            for (var j = 0u; j < TD4; j++) {
                o_acc[i * TD4 + j] *= alpha;
            }
            for (var j = 0u; j < TK4; j++) {
                let s = s_acc[i * TK4 + j];
                let p = select(vec4<f32>(0.0), exp2(s - vec4<f32>(m_new)), s > vec4<f32>(NO_SCORE));
                l += (p.x + p.y) + (p.z + p.w);
                p_tile[row * BKV4 + j * WG_X + lid.x] = p;
            }
            l_part[i] = l;
        }
        workgroupBarrier();

        // ---- O += P·V: four keys per step, a vec4 of P per row.
        for (var k4 = 0u; k4 < BKV4; k4++) {
            var p_reg: array<vec4<f32>, TQ>;
            for (var i = 0u; i < TQ; i++) {
                p_reg[i] = p_tile[(i * WG_Y + lid.y) * BKV4 + k4];
            }
            for (var c = 0u; c < 4u; c++) {
                for (var j = 0u; j < TD4; j++) {
                    let vv = stage[(k4 * 4u + c) * D4 + j * WG_X + lid.x];
                    for (var i = 0u; i < TQ; i++) {
                        o_acc[i * TD4 + j] = fma(vec4<f32>(p_reg[i][c]), vv, o_acc[i * TD4 + j]);
                    }
                }
            }
        }
        // The next tile overwrites stage, p_tile and row_red.
        workgroupBarrier();
    }

    // ---- Each row's sum is spread over its WG_X invocations: add the partial sums.
    for (var i = 0u; i < TQ; i++) {
        row_red[(i * WG_Y + lid.y) * WG_X + lid.x] = l_part[i];
    }
    workgroupBarrier();
    for (var i = 0u; i < TQ; i++) {
        let row = i * WG_Y + lid.y;
        var l: f32 = 0.0;
        for (var x = 0u; x < WG_X; x++) {
            l += row_red[row * WG_X + x];
        }
        let qi = q0 + row;
        if qi < params.seq_q {
            let inv_l = select(0.0, 1.0 / l, l > 0.0);
            for (var j = 0u; j < TD4; j++) {
                o[q_base4 + qi * D4 + j * WG_X + lid.x] = vec4<elem>(o_acc[i * TD4 + j] * inv_l);
            }
        }
    }
}
