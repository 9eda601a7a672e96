import assert from "node:assert/strict";
import type { Tensor } from "./backend.ts";
import { BatchedSession } from "./batched_session.ts";
import type { Feeds, Session, SessionRegistry } from "./sessions.ts";

const tensor = (type: string, data: Float32Array | Uint8Array, dims: readonly number[]) =>
  ({ type, data, dims }) as unknown as Tensor;
const registry = { tensor } as unknown as SessionRegistry;

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
  const tick = () => new Promise((r) => setTimeout(r, 0));
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
