import assert from "node:assert/strict";
import {
  decode,
  type DecodeOptions,
  logSoftmax,
  sampleToken,
  type StepDecoder,
  StopStrings,
  topK,
} from "./decoding.ts";
import { rng } from "../core/random.ts";

/**
 * A toy decoder over tokens {0: BOS, 1: EOS, 2: "a", 3: "b"} whose next-token distribution
 * depends only on the previous token, so every path's probability can be worked by hand.
 */
const P: Record<number, number[]> = {
  0: [0, 0, 0.6, 0.4], // after BOS: a 0.6, b 0.4
  2: [0, 0.5, 0.1, 0.4], // after a: EOS 0.5, a 0.1, b 0.4
  3: [0, 0.9, 0.05, 0.05], // after b: EOS 0.9
};
type S = { rows: number };
const toy: StepDecoder<S> = {
  start: (count) => Promise.resolve({ rows: count }),
  step: (state, tokens) =>
    Promise.resolve({
      logprobs: tokens.map((t) => Float32Array.from(P[t] ?? P[3], Math.log)),
      attention: tokens.map((t) => Float32Array.of(t, 1)),
      state,
    }),
  select: (_state, rows) => ({ rows: rows.length }),
};
const base: DecodeOptions = {
  strategy: "greedy",
  maxTokens: 5,
  n: 1,
  beamSize: 2,
  temperature: 1,
  topK: 0,
  topP: 1,
  seed: 1,
  topLogprobs: 2,
  bos: 0,
  eos: 1,
};

Deno.test("decode() greedy takes the most probable token at each step", async () => {
  // a (0.6) then EOS (0.5): P = 0.3.
  const [h] = await decode(toy, base);
  assert.deepEqual(h.ids, [2]);
  assert.ok(Math.abs(h.logprob - Math.log(0.3)) < 1e-6);
  assert.deepEqual(h.top[0].map(([t]) => t), [2, 3]);
  assert.equal(h.attention.length, 1);
});

Deno.test("decode() beam search finds the more probable sequence that greedy misses", async () => {
  // Paths: "a" 0.6·0.5 = 0.30; "b" 0.4·0.9 = 0.36; "a b" 0.6·0.4·0.9 = 0.216.
  const beams = await decode(toy, { ...base, strategy: "beam", beamSize: 2 });
  assert.deepEqual(beams[0].ids, [3]);
  assert.ok(Math.abs(beams[0].logprob - Math.log(0.36)) < 1e-6);
  assert.deepEqual(beams[1].ids, [2]);
});

Deno.test("decode() sampling is reproducible for a seed and follows the distribution", async () => {
  const a = await decode(toy, { ...base, strategy: "sample", n: 8, seed: 7 });
  const b = await decode(toy, { ...base, strategy: "sample", n: 8, seed: 7 });
  assert.deepEqual(a.map((h) => h.ids), b.map((h) => h.ids));
  const r = rng(3);
  const lp = Float32Array.from([0.1, 0.2, 0.7], Math.log);
  const counts = [0, 0, 0];
  for (let i = 0; i < 5000; i++) counts[sampleToken(lp, { temperature: 1, topK: 0, topP: 1 }, r)]++;
  assert.ok(Math.abs(counts[2] / 5000 - 0.7) < 0.03, `${counts}`);
  for (let i = 0; i < 200; i++) {
    assert.equal(sampleToken(lp, { temperature: 1, topK: 1, topP: 1 }, r), 2);
  }
  for (let i = 0; i < 200; i++) {
    assert.notEqual(sampleToken(lp, { temperature: 1, topK: 0, topP: 0.75 }, r), 0);
  }
});

Deno.test("decode() stops at max tokens and when aborted", async () => {
  const loop: StepDecoder<S> = {
    ...toy,
    step: (s, t) =>
      Promise.resolve({
        logprobs: t.map(() => Float32Array.from([0, 0, 1, 0], Math.log)),
        attention: null,
        state: s,
      }),
  };
  const [h] = await decode(loop, { ...base, maxTokens: 3 });
  assert.equal(h.ids.length, 3);
  const ctl = new AbortController();
  ctl.abort();
  await assert.rejects(decode(toy, { ...base, signal: ctl.signal }));
});

Deno.test("logSoftmax() normalizes", () => {
  const lp = logSoftmax(Float32Array.of(1, 2, 3));
  assert.ok(Math.abs(lp.reduce((s, v) => s + Math.exp(v), 0) - 1) < 1e-6);
});

/** A decoder over a fixed next-token table: row = previous token, entries = [token, p]. */
function tableDecoder(table: Record<number, Array<[number, number]>>, vocab: number) {
  const dist = (t: number) => {
    const p = new Float32Array(vocab);
    for (const [id, q] of table[t]) p[id] = q;
    return p.map(Math.log);
  };
  const d: StepDecoder<S> = {
    start: (count) => Promise.resolve({ rows: count }),
    step: (state, tokens) =>
      Promise.resolve({ logprobs: tokens.map(dist), attention: null, state }),
    select: (_state, rows) => ({ rows: rows.length }),
  };
  return d;
}

Deno.test("decode() beam search keeps an EOS only when it ranks among the k best", async () => {
  // Ending at once (P 0.2) ranks third of three after BOS: with k = 2 it is not a caption.
  const d = tableDecoder({ 0: [[2, 0.5], [3, 0.3], [1, 0.2]], 2: [[1, 1]], 3: [[1, 1]] }, 4);
  const beams = await decode(d, { ...base, strategy: "beam", beamSize: 2 });
  assert.deepEqual(beams.map((b) => b.ids), [[2], [3]]);
  assert.ok(beams.every((b) => b.finished));
});

Deno.test("decode() beam search never scores below greedy, even when the beam drops greedy's path", async () => {
  // BOS → a .55 | b .45; a → x1..x4 (.25 each) → EOS; b → z1 | z2 (.5 each) → u1..u10 (.1) → EOS.
  // At step 2 both b-z beams (.225) outrank greedy's a-x1 (.1375), whose caption ends at .1375,
  // while every b-z-u caption ends at .0225.
  const spread = (from: number, n: number): Array<[number, number]> =>
    Array.from({ length: n }, (_, i) => [from + i, 1 / n]);
  const table: Record<number, Array<[number, number]>> = {
    0: [[2, 0.55], [3, 0.45]],
    2: spread(4, 4),
    3: spread(8, 2),
  };
  for (let x = 4; x < 8; x++) table[x] = [[1, 1]];
  for (let z = 8; z < 10; z++) table[z] = spread(10, 10);
  for (let u = 10; u < 20; u++) table[u] = [[1, 1]];
  const d = tableDecoder(table, 20);
  const [g] = await decode(d, { ...base, maxTokens: 8 });
  const beams = await decode(d, { ...base, strategy: "beam", beamSize: 2, maxTokens: 8 });
  assert.deepEqual(g.ids, [2, 4]);
  assert.ok(beams[0].logprob >= g.logprob - 1e-9, `${beams[0].logprob} < ${g.logprob}`);
  assert.deepEqual(beams[0].ids, [2, 4]);
});

Deno.test("decode() marks hypotheses cut at max tokens as unfinished", async () => {
  const d = tableDecoder({ 0: [[2, 1]], 2: [[2, 0.9], [1, 0.1]] }, 3);
  const [g] = await decode(d, { ...base, maxTokens: 3 });
  assert.equal(g.finished, false);
  const beams = await decode(d, { ...base, strategy: "beam", beamSize: 2, maxTokens: 3 });
  assert.ok(beams.some((b) => !b.finished && b.ids.length === 3));
  assert.ok(beams.some((b) => b.finished));
});

Deno.test("StopStrings: releases text as it grows, holds back a possible stop string, cuts at the first", () => {
  const s = new StopStrings(["END", "\n"]);
  assert.equal(s.next("a red"), "a r"); // the last 2 characters could begin "END": held
  assert.equal(s.next("a red cir"), "ed c");
  assert.equal(s.stopped, false);
  assert.equal(s.next("a red circle\nmore"), "ircle");
  assert.equal(s.stopped, true);
  assert.deepEqual(s.finish("a red circle\nmore text"), { text: "a red circle", rest: "" });
  const none = new StopStrings([]);
  assert.equal(none.next("abc"), "abc");
  assert.deepEqual(none.finish("abcd"), { text: "abcd", rest: "d" });
});

Deno.test("topK: the k best, best first, ties by the lower id, as a full stable sort gives them", () => {
  const r = rng(3);
  for (const k of [1, 2, 5, 40]) {
    // Rounded values, so that ties occur.
    const lp = Float32Array.from({ length: 500 }, () => Math.round(r() * 50) / 10);
    const sorted = Array.from(lp.keys()).sort((a, b) => lp[b] - lp[a]).slice(0, k);
    assert.deepEqual(topK(lp, k), sorted.map((i) => [i, lp[i]]));
  }
});
