import assert from "node:assert/strict";
import { Batcher } from "./batcher.ts";

/** A "model" that doubles numbers, whose passes finish when the test says so. */
function model() {
  const passes: number[][] = [];
  const finish: Array<() => void> = [];
  const batcher = new Batcher<number, number>((items) => {
    passes.push(items);
    return new Promise((resolve) => finish.push(() => resolve(items.map((x) => 2 * x))));
  }, { maxBatch: 4 });
  // Two turns of the event loop: the batcher takes one after each batch before the next.
  const tick = () => new Promise((r) => setTimeout(() => setTimeout(r, 0), 0));
  return { batcher, passes, finishNext: () => finish.shift()!(), tick };
}

Deno.test("Batcher: a lone call runs at once; calls arriving meanwhile share the next pass, in order", async () => {
  const { batcher, passes, finishNext, tick } = model();
  const first = batcher.submit([1]);
  assert.deepEqual(passes, [[1]]); // no waiting window
  const rest = [batcher.submit([2, 3]), batcher.submit([4]), batcher.submit([5, 6])];
  finishNext();
  assert.deepEqual(await first, [2]);
  await tick();
  assert.deepEqual(passes, [[1], [2, 3, 4]]); // up to maxBatch 4 items; [5, 6] waits
  finishNext();
  await tick();
  finishNext();
  assert.deepEqual(await Promise.all(rest), [[4, 6], [8], [10, 12]]);
  assert.deepEqual(passes, [[1], [2, 3, 4], [5, 6]]);
});

Deno.test("Batcher: a call larger than maxBatch runs whole, alone", async () => {
  const { batcher, passes, finishNext } = model();
  const big = batcher.submit([1, 2, 3, 4, 5, 6]);
  finishNext();
  assert.deepEqual(await big, [2, 4, 6, 8, 10, 12]);
  assert.deepEqual(passes, [[1, 2, 3, 4, 5, 6]]);
});

Deno.test("Batcher: an aborted call leaves before its pass; a failed pass fails its calls only", async () => {
  const { batcher, passes, finishNext, tick } = model();
  const first = batcher.submit([1]);
  const stop = new AbortController();
  const left = batcher.submit([2], stop.signal);
  const kept = batcher.submit([3]);
  stop.abort(new Error("client left"));
  finishNext();
  await first;
  await assert.rejects(left, /client left/);
  await tick();
  finishNext();
  assert.deepEqual(await kept, [6]);
  assert.deepEqual(passes, [[1], [3]]);

  let fail = true;
  const flaky = new Batcher<number, number>(
    (items) => fail ? Promise.reject(new Error("pass failed")) : Promise.resolve(items),
    { maxBatch: 8 },
  );
  await assert.rejects(flaky.submit([1]), /pass failed/);
  fail = false;
  assert.deepEqual(await flaky.submit([7]), [7]);
});

Deno.test("Batcher: streams that submit again as soon as they are answered step together", async () => {
  const passes: number[] = [];
  const batcher = new Batcher<number, number>((items) => {
    passes.push(items.length);
    return Promise.resolve(items);
  }, { maxBatch: 8 });
  // Three decoders of 6 steps each; the second and third start while the first's step runs.
  const stream = async (steps: number) => {
    for (let i = 0; i < steps; i++) await batcher.submit([i]);
  };
  await Promise.all([stream(6), stream(6), stream(6)]);
  assert.equal(passes.reduce((a, b) => a + b, 0), 18);
  assert.ok(passes.length <= 8, `passes of ${passes.join(" ")}: the streams share them`);
});

Deno.test("Batcher: streams split by a lone first call come together, and stay together", async () => {
  const passes: number[] = [];
  // A pass finishes in a later turn of the event loop, as a native session's run does.
  const batcher = new Batcher<number, number>((items) => {
    passes.push(items.length);
    return new Promise((r) => setTimeout(() => r(items), 1));
  }, { maxBatch: 8 });
  // Between two steps a decoder awaits more than the batcher does (its session wrapper, its own
  // promises), so it comes back after the batcher has looked at its queue.
  const step = async (i: number) => (await batcher.submit([i]))[0];
  const stream = async (steps: number) => {
    for (let i = 0; i < steps; i++) {
      await step(i);
      await Promise.resolve();
    }
  };
  // The first stream's first step runs alone at once; the others' wait for the next pass, which
  // the first one's second step joins: from then on every pass holds every stream still running.
  await Promise.all([stream(8), stream(8), stream(8), stream(8)]);
  assert.deepEqual(passes, [1, 4, 4, 4, 4, 4, 4, 4, 3], `passes of ${passes.join(" ")}`);
});
