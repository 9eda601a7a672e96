/**
 * A short seeded pass of `deno task fuzz` (bench/fuzz.ts: the same generator and checks), so CI
 * runs it: 600 malformed requests across every route, zero violations. Then one test per bug the
 * fuzz found, each answered as it should be now.
 */
import assert from "node:assert/strict";
import sharp from "sharp";
import { loadConfig } from "../core/config.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { loadTokenizer } from "../core/tokenizers.ts";
import { createApp } from "../main.ts";
import {
  buildAssets,
  checkMetricLabels,
  describeCase,
  formatTable,
  runFuzz,
  zeroPng,
} from "../bench/fuzz.ts";

const { app, registry } = await createApp(loadConfig({ MM_BACKEND: "cpu" }));
await registry.preload();
const assets = await buildAssets();

const post = (path: string, body: string, headers: Record<string, string> = {}) =>
  app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });

async function expectEnvelope(res: Response, status: number, code: string) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  const { error } = JSON.parse(text);
  assert.deepEqual(Object.keys(error).sort(), ["code", "message", "param", "type"]);
  assert.equal(error.code, code, text);
}

Deno.test("fuzz: 600 seeded malformed requests, no 5xx, the envelope on every 4xx, no leaks", async () => {
  const report = await runFuzz(app, assets, {
    seed: 14,
    count: 600,
    warmup: 100,
    warmupBatch: false, // the long run's allocator warm-up (every image in every field): 400 more
    // Generous: a case that hangs fails, a slow machine does not.
    timeoutMs: 120_000,
    // RSS of a short run is mostly allocator warm-up; the long run (`deno task fuzz`) holds the
    // tight bound. This one still catches a leak of the size of the bugs it was written for.
    rssBoundBytes: 1024 * 2 ** 20,
  });
  const detail = report.violations.slice(0, 5).map((v) =>
    `${describeCase(v.case)}\n  → ${v.outcome.status}: ${
      v.outcome.problems.join("; ")
    }\n  ${v.outcome.body}`
  ).join("\n\n");
  assert.equal(report.count, 600);
  assert.equal(report.violations.length, 0, `seed 14:\n${detail}\n\n${formatTable(report)}`);
  // Every route of /openapi.json was tried.
  const doc = await (await app.request("/openapi.json")).json();
  for (const path of Object.keys(doc.paths)) {
    const row = [...report.table.keys()].find((r) => r.endsWith(` ${path}`));
    assert.ok(row, `no case reached ${path}`);
  }
});

Deno.test("fuzz regression: JSON nested 10,000 and 100,000 deep is a 400, not a stack overflow", async () => {
  for (const depth of [10_000, 100_000]) {
    const nested = '[{"a":'.repeat(depth) + "null" + "}]".repeat(depth);
    await expectEnvelope(await post("/v1/captions", nested), 400, "invalid_request");
    await expectEnvelope(
      await post("/v1/embeddings", `{"input":${"[".repeat(depth)}${"]".repeat(depth)}}`),
      400,
      "invalid_request",
    );
  }
  // Ordinary nesting still passes.
  const ok = await post(
    "/v1/embeddings",
    JSON.stringify({ input: ["a red circle"], user: null }),
  );
  assert.equal(ok.status, 200, await ok.text());
});

Deno.test("fuzz regression: a chat answer that ends at its first token is an empty answer, not a 500", async () => {
  const { tokenizer } = await loadTokenizer(`${EMBEDDED_MODELS_DIR}vlm-xattn-tiny/`);
  assert.equal(tokenizer.decode([], { skip_special_tokens: true }), "");
  // The request the fuzz found: this system prompt makes the model stop at once (greedy).
  const res = await post(
    "/v1/chat/completions",
    JSON.stringify({
      model: "vlm-xattn-tiny",
      messages: [{ role: "system", content: "[]" }, { role: "user", content: "hi" }],
      max_tokens: 1,
    }),
  );
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.equal(typeof JSON.parse(text).choices[0].message.content, "string");
});

Deno.test("fuzz regression: attention overlays of a 1 × 65536 strip stay small (it hung the server)", async () => {
  for (const [w, h] of [[1, 65536], [65536, 1], [1024, 1024]]) {
    const image = `data:image/png;base64,${zeroPng(w, h, { bitDepth: 1 }).toBase64()}`;
    const res = await post(
      "/v1/captions",
      JSON.stringify({ model: "sat-soft-tiny", image, max_tokens: 2, return_attention: true }),
    );
    const text = await res.text();
    assert.equal(res.status, 200, text.slice(0, 300));
    for (const word of JSON.parse(text).captions[0].attention.words) {
      const meta = await sharp(Uint8Array.fromBase64(word.overlay_png)).metadata();
      assert.ok(
        Math.max(meta.width!, meta.height!) <= 512,
        `${w}×${h}: ${meta.width}×${meta.height}`,
      );
    }
  }
});

Deno.test("fuzz regression: a missing /static/ file is a 404 (it was a 405 saying 'use GET')", async () => {
  const res = await app.request("/static/missing.css");
  assert.equal(res.headers.get("allow"), null);
  await expectEnvelope(res, 404, "invalid_request");
  await expectEnvelope(
    await app.request("/static/app.js", { method: "PUT" }),
    405,
    "method_not_allowed",
  );
});

Deno.test("fuzz regression: model ids and methods from requests do not become metric labels", async () => {
  for (let i = 0; i < 20; i++) {
    const res = await post("/v1/embeddings", JSON.stringify({ model: `fuzz-${i}`, input: "a" }));
    await expectEnvelope(res, 404, "model_not_found");
    await expectEnvelope(
      await app.request("/v1/embeddings", { method: `XFUZZ${i}` }),
      405,
      "method_not_allowed",
    );
  }
  assert.deepEqual(await checkMetricLabels(app), []);
  const text = await (await app.request("/metrics")).text();
  assert.ok(!text.includes("fuzz-"), "no fuzz-N model label");
  assert.match(text, /mm_http_requests_total\{[^}]*model="other"[^}]*\} \d+/);
});
