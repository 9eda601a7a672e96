import assert from "node:assert/strict";
import { readBuffer, storageBuffer } from "./gpu.ts";
import { gaussian, gaussians } from "./random.ts";
import {
  GpuDenoiser,
  initReference,
  type LoopShape,
  stepReference,
  toRgbaGpu,
  toRgbaReference,
} from "./denoise.ts";
import { device, needsGpu } from "../tests/gpu.ts";
import { maxAbsDiff } from "../tests/tolerance.ts";

const gpu = needsGpu("denoising kernels");

const maxDiff = maxAbsDiff;

Deno.test("gaussian noise: deterministic, independent streams, standard normal moments", () => {
  const a = gaussians(7, 0, 20000);
  assert.deepEqual(a, gaussians(7, 0, 20000));
  assert.notDeepEqual(a.slice(0, 8), gaussians(7, 1, 8));
  assert.notDeepEqual(a.slice(0, 8), gaussians(8, 0, 8));
  const mean = a.reduce((s, x) => s + x, 0) / a.length;
  const variance = a.reduce((s, x) => s + (x - mean) ** 2, 0) / a.length;
  assert.ok(Math.abs(mean) < 0.03, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 0.05, `variance ${variance}`);
  assert.equal(gaussian(7, 0, 123), a[123]);
});

const shape: LoopShape = { images: 2, perImage: 4 * 8 * 8, spatial: 64, seed: 1234, guided: true };

Deno.test({
  name: "WGSL denoising step equals its TypeScript reference (guidance, noise, inpainting)",
  ...gpu,
  fn: async () => {
    const count = shape.images * shape.perImage;
    const known = gaussians(99, 5, shape.perImage);
    const mask = new Float32Array(shape.spatial).map((_, i) => (i % 8 < 4 ? 1 : 0));
    const inpaint = { known, mask };
    const ref = initReference(shape, 0.7, 1.3, 0.5, known);
    const g = new GpuDenoiser(device!, shape, inpaint);
    g.init(0.7, 1.3, 0.5);
    const read = async (b: GPUBuffer, n: number) =>
      new Float32Array(await readBuffer(device!, b, n * 4));
    assert.ok(maxDiff(await read(g.latents, count), ref.latents) < 1e-5);
    assert.ok(maxDiff(await read(g.unetIn, 2 * count), ref.unetIn) < 1e-5);

    const modelOut = gaussians(5, 9, 2 * count);
    const params = {
      a: 0.9,
      b: -0.3,
      c: 0.2,
      guidance: 7.5,
      scaleNext: 0.8,
      knownAlpha: 0.6,
      knownSigma: 0.4,
      stream: 3,
    };
    stepReference(shape, params, modelOut, ref.latents, ref.unetIn, inpaint);
    const out = storageBuffer(device!, modelOut);
    g.step(out, params);
    assert.ok(maxDiff(await read(g.latents, count), ref.latents) < 1e-4);
    assert.ok(maxDiff(await read(g.unetIn, 2 * count), ref.unetIn) < 1e-4);
    // Outside the mask the latents are the known ones, re-noised.
    const j = 5; // mask column 5 → keep
    const expected = 0.6 * known[j] + 0.4 * gaussian(shape.seed, 0xffffffff, j);
    assert.ok(Math.abs(ref.latents[j] - expected) < 1e-5);
    out.destroy();
    g.destroy();
  },
});

Deno.test({
  name: "WGSL planar → RGBA8 equals its reference, with identity and a colour matrix",
  ...gpu,
  fn: async () => {
    const images = 2, pixels = 37, channels = 4;
    const src = gaussians(1, 2, images * channels * pixels).map((x) => x * 0.7);
    const map = {
      m: [[0.5, -0.2, 0.1, 0.3], [0.1, 0.4, -0.3, 0.2], [-0.2, 0.1, 0.6, -0.1]],
      bias: [0.1, -0.1, 0],
    };
    const buffer = storageBuffer(device!, src);
    const gpuBytes = await toRgbaGpu(device!, buffer, images, channels, pixels, map);
    const ref = toRgbaReference(src, images, channels, pixels, map);
    const off = maxAbsDiff(ref, gpuBytes);
    assert.ok(off <= 1, `max byte difference ${off}`);
    const rgb = toRgbaReference(src.subarray(0, 3 * pixels), 1, 3, pixels);
    assert.equal(rgb[3], 255);
    assert.equal(rgb[0], Math.floor(Math.min(Math.max((src[0] + 1) / 2, 0), 1) * 255 + 0.5));
    buffer.destroy();
  },
});
