/**
 * Chat at real size: SmolVLM-256M's architecture (random weights in its public ONNX layout, made
 * by `training/make_tiny_random.py --real-size-smolvlm data/real-size` at the first run) on the
 * native CPU backend, ours against plain @huggingface/transformers on the same folder, rounds
 * alternating: time to the first answer token (image encoding + prefill of the 64 image tokens
 * and the prompt) and decode tokens/s over 32 greedy tokens (end of turn banned, so every run
 * decodes all 32), in fp32 and in q8 (training/quantize.py's files, which transformers.js reads as
 * its dtype "q8"). Medians with their 25th–75th percentiles.
 *
 * With `--concurrency N` it measures continuous batching instead (bench/chat_batching.ts): N
 * conversations at once on the fp32 files, against every step alone and one at a time.
 *
 *   deno run -A bench/chat_real_size.ts [--rounds 3] [--concurrency 16]
 */
import { parseArgs } from "node:util";
import { AutoModelForVision2Seq, AutoProcessor, env, RawImage } from "@huggingface/transformers";
import { resolveBackend } from "../core/backend.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { type ChatMessage, ChatPipeline, GREEDY } from "../models/chat/pipeline.ts";
import { scanModels, withQuantized } from "../models/manifest.ts";
import { renderScene, sampleScenes } from "../world/world.ts";
import { ensureRealSize, REAL_SIZE } from "./real_size.ts";
import { median, spread } from "./stats.ts";
import { BATCHING_HEADER, batchingRow, conversations } from "./chat_batching.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    concurrency: { type: "string", default: "0" },
  },
});
const ROUNDS = Number(values.rounds), TOKENS = 32, CONCURRENCY = Number(values.concurrency);
const DIR = await ensureRealSize("SmolVLM-256M", "smolvlm-256m", "--real-size-smolvlm", [
  "vision_encoder",
  "embed_tokens",
  "decoder_model_merged",
]);

const [scene] = sampleScenes({ split: "test", count: 1, seed: 2, objects: 3 });
const rgb = { width: 64, height: 64, data: renderScene(scene, 0) };
const question = "describe the image.";

interface Run {
  firstMs: number;
  decode: number;
  tokens: number;
  prompt: number;
}
interface Runner {
  name: string;
  run: () => Promise<Run>;
  runs: Run[];
}
const runners: Runner[] = [];

// Ours, fp32 and q8.
const [entry] = await scanModels([REAL_SIZE]).then((es) => es.filter((e) => e.dir === DIR));
const messages: ChatMessage[] = [{
  role: "user",
  content: [{ type: "image", image: rgb }, { type: "text", text: question }],
}];
const config = JSON.parse(await Deno.readTextFile(`${DIR}config.json`));
const options = {
  ...GREEDY,
  maxTokens: TOKENS,
  logitBias: new Map([[config.text_config.eos_token_id, -100]]),
};
if (CONCURRENCY > 0) {
  console.log(
    `\nSmolVLM-256M architecture (random weights), ${CONCURRENCY} different conversations ` +
      `(64 × 64 scenes resized to 512², ${TOKENS} greedy tokens each, end of turn banned), fp32 ` +
      `on cpu: aggregate tokens/s of wall time, prefills included; medians of ${ROUNDS}\n`,
  );
  const row = await batchingRow(entry, conversations(CONCURRENCY), options, ROUNDS, console.log);
  console.log(`\n${BATCHING_HEADER}\n${row}`);
  Deno.exit(0);
}
for (const [e, dtype] of [[entry, ""], [await withQuantized(entry), " q8"]] as const) {
  const ours = await ChatPipeline.load(e, {
    sessions: new SessionRegistry(await resolveBackend("cpu")),
  });
  runners.push({
    name: `mm-edge cpu${dtype}`,
    runs: [],
    run: async () => {
      const r = await ours.chat(messages, options);
      return {
        firstMs: r.timings.vision_ms + r.timings.prefill_ms,
        decode: r.timings.tokens_per_second,
        tokens: r.completionTokens,
        prompt: r.promptTokens,
      };
    },
  });
}

// transformers.js on the same files.
env.allowRemoteModels = false;
const processor = await AutoProcessor.from_pretrained(DIR);
const image = new RawImage(new Uint8ClampedArray(rgb.data), 64, 64, 3);
const prompt = processor.apply_chat_template(
  [{ role: "user", content: [{ type: "image" }, { type: "text", text: question }] }],
  { add_generation_prompt: true },
);
for (const dtype of ["fp32", "q8"] as const) {
  const model = await AutoModelForVision2Seq.from_pretrained(DIR, { dtype });
  runners.push({
    name: `transformers.js 4.3.1${dtype === "q8" ? " q8" : ""}`,
    runs: [],
    run: async () => {
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
      return {
        firstMs: first - t0,
        decode: (TOKENS - 1) / ((performance.now() - first) / 1000),
        tokens: TOKENS,
        prompt: inputs.input_ids.dims[1],
      };
    },
  });
}

for (const r of runners) await r.run(); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  for (const r of runners) r.runs.push(await r.run());
  console.log(
    `round ${round + 1}: ${
      runners.map((r) => `${r.name} ${r.runs.at(-1)!.tokens} tokens`).join(", ")
    }`,
  );
}

const base = runners.find((r) => r.name === "transformers.js 4.3.1")!;
const of = (r: Runner, k: "firstMs" | "decode") => r.runs.map((x) => x[k]);
console.log(
  `\nSmolVLM-256M architecture (random weights), one 64 × 64 image resized to 512², a ` +
    `${
      runners[0].runs[0].prompt
    }-token prompt, ${TOKENS} greedy tokens; median [p25–p75] of ${ROUNDS}\n`,
);
console.log(
  "| runner | time to first token, ms | × transformers.js fp32 | decode tokens/s | × transformers.js fp32 |",
);
console.log("| --- | --- | --- | --- | --- |");
for (const r of runners) {
  console.log(
    `| ${r.name} | ${spread(of(r, "firstMs"), 0)} | ${
      (median(of(base, "firstMs")) / median(of(r, "firstMs"))).toFixed(2)
    } | ${spread(of(r, "decode"), 1)} | ${
      (median(of(r, "decode")) / median(of(base, "decode"))).toFixed(2)
    } |`,
  );
}
