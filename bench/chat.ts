/**
 * Chat speed: prefill and decode tokens per second by model and backend, and on WebGPU the
 * cross-attention decoder on our WGSL kernels against the same model through ONNX Runtime, as a
 * ratio. Rounds alternate between runners; medians.
 *
 *   deno run -A bench/chat.ts [--rounds 3] [--webgpu]
 */
import { parseArgs } from "node:util";
import { type BackendName, resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { type ChatMessage, ChatPipeline } from "../models/chat/pipeline.ts";
import { scanModels } from "../models/manifest.ts";
import { renderScene, sampleScenes } from "../world/world.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    webgpu: { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds);
const [scene] = sampleScenes({ split: "test", count: 1, seed: 2, objects: 3 });
const messages: ChatMessage[] = [{
  role: "user",
  content: [
    { type: "image", image: { width: 64, height: 64, data: renderScene(scene, 0) } },
    { type: "text", text: "describe the image." },
  ],
}];
const options = {
  maxTokens: 32,
  temperature: 0,
  topP: 1,
  topK: 0,
  seed: 0,
  stop: [],
  topLogprobs: 0,
};

interface Runner {
  name: string;
  run: () => Promise<{ prefill: number; decode: number }>;
  prefill: number[];
  decode: number[];
}
const runners: Runner[] = [];
const backends: BackendName[] = ["cpu", "wasm", ...(values.webgpu ? ["webgpu" as const] : [])];
for (
  const entry of (await scanModels([EMBEDDED_MODELS_DIR])).filter((e) =>
    e.manifest.family === "chat"
  )
) {
  for (const b of backends) {
    const model = await ChatPipeline.load(entry, {
      sessions: new SessionRegistry(await resolveBackend(b)),
    });
    const variants = b === "webgpu" && entry.manifest.files.weights ? [true, false] : [undefined];
    for (const kernels of variants) {
      const run = async () => {
        const r = await model.chat(messages, { ...options, kernels });
        const prompt = r.promptTokens - 1;
        return {
          prefill: prompt / (r.timings.prefill_ms / 1000),
          decode: r.timings.tokens_per_second,
        };
      };
      await run(); // warm-up
      const name = `${entry.manifest.id} | ${b}${
        kernels === undefined ? "" : kernels ? " (our kernels)" : " (onnxruntime)"
      }`;
      runners.push({ name, run, prefill: [], decode: [] });
    }
  }
}
for (let r = 0; r < rounds; r++) {
  for (const x of runners) {
    const { prefill, decode } = await x.run();
    x.prefill.push(prefill), x.decode.push(decode);
  }
}
console.log(
  `\nchat: one 64 × 64 image + "describe the image.", 32 tokens greedy; medians of ${rounds}\n`,
);
console.log("| model | backend | prefill tokens/s | decode tokens/s |");
console.log("| --- | --- | --- | --- |");
for (const x of runners) {
  console.log(`| ${x.name} | ${median(x.prefill).toFixed(0)} | ${median(x.decode).toFixed(1)} |`);
}
const ours = runners.find((x) => x.name.includes("our kernels"));
const ort = runners.find((x) => x.name.includes("(onnxruntime)"));
if (ours && ort) {
  console.log(
    `\nWGSL kernels vs ONNX Runtime (webgpu, vlm-xattn-tiny): decode ${
      (median(ours.decode) / median(ort.decode)).toFixed(2)
    }×, prefill ${(median(ours.prefill) / median(ort.prefill)).toFixed(2)}×`,
  );
}
