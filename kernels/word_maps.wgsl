// The sum over denoising steps of the UNet's word maps (DAAM): one dispatch per step adds the
// conditional half's maps of the prompt's word tokens to a running sum that stays on the GPU.
// See kernels/word_maps.ts for the TypeScript reference and the layouts.

struct Params {
  count: u32,    // values in the sum: images × words × spatial
  spatial: u32,  // h·w of a map
  words: u32,    // the prompt's word tokens
  tokens: u32,   // tokens per map row (the text encoder's padded length)
  first: u32,    // the first word token's index (after BOS)
  offset: u32,   // where the conditional half starts in the maps, in values
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> maps: array<f32>;
@group(0) @binding(2) var<storage, read_write> sum: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = id.x + id.y * 65535u * 64u;
  if (i >= p.count) { return; }
  let px = i % p.spatial;
  let word = (i / p.spatial) % p.words;
  let image = i / (p.spatial * p.words);
  sum[i] = sum[i] + maps[p.offset + ((image * p.tokens + p.first + word) * p.spatial) + px];
}
