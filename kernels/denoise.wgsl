// The denoising loop's per-step work, fused into one dispatch (see kernels/denoise.ts for the
// TypeScript reference and the meaning of each field). Prepended: random.wgsl.

struct Params {
  count: u32,       // latent values in the batch: images × perImage
  perImage: u32,    // C·H·W
  spatial: u32,     // H·W (the mask has one value per latent pixel)
  seed: u32,        // image j draws from seed + j
  stream: u32,      // noise stream of this step
  flags: u32,       // 1: model output holds [uncond; cond] (guidance), 2: inpainting
  a: f32,
  b: f32,
  c: f32,
  guidance: f32,
  scaleNext: f32,   // the UNet reads scaleNext · latents at the next step
  knownAlpha: f32,  // known latents re-noised: knownAlpha · x0 + knownSigma · z
  knownSigma: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> modelOut: array<f32>;
@group(0) @binding(2) var<storage, read_write> latents: array<f32>;
@group(0) @binding(3) var<storage, read_write> unetIn: array<f32>;
@group(0) @binding(4) var<storage, read> known: array<f32>;
@group(0) @binding(5) var<storage, read> mask: array<f32>;

const KNOWN_STREAM: u32 = 0xffffffffu;

fn index(id: vec3<u32>) -> u32 {
  return id.x + id.y * 65535u * 64u;
}

fn writeInput(i: u32, x: f32) {
  latents[i] = x;
  unetIn[i] = x * p.scaleNext;
  if ((p.flags & 1u) != 0u) {
    unetIn[p.count + i] = x * p.scaleNext;
  }
}

// Initial latents: initAlpha · known + initSigma · noise (a = initAlpha, c = initSigma here).
@compute @workgroup_size(64)
fn init(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = index(id);
  if (i >= p.count) { return; }
  let image = i / p.perImage;
  let j = i % p.perImage;
  var x = p.c * gaussian(p.seed + image, p.stream, j);
  if (p.a != 0.0) {
    x = x + p.a * known[j];
  }
  writeInput(i, x);
}

// One scheduler step with classifier-free guidance, then the inpainting blend.
@compute @workgroup_size(64)
fn step(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = index(id);
  if (i >= p.count) { return; }
  let image = i / p.perImage;
  let j = i % p.perImage;
  var out = modelOut[i];
  if ((p.flags & 1u) != 0u) {
    let cond = modelOut[p.count + i];
    out = out + p.guidance * (cond - out);
  }
  var x = p.a * latents[i] + p.b * out;
  if (p.c != 0.0) {
    x = x + p.c * gaussian(p.seed + image, p.stream, j);
  }
  if ((p.flags & 2u) != 0u) {
    let m = mask[j % p.spatial];
    let k = p.knownAlpha * known[j] + p.knownSigma * gaussian(p.seed + image, KNOWN_STREAM, j);
    x = m * x + (1.0 - m) * k;
  }
  writeInput(i, x);
}
