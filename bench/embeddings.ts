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

/** Items per second of `fn` (which handles `batch` items), after one warm-up call. */
async function rate(fn: () => Promise<unknown>): Promise<number> {
  await fn();
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    await fn();
    n++;
  }
  return (n * batch) / ((performance.now() - t0) / 1000);
}

const rows: Array<{ name: string; image: number; text: number }> = [];

env.allowRemoteModels = false;
const processor = await AutoProcessor.from_pretrained(entry.dir);
const tokenizer = await AutoTokenizer.from_pretrained(entry.dir);
const vision = await CLIPVisionModelWithProjection.from_pretrained(entry.dir, { dtype: "fp32" });
const text = await CLIPTextModelWithProjection.from_pretrained(entry.dir, { dtype: "fp32" });
const raw = images.map((im) => new RawImage(new Uint8ClampedArray(im.data), 64, 64, 3));
rows.push({
  name: "transformers.js 4.3.1 (onnxruntime-node, cpu)",
  image: await rate(async () => vision(await processor(raw))),
  text: await rate(() => text(tokenizer(texts, { padding: true, truncation: true }))),
});

const backends: BackendName[] = ["cpu", "wasm"];
if (values.webgpu) backends.push("webgpu");
for (const name of backends) {
  const backend = await resolveBackend(name);
  const clip = await ClipPipeline.load(entry, new SessionRegistry(backend));
  rows.push({
    name: `mm-edge ${name} (${backend.device})`,
    image: await rate(() => clip.embedImages(images)),
    text: await rate(() => clip.embedTexts(texts)),
  });
}

const base = rows[0];
console.log(`\nclip-tiny embeddings, batch ${batch}, ${seconds} s per cell\n`);
console.log("| runner | images/s | × transformers.js | texts/s | × transformers.js |");
console.log("| --- | --- | --- | --- | --- |");
for (const r of rows) {
  console.log(
    `| ${r.name} | ${r.image.toFixed(0)} | ${(r.image / base.image).toFixed(2)} | ${
      r.text.toFixed(0)
    } | ${(r.text / base.text).toFixed(2)} |`,
  );
}
