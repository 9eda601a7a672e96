/**
 * Chat at real size: SmolVLM-256M's architecture (random weights in its public ONNX layout, made
 * by `training/make_tiny_random.py --real-size-smolvlm data/real-size` at the first run) on the
 * native CPU backend, ours against plain @huggingface/transformers on the same folder, rounds
 * alternating: time to the first answer token (image encoding + prefill of the 64 image tokens
 * and the prompt) and decode tokens/s over 32 greedy tokens (end of turn banned, so every run
 * decodes all 32). Medians, with min–max beside them.
 *
 *   deno run -A bench/chat_real_size.ts [--rounds 3]
 */
import { parseArgs } from "node:util";
import { AutoModelForVision2Seq, AutoProcessor, env, RawImage } from "@huggingface/transformers";
import { resolveBackend } from "../core/backend.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { type ChatMessage, ChatPipeline } from "../models/chat/pipeline.ts";
import { scanModels } from "../models/manifest.ts";
import { renderScene, sampleScenes } from "../world/world.ts";
import { median, spread } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { rounds: { type: "string", default: "3" } },
});
const ROUNDS = Number(values.rounds), TOKENS = 32;
const ROOT = new URL("../data/real-size/", import.meta.url).pathname;
const DIR = `${ROOT}smolvlm-256m/`;

try {
  await Deno.stat(`${DIR}manifest.json`);
} catch {
  console.log("making SmolVLM-256M (random weights) in data/real-size ...");
  const made = await new Deno.Command("/usr/bin/python3", {
    args: ["make_tiny_random.py", "--real-size-smolvlm", ROOT],
    cwd: new URL("../training/", import.meta.url).pathname,
  }).output();
  if (!made.success) throw new Error(new TextDecoder().decode(made.stderr));
}

const [scene] = sampleScenes({ split: "test", count: 1, seed: 2, objects: 3 });
const rgb = { width: 64, height: 64, data: renderScene(scene, 0) };
const question = "describe the image.";

// Ours.
const [entry] = await scanModels([ROOT]).then((es) => es.filter((e) => e.dir === DIR));
const ours = await ChatPipeline.load(entry, {
  sessions: new SessionRegistry(await resolveBackend("cpu")),
});
const messages: ChatMessage[] = [{
  role: "user",
  content: [{ type: "image", image: rgb }, { type: "text", text: question }],
}];
const config = JSON.parse(await Deno.readTextFile(`${DIR}config.json`));
const eos = config.text_config.eos_token_id;
const options = {
  maxTokens: TOKENS,
  temperature: 0,
  topP: 1,
  topK: 0,
  seed: 0,
  stop: [],
  topLogprobs: 0,
  logitBias: new Map([[eos, -100]]),
};
async function runOurs() {
  const r = await ours.chat(messages, options);
  return {
    firstMs: r.timings.vision_ms + r.timings.prefill_ms,
    decode: r.timings.tokens_per_second,
    tokens: r.completionTokens,
    prompt: r.promptTokens,
  };
}

// transformers.js on the same files.
env.allowRemoteModels = false;
const processor = await AutoProcessor.from_pretrained(DIR);
const model = await AutoModelForVision2Seq.from_pretrained(DIR, { dtype: "fp32" });
const image = new RawImage(new Uint8ClampedArray(rgb.data), 64, 64, 3);
const prompt = processor.apply_chat_template(
  [{ role: "user", content: [{ type: "image" }, { type: "text", text: question }] }],
  { add_generation_prompt: true },
);
async function runTjs() {
  const inputs = await processor(prompt, [image]);
  const t0 = performance.now();
  let first = 0, n = 0;
  // The streamer is told of each new token: the first one's time is the prefill's end.
  const streamer = {
    put() {
      if (n++ === 1) first = performance.now();
    },
    end() {},
  };
  await model.generate({
    ...inputs,
    max_new_tokens: TOKENS,
    min_new_tokens: TOKENS,
    do_sample: false,
    streamer,
  });
  const end = performance.now();
  return {
    firstMs: first - t0,
    decode: (TOKENS - 1) / ((end - first) / 1000),
    tokens: TOKENS,
    prompt: inputs.input_ids.dims[1],
  };
}

type Run = { firstMs: number; decode: number };
const runs: Record<"ours" | "tjs", Run[]> = { ours: [], tjs: [] };
await runOurs(), await runTjs(); // warm-up
let promptLength = 0;
for (let r = 0; r < ROUNDS; r++) {
  const a = await runOurs(), b = await runTjs();
  runs.ours.push(a), runs.tjs.push(b);
  promptLength = a.prompt;
  console.log(
    `round ${
      r + 1
    }: ours ${a.tokens} tokens, transformers.js ${b.tokens} (prompts ${a.prompt} / ${b.prompt} tokens)`,
  );
}

const first = (k: "ours" | "tjs") => runs[k].map((x) => x.firstMs);
const decode = (k: "ours" | "tjs") => runs[k].map((x) => x.decode);
console.log(
  `\nSmolVLM-256M architecture (random weights), one 64 × 64 image resized to 512², a ` +
    `${promptLength}-token prompt, ${TOKENS} greedy tokens; median [p25–p75] of ${ROUNDS}\n`,
);
console.log("| runner | time to first token, ms | decode tokens/s |");
console.log("| --- | --- | --- |");
console.log(
  `| ours (onnxruntime-node, cpu) | ${spread(first("ours"), 0)} | ${spread(decode("ours"), 1)} |`,
);
console.log(
  `| transformers.js 4.3.1 (onnxruntime-node, cpu) | ${spread(first("tjs"), 0)} | ${
    spread(decode("tjs"), 1)
  } |`,
);
console.log(
  `\nours ÷ transformers.js: first token ${
    (median(first("tjs")) / median(first("ours"))).toFixed(2)
  }× ` +
    `as fast, decode ${(median(decode("ours")) / median(decode("tjs"))).toFixed(2)}×`,
);
