import assert from "node:assert/strict";
import * as ort from "onnxruntime-web";
import type { Backend, Tensor } from "./backend.ts";
import { BatchedSession } from "./batched_session.ts";
import { type Feeds, type Session, SessionRegistry } from "./sessions.ts";

// ORT's own Tensor class (what merged outputs are cut into), without a backend behind it.
const registry = new SessionRegistry({ ort, can: {} } as unknown as Backend);
const tensor = (
  type: "float32" | "uint8" | "int64",
  data: Float32Array | Uint8Array | BigInt64Array,
  dims: readonly number[],
) => registry.tensor(type, data, dims);

/**
 * A "decoder step": y = x · 2 + flag, row by row ([B, n] → [B, n]), whose runs finish when the
 * test says so, and which records each run's batch.
 */
function model() {
  const runs: number[] = [];
  const finish: Array<() => void> = [];
  const session = {
    inputNames: ["x", "flag"],
    outputNames: ["y"],
    run(feeds: Feeds) {
      const x = feeds.x.data as Float32Array, flag = (feeds.flag.data as Uint8Array)[0];
      runs.push(feeds.x.dims[0] as number);
      const y = x.map((v) => 2 * v + flag);
      return new Promise((resolve) =>
        finish.push(() => resolve({ y: tensor("float32", y, feeds.x.dims) }))
      );
    },
  } as unknown as Session;
  const merges: number[][] = [];
  const batched = new BatchedSession(registry, session, {
    maxBatch: 8,
    shared: ["flag"],
    onMerge: (rows, calls) => merges.push([rows, calls]),
  });
  const call = (rows: number[][], flag = 0) =>
    batched.run({
      x: tensor("float32", Float32Array.from(rows.flat()), [rows.length, rows[0].length]),
      flag: tensor("uint8", Uint8Array.of(flag), [1]),
    }).then((o) => [...(o.y.data as Float32Array)]);
  // Two turns of the event loop: the batcher takes one after each batch before the next.
  const tick = () => new Promise((r) => setTimeout(() => setTimeout(r, 0), 0));
  return { call, runs, merges, finishNext: () => finish.shift()!(), tick };
}

Deno.test("BatchedSession: a lone call runs as it is; calls meanwhile share one run, each gets its rows", async () => {
  const { call, runs, merges, finishNext, tick } = model();
  const first = call([[1, 1]]);
  assert.deepEqual(runs, [1], "no waiting");
  const rest = [call([[1, 2], [3, 4]]), call([[5, 6]]), call([[7, 8]], 1)];
  finishNext();
  assert.deepEqual(await first, [2, 2]);
  await tick();
  // The two calls with flag 0 merge (3 rows); the one with flag 1 runs in its own group.
  assert.deepEqual(runs, [1, 3]);
  finishNext();
  await tick();
  assert.deepEqual(runs, [1, 3, 1]);
  finishNext();
  assert.deepEqual(await Promise.all(rest), [[2, 4, 6, 8], [10, 12], [15, 17]]);
  assert.deepEqual(merges, [[3, 2]]);
});

Deno.test("BatchedSession: calls whose trailing dimensions differ do not merge", async () => {
  const { call, runs, finishNext, tick } = model();
  const first = call([[0, 0]]);
  const a = call([[1, 2]]);
  const b = call([[1, 2, 3]]); // [1, 3]: another shape
  finishNext();
  await first;
  await tick();
  finishNext();
  await tick();
  finishNext();
  await Promise.all([a, b]);
  assert.deepEqual(runs, [1, 1, 1]);
});

/**
 * A "decoder with a KV cache": past [B, 1, P, 1] (each row's values), attention_mask [B, P + 1],
 * x [B, 1]. y = x + the sum of the past values the mask lets through; present = past then x
 * along axis 2; attentions [B, 1, P + 1] = the mask, normalized. Padding changes none of these
 * for the real positions, so merged calls must come back exactly as lone ones.
 */
function cached() {
  const runs: number[][] = [];
  const fed: Tensor[] = [], returned: Tensor[] = [];
  const session = {
    inputNames: ["x", "attention_mask", "position_ids", "past_key_values.0.key"],
    outputNames: ["y", "present.0.key", "attentions"],
    run(feeds: Feeds) {
      const [B, , P] = feeds["past_key_values.0.key"].dims as number[];
      const past = feeds["past_key_values.0.key"].data as Float32Array;
      const mask = feeds.attention_mask.data as BigInt64Array;
      const x = feeds.x.data as Float32Array;
      runs.push([B, P]);
      fed.push(feeds["past_key_values.0.key"]);
      const y = new Float32Array(B), present = new Float32Array(B * (P + 1));
      const attentions = new Float32Array(B * (P + 1));
      for (let b = 0; b < B; b++) {
        let seen = 0;
        for (let p = 0; p <= P; p++) seen += Number(mask[b * (P + 1) + p]);
        y[b] = x[b];
        for (let p = 0; p < P; p++) {
          if (mask[b * (P + 1) + p]) y[b] += past[b * P + p];
          present[b * (P + 1) + p] = past[b * P + p];
          attentions[b * (P + 1) + p] = Number(mask[b * (P + 1) + p]) / seen;
        }
        present[b * (P + 1) + P] = x[b];
        attentions[b * (P + 1) + P] = 1 / seen;
      }
      const out = {
        y: tensor("float32", y, [B, 1]),
        "present.0.key": tensor("float32", present, [B, 1, P + 1, 1]),
        attentions: tensor("float32", attentions, [B, 1, P + 1]),
      };
      returned.push(out["present.0.key"]);
      // Finishing in a later turn of the event loop, as a native session's run does.
      return new Promise((resolve) => setTimeout(() => resolve(out), 0));
    },
  } as unknown as Session;
  // The caches cut from merged runs (4-D) and how many of them were ever copied out.
  const cuts = { made: 0, built: 0 };
  const counting = {
    tensor,
    deferredTensor: (...[type, dims, make]: Parameters<SessionRegistry["deferredTensor"]>) => {
      if (dims.length === 4) cuts.made++;
      return registry.deferredTensor(type, dims, () => (dims.length === 4 && cuts.built++, make()));
    },
  } as unknown as SessionRegistry;
  const batched = new BatchedSession(counting, session, {
    maxBatch: 8,
    cache: { lastAxis: ["attentions"] },
  });
  const call = (past: number[], x: number) =>
    batched.run({
      x: tensor("float32", Float32Array.of(x), [1, 1]),
      attention_mask: tensor("int64", new BigInt64Array(past.length + 1).fill(1n), [
        1,
        past.length + 1,
      ]),
      position_ids: tensor("int64", BigInt64Array.of(BigInt(past.length)), [1, 1]),
      "past_key_values.0.key": tensor("float32", Float32Array.from(past), [1, 1, past.length, 1]),
    }).then((o) => ({
      y: [...(o.y.data as Float32Array)],
      present: [...(o["present.0.key"].data as Float32Array)],
      presentDims: [...o["present.0.key"].dims],
      attentions: [...(o.attentions.data as Float32Array)],
    }));
  /** A decoder's loop: `steps` calls, each handing back the last call's present as its past. */
  const stream = async (start: number[], steps: number) => {
    let past = tensor("float32", Float32Array.from(start), [1, 1, start.length, 1]);
    const ys: number[] = [];
    for (let i = 0; i < steps; i++) {
      const P = past.dims[2] as number;
      const out = await batched.run({
        x: tensor("float32", Float32Array.of(i + 1), [1, 1]),
        attention_mask: tensor("int64", new BigInt64Array(P + 1).fill(1n), [1, P + 1]),
        position_ids: tensor("int64", BigInt64Array.of(BigInt(P)), [1, 1]),
        "past_key_values.0.key": past,
      });
      ys.push((out.y.data as Float32Array)[0]);
      past = out["present.0.key"];
    }
    return { ys, present: [...(past.data as Float32Array)] };
  };
  return { call, runs, stream, fed, returned, cuts };
}

Deno.test("BatchedSession with a cache: caches of different lengths share a run, left-padded and cut back", async () => {
  const { call, runs } = cached();
  const first = call([1], 10); // runs at once, alone
  const merged = await Promise.all([call([1, 2, 3], 100), call([], 1000), call([5], 7)]);
  await first;
  assert.deepEqual(runs, [[1, 1], [3, 3]], "the three waiting calls in one run, padded to 3");
  assert.deepEqual(merged.map((m) => m.y), [[106], [1000], [12]]);
  assert.deepEqual(merged.map((m) => m.present), [[1, 2, 3, 100], [1000], [5, 7]]);
  assert.deepEqual(merged.map((m) => m.presentDims), [[1, 1, 4, 1], [1, 1, 1, 1], [1, 1, 2, 1]]);
  assert.deepEqual(merged.map((m) => m.attentions), [[0.25, 0.25, 0.25, 0.25], [1], [0.5, 0.5]]);
});

Deno.test("BatchedSession with a cache: streams stepping together reuse the last merged cache, and get lone results", async () => {
  const starts = [[1], [2, 3, 4], [5, 6]];
  const lone = [];
  for (const start of starts) lone.push(await cached().stream(start, 5));
  const { stream, runs, fed, returned, cuts } = cached();
  const together = await Promise.all(starts.map((start) => stream(start, 5)));
  assert.deepEqual(together, lone);
  assert.ok(runs.some(([B]) => B === 3), `runs of ${JSON.stringify(runs)}: the streams merge`);
  // Once all three step together, each merged run is fed the last one's present as it is.
  const kept = fed.filter((t) => returned.includes(t));
  assert.ok(kept.length >= 2, `${kept.length} runs fed a merged present uncopied`);
  // And the three cuts of the run before each of those were handed back unread: never copied.
  assert.ok(
    cuts.made - cuts.built >= 3 * kept.length,
    `${cuts.built} of ${cuts.made} cut caches copied out, ${kept.length} runs kept`,
  );
});
