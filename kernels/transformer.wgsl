// The small kernels around attention in a decoder step. Every entry point reads the same
// parameter block; each documents its fields. Rows are contiguous, PyTorch's Linear layout is
// kept for weights ([out, in]), so y = x Wᵀ.

struct Params {
  n0: u32,
  n1: u32,
  n2: u32,
  n3: u32,
  f0: f32,
  f1: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn flat(id: vec3<u32>) -> u32 { return id.x + id.y * 65535u * 64u; }

// y[t, n] (+)= f0 · Σ_k a[t, k] · b[n, k].  n0 = T, n1 = K, n2 = N, n3 = 1 to accumulate.
@compute @workgroup_size(64)
fn linear(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = flat(id);
  if (i >= p.n0 * p.n2) { return; }
  let t = i / p.n2;
  let n = i % p.n2;
  var s = 0.0;
  for (var k = 0u; k < p.n1; k++) { s += a[t * p.n1 + k] * b[n * p.n1 + k]; }
  if (p.n3 == 1u) { y[i] += p.f0 * s; } else { y[i] = p.f0 * s; }
}

// RMSNorm of each row: y = a / sqrt(mean(a²) + eps) · b.  n0 = rows, n1 = width, f0 = eps.
@compute @workgroup_size(64)
fn rmsnorm(@builtin(global_invocation_id) id: vec3<u32>) {
  let r = flat(id);
  if (r >= p.n0) { return; }
  var ss = 0.0;
  for (var k = 0u; k < p.n1; k++) { let v = a[r * p.n1 + k]; ss += v * v; }
  let inv = inverseSqrt(ss / f32(p.n1) + p.f0);
  for (var k = 0u; k < p.n1; k++) { y[r * p.n1 + k] = a[r * p.n1 + k] * inv * b[k]; }
}

// Rotary embedding in place on y [T, heads, D] (half-split, as HF Llama), position n3 + t.
// n0 = T, n1 = heads, n2 = D, f0 = theta.
@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) id: vec3<u32>) {
  let half = p.n2 / 2u;
  let i = flat(id);
  if (i >= p.n0 * p.n1 * half) { return; }
  let j = i % half;
  let row = i / half;                 // t · heads + h
  let t = row / p.n1;
  let angle = f32(p.n3 + t) * pow(p.f0, -f32(2u * j) / f32(p.n2));
  let c = cos(angle);
  let s = sin(angle);
  let x1 = y[row * p.n2 + j];
  let x2 = y[row * p.n2 + j + half];
  y[row * p.n2 + j] = x1 * c - x2 * s;
  y[row * p.n2 + j + half] = x2 * c + x1 * s;
}

// SwiGLU: y = silu(a) · b, elementwise.  n0 = count.
@compute @workgroup_size(64)
fn swiglu(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = flat(id);
  if (i >= p.n0) { return; }
  let g = a[i];
  y[i] = g / (1.0 + exp(-g)) * b[i];
}

// Appends rows a [T, kvHeads, D] to a cache y [kvHeads, capacity, D] at position n3 + t.
// n0 = T, n1 = kvHeads, n2 = D, f1 = capacity.
@compute @workgroup_size(64)
fn append(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = flat(id);
  if (i >= p.n0 * p.n1 * p.n2) { return; }
  let d = i % p.n2;
  let h = (i / p.n2) % p.n1;
  let t = i / (p.n2 * p.n1);
  let capacity = u32(p.f1);
  y[(h * capacity + p.n3 + t) * p.n2 + d] = a[i];
}

// Embedding lookup: y[t] = b[ids[t]] with ids as f32 in a.  n0 = T, n1 = width.
@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = flat(id);
  if (i >= p.n0 * p.n1) { return; }
  let t = i / p.n1;
  y[i] = b[u32(a[t]) * p.n1 + i % p.n1];
}

// Index of the largest of a[0..n0) into y[0] (as f32); one workgroup of 64.
var<workgroup> bestValue: array<f32, 64>;
var<workgroup> bestIndex: array<u32, 64>;
@compute @workgroup_size(64)
fn argmax(@builtin(local_invocation_index) lane: u32) {
  var v = -3.0e38;
  var k = 0u;
  for (var i = lane; i < p.n0; i += 64u) {
    if (a[i] > v) { v = a[i]; k = i; }
  }
  bestValue[lane] = v;
  bestIndex[lane] = k;
  workgroupBarrier();
  if (lane == 0u) {
    for (var j = 1u; j < 64u; j++) {
      if (bestValue[j] > v || (bestValue[j] == v && bestIndex[j] < k)) {
        v = bestValue[j];
        k = bestIndex[j];
      }
    }
    y[0] = f32(k);
  }
}
