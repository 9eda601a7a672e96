/**
 * `deno task bench`: CLIP image and text embeddings per second on each backend, and the same
 * model through plain @huggingface/transformers (its CLIP towers on onnxruntime-node), side by
 * side in one run. Absolute numbers on shared machines are noise; read the ratios.
 *
 * Stable enough to decide: every runner is warmed up for a while first (not measured); then
 * `--rounds` rounds alternate the runners, each timing every runner for a short slice, and the
 * ratio to transformers.js is taken within each round (the same load hits both sides of it).
 * Each cell prints the median of the rounds and, in brackets, their 25th–75th percentiles.
 *
 *   deno task bench [--batch 1,32] [--rounds 15] [--slice 0.4] [--webgpu]
 *   (--webgpu: also on a software adapter; --slice: seconds per runner and round)
 *
 *   deno run -A bench/embeddings.ts --real-size [--backends cpu]
 *   (CLIP ViT-B/32's architecture at its public size, random weights, made on first use by
 *   training/make_tiny_random.py --real-size data/real-size; also the machine's GEMM peak: one
 *   2048² MatMul through the same runtime and threads, and the image tower's GFLOP/s against it)
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
import { type Backend, type BackendName, resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { ClipPipeline } from "../models/clip/pipeline.ts";
import { scanModels, withQuantized } from "../models/manifest.ts";
import { canonicalCaption, renderScene, sampleScenes } from "../world/world.ts";
import { ensureRealSize, measureGemmPeak, REAL_SIZE } from "./real_size.ts";
import { quantile, spread } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    batch: { type: "string", default: "1,32" },
    rounds: { type: "string", default: "15" },
    slice: { type: "string", default: "0.4" },
    webgpu: { type: "boolean", default: false },
    "real-size": { type: "boolean", default: false },
    backends: { type: "string", default: "cpu,wasm" },
  },
});
const batches = values.batch.split(",").map(Number).filter((b) => b >= 1);
const ROUNDS = Number(values.rounds), sliceMs = Number(values.slice) * 1000;
const WARMUP_MS = 1500;
if (values["real-size"]) {
  await ensureRealSize("CLIP ViT-B/32", "clip-vit-base-patch32", "--real-size", [
    "vision_model",
    "text_model",
  ]);
}
const entry = values["real-size"]
  ? (await scanModels([REAL_SIZE]))[0]
  : (await scanModels([EMBEDDED_MODELS_DIR])).find((e) => e.manifest.id === "clip-tiny")!;

/** Items per second of `fn` (which handles `batch` items) over `ms` milliseconds. */
async function rate(fn: () => Promise<unknown>, batch: number, ms: number): Promise<number> {
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
  image: (batch: number) => Promise<unknown>;
  text: (batch: number) => Promise<unknown>;
}
const runners: Runner[] = [];

/** The same scenes for every runner, per batch size. */
const inputs = new Map(batches.map((b) => {
  const scenes = sampleScenes({ split: "test", count: b, seed: 3 });
  const images = scenes.map((s, i) => ({ width: 64, height: 64, data: renderScene(s, i) }));
  return [b, { images, texts: scenes.map(canonicalCaption) }];
}));
const of = (b: number) => inputs.get(b)!;

env.allowRemoteModels = false;
const processor = await AutoProcessor.from_pretrained(entry.dir);
const tokenizer = await AutoTokenizer.from_pretrained(entry.dir);
const vision = await CLIPVisionModelWithProjection.from_pretrained(entry.dir, { dtype: "fp32" });
const text = await CLIPTextModelWithProjection.from_pretrained(entry.dir, { dtype: "fp32" });
const raw = new Map(batches.map((b) => [
  b,
  of(b).images.map((im) => new RawImage(new Uint8ClampedArray(im.data), 64, 64, 3)),
]));
runners.push({
  name: "transformers.js 4.3.1 (onnxruntime-node, cpu)",
  image: async (b) => vision(await processor(raw.get(b)!)),
  text: (b) => text(tokenizer(of(b).texts, { padding: true, truncation: true })),
});

const backends = values.backends.split(",") as BackendName[];
if (values.webgpu) backends.push("webgpu");
// The q8 files (training/quantize.py), where the model has them: transformers.js reads the same
// ones (its dtype "q8"), and our runners on each backend.
const q8 = await withQuantized(entry);
if (q8 !== entry) {
  const vision8 = await CLIPVisionModelWithProjection.from_pretrained(entry.dir, { dtype: "q8" });
  const text8 = await CLIPTextModelWithProjection.from_pretrained(entry.dir, { dtype: "q8" });
  runners.push({
    name: "transformers.js 4.3.1 q8 (onnxruntime-node, cpu)",
    image: async (b) => vision8(await processor(raw.get(b)!)),
    text: (b) => text8(tokenizer(of(b).texts, { padding: true, truncation: true })),
  });
}
const resolved: Backend[] = [];
for (const name of backends) {
  const backend = await resolveBackend(name);
  resolved.push(backend);
  const variants = [{ e: entry, dtype: "" }, ...(q8 === entry ? [] : [{ e: q8, dtype: " q8" }])];
  for (const { e, dtype } of variants) {
    const clip = await ClipPipeline.load(e, { sessions: new SessionRegistry(backend) });
    runners.push({
      name: `mm-edge ${name}${dtype} (${backend.device})`,
      image: (b) => clip.embedImages(of(b).images),
      text: (b) => clip.embedTexts(of(b).texts),
    });
  }
}

/** Our cpu runner's median images/s per batch, for the GFLOP/s report. */
const ourImages = new Map<number, number>();

for (const batch of batches) {
  // Warm-up, not measured: JIT, allocator, ORT's first-run work.
  for (const r of runners) {
    await rate(() => r.image(batch), batch, WARMUP_MS / 2);
    await rate(() => r.text(batch), batch, WARMUP_MS / 2);
  }
  // Rounds that alternate the runners; ratios within a round (drifting load hits both sides).
  const rates = runners.map(() => ({ image: [] as number[], text: [] as number[] }));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, r] of runners.entries()) {
      rates[i].image.push(await rate(() => r.image(batch), batch, sliceMs));
      rates[i].text.push(await rate(() => r.text(batch), batch, sliceMs));
    }
  }
  const ours = runners.findIndex((r) => r.name.startsWith("mm-edge cpu ("));
  if (ours >= 0) ourImages.set(batch, quantile(rates[ours].image, 0.5));
  const ratio = (i: number, kind: "image" | "text") =>
    rates[i][kind].map((v, round) => v / rates[0][kind][round]);
  console.log(
    `\n${entry.manifest.id} embeddings, batch ${batch}: ${ROUNDS} alternating rounds of ${
      sliceMs / 1000
    } s per runner and kind after a ${
      WARMUP_MS / 1000
    } s warm-up; median [p25–p75] of the rounds, ` +
      "ratios within each round\n",
  );
  console.log("| runner | images/s | × transformers.js | texts/s | × transformers.js |");
  console.log("| --- | --- | --- | --- | --- |");
  for (const [i, r] of runners.entries()) {
    console.log(
      `| ${r.name} | ${spread(rates[i].image, 0)} | ${spread(ratio(i, "image"))} | ${
        spread(rates[i].text, 0)
      } | ${spread(ratio(i, "text"))} |`,
    );
  }
}

if (values["real-size"]) await gemmPeak();
else await kernelCeiling();

/**
 * What each CPU-side backend's matrix kernel can do, in the same run: WASM's ratio to native on
 * the model is bounded by its ratio on one MatMul (ORT-web's SIMD128 GEMM against MLAS's AVX).
 */
async function kernelCeiling(): Promise<void> {
  const cpuSide = resolved.filter((b) => b.name !== "webgpu");
  if (cpuSide.length < 2) return;
  const n = 1024;
  console.log(`\nThe kernels' ceiling: one ${n}² MatMul on each backend, best of 10\n`);
  console.log("| backend | ms | GFLOP/s | × cpu |");
  console.log("| --- | --- | --- | --- |");
  const peaks = [];
  for (const b of cpuSide) peaks.push({ b, ...(await measureGemmPeak(b, n)) });
  const cpu = peaks.find((p) => p.b.name === "cpu")?.peak ?? peaks[0].peak;
  for (const { b, best, peak } of peaks) {
    console.log(
      `| ${b.name} (${b.device}) | ${best.toFixed(1)} | ${peak.toFixed(1)} | ${
        (peak / cpu).toFixed(2)
      } |`,
    );
  }
}

/** The image tower's achieved GFLOP/s at each batch, as a share of the machine's GEMM peak. */
async function gemmPeak(): Promise<void> {
  const { best, peak } = await measureGemmPeak();
  const flops = imageFlops(JSON.parse(await Deno.readTextFile(`${entry.dir}config.json`)));
  console.log(
    `\nGEMM peak: a 2048² MatMul on the cpu backend, best of 10: ${best.toFixed(1)} ms = ` +
      `${peak.toFixed(1)} GFLOP/s. The image tower is ${
        (flops / 1e9).toFixed(2)
      } GFLOP per image:\n`,
  );
  console.log("| batch | images/s (mm-edge cpu, median) | GFLOP/s | % of GEMM peak |");
  console.log("| --- | --- | --- | --- |");
  for (const [batch, rate] of ourImages) {
    const achieved = rate * flops / 1e9;
    console.log(
      `| ${batch} | ${rate.toFixed(1)} | ${achieved.toFixed(1)} | ${
        (100 * achieved / peak).toFixed(0)
      }% |`,
    );
  }
}

/** Multiply-adds × 2 of CLIP's vision tower per image (patches, blocks, attention, projection). */
function imageFlops(config: {
  projection_dim: number;
  vision_config: {
    hidden_size: number;
    num_hidden_layers: number;
    image_size: number;
    patch_size: number;
  };
}): number {
  const v = config.vision_config, d = v.hidden_size;
  const patches = (v.image_size / v.patch_size) ** 2, T = patches + 1;
  const block = 2 * T * 12 * d * d + 2 * 2 * T * T * d; // qkv, o, 4d MLP; scores and mix
  return 2 * patches * 3 * v.patch_size ** 2 * d + v.num_hidden_layers * block +
    2 * d * config.projection_dim;
}
