/**
 * The HTTP ↔ Worker bridge under the engine workers: bodies and headers both ways, streams,
 * the client leaving (the worker's request is aborted), a busy worker not holding this thread,
 * calls, and a worker that dies.
 */
import assert from "node:assert/strict";
import { WorkerEndpoint } from "../core/worker_bridge.ts";

const URL_ = new URL("./bridge_worker.ts", import.meta.url);

/** A worker and the events it sends, each awaitable by name. */
function start(name = "bridge") {
  const events = new Map<string, PromiseWithResolvers<unknown>>();
  const event = (n: string) => {
    if (!events.has(n)) events.set(n, Promise.withResolvers());
    return events.get(n)!.promise;
  };
  const exited = Promise.withResolvers<Error>();
  const endpoint = new WorkerEndpoint(URL_, name, (n, v) => {
    if (!events.has(n)) events.set(n, Promise.withResolvers());
    events.get(n)!.resolve(v);
  }, exited.resolve);
  return { endpoint, event, exited: exited.promise };
}

Deno.test("a request and its response cross intact: method, headers, body, status", async () => {
  const { endpoint, event } = start();
  assert.equal(await event("started"), "bridge");
  const bytes = new Uint8Array(256 * 1024).map((_, i) => i % 251);
  const res = await endpoint.fetch(
    new Request("http://x/echo", { method: "POST", headers: { "x-test": "yes" } }),
    bytes.slice().buffer,
  );
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("x-method"), "POST");
  assert.equal(res.headers.get("x-seen"), "yes");
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
  const empty = await endpoint.fetch(new Request("http://x/empty"), null);
  assert.equal(empty.status, 204);
  assert.equal(empty.body, null);
  assert.deepEqual(await endpoint.call("hello", 60_000), { from: "bridge" });
  endpoint.terminate();
});

Deno.test("requests sent before the worker listens are held, not lost", async () => {
  const { endpoint } = start("slow");
  const answers = await Promise.all(
    [1, 2, 3].map((i) =>
      endpoint.fetch(new Request(`http://x/echo`, { method: "POST" }), new Uint8Array([i]).buffer)
        .then((r) => r.arrayBuffer())
    ),
  );
  assert.deepEqual(answers.map((a) => new Uint8Array(a)[0]), [1, 2, 3]);
  endpoint.terminate();
});

Deno.test("cancelling the response body aborts the worker's request", async () => {
  const { endpoint, event } = start();
  const res = await endpoint.fetch(new Request("http://x/ticks"), null);
  const reader = res.body!.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  assert.match(first, /^tick 0/);
  await reader.cancel();
  assert.equal(typeof await event("aborted"), "number"); // the handler saw request.signal abort
  endpoint.terminate();
});

Deno.test("the client's signal aborting reaches the worker too", async () => {
  const { endpoint, event } = start();
  const client = new AbortController();
  const res = await endpoint.fetch(new Request("http://x/ticks", { signal: client.signal }), null);
  const reader = res.body!.getReader();
  await reader.read();
  client.abort();
  await event("aborted");
  await assert.rejects(async () => {
    for (;;) if ((await reader.read()).done) break;
  }, { name: "AbortError" });
  endpoint.terminate();
});

Deno.test("a worker holding its thread does not hold this one", async () => {
  const { endpoint } = start();
  // The worker spins for 3 s; this thread's timer ticks in the meantime, many times over.
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const done = endpoint.fetch(new Request("http://x/busy?ms=3000"), null);
  await new Promise((r) => setTimeout(r, 200));
  const duringBusy = ticks;
  assert.equal(await (await done).text(), "done");
  clearInterval(timer);
  assert.ok(duringBusy >= 2, `timer ticked ${duringBusy} times while the worker was busy`);
  endpoint.terminate();
});

Deno.test("a worker that dies fails its requests and says so, once", async () => {
  const { endpoint, exited } = start();
  const pending = endpoint.fetch(new Request("http://x/crash"), null);
  await assert.rejects(pending, /bridge stopped: .*the engine fell over/);
  assert.match((await exited).message, /the engine fell over/);
  assert.equal(endpoint.alive, false);
  await assert.rejects(endpoint.fetch(new Request("http://x/echo"), null), /stopped/);
});
