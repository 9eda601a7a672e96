/** The word maps' reduction over the decoder's attention probabilities, on a tensor built here. */
import assert from "node:assert/strict";
import type { Tensor } from "../../core/backend.ts";
import { lastQueryToWords } from "./pipeline.ts";

// [n 1, layers 2, heads 2, T 2, S 3]: the last query's weights on keys 1 … 2 are the words'.
const dims = [1, 2, 2, 2, 3];
const data = new Float32Array(24);
const at = (l: number, h: number, t: number, s: number) => ((l * 2 + h) * 2 + t) * 3 + s;
const lastRow: Record<string, number[]> = {
  "0,0": [0.2, 0.3, 0.5],
  "0,1": [0.6, 0.1, 0.3],
  "1,0": [0.1, 0.8, 0.1],
  "1,1": [0.0, 0.4, 0.6],
};
for (const [key, row] of Object.entries(lastRow)) {
  const [l, h] = key.split(",").map(Number);
  row.forEach((v, s) => data[at(l, h, 1, s)] = v);
  data[at(l, h, 0, 0)] = 1; // the first query's row, which no map reads
}
const maps = { dims, data } as unknown as Tensor; // all the reduction reads
const close = (a: Float32Array, b: number[]) =>
  a.length === b.length && b.every((v, i) => Math.abs(a[i] - v) < 1e-6);

Deno.test("DALL-E word maps: the last query's mean over every layer and head by default", () => {
  const [words] = lastQueryToWords(maps, 1, 2);
  assert.ok(close(words, [(0.3 + 0.1 + 0.8 + 0.4) / 4, (0.5 + 0.3 + 0.1 + 0.6) / 4]), `${words}`);
});

Deno.test("DALL-E word maps: settings.attention_heads keeps the chosen [layer, head] pairs", () => {
  assert.ok(close(lastQueryToWords(maps, 1, 2, [[1, 0]])[0], [0.8, 0.1]));
  assert.ok(close(lastQueryToWords(maps, 1, 2, [[0, 1], [1, 1]])[0], [0.25, 0.45]));
});
