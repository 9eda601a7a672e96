/**
 * The generator contract's shared pieces: the checks both generators make, the preview cadence,
 * and reranking — what diffusion and DALL-E must agree on.
 */
import assert from "node:assert/strict";
import {
  checkCommon,
  DALLE_OPTIONS,
  DIFFUSION_OPTIONS,
  type ImageOutput,
  keepBest,
  previewSteps,
  reranked,
} from "./images.ts";
import { OptionError } from "./pipeline.ts";
import { workerGroups } from "./families.ts";

const img = (v: number) => ({ width: 1, height: 1, data: new Uint8Array([v, v, v]) });
const output = (values: number[]): ImageOutput => ({
  images: values.map(img),
  seeds: values.map((_, j) => 100 + j),
  promptTokens: 3,
  outputTokens: 0,
  steps: 2,
  scheduler: "ddim",
  timings: { total_ms: 10 },
});
// A scorer that rates an image by its grey level.
const byGrey = (images: { data: Uint8Array }[]) => Promise.resolve(images.map((i) => i.data[0]));

Deno.test("checkCommon: an option of the other generator names itself; rerank above n is refused", () => {
  const base = { prompt: "a red circle", n: 2 };
  assert.doesNotThrow(() =>
    checkCommon({ ...base, steps: 4 }, "sd-tiny", "diffusion", DALLE_OPTIONS)
  );
  assert.throws(
    () => checkCommon({ ...base, topK: 4 }, "sd-tiny", "diffusion", DALLE_OPTIONS),
    (e) =>
      e instanceof OptionError && e.option === "topK" &&
      /sd-tiny, a diffusion model/.test(e.message),
  );
  assert.throws(
    () => checkCommon({ ...base, guidance: 3 }, "dalle-tiny", "DALL-E", DIFFUSION_OPTIONS),
    (e) => e instanceof OptionError && e.option === "guidance",
  );
  const tooMany = () => checkCommon({ ...base, rerank: 3 }, "sd-tiny", "diffusion", DALLE_OPTIONS);
  assert.throws(tooMany, (e) => e instanceof OptionError && e.option === "rerank");
  // The message is written around the caller's names for the options.
  try {
    tooMany();
  } catch (e) {
    const names: Record<string, string> = { rerank: "best_of" };
    assert.equal(
      (e as OptionError).describe((o) => names[o] ?? o),
      "best_of (3) must not exceed n (2)",
    );
  }
});

Deno.test("previewSteps: exactly the count asked, spread out and before the end, or every step", () => {
  assert.deepEqual([...previewSteps(10, 0)], []);
  assert.deepEqual([...previewSteps(10, 1)], [5]);
  assert.deepEqual([...previewSteps(10, 4)], [2, 4, 6, 8]);
  assert.deepEqual([...previewSteps(3, 5)], [1, 2, 3]);
  for (let total = 1; total <= 40; total++) {
    for (let count = 0; count <= total; count++) {
      assert.equal(previewSteps(total, count).size, count);
    }
  }
});

Deno.test("keepBest: the k best by score, best first, with their seeds; its time is counted", async () => {
  const kept = await keepBest(output([5, 9, 1, 7]), 2, "grey", byGrey);
  assert.deepEqual(kept.scores, [9, 7]);
  assert.deepEqual(kept.seeds, [101, 103]);
  assert.deepEqual(kept.images.map((i) => i.data[0]), [9, 7]);
  assert.ok(Number(kept.timings.rerank_ms) >= 0);
  assert.ok(Number(kept.timings.total_ms) >= 10);
});

Deno.test("reranked: no rerank runs the job as is; rerank without a scorer fails before any work", async () => {
  let runs = 0;
  const run = () => (runs++, Promise.resolve(output([1, 2])));
  assert.deepEqual((await reranked(run, { prompt: "p", n: 2 }, undefined)()).scores, undefined);
  assert.throws(
    () => reranked(run, { prompt: "p", n: 2, rerank: 1 }, undefined),
    (e) => e instanceof OptionError && e.kind === "unsupported" && e.option === "rerank",
  );
  assert.equal(runs, 1);
  const best = await reranked(
    run,
    { prompt: "p", n: 2, rerank: 1 },
    () => Promise.resolve(byGrey),
  )();
  assert.deepEqual(best.scores, [2]);
});

Deno.test("workerGroups: one engine worker per worker name, the two generators together", () => {
  assert.deepEqual(workerGroups(), [["clip"], ["captioning"], ["diffusion", "dalle"], ["chat"]]);
});
