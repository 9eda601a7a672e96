// Planar float images [B, C, H, W] -> packed RGBA8 pixels [B, H, W]: rgb = M · v + bias, read
// as [-1, 1] and mapped to 0..255. M = identity for a VAE's output; a fitted 3 × C matrix turns
// latents into a cheap low-resolution preview.

struct Params {
  pixels: u32,      // H·W
  total: u32,       // B·H·W
  channels: u32,    // C ≤ 4
  _pad: u32,
  m: array<vec4<f32>, 3>,  // row r: weights of channels 0..3 for colour r
  bias: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = id.x + id.y * 65535u * 64u;
  if (i >= p.total) { return; }
  let image = i / p.pixels;
  let k = i % p.pixels;
  var v = vec4<f32>(0.0);
  for (var ch = 0u; ch < p.channels; ch = ch + 1u) {
    v[ch] = src[(image * p.channels + ch) * p.pixels + k];
  }
  var packed = 0xff000000u;
  for (var r = 0u; r < 3u; r = r + 1u) {
    let x = clamp((dot(p.m[r], v) + p.bias[r] + 1.0) * 0.5, 0.0, 1.0);
    packed = packed | (u32(floor(x * 255.0 + 0.5)) << (8u * r));
  }
  dst[i] = packed;
}
