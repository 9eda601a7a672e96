/**
 * Continuous batching for chat, shared by bench/chat.ts (the embedded models) and
 * bench/chat_real_size.ts --concurrency (SmolVLM-256M's architecture): `n` different
 * conversations at once, their decode steps sharing runs, against the same conversations with
 * every step alone (maxBatch 1, the unbatched pipeline) and one conversation at a time, in
 * aggregate tokens per second of wall time (what a pool of clients gets, prefills included), and
 * in the span where every stream is decoding, against one stream's decode rate alone.
 */
import { resolveBackend } from "../core/backend.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { type ChatMessage, type ChatOptions, ChatPipeline } from "../models/chat/pipeline.ts";
import type { ModelEntry } from "../models/manifest.ts";
import { renderScene, sampleScenes } from "../world/world.ts";
import { median } from "./stats.ts";

/** `n` test scenes, each with one of two questions (so prompts differ in length too). */
export function conversations(n: number): ChatMessage[][] {
  return sampleScenes({ split: "test", count: n, seed: 9 }).map((scene, i) => [{
    role: "user",
    content: [
      { type: "image", image: { width: 64, height: 64, data: renderScene(scene, i) } },
      { type: "text", text: i % 2 ? "describe the image." : "where is the red circle?" },
    ],
  }]);
}

export const BATCHING_HEADER = [
  "| model | one at a time | all at once, unbatched | all at once, batched | batched ÷ one at a time | batched ÷ unbatched | decode, one stream | decode, all streams, batched | ÷ one stream |",
  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
].join("\n");

/** One table row: aggregate tokens/s, medians of `rounds`, the three ways interleaved. */
export async function batchingRow(
  entry: ModelEntry,
  chats: ChatMessage[][],
  options: ChatOptions,
  rounds: number,
  log: (line: string) => void = () => {},
): Promise<string> {
  const sessions = new SessionRegistry(await resolveBackend("cpu"));
  const [alone, shared] = await Promise.all(
    [1, 32].map((maxBatch) => ChatPipeline.load(entry, { sessions, maxBatch })),
  );
  // Aggregate tokens/s of wall time, and of the span in which every stream was decoding (from
  // the last stream's first token to the first stream's last): what decode steps shared give,
  // apart from the images and prefills that run as conversations arrive. One at a time: one
  // stream's decode rate, the median of them.
  const tokens = async (model: ChatPipeline, together: boolean) => {
    const stamps: number[][] = chats.map(() => []);
    const chat = (m: ChatMessage[], i: number) =>
      model.chat(m, options, {
        progress: (d) => d.tokens.forEach(() => stamps[i].push(performance.now())),
      });
    const t0 = performance.now();
    const answers = together ? await Promise.all(chats.map(chat)) : await (async () => {
      const out = [];
      for (const [i, m] of chats.entries()) out.push(await chat(m, i));
      return out;
    })();
    const n = answers.reduce((a, r) => a + r.completionTokens, 0);
    const wall = n / ((performance.now() - t0) / 1000);
    if (!together) {
      return { wall, decode: median(answers.map((r) => r.timings.tokens_per_second)) };
    }
    const from = Math.max(...stamps.map((s) => s[0])),
      to = Math.min(...stamps.map((s) => s.at(-1)!));
    const within = stamps.flat().filter((t) => t > from && t <= to).length;
    return { wall, decode: to > from ? within / ((to - from) / 1000) : NaN };
  };
  await tokens(shared, true); // warm-up
  const runs = { one: [] as number[], unbatched: [] as number[], batched: [] as number[] };
  const decode = { one: [] as number[], unbatched: [] as number[], batched: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    for (
      const [k, model, together] of [["one", alone, false], ["unbatched", alone, true], [
        "batched",
        shared,
        true,
      ]] as const
    ) {
      const x = await tokens(model, together);
      runs[k].push(x.wall), decode[k].push(x.decode);
    }
    log(
      `round ${r + 1}: ${
        Object.entries(runs).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(1)}`).join(", ")
      } tokens/s; decode: one stream ${
        decode.one.at(-1)!.toFixed(1)
      }, all streams decoding, unbatched ${decode.unbatched.at(-1)!.toFixed(1)}, batched ${
        decode.batched.at(-1)!.toFixed(1)
      }`,
    );
  }
  const [one, unbatched, batched] = [runs.one, runs.unbatched, runs.batched].map(median);
  const [alone1, sum] = [median(decode.one), median(decode.batched)];
  return `| ${entry.manifest.id} | ${one.toFixed(1)} | ${unbatched.toFixed(1)} | ${
    batched.toFixed(1)
  } | ${(batched / one).toFixed(2)} | ${(batched / unbatched).toFixed(2)} | ${
    alone1.toFixed(1)
  } | ${sum.toFixed(1)} | ${(sum / alone1).toFixed(2)} |`;
}
