import assert from "node:assert/strict";
import { attentionGpu, attentionReference, type AttentionShape } from "./attention.ts";
import { gaussians } from "./random.ts";
import { device, needsGpu } from "../tests/gpu.ts";
import { maxAbsDiff } from "../tests/tolerance.ts";

const gpu = needsGpu("attention kernels");

const maxDiff = maxAbsDiff;

const cases: Array<[string, AttentionShape]> = [
  ["prefill, causal, grouped-query heads", {
    queries: 7,
    heads: 4,
    kvHeads: 2,
    headDim: 32,
    past: 0,
    keys: 7,
    capacity: 16,
    causal: true,
  }],
  ["decode one token over a cache of 40", {
    queries: 1,
    heads: 4,
    kvHeads: 2,
    headDim: 32,
    past: 40,
    keys: 41,
    capacity: 64,
    causal: true,
  }],
  ["prefill after a past (chunked), head size 64", {
    queries: 5,
    heads: 2,
    kvHeads: 1,
    headDim: 64,
    past: 9,
    keys: 14,
    capacity: 14,
    causal: true,
  }],
  ["cross-attention to 64 image keys (not causal)", {
    queries: 3,
    heads: 4,
    kvHeads: 2,
    headDim: 32,
    past: 0,
    keys: 64,
    capacity: 64,
    causal: false,
  }],
];

Deno.test("attention reference: a query that sees one key returns that key's value", () => {
  const s: AttentionShape = {
    queries: 2,
    heads: 1,
    kvHeads: 1,
    headDim: 2,
    past: 0,
    keys: 2,
    capacity: 2,
    causal: true,
  };
  const out = attentionReference(
    s,
    new Float32Array([1, 0, 1, 0]),
    new Float32Array([1, 0, 0, 1]),
    new Float32Array([5, 6, 7, 8]),
  );
  assert.deepEqual([...out.subarray(0, 2)], [5, 6]);
  const w = Math.exp(1 / Math.SQRT2) / (Math.exp(1 / Math.SQRT2) + 1); // second query: both keys
  assert.ok(Math.abs(out[2] - (5 * w + 7 * (1 - w))) < 1e-6);
});

for (const [name, s] of cases) {
  Deno.test({
    name: `WGSL attention equals its reference: ${name}`,
    ...gpu,
    fn: async () => {
      const q = gaussians(1, 1, s.queries * s.heads * s.headDim);
      const k = gaussians(2, 2, s.kvHeads * s.capacity * s.headDim);
      const v = gaussians(3, 3, s.kvHeads * s.capacity * s.headDim);
      const got = await attentionGpu(device!, s, q, k, v);
      const want = attentionReference(s, q, k, v);
      assert.ok(maxDiff(got, want) < 1e-4, `max diff ${maxDiff(got, want)}`);
    },
  });
}
