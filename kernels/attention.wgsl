// Fused scaled-dot-product attention with an online softmax (flash-decoding style): one
// workgroup per (query position, head); its 32 threads split the keys, each keeping a running
// max, sum and weighted value sum, then combine them through workgroup memory. Keys and values
// come from a cache [kvHeads, capacity, D] (grouped-query attention: query head h reads key/value
// head h / (heads / kvHeads)); causal masking lets query t see keys up to past + t.

struct Params {
  queries: u32,     // T: new positions (prefill: the prompt; decode: 1)
  heads: u32,
  kvHeads: u32,
  headDim: u32,     // D ≤ 64
  past: u32,        // keys before the new positions
  keys: u32,        // keys visible in all (past + T for self-attention)
  capacity: u32,    // the cache's length per head
  causal: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;        // [T, heads, D]
@group(0) @binding(2) var<storage, read> kCache: array<f32>;   // [kvHeads, capacity, D]
@group(0) @binding(3) var<storage, read> vCache: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [T, heads, D]

const THREADS: u32 = 32u;
var<workgroup> shMax: array<f32, 32>;
var<workgroup> shSum: array<f32, 32>;
var<workgroup> shAcc: array<f32, 2048>; // THREADS × 64

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let t = wg.x;
  let h = wg.y;
  let D = p.headDim;
  let kvh = h / (p.heads / p.kvHeads);
  let qBase = (t * p.heads + h) * D;
  var last = p.keys;
  if (p.causal != 0u) {
    last = min(p.keys, p.past + t + 1u);
  }
  var m = -3.0e38;
  var l = 0.0;
  var acc: array<f32, 64>;
  for (var d = 0u; d < D; d++) { acc[d] = 0.0; }
  for (var s = lane; s < last; s += THREADS) {
    let kBase = (kvh * p.capacity + s) * D;
    var score = 0.0;
    for (var d = 0u; d < D; d++) { score += q[qBase + d] * kCache[kBase + d]; }
    score *= p.scale;
    let mNew = max(m, score);
    let correction = exp(m - mNew);
    let w = exp(score - mNew);
    l = l * correction + w;
    for (var d = 0u; d < D; d++) { acc[d] = acc[d] * correction + w * vCache[kBase + d]; }
    m = mNew;
  }
  shMax[lane] = m;
  shSum[lane] = l;
  for (var d = 0u; d < D; d++) { shAcc[lane * 64u + d] = acc[d]; }
  workgroupBarrier();
  if (lane == 0u) {
    var gMax = -3.0e38;
    for (var i = 0u; i < THREADS; i++) { gMax = max(gMax, shMax[i]); }
    var total = 0.0;
    for (var i = 0u; i < THREADS; i++) { total += shSum[i] * exp(shMax[i] - gMax); }
    for (var d = 0u; d < D; d++) {
      var v = 0.0;
      for (var i = 0u; i < THREADS; i++) { v += shAcc[i * 64u + d] * exp(shMax[i] - gMax); }
      out[qBase + d] = v / total;
    }
  }
}
