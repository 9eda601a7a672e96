/** Admission control through HTTP: per-model lanes, 429 with Retry-After, slots back on cancel. */
import assert from "node:assert/strict";
import { loadConfig } from "../core/config.ts";
import { Hono } from "hono";
import { Scheduler } from "../core/scheduler.ts";
import { createApp } from "../main.ts";
import type { ModelRegistry } from "../models/registry.ts";
import { admission } from "../routes/admission.ts";

const { app, registry } = await createApp(
  loadConfig({ MM_BACKEND: "cpu", MM_MAX_CONCURRENT: "1", MM_MAX_QUEUE: "0" }),
);
await registry.preload();

const post = (path: string, body: unknown, signal?: AbortSignal) =>
  app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
const generation = {
  model: "sd-tiny",
  prompt: "a red circle",
  stream: true,
  num_inference_steps: 50,
};

Deno.test("a model's full lane answers 429 with Retry-After; other models still answer; the slot comes back when the stream ends", async () => {
  const first = new AbortController();
  const stream = await post("/v1/images/generations", generation, first.signal);
  assert.equal(stream.status, 200);
  const reader = stream.body!.getReader();
  await reader.read(); // the job holds sd-tiny's one slot while its stream is open

  const busy = await post("/v1/images/generations", { ...generation, stream: false });
  assert.equal(busy.status, 429);
  assert.equal(busy.headers.get("retry-after"), "1");
  const { error } = await busy.json();
  assert.equal(error.code, "queue_full");
  assert.equal(error.type, "rate_limit_error");

  const other = await post("/v1/embeddings", { input: "a red circle" });
  assert.equal(other.status, 200, "clip-tiny has its own lane");
  await other.body?.cancel();

  while (!(await reader.read()).done); // the stream ends: the slot comes back
  const again = await post("/v1/images/generations", {
    ...generation,
    stream: false,
    num_inference_steps: 2,
  });
  assert.equal(again.status, 200, await again.clone().text());
  await again.body?.cancel();
});

Deno.test("a request without a model waits in its family default's lane", async () => {
  const first = new AbortController();
  const stream = await post("/v1/images/generations", generation, first.signal);
  const reader = stream.body!.getReader();
  await reader.read();
  const { model: _, ...unnamed } = generation;
  const busy = await post("/v1/images/generations", unnamed);
  assert.equal(busy.status, 429, "sd-tiny is the diffusion default");
  await busy.body?.cancel();
  while (!(await reader.read()).done);
});

Deno.test("admission() gives a stream's slot back when its client leaves", async () => {
  const scheduler = new Scheduler({ concurrency: 1, maxQueue: 0, queueTimeoutMs: 60_000 });
  const registry = { defaultId: () => "m" } as unknown as ModelRegistry;
  const app = new Hono();
  app.use("/v1/*", admission(scheduler, registry));
  app.post(
    "/v1/chat/completions",
    () =>
      new Response(new ReadableStream({ pull: () => new Promise(() => {}) }), {
        headers: { "content-type": "text/event-stream" },
      }),
  );
  const res = await app.request("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.deepEqual(scheduler.depth(), { m: { running: 1, waiting: 0 } });
  await res.body!.cancel();
  assert.deepEqual(scheduler.depth(), {});
});
