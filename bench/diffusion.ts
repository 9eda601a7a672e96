/**
 * Diffusion speed by backend: seconds per UNet step and per image (20 steps, guidance, one
 * 64 × 64 image), and on WebGPU the GPU-resident loop (latents never leave the device, one WGSL
 * dispatch per step) against a loop that reads the UNet's output back every step, as a ratio.
 * Rounds alternate between the variants and medians are reported, as machines here are shared.
 *
 *   deno run -A bench/diffusion.ts [--rounds 3] [--steps 20] [--webgpu]
 */
import { parseArgs } from "node:util";
import { type BackendName, resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { DiffusionPipeline, type GenerateOptions } from "../models/diffusion/pipeline.ts";
import { scanModels } from "../models/manifest.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    steps: { type: "string", default: "20" },
    webgpu: { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds), steps = Number(values.steps);
const entry = (await scanModels([EMBEDDED_MODELS_DIR])).find((e) => e.manifest.id === "sd-tiny")!;
const options: GenerateOptions = {
  prompt: "a small blue square to the left of a large red circle on a white background",
  steps,
  guidance: 4,
  seed: 1,
  scheduler: "ddim",
  width: 64,
  height: 64,
  n: 1,
};

interface Variant {
  name: string;
  model: DiffusionPipeline;
  hostLoop: boolean;
  image: number[];
  step: number[];
}
const variants: Variant[] = [];
const backends: BackendName[] = ["cpu", "wasm", ...(values.webgpu ? ["webgpu" as const] : [])];
for (const b of backends) {
  const model = await DiffusionPipeline.load(entry, {
    sessions: new SessionRegistry(await resolveBackend(b)),
  });
  await model.warmup();
  variants.push({ name: b, model, hostLoop: false, image: [], step: [] });
  if (b === "webgpu") {
    variants.push({ name: "webgpu, host loop", model, hostLoop: true, image: [], step: [] });
  }
}
for (let r = 0; r < rounds; r++) {
  for (const v of variants) {
    const t0 = performance.now();
    const g = await v.model.generate({ ...options, hostLoop: v.hostLoop });
    v.image.push((performance.now() - t0) / 1000);
    v.step.push(median(g.timings.unet_ms) / 1000);
  }
}
console.log(
  `\nsd-tiny, ${steps} steps, guidance 4 (UNet batch 2), 64 × 64; medians of ${rounds} rounds\n`,
);
console.log("| backend | s / step | s / image | image ÷ cpu |");
console.log("| --- | --- | --- | --- |");
const cpu = median(variants[0].image);
for (const v of variants) {
  const image = median(v.image);
  console.log(
    `| ${v.name} | ${median(v.step).toFixed(4)} | ${image.toFixed(3)} | ${
      (image / cpu).toFixed(2)
    } |`,
  );
}
const resident = variants.find((v) => v.name === "webgpu"), host = variants.find((v) => v.hostLoop);
if (resident && host) {
  console.log(
    `\nGPU-resident loop vs host loop (webgpu): ${
      (median(host.image) / median(resident.image)).toFixed(2)
    }× the speed`,
  );
}
