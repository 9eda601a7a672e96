/**
 * `deno task bench`: CLIP image and text embeddings per second on each backend, and the same
 * model through plain @huggingface/transformers (its CLIP towers on onnxruntime-node), side by
 * side in one run. Absolute numbers on shared machines are noise; read the ratios.
 *
 *   deno task bench [--batch 32] [--seconds 3] [--webgpu]   (--webgpu: also on a software adapter)
 */
import { parseArgs } from "node:util";
import {
  AutoProcessor,
  AutoTokenizer,
  CLIPTextModelWithProjection,
  CLIPVisionModelWithProjection,
  env,
  RawImage,
} from "@huggingface/transformers";
import { type BackendName, resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { ClipPipeline } from "../models/clip/pipeline.ts";
import { scanModels } from "../models/manifest.ts";
import { canonicalCaption, renderScene, sampleScenes } from "../world/world.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    batch: { type: "string", default: "32" },
    seconds: { type: "string", default: "3" },
    webgpu: { type: "boolean", default: false },
  },
});
const batch = Number(values.batch), seconds = Number(values.seconds);
const scenes = sampleScenes({ split: "test", count: batch, seed: 3 });
const images = scenes.map((s, i) => ({ width: 64, height: 64, data: renderScene(s, i) }));
const texts = scenes.map(canonicalCaption);
const entry = (await scanModels([EMBEDDED_MODELS_DIR])).find((e) => e.manifest.id === "clip-tiny")!;

/** Items per second of `fn` (which handles `batch` items) over `ms` milliseconds. */
async function rate(fn: () => Promise<unknown>, ms: number): Promise<number> {
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    await fn();
    n++;
  }
  return (n * batch) / ((performance.now() - t0) / 1000);
}

interface Runner {
  name: string;
  image: () => Promise<unknown>;
  text: () => Promise<unknown>;
}
const runners: Runner[] = [];

env.allowRemoteModels = false;
const processor = await AutoProcessor.from_pretrained(entry.dir);
const tokenizer = await AutoTokenizer.from_pretrained(entry.dir);
const vision = await CLIPVisionModelWithProjection.from_pretrained(entry.dir, { dtype: "fp32" });
const text = await CLIPTextModelWithProjection.from_pretrained(entry.dir, { dtype: "fp32" });
const raw = images.map((im) => new RawImage(new Uint8ClampedArray(im.data), 64, 64, 3));
runners.push({
  name: "transformers.js 4.3.1 (onnxruntime-node, cpu)",
  image: async () => vision(await processor(raw)),
  text: () => text(tokenizer(texts, { padding: true, truncation: true })),
});

const backends: BackendName[] = ["cpu", "wasm"];
if (values.webgpu) backends.push("webgpu");
for (const name of backends) {
  const backend = await resolveBackend(name);
  const clip = await ClipPipeline.load(entry, new SessionRegistry(backend));
  runners.push({
    name: `mm-edge ${name} (${backend.device})`,
    image: () => clip.embedImages(images),
    text: () => clip.embedTexts(texts),
  });
}

// Rounds that alternate the runners, so that drifting load on a shared machine hits all of them
// alike; each cell is the median of its rounds.
const ROUNDS = 5;
const samples = runners.map(() => ({ image: [] as number[], text: [] as number[] }));
for (const r of runners) await Promise.all([r.image(), r.text()]); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  for (const [i, r] of runners.entries()) {
    samples[i].image.push(await rate(r.image, (seconds * 1000) / ROUNDS));
    samples[i].text.push(await rate(r.text, (seconds * 1000) / ROUNDS));
  }
}
const rows = runners.map((r, i) => ({
  name: r.name,
  image: median(samples[i].image),
  text: median(samples[i].text),
}));

const base = rows[0];
console.log(
  `\nclip-tiny embeddings, batch ${batch}, ${seconds} s per cell in ${ROUNDS} alternating rounds (median)\n`,
);
console.log("| runner | images/s | × transformers.js | texts/s | × transformers.js |");
console.log("| --- | --- | --- | --- | --- |");
for (const r of rows) {
  console.log(
    `| ${r.name} | ${r.image.toFixed(0)} | ${(r.image / base.image).toFixed(2)} | ${
      r.text.toFixed(0)
    } | ${(r.text / base.text).toFixed(2)} |`,
  );
}
