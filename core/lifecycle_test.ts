import assert from "node:assert/strict";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { Lifecycle, lifecycleMiddleware, type RequestLog } from "./lifecycle.ts";
import { Metrics } from "./metrics.ts";

/** A small app behind the lifecycle middleware: a plain route and a stream that never ends. */
function harness() {
  const lifecycle = new Lifecycle();
  const metrics = new Metrics({
    models: () => [],
    ready: () => true,
    draining: () => lifecycle.draining,
    queues: () => ({}),
  });
  const log: RequestLog[] = [];
  const app = new Hono<{ Variables: { requestId: string } }>();
  app.use(async (c, next) => {
    c.set("requestId", "r1");
    await next();
  });
  app.use(lifecycleMiddleware(lifecycle, metrics, (l) => log.push(l)));
  let release = () => {};
  const held = new Promise<void>((r) => release = r);
  let aborted = false;
  app.get("/slow", async (c) => {
    await held;
    return c.json({ ok: true });
  });
  app.get("/named", (c) =>
    streamSSE(c, async (s) => {
      s.onAbort(() => {
        aborted = true;
      });
      await s.writeSSE({ event: "progress", data: "{}" });
      await held;
    }));
  app.get("/bare", (c) =>
    streamSSE(c, async (s) => {
      s.onAbort(() => {
        aborted = true;
      });
      await s.writeSSE({ data: "{}" });
      await held;
    }));
  return { app, lifecycle, log, release, aborted: () => aborted };
}

Deno.test("drain: finished in time when nothing is in flight, or when it ends within the time", async () => {
  const { app, lifecycle, release } = harness();
  assert.deepEqual(await new Lifecycle().drain(0), { finished: true, cut: 0 });
  const slow = app.request("/slow");
  const drained = lifecycle.drain(60);
  assert.equal(lifecycle.draining, true);
  const refused = await app.request("/anything");
  assert.equal(refused.status, 503);
  assert.equal((await refused.json()).error.code, "shutting_down");
  assert.equal(refused.headers.get("retry-after"), "5");
  release();
  assert.equal((await slow).status, 200);
  assert.deepEqual(await drained, { finished: true, cut: 0 });
});

Deno.test("drain time up: a plain request is answered 503, streams end with an error event in their style", async () => {
  const { app, lifecycle, log, release, aborted } = harness();
  const slow = app.request("/slow");
  const named = await app.request("/named");
  const bare = await app.request("/bare");
  const text = (r: Response) => new Response(r.body).text();
  const namedText = text(named), bareText = text(bare);
  assert.equal(lifecycle.inFlight, 3);
  const drained = await lifecycle.drain(0, 1000);
  assert.deepEqual(drained, { finished: false, cut: 3 });
  const cut = await slow;
  assert.equal(cut.status, 503);
  assert.equal((await cut.json()).error.code, "shutting_down");
  const n = await namedText, b = await bareText;
  assert.match(
    n,
    /^event: progress\ndata: \{\}\n\nevent: error\ndata: \{"error":\{.*"code":"shutting_down"\}\}\n\n$/,
  );
  assert.match(b, /^data: \{\}\n\ndata: \{"error":\{.*"code":"shutting_down"\}\}\n\n$/);
  assert.ok(aborted(), "the cut stream's job is told to stop");
  assert.deepEqual(log.map((l) => l.outcome), ["cut", "cut", "cut"]);
  release();
});
