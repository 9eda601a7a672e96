/**
 * Chat speed: prefill and decode tokens per second by model and backend, and on WebGPU the
 * cross-attention decoder on our WGSL kernels against the same model through ONNX Runtime, as a
 * ratio. Rounds alternate between runners; medians. Then continuous batching on the CPU backend
 * (bench/chat_batching.ts): `--concurrency` different conversations at once.
 *
 *   deno run -A bench/chat.ts [--rounds 3] [--webgpu] [--concurrency 16]
 */
import { parseArgs } from "node:util";
import { type BackendName, resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { type ChatMessage, ChatPipeline, GREEDY } from "../models/chat/pipeline.ts";
import { scanModels, withQuantized } from "../models/manifest.ts";
import { renderScene, sampleScenes } from "../world/world.ts";
import { median } from "./stats.ts";
import { BATCHING_HEADER, batchingRow, conversations } from "./chat_batching.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    webgpu: { type: "boolean", default: false },
    concurrency: { type: "string", default: "16" },
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
const options = { ...GREEDY, maxTokens: 32 };

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
  // Where the model ships int8 files, the CPU backend runs them too (MM_DTYPE=q8).
  const q8 = await withQuantized(entry);
  const dtypes = (b: BackendName) => b === "cpu" && q8 !== entry ? [entry, q8] : [entry];
  for (const b of backends) {
    for (const e of dtypes(b)) {
      const model = await ChatPipeline.load(e, {
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
        const name = `${entry.manifest.id} | ${b}${e !== entry ? " q8" : ""}${
          kernels === undefined ? "" : kernels ? " (our kernels)" : " (onnxruntime)"
        }`;
        runners.push({ name, run, prefill: [], decode: [] });
      }
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

// ---------------------------------------------------------------- continuous batching

const concurrency = Number(values.concurrency);
const chats = conversations(concurrency);
console.log(
  `\nchat, ${concurrency} different conversations (32 tokens at most, greedy) on cpu: aggregate ` +
    `decode tokens/s, one at a time and all at once, with every step alone (maxBatch 1) and with ` +
    `steps shared (maxBatch 32); medians of ${rounds}\n`,
);
console.log(BATCHING_HEADER);
for (
  const entry of (await scanModels([EMBEDDED_MODELS_DIR])).filter((e) =>
    e.manifest.family === "chat"
  )
) {
  console.log(await batchingRow(entry, chats, options, rounds));
}
