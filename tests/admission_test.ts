/** Admission control through HTTP: per-model lanes, 429 with Retry-After, slots back on cancel. */
import assert from "node:assert/strict";
import { loadConfig } from "../core/config.ts";
import { createApp } from "../main.ts";

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

Deno.test("a model's full lane answers 429 with Retry-After; other models still answer; a cancelled stream gives its slot back", async () => {
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

  await reader.cancel(); // the client leaves: the slot comes back
  first.abort();
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
  await reader.cancel();
  first.abort();
});
