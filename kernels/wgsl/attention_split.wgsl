// Fused attention forward, FlashAttention-style: one pass over K and V with an
// online softmax (running max and running sum), so the seq_q × seq_kv score matrix
// is never written anywhere; only one BKV-key tile of it exists, in workgroup memory.
// This is the first, query-split build; attention_tiled.wgsl organises the same work
// as a matmul and is preferred where it fits. This one needs the least workgroup
// memory and stays selectable (variants `d*-q*-kv*-split*`).
//
// A workgroup owns BQ consecutive queries of one (batch, head). Each query is served
// by TD invocations, each holding a HEAD_DIM / TD slice of q and of the output
// accumulator in registers; a score is the sum of the TD partial dot products,
// exchanged through workgroup memory. K and V tiles are staged in workgroup memory
// once and shared by all BQ queries.
//
// Causal masking is bottom-right aligned: query i sees keys j <= i + (seq_kv - seq_q);
// key tiles past the last key any query of the block can see are skipped, and a
// query that sees no key outputs zeros (as the reference does).
//
// The host prepends: `enable f16;` for f16, `alias elem = f32|f16;` (storage type;
// arithmetic is f32), and the constants HEAD_DIM, BQ, BKV, TD.
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
// vec4s of one query's slice held by one invocation.
const SLICE4: u32 = D4 / TD;
const THREADS: u32 = TD * BQ;
const TILE4: u32 = BKV * D4;
// A score no real score reaches; finite so that exp2 of differences never sees inf - inf.
const NO_SCORE: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<elem>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<elem>>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<elem>>;

var<workgroup> k_tile: array<vec4<f32>, TILE4>;
var<workgroup> v_tile: array<vec4<f32>, TILE4>;
// partial[(query_in_block * BKV + key_in_tile) * TD + slice]
var<workgroup> partial: array<f32, BQ * BKV * TD>;

@compute @workgroup_size(TD, BQ, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
) {
    let slice = lid.x;
    let qi = wid.x * BQ + lid.y;
    let bh = wid.y;
    let q_in_range = qi < params.seq_q;
    let row4 = (bh * params.seq_q + qi) * D4 + slice * SLICE4;

    var q_reg: array<vec4<f32>, SLICE4>;
    var acc: array<vec4<f32>, SLICE4>;
    if q_in_range {
        for (var i = 0u; i < SLICE4; i++) {
            q_reg[i] = vec4<f32>(q[row4 + i]) * params.scale_log2;
        }
    }
    var m_run: f32 = NO_SCORE;
    var l_run: f32 = 0.0;

    // Keys this query may see: [0, last_key]; signed, since it is negative for the
    // first queries when seq_q > seq_kv under the causal mask.
    let shift = i32(params.seq_kv) - i32(params.seq_q);
    var last_key = i32(params.seq_kv) - 1;
    // End of the key range any query of this block sees (uniform across the workgroup).
    var kv_end = params.seq_kv;
    if params.causal != 0u {
        last_key = i32(qi) + shift;
        let block_last_q = i32(min(wid.x * BQ + BQ, params.seq_q)) - 1;
        kv_end = u32(clamp(block_last_q + shift + 1, 0, i32(params.seq_kv)));
    }

    let kv_base4 = bh * params.seq_kv * D4;
    for (var kv0 = 0u; kv0 < kv_end; kv0 += BKV) {
        for (var e = lidx; e < TILE4; e += THREADS) {
            let key = kv0 + e / D4;
            if key < params.seq_kv {
                k_tile[e] = vec4<f32>(k[kv_base4 + kv0 * D4 + e]);
                v_tile[e] = vec4<f32>(v[kv_base4 + kv0 * D4 + e]);
            } else {
                k_tile[e] = vec4<f32>(0.0);
                v_tile[e] = vec4<f32>(0.0);
            }
        }
        workgroupBarrier();

        for (var j = 0u; j < BKV; j++) {
            var d: f32 = 0.0;
            for (var i = 0u; i < SLICE4; i++) {
                d += dot(q_reg[i], k_tile[j * D4 + slice * SLICE4 + i]);
            }
            partial[(lid.y * BKV + j) * TD + slice] = d;
        }
        workgroupBarrier();

        // Every invocation of a query sums the partials in the same order, so all TD
        // of them agree exactly on the scores, the max and the sum.
        var s: array<f32, BKV>;
        var m_new = m_run;
        for (var j = 0u; j < BKV; j++) {
            var score: f32 = 0.0;
            for (var t = 0u; t < TD; t++) {
                score += partial[(lid.y * BKV + j) * TD + t];
            }
            let key = i32(kv0 + j);
            if key <= last_key && kv0 + j < params.seq_kv {
                s[j] = score;
                m_new = max(m_new, score);
            } else {
                s[j] = NO_SCORE;
            }
        }
        let alpha = exp2(m_run - m_new);
        l_run *= alpha;
        for (var i = 0u; i < SLICE4; i++) {
            acc[i] *= alpha;
        }
        for (var j = 0u; j < BKV; j++) {
            let p = select(0.0, exp2(s[j] - m_new), s[j] > NO_SCORE);
            l_run += p;
            for (var i = 0u; i < SLICE4; i++) {
                acc[i] = fma(vec4<f32>(p), v_tile[j * D4 + slice * SLICE4 + i], acc[i]);
            }
        }
        m_run = m_new;
        // The next tile overwrites k_tile, v_tile and partial.
        workgroupBarrier();
    }

    if q_in_range {
        let inv_l = select(0.0, 1.0 / l_run, l_run > 0.0);
        for (var i = 0u; i < SLICE4; i++) {
            o[row4 + i] = vec4<elem>(acc[i] * inv_l);
        }
    }
}
