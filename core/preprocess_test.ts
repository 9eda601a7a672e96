/** Our preprocessing gives the same pixels as @huggingface/transformers' CLIP image processor. */
import assert from "node:assert/strict";
import { CLIPImageProcessor, RawImage } from "@huggingface/transformers";
import {
  centerCrop,
  cropBeforeResize,
  preprocess,
  type ProcessorConfig,
  resizeTarget,
} from "./preprocess.ts";
import type { RgbImage } from "./image.ts";
import { rng } from "../world/world.ts";
import { EMBEDDED_MODELS_DIR } from "./config.ts";
import { maxAbsDiff } from "../tests/tolerance.ts";

const CLIP_B32: ProcessorConfig = {
  do_resize: true,
  size: { shortest_edge: 224 },
  resample: 3,
  do_center_crop: true,
  crop_size: { height: 224, width: 224 },
  do_rescale: true,
  rescale_factor: 1 / 255,
  do_normalize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
};
const TINY = JSON.parse(
  await Deno.readTextFile(`${EMBEDDED_MODELS_DIR}clip-tiny/preprocessor_config.json`),
);

function noise(width: number, height: number, seed: number): RgbImage {
  const r = rng(seed);
  // Smooth gradients plus noise, so that resampling has something to interpolate.
  const data = Uint8Array.from({ length: width * height * 3 }, (_, i) => {
    const p = Math.floor(i / 3), x = p % width, y = Math.floor(p / width);
    return Math.min(255, Math.floor((x * 7 + y * 3 + (i % 3) * 50) % 200 + r() * 55));
  });
  return { width, height, data };
}

for (const [name, config] of [["clip-tiny", TINY], ["CLIP ViT-B/32", CLIP_B32]] as const) {
  for (const [w, h] of [[64, 64], [100, 80], [37, 53], [300, 120]]) {
    Deno.test(`preprocess() equals transformers' CLIPImageProcessor (${name}, ${w}×${h})`, async () => {
      const img = noise(w, h, w * 1000 + h);
      const ours = await preprocess(img, config);
      const theirs = await new CLIPImageProcessor(config)(
        new RawImage(new Uint8ClampedArray(img.data), w, h, 3),
      );
      const t = theirs.pixel_values;
      assert.deepEqual(t.dims, [1, 3, ours.height, ours.width]);
      const max = maxAbsDiff(ours.data, t.data as Float32Array);
      assert.ok(max < 1e-5, `max difference ${max}`);
    });
  }
}

Deno.test("resizeTarget() keeps the aspect ratio and rounds like the HF processors", () => {
  assert.deepEqual(resizeTarget(640, 480, { shortest_edge: 224 }), [298, 224]);
  assert.deepEqual(resizeTarget(480, 640, { shortest_edge: 224 }), [224, 298]);
  assert.deepEqual(resizeTarget(10, 10, { height: 32, width: 16 }), [16, 32]);
  assert.deepEqual(
    resizeTarget(640, 480, 224),
    [298, 224],
    "CLIP: a bare number is the shortest edge",
  );
  assert.deepEqual(resizeTarget(640, 480, 224, true), [224, 224], "ViT and others: a square");
  assert.throws(() => resizeTarget(10, 10, {}), RangeError);
});

Deno.test("centerCrop() pads with black where the crop is larger than the image", () => {
  const img = { width: 2, height: 2, data: new Uint8Array(12).fill(255) };
  const out = centerCrop(img, 4, 4);
  assert.equal(out.data[0], 0);
  assert.equal(out.data[(1 * 4 + 1) * 3], 255);
});

Deno.test("preprocess() of an extreme strip resizes only what the crop keeps, with the same pixels", async () => {
  // 1 × 65536 would resize to 64 × 4,194,304 before the 64 × 64 crop.
  const plan = cropBeforeResize({ width: 1, height: 65536 }, 64, 4194304, 64, 64)!;
  assert.ok(plan.width * plan.height <= 4 * 64 * 64 * 2, JSON.stringify(plan));
  const strip = await preprocess(noise(1, 65536, 3), TINY);
  assert.deepEqual([strip.width, strip.height], [64, 64]);
  // Where the plain path is still affordable, both paths agree on the crop.
  const img = noise(40, 1200, 9);
  const [w, h] = resizeTarget(40, 1200, TINY.size, false);
  assert.ok(cropBeforeResize(img, w, h, 64, 64), "the bounded path is taken");
  const fast = await preprocess(img, TINY);
  const exact = await preprocess(img, { ...TINY, do_center_crop: false });
  const plain = { width: exact.width, height: exact.height };
  const top = Math.floor((plain.height - 64) / 2), left = Math.floor((plain.width - 64) / 2);
  let diff = 0;
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 64; x++) {
        const a = fast.data[c * 4096 + y * 64 + x];
        const b = exact.data[c * plain.width * plain.height + (y + top) * plain.width + x + left];
        diff += Math.abs(a - b);
      }
    }
  }
  console.log(`  mean difference ${(diff / (3 * 4096)).toFixed(4)} (normalized units)`);
  assert.ok(diff / (3 * 4096) < 0.05, `mean difference ${diff / (3 * 4096)}`);
});
