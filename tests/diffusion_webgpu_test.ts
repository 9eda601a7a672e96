/**
 * The GPU-resident denoising loop (WebGPU: UNet outputs stay in GPU buffers, one WGSL dispatch
 * per step) gives the images of the CPU path, on the software adapter: same seed, same noise;
 * and the same previews (read from the GPU buffers before each preview step moves them).
 */
import assert from "node:assert/strict";
import { resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { DiffusionPipeline, type GenerateOptions } from "../models/diffusion/pipeline.ts";
import type { ImageProgress } from "../models/images.ts";
import { scanModels } from "../models/manifest.ts";
import { needsGpu } from "./gpu.ts";
import { meanAbsDiff } from "./tolerance.ts";

const gpu = needsGpu("diffusion on WebGPU");
const entry = (await scanModels([EMBEDDED_MODELS_DIR])).find((e) => e.manifest.id === "sd-tiny")!;

const meanAbs = meanAbsDiff;

Deno.test({
  name: "diffusion: the WebGPU loop (in-place kernels) equals the CPU loop for a seed",
  ...gpu,
  fn: async () => {
    const gpu = await DiffusionPipeline.load(
      entry,
      { sessions: new SessionRegistry(await resolveBackend("webgpu")) },
    );
    const cpu = await DiffusionPipeline.load(
      entry,
      { sessions: new SessionRegistry(await resolveBackend("cpu")) },
    );
    const options: GenerateOptions = {
      prompt: "a small blue square in the top left on a white background",
      steps: 3,
      guidance: 3,
      seed: 77,
      scheduler: "euler_a", // draws fresh noise every step, on the GPU in this path
      width: 64,
      height: 64,
      n: 2,
      previews: 2,
    };
    const previews = (into: Uint8Array[][]) => ({
      progress: (p: ImageProgress) => {
        if (p.preview) into.push(p.preview.map((image) => image.data));
      },
    });
    const gpuPreviews: Uint8Array[][] = [], cpuPreviews: Uint8Array[][] = [];
    const onGpu = await gpu.generate(options, previews(gpuPreviews));
    const onHost = await gpu.generate({ ...options, hostLoop: true });
    const onCpu = await cpu.generate(options, previews(cpuPreviews));
    assert.equal(gpuPreviews.length, 2);
    assert.equal(cpuPreviews.length, 2);
    gpuPreviews.forEach((images, k) =>
      images.forEach((rgba, j) => {
        const d = meanAbs(rgba, cpuPreviews[k][j]);
        assert.ok(d < 1, `preview ${k} of image ${j}: GPU loop vs CPU mean |Δ| ${d}`);
      })
    );
    assert.deepEqual([onGpu.loop, onHost.loop, onCpu.loop], ["gpu-resident", "host", "host"]);
    for (let j = 0; j < 2; j++) {
      const a = meanAbs(onGpu.images[j].data, onCpu.images[j].data);
      const b = meanAbs(onGpu.images[j].data, onHost.images[j].data);
      console.log(
        `  image ${j}: |GPU loop − CPU| = ${a.toFixed(3)}, |GPU loop − host loop| = ${
          b.toFixed(3)
        }`,
      );
      assert.ok(a < 1, `GPU loop vs CPU backend: mean |Δ| ${a}`);
      assert.ok(b < 1, `GPU loop vs host loop: mean |Δ| ${b}`);
    }
  },
});

Deno.test({
  name: "diffusion: word maps summed on the GPU (WGSL, GPU-resident loop) equal the CPU loop's",
  ...gpu,
  fn: async () => {
    const load = async (backend: "webgpu" | "cpu") =>
      DiffusionPipeline.load(entry, {
        sessions: new SessionRegistry(await resolveBackend(backend)),
      });
    const [gpu, cpu] = await Promise.all([load("webgpu"), load("cpu")]);
    const options: GenerateOptions = {
      prompt: "a large red circle to the left of a small blue square",
      steps: 2,
      guidance: 3,
      seed: 5,
      scheduler: "ddim",
      width: 64,
      height: 64,
      n: 2,
      returnAttention: true,
    };
    const onGpu = await gpu.generate(options);
    const onCpu = await cpu.generate(options);
    assert.equal(onGpu.loop, "gpu-resident");
    let worst = 0;
    onGpu.maps!.forEach((maps, j) => {
      assert.deepEqual(maps.words.map((w) => w.token), options.prompt.split(" "));
      maps.words.forEach((w, k) => {
        const other = onCpu.maps![j].words[k].weights;
        w.weights.forEach((v, i) => worst = Math.max(worst, Math.abs(v - other[i])));
      });
    });
    console.log(`  max |GPU − CPU| over the weights: ${worst}`);
    // The normalized maps, before the API rounds them to 4 places (kernels/word_maps_test.ts
    // compares the raw sums).
    assert.ok(worst <= 2e-4, `word maps differ by ${worst}`);
  },
});
