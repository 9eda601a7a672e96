import assert from "node:assert/strict";
import { ApiError } from "./errors.ts";
import { Scheduler } from "./scheduler.ts";

const options = { concurrency: 2, maxQueue: 2, queueTimeoutMs: 60_000 };
const code = (e: unknown) => e instanceof ApiError ? e.code : String(e);

Deno.test("Scheduler runs up to `concurrency` jobs, queues `maxQueue` in order, refuses the rest", async () => {
  const s = new Scheduler(options);
  const running = [await s.admit("m"), await s.admit("m")];
  const order: number[] = [];
  const queued = [1, 2].map((i) => s.admit("m").then((release) => (order.push(i), release)));
  assert.deepEqual(s.depth(), { m: { running: 2, waiting: 2 } });
  await assert.rejects(
    s.admit("m"),
    (e: ApiError) => code(e) === "queue_full" && e.retryAfter === 1,
  );
  running[0]();
  running[0](); // releasing twice gives back one slot only
  const first = await queued[0];
  assert.deepEqual(s.depth(), { m: { running: 2, waiting: 1 } });
  running[1]();
  const second = await queued[1];
  assert.deepEqual(order, [1, 2]);
  first(), second();
  assert.deepEqual(s.depth(), {});
});

Deno.test("Scheduler lanes are per model: another model's backlog never blocks this one", async () => {
  const s = new Scheduler({ ...options, concurrency: 1, maxQueue: 1 });
  const long = await s.admit("sd-tiny");
  const waiting = s.admit("sd-tiny");
  const short = await s.admit("clip-tiny"); // admitted at once
  short();
  long();
  (await waiting)();
});

Deno.test("Scheduler: a waiter whose client leaves, or who waits too long, leaves the queue", async () => {
  const s = new Scheduler({ concurrency: 1, maxQueue: 4, queueTimeoutMs: 20 });
  const held = await s.admit("m");
  const abort = new AbortController();
  const gone = s.admit("m", abort.signal);
  abort.abort(new DOMException("client left", "AbortError"));
  await assert.rejects(gone, (e) => e instanceof DOMException && e.name === "AbortError");
  await assert.rejects(
    s.admit("m"),
    (e: ApiError) => code(e) === "queue_timeout" && e.status === 503,
  );
  assert.deepEqual(s.depth(), { m: { running: 1, waiting: 0 } });
  held();
  (await s.admit("m"))(); // the slot came back
  await assert.rejects(s.admit("m", AbortSignal.abort()));
});
