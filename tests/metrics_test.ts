/**
 * Observability: `GET /metrics` in the Prometheus text format (requests by route pattern, model
 * and status; latency histograms; in-flight; queues; tokens and diffusion steps; models loaded;
 * process memory) and one structured log line per request.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../core/config.ts";
import type { RequestLog } from "../core/lifecycle.ts";
import { createApp } from "../main.ts";
import { EXAMPLE_IMAGE } from "../routes/clip.ts";

const lines: RequestLog[] = [];
const { app, registry } = await createApp(loadConfig({ MM_BACKEND: "cpu" }), {
  log: (line) => lines.push(line),
});
await registry.preload();

const post = (path: string, body: unknown, signal?: AbortSignal) =>
  app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The exposition, parsed: one sample per line. */
async function scrape(): Promise<Sample[]> {
  const res = await app.request("/metrics");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const out: Sample[] = [];
  for (const line of (await res.text()).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^(\w+)(?:\{(.*)\})? (\S+)$/);
    assert.ok(m, `a sample line: ${line}`);
    const labels = Object.fromEntries(
      [...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => [k, v]),
    );
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the sample `name` with exactly these labels (0 when absent). */
function get(samples: Sample[], name: string, l: Record<string, string> = {}): number {
  const same = (a: Record<string, string>) =>
    Object.keys(a).length === Object.keys(l).length &&
    Object.entries(l).every(([k, v]) => a[k] === v);
  return samples.find((s) => s.name === name && same(s.labels))?.value ?? 0;
}

Deno.test("/metrics: requests by route pattern (never the raw path), model and status; histograms", async () => {
  const before = await scrape();
  assert.equal((await app.request("/v1/models/sd-tiny")).status, 200);
  assert.equal((await app.request("/v1/models/no-such-model")).status, 404);
  assert.equal((await app.request("/no/such/route")).status, 404);
  assert.equal((await post("/v1/embeddings", { input: "a red circle" })).status, 200);
  const after = await scrape();

  const route = "/v1/models/:model{.+}";
  const req = (l: Record<string, string>) =>
    get(after, "mm_http_requests_total", l) - get(before, "mm_http_requests_total", l);
  assert.equal(req({ route, method: "GET", model: "", status: "200" }), 1);
  assert.equal(req({ route, method: "GET", model: "", status: "404" }), 1);
  assert.equal(req({ route: "unmatched", method: "GET", model: "", status: "404" }), 1);
  assert.equal(
    req({ route: "/v1/embeddings", method: "POST", model: "clip-tiny", status: "200" }),
    1,
  );
  assert.ok(
    !after.some((s) => Object.values(s.labels).some((v) => v.includes("no-such"))),
    "no raw path as a label",
  );

  const h = { route: "/v1/embeddings", method: "POST", model: "clip-tiny", status: "200" };
  const count = get(after, "mm_http_request_duration_seconds_count", h);
  assert.ok(count >= 1);
  assert.equal(
    get(after, "mm_http_request_duration_seconds_bucket", { ...h, le: "+Inf" }),
    count,
  );
  assert.ok(get(after, "mm_http_request_duration_seconds_sum", h) > 0);
  assert.ok(get(after, "mm_queue_wait_seconds_count", { model: "clip-tiny" }) >= 1);

  for (const m of registry.list().filter((m) => m.installed)) {
    assert.equal(get(after, "mm_model_loaded", { model: m.id, family: m.family }), 1, m.id);
    assert.equal(get(after, "mm_queue_waiting", { model: m.id }), 0);
  }
  assert.equal(get(after, "mm_ready"), 1);
  assert.equal(get(after, "mm_draining"), 0);
  assert.ok(get(after, "process_resident_memory_bytes") > 10e6, "resident memory");
  assert.ok(after.some((s) => s.name === "nodejs_eventloop_lag_seconds"));
});

Deno.test("/metrics: tokens (chat, captions, DALL-E) and diffusion steps generated", async () => {
  const before = await scrape();
  const chat = await (await post("/v1/chat/completions", {
    model: "vlm-tiny",
    messages: [{ role: "user", content: "what is in the image?" }],
    max_tokens: 5,
  })).json();
  const captions = await (await post("/v1/captions", {
    model: "sat-soft-tiny",
    image: EXAMPLE_IMAGE,
    strategy: "beam",
    beam_size: 3,
    n: 2,
  })).json();
  const sd = await post("/v1/images/generations", {
    model: "sd-tiny",
    prompt: "a red circle",
    n: 2,
    num_inference_steps: 3,
  });
  assert.equal(sd.status, 200, await sd.clone().text());
  const dalle = await (await post("/v1/images/generations", {
    model: "dalle-tiny",
    prompt: "a red circle",
    n: 2,
  })).json();
  const after = await scrape();
  const delta = (name: string, l: Record<string, string>) =>
    get(after, name, l) - get(before, name, l);

  assert.equal(
    delta("mm_tokens_generated_total", { family: "chat", model: "vlm-tiny" }),
    chat.usage.completion_tokens,
  );
  const captionTokens = captions.captions.reduce(
    (n: number, c: { tokens: unknown[] }) => n + c.tokens.length,
    0,
  );
  assert.ok(captionTokens > 0);
  assert.equal(
    delta("mm_tokens_generated_total", { family: "captioning", model: "sat-soft-tiny" }),
    captionTokens,
  );
  assert.equal(delta("mm_diffusion_steps_total", { model: "sd-tiny" }), 6); // 3 steps × 2 images
  assert.equal(
    delta("mm_tokens_generated_total", { family: "dalle", model: "dalle-tiny" }),
    dalle.usage.output_tokens,
  );
});

Deno.test("a stream is in flight until its end; its log line comes then, with its model", async () => {
  const stop = new AbortController();
  const res = await post("/v1/images/generations", {
    model: "sd-tiny",
    prompt: "a red circle",
    num_inference_steps: 100,
    stream: true,
  }, stop.signal);
  const id = res.headers.get("x-request-id");
  const reader = res.body!.getReader();
  await reader.read(); // the job runs
  const route = "/v1/images/generations";
  const during = await scrape();
  assert.equal(get(during, "mm_http_requests_in_flight", { route }), 1);
  assert.equal(get(during, "mm_queue_running", { model: "sd-tiny" }), 1);
  assert.ok(!lines.some((l) => l.request_id === id), "no line before the end");
  await reader.cancel();
  const after = await scrape();
  assert.equal(get(after, "mm_http_requests_in_flight", { route }), 0);
  const line = lines.find((l) => l.request_id === id);
  assert.ok(line, "a line once the stream ended");
  assert.equal(line.route, route);
  assert.equal(line.model, "sd-tiny");
  assert.equal(line.status, 200);
  assert.equal(line.outcome, "client_closed");
});

Deno.test("one JSON log line per request: time, id, method, route, model, status, ms", async () => {
  const res = await post("/v1/embeddings", { input: "a red circle" });
  await res.body?.cancel();
  const id = res.headers.get("x-request-id");
  const mine = lines.filter((l) => l.request_id === id);
  assert.equal(mine.length, 1);
  const [line] = mine;
  assert.deepEqual(Object.keys(line).sort(), [
    "method",
    "model",
    "ms",
    "path",
    "request_id",
    "route",
    "status",
    "time",
  ]);
  assert.equal(line.method, "POST");
  assert.equal(line.route, "/v1/embeddings");
  assert.equal(line.model, "clip-tiny");
  assert.equal(line.status, 200);
  assert.ok(line.ms >= 0 && Number.isFinite(line.ms));
  assert.ok(!Number.isNaN(Date.parse(line.time)));
  JSON.parse(JSON.stringify(line)); // what the server prints
  // The app without a sink logs nothing (tests and embedders opt in; the server prints them).
  const quiet = await createApp(loadConfig({ MM_BACKEND: "cpu" }));
  const spy = console.log;
  const printed: unknown[] = [];
  console.log = (...a: unknown[]) => printed.push(a);
  try {
    await (await quiet.app.request("/v1/models")).body?.cancel();
  } finally {
    console.log = spy;
  }
  assert.deepEqual(printed, []);
});
