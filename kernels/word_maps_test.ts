import assert from "node:assert/strict";
import { storageBuffer } from "./gpu.ts";
import { gaussians } from "./random.ts";
import { addWordMapsCpu, sumLength, type WordMapLayout, WordMapSum } from "./word_maps.ts";
import { device, needsGpu } from "../tests/gpu.ts";
import { maxAbsDiff } from "../tests/tolerance.ts";

const gpu = needsGpu("word-map kernels");

Deno.test("addWordMapsCpu() sums the conditional half's word tokens, step after step", () => {
  // 1 image, 4 tokens (BOS, two words, EOS), 2 pixels; guided: [uncond; cond].
  const l: WordMapLayout = { images: 1, tokens: 4, first: 1, words: 2, spatial: 2, guided: true };
  const uncond = [9, 9, 9, 9, 9, 9, 9, 9];
  const cond = [0.5, 0.5, 0.1, 0.2, 0.3, 0.4, 0.0, 0.0];
  const sum = new Float32Array(sumLength(l));
  addWordMapsCpu(l, [...uncond, ...cond], sum);
  addWordMapsCpu(l, [...uncond, ...cond], sum);
  assert.deepEqual(Array.from(sum, (v) => Math.round(v * 10) / 10), [0.2, 0.4, 0.6, 0.8]);
  // Without guidance the whole batch is conditional.
  const plain = new Float32Array(sumLength(l));
  addWordMapsCpu({ ...l, guided: false }, cond, plain);
  assert.deepEqual(Array.from(plain, (v) => Math.round(v * 10) / 10), [0.1, 0.2, 0.3, 0.4]);
});

for (const guided of [true, false]) {
  Deno.test({
    name: `WGSL word-map sum equals addWordMapsCpu() over steps (${guided ? "" : "un"}guided)`,
    ...gpu,
    fn: async () => {
      const l: WordMapLayout = { images: 3, tokens: 32, first: 1, words: 7, spatial: 256, guided };
      const batch = (guided ? 2 : 1) * l.images;
      const sum = new WordMapSum(device!, l);
      const ref = new Float32Array(sumLength(l));
      for (let step = 0; step < 4; step++) {
        const maps = gaussians(11, step, batch * l.tokens * l.spatial).map(Math.abs);
        addWordMapsCpu(l, maps, ref);
        const buffer = storageBuffer(device!, maps);
        sum.add(buffer);
        await device!.queue.onSubmittedWorkDone();
        buffer.destroy();
      }
      const got = await sum.read();
      assert.equal(got.length, ref.length);
      assert.ok(maxAbsDiff(got, ref) < 1e-5, `max |GPU − CPU| ${maxAbsDiff(got, ref)}`);
      sum.destroy();
    },
  });
}
