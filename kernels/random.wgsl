// Counter-based Gaussian noise: the value at (seed, stream, index) is a pure function of those
// three numbers, so the GPU and the TypeScript reference (kernels/random.ts) draw the same noise
// in any order. Hash: lowbias32 (Wellons); Gaussian: Box-Muller on two hashed uniforms.

fn mix32(v: u32) -> u32 {
  var z = v;
  z = z ^ (z >> 16u);
  z = z * 0x7feb352du;
  z = z ^ (z >> 15u);
  z = z * 0x846ca68bu;
  z = z ^ (z >> 16u);
  return z;
}

fn gaussian(seed: u32, stream: u32, index: u32) -> f32 {
  let key = mix32(seed ^ mix32(stream + 0x9e3779b9u));
  let h1 = mix32(key ^ mix32(2u * index));
  let h2 = mix32(key ^ mix32(2u * index + 1u));
  let u1 = (f32(h1 >> 8u) + 0.5) / 16777216.0;
  let u2 = f32(h2 >> 8u) / 16777216.0;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
