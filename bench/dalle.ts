/**
 * DALL-E speed by backend: milliseconds per image token and seconds per image (64 tokens, one
 * candidate, then the dVAE decoder), and on WebGPU our WGSL decoder against ONNX Runtime's
 * WebGPU provider on the same model, as a ratio. Rounds alternate between the variants and
 * medians are reported, as machines here are shared.
 *
 *   deno run -A bench/dalle.ts [--rounds 3] [--webgpu]
 */
import { parseArgs } from "node:util";
import { type BackendName, resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { type DalleOptions, DallePipeline } from "../models/dalle/pipeline.ts";
import { scanModels } from "../models/manifest.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    webgpu: { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds);
const entry = (await scanModels([EMBEDDED_MODELS_DIR])).find((e) => e.manifest.id === "dalle-tiny");
if (!entry) {
  console.log("bench/dalle.ts: dalle-tiny is not installed; nothing to measure");
  Deno.exit(0);
}
const options: DalleOptions = {
  prompt: "a small blue square to the left of a large red circle on a white background",
  n: 1,
  seed: 1,
  temperature: 1,
  topK: 32,
  topP: 1,
};

interface Variant {
  name: string;
  model: DallePipeline;
  kernels: boolean;
  image: number[];
  token: number[];
}
const variants: Variant[] = [];
const backends: BackendName[] = ["cpu", "wasm", ...(values.webgpu ? ["webgpu" as const] : [])];
for (const b of backends) {
  const model = await DallePipeline.load(entry, {
    sessions: new SessionRegistry(await resolveBackend(b)),
  });
  await model.warmup();
  if (b === "webgpu") {
    variants.push({ name: "webgpu, WGSL kernels", model, kernels: true, image: [], token: [] });
  }
  variants.push({
    name: b === "webgpu" ? "webgpu, ORT" : b,
    model,
    kernels: false,
    image: [],
    token: [],
  });
}
for (let r = 0; r < rounds; r++) {
  for (const v of variants) {
    const t0 = performance.now();
    const g = await v.model.generate({ ...options, kernels: v.kernels });
    v.image.push((performance.now() - t0) / 1000);
    v.token.push(g.timings.transformer_ms / g.steps);
  }
}
console.log(
  `\ndalle-tiny, 64 image tokens, top-k 32, one candidate; medians of ${rounds} rounds\n`,
);
console.log("| backend | ms / token | s / image | image ÷ cpu |");
console.log("| --- | --- | --- | --- |");
const cpu = median(variants.find((v) => v.name === "cpu")!.image);
for (const v of variants) {
  const image = median(v.image);
  console.log(
    `| ${v.name} | ${median(v.token).toFixed(2)} | ${image.toFixed(3)} | ${
      (image / cpu).toFixed(2)
    } |`,
  );
}
const ours = variants.find((v) => v.kernels), ort = variants.find((v) => v.name === "webgpu, ORT");
if (ours && ort) {
  console.log(
    `\nWGSL kernels vs ORT (webgpu): ${
      (median(ort.image) / median(ours.image)).toFixed(2)
    }× the speed`,
  );
}
