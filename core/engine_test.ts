/**
 * The engine gives the same outputs on every backend: native CPU, WASM, and WebGPU (here on
 * the software adapter), and the same as PyTorch did at export (the golden fixture).
 */
import assert from "node:assert/strict";
import { type BackendName, resolveBackend } from "./backend.ts";
import { EMBEDDED_MODELS_DIR } from "./config.ts";
import { SessionRegistry } from "./sessions.ts";
import { preprocess } from "./preprocess.ts";
import { adapter, needsGpu } from "../tests/gpu.ts";
import { maxAbsDiff } from "../tests/tolerance.ts";

const MODEL = `${EMBEDDED_MODELS_DIR}clip-tiny/`;
const golden = JSON.parse(
  await Deno.readTextFile(new URL("../tests/fixtures/clip-tiny.golden.json", import.meta.url)),
);
const processor = JSON.parse(await Deno.readTextFile(`${MODEL}preprocessor_config.json`));
/** Largest absolute difference we accept between backends and against PyTorch (fp32). */
const TOLERANCE = 1e-4;

const maxDiff = maxAbsDiff;

async function runClip(name: BackendName) {
  const sessions = new SessionRegistry(await resolveBackend(name));
  const vision = await sessions.load(`${MODEL}onnx/vision_model.onnx`);
  const text = await sessions.load(`${MODEL}onnx/text_model.onnx`);
  const images = golden.images_rgb_base64 as string[];
  const pixels = new Float32Array(images.length * 3 * 64 * 64);
  for (const [i, b64] of images.entries()) {
    const p = await preprocess(
      { width: 64, height: 64, data: Uint8Array.fromBase64(b64) },
      processor,
    );
    pixels.set(p.data, i * p.data.length);
  }
  const v = await vision.run({
    pixel_values: sessions.tensor("float32", pixels, [images.length, 3, 64, 64]),
  });
  const textEmbeds: number[] = [];
  for (const ids of golden.input_ids as number[][]) {
    const t = await text.run({
      input_ids: sessions.tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
    });
    textEmbeds.push(...(t.text_embeds.data as Float32Array));
  }
  return { image: v.image_embeds.data as Float32Array, text: textEmbeds, sessions };
}

const reference = await runClip("cpu");

Deno.test("cpu backend matches PyTorch's outputs from export", () => {
  assert.ok(maxDiff(reference.image, golden.image_embeds.flat()) < TOLERANCE);
  assert.ok(maxDiff(reference.text, golden.text_embeds.flat()) < TOLERANCE);
});

Deno.test("wasm backend matches the cpu backend, and concurrent runs on it are queued, not failed", async () => {
  const wasm = await runClip("wasm");
  assert.ok(maxDiff(wasm.image, reference.image) < TOLERANCE);
  assert.ok(maxDiff(wasm.text, reference.text) < TOLERANCE);
  // One ORT-web session cannot run twice at once; the registry serializes the runs.
  const text = await wasm.sessions.load(`${MODEL}onnx/text_model.onnx`);
  const ids = golden.input_ids[0] as number[];
  const feeds = {
    input_ids: wasm.sessions.tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
  };
  const outs = await Promise.all(Array.from({ length: 6 }, () => text.run(feeds)));
  for (const o of outs) {
    assert.ok(maxDiff(o.text_embeds.data as Float32Array, golden.text_embeds[0]) < TOLERANCE);
  }
});

Deno.test({
  name: "webgpu backend matches the cpu backend (on whatever adapter exists)",
  ...needsGpu("engine_test: the WebGPU comparison"),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await runClip("webgpu");
    console.log(`  webgpu adapter: ${adapter!.info.description || adapter!.info.vendor}`);
    assert.ok(maxDiff(gpu.image, reference.image) < TOLERANCE);
    assert.ok(maxDiff(gpu.text, reference.text) < TOLERANCE);
    // Our own kernels get ORT's device once a WebGPU session exists.
    assert.ok(await gpu.sessions.gpuDevice());
  },
});
