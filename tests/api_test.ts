/**
 * API tests for every route: success, and bad input (not an image, truncated PNG, decompression
 * bomb, unknown model, missing or wrong fields, body too large), each a clear error in the
 * OpenAI envelope, after which the app keeps serving.
 */
import { TEST_BACKEND } from "./profile.ts";
import assert from "node:assert/strict";
import sharp from "sharp";
import { loadConfig } from "../core/config.ts";
import { createApp } from "../main.ts";
import { renderScene, type Scene } from "../world/world.ts";

const config = { ...loadConfig({ MM_BACKEND: TEST_BACKEND }), maxBodyBytes: 2 * 1024 * 1024 };
const { app, registry } = await createApp(config);
await registry.preload();

const png = async (scene: Scene) =>
  new Uint8Array(
    await sharp(renderScene(scene), { raw: { width: 64, height: 64, channels: 3 } }).png()
      .toBuffer(),
  );
const redCircle = await png({
  background: "black",
  objects: [{ shape: "circle", colour: "red", size: "large", side: 24, x: 20, y: 20 }],
});
const blueSquare = await png({
  background: "white",
  objects: [{ shape: "square", colour: "blue", size: "large", side: 24, x: 10, y: 30 }],
});
const dataUrl = (b: Uint8Array) => `data:image/png;base64,${b.toBase64()}`;

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  app.request(path, {
    method: "POST",
    body: typeof body === "string" || body instanceof FormData ? body : JSON.stringify(body),
    headers: body instanceof FormData
      ? headers
      : { "content-type": "application/json", ...headers },
  });

/** Asserts an error response: status, envelope shape, code, and no stack trace. */
async function expectError(res: Response, status: number, code: string, param?: string) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  const body = JSON.parse(text);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(body.error.code, code, text);
  if (param !== undefined) assert.equal(body.error.param, param);
  assert.ok(!/\bat \S+\.ts:\d+/.test(text), "no stack trace");
  return body.error;
}

/** After every error, the app must still answer a real request. */
async function stillServing() {
  const res = await post("/v1/embeddings", { input: "a red circle" });
  assert.equal(res.status, 200);
}

Deno.test("GET /health is 503 with an error while models load, then 200", async () => {
  const fresh = await createApp(loadConfig({ MM_BACKEND: TEST_BACKEND }));
  await expectError(await fresh.app.request("/health"), 503, "not_ready");
  await fresh.registry.preload();
  const res = await fresh.app.request("/health");
  assert.equal(res.status, 200);
  assert.ok((await res.json()).models.includes("clip-tiny"));
});

Deno.test("every response has a request id and Server-Timing", async () => {
  for (
    const res of [
      await app.request("/health"),
      await post("/v1/embeddings", {}),
      await app.request("/nope"),
    ]
  ) {
    assert.match(res.headers.get("x-request-id") ?? "", /^[\w.-]+$/);
    assert.match(res.headers.get("server-timing") ?? "", /total;dur=/);
    await res.body?.cancel();
  }
  const echoed = await app.request("/health", { headers: { "x-request-id": "abc-123" } });
  assert.equal(echoed.headers.get("x-request-id"), "abc-123");
});

Deno.test("GET /v1/models lists clip-tiny with its family, modalities and backend", async () => {
  const { object, data } = await (await app.request("/v1/models")).json();
  assert.equal(object, "list");
  const clip = data.find((m: { id: string }) => m.id === "clip-tiny");
  assert.equal(clip.family, "clip");
  assert.deepEqual(clip.modalities.input, ["text", "image"]);
  assert.equal(clip.backend, TEST_BACKEND);
  assert.equal(clip.execution_provider, TEST_BACKEND);
  assert.equal(clip.loaded, true);
});

Deno.test("GET /openapi.json documents every route from the zod schemas; /docs and / are pages", async () => {
  const doc = await (await app.request("/openapi.json")).json();
  assert.equal(doc.openapi, "3.1.0");
  for (
    const p of [
      "/v1/embeddings",
      "/v1/clip/classify",
      "/v1/clip/similarity",
      "/v1/models",
      "/health",
    ]
  ) {
    assert.ok(doc.paths[p], p);
  }
  assert.ok(doc.components.schemas.ClassifyRequest.properties.candidate_labels);
  assert.match(doc.info.description, /captioning.*CLIP.*DALL-E.*chat/s);
  // Every POST route has an example on /docs, and it works as it is.
  type Op = { requestBody: { content: Record<string, { example?: unknown }> } };
  for (const [path, ops] of Object.entries(doc.paths) as [string, { post?: Op }][]) {
    if (!ops.post) continue;
    const example = ops.post.requestBody.content["application/json"].example;
    assert.ok(example, `${path} has an example`);
    const res = await post(path, example);
    const text = await res.text();
    assert.equal(res.status, 200, `${path} example: ${text.slice(0, 300)}`);
  }
  assert.ok(
    doc.paths["/v1/world/scene"].get.parameters.some((p: { name: string }) => p.name === "seed"),
  );
  for (const page of ["/docs", "/"]) {
    const res = await app.request(page);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /text\/html/);
    assert.match(await res.text(), /<html/);
  }
});

Deno.test("POST /v1/embeddings embeds texts and images in one space, L2-normalized", async () => {
  const res = await post("/v1/embeddings", {
    input: ["a photo of a red circle", {
      type: "image_url",
      image_url: { url: dataUrl(redCircle) },
    }, "a blue square"],
  });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.object, "list");
  assert.equal(body.model, "clip-tiny");
  assert.equal(body.data.length, 3);
  assert.deepEqual(body.data.map((d: { index: number }) => d.index), [0, 1, 2]);
  const [t, i, u] = body.data.map((d: { embedding: number[] }) => d.embedding);
  const dot = (a: number[], b: number[]) => a.reduce((s, v, k) => s + v * b[k], 0);
  assert.ok(Math.abs(dot(t, t) - 1) < 1e-4);
  assert.ok(Math.abs(dot(i, i) - 1) < 1e-4);
  assert.ok(dot(i, t) > dot(i, u), "the red circle is closer to its text than to a blue square");
  assert.ok(body.usage.prompt_tokens > 0);
});

Deno.test("POST /v1/embeddings with encoding_format base64 returns little-endian float32", async () => {
  const [f, b] = await Promise.all(
    ["float", "base64"].map(async (encoding_format) =>
      (await (await post("/v1/embeddings", { input: "a red circle", encoding_format })).json())
        .data[0].embedding
    ),
  );
  const floats = new Float32Array(Uint8Array.fromBase64(b).buffer);
  assert.equal(floats.length, f.length);
  floats.forEach((v, k) => assert.ok(Math.abs(v - f[k]) < 1e-7));
});

Deno.test("POST /v1/clip/classify ranks the right label first (JSON with a data URL)", async () => {
  const res = await post("/v1/clip/classify", {
    image: dataUrl(redCircle),
    candidate_labels: ["blue square", "red circle", "green triangle"],
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.model, "clip-tiny");
  assert.equal(body.results[0].label, "red circle");
  assert.ok(
    Math.abs(body.results.reduce((s: number, r: { score: number }) => s + r.score, 0) - 1) < 1e-6,
  );
});

Deno.test("POST /v1/clip/classify takes bare base64, several templates, and patch maps", async () => {
  const res = await post("/v1/clip/classify", {
    image: blueSquare.toBase64(),
    candidate_labels: ["red circle", "blue square"],
    hypothesis_template: ["a photo of a {}", "a {} on a white background"],
    return_patch_maps: true,
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.results[0].label, "blue square");
  assert.equal(
    body.results[0].patch_map.values.length,
    body.results[0].patch_map.rows * body.results[0].patch_map.cols,
  );
});

Deno.test("POST /v1/clip/classify accepts a multipart upload", async () => {
  const form = new FormData();
  form.append("image", new Blob([redCircle], { type: "image/png" }), "circle.png");
  form.append("candidate_labels[]", "red circle");
  form.append("candidate_labels[]", "blue square");
  const res = await post("/v1/clip/classify", form);
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.results[0].label, "red circle");
});

Deno.test("POST /v1/clip/similarity returns images × texts matrices", async () => {
  const res = await post("/v1/clip/similarity", {
    images: [dataUrl(redCircle), dataUrl(blueSquare)],
    texts: ["a photo of a red circle", "a photo of a blue square", "a photo of a green diamond"],
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.cosine.length, 2);
  assert.equal(body.cosine[0].length, 3);
  assert.ok(body.cosine[0][0] > body.cosine[0][1]);
  assert.ok(body.cosine[1][1] > body.cosine[1][0]);
  for (const row of body.probabilities) {
    assert.ok(Math.abs(row.reduce((a: number, b: number) => a + b, 0) - 1) < 1e-6);
  }
});

Deno.test("bad images get 400 invalid_image, a decompression bomb 413, and the app keeps serving", async () => {
  const labels = ["red circle", "blue square"];
  await expectError(
    await post("/v1/clip/classify", {
      image: btoa("I am a text file, not an image"),
      candidate_labels: labels,
    }),
    400,
    "invalid_image",
    "image",
  );
  await expectError(
    await post("/v1/clip/classify", {
      image: redCircle.slice(0, 60).toBase64(),
      candidate_labels: labels,
    }),
    400,
    "invalid_image",
  );
  await expectError(
    await post("/v1/clip/classify", {
      image: "data:image/png;base64,%%%",
      candidate_labels: labels,
    }),
    400,
    "invalid_image",
  );
  const bomb = new Uint8Array(
    await sharp({ create: { width: 1, height: 1, channels: 3, background: "red" } }).png()
      .toBuffer(),
  );
  new DataView(bomb.buffer).setUint32(16, 20000); // IHDR width
  new DataView(bomb.buffer).setUint32(20, 20000); // IHDR height
  await expectError(
    await post("/v1/clip/classify", { image: dataUrl(bomb), candidate_labels: labels }),
    413,
    "image_too_large",
  );
  await expectError(
    await post("/v1/embeddings", {
      input: [{ type: "image_url", image_url: { url: dataUrl(bomb) } }],
    }),
    413,
    "image_too_large",
    "input.0.image_url.url",
  );
  await stillServing();
});

Deno.test("unknown model is 404; missing or wrong fields are 400 naming the field", async () => {
  await expectError(
    await post("/v1/embeddings", { model: "no-such-model", input: "x" }),
    404,
    "model_not_found",
    "model",
  );
  await expectError(await post("/v1/embeddings", {}), 400, "invalid_request", "input");
  await expectError(await post("/v1/embeddings", { input: 42 }), 400, "invalid_request", "input");
  await expectError(
    await post("/v1/embeddings", { input: "x", encoding_format: "hex" }),
    400,
    "invalid_request",
    "encoding_format",
  );
  await expectError(
    await post("/v1/clip/classify", { image: dataUrl(redCircle) }),
    400,
    "invalid_request",
    "candidate_labels",
  );
  await expectError(
    await post("/v1/clip/classify", { image: dataUrl(redCircle), candidate_labels: [] }),
    400,
    "invalid_request",
  );
  await expectError(
    await post("/v1/clip/similarity", { images: [], texts: ["a"] }),
    400,
    "invalid_request",
  );
  await expectError(await post("/v1/embeddings", "{not json"), 400, "invalid_request");
  await expectError(
    await post("/v1/embeddings", "input=x", { "content-type": "text/plain" }),
    400,
    "invalid_request",
  );
  await expectError(
    await post("/v1/embeddings", { input: "red ".repeat(100) }),
    400,
    "invalid_request",
    "input",
  );
  await expectError(await app.request("/v1/nothing-here"), 404, "invalid_request");
  for (const labels of [" ", ",", " , ,", [" "], ["", " "]]) {
    await expectError(
      await post("/v1/clip/classify", { image: dataUrl(redCircle), candidate_labels: labels }),
      400,
      "invalid_request",
      "candidate_labels",
    );
  }
  await stillServing();
});

Deno.test("an overlong text is refused by the schema before it is tokenized", async () => {
  const huge = "red ".repeat(250_000); // 1 MB: under the body limit, over every text limit
  for (
    const [path, body, param] of [
      ["/v1/embeddings", { input: huge }, "input"],
      ["/v1/clip/similarity", { images: [dataUrl(redCircle)], texts: [huge] }, "texts.0"],
      [
        "/v1/chat/completions",
        { messages: [{ role: "user", content: huge }] },
        "messages.0.content",
      ],
    ] as const
  ) {
    const e = await expectError(await post(path, body), 400, "invalid_request");
    assert.ok(e.param.startsWith(param), `${path}: ${e.param}`);
  }
});

Deno.test("a known route with the wrong method is 405 with Allow", async () => {
  const res = await app.request("/v1/embeddings");
  assert.equal(res.headers.get("allow"), "POST");
  await expectError(res, 405, "method_not_allowed");
  const models = await app.request("/v1/models", { method: "DELETE" });
  assert.match(models.headers.get("allow")!, /GET/);
  await expectError(models, 405, "method_not_allowed");
});

Deno.test("null for an optional field means not given; dimensions is honoured or refused", async () => {
  const res = await post("/v1/embeddings", {
    input: "a red circle",
    model: null,
    encoding_format: null,
    user: null,
    dimensions: null,
  });
  assert.equal(res.status, 200, await res.clone().text());
  const size = (await res.json()).data[0].embedding.length;
  const same = await post("/v1/embeddings", { input: "a red circle", dimensions: size });
  assert.equal(same.status, 200);
  await expectError(
    await post("/v1/embeddings", { input: "a red circle", dimensions: size / 2 }),
    400,
    "unsupported",
    "dimensions",
  );
  await expectError(
    await post("/v1/embeddings", { input: ["a", null] }),
    400,
    "invalid_request",
    "input",
  );
});

Deno.test("a body over the limit is 413 body_too_large", async () => {
  const big = "A".repeat(config.maxBodyBytes + 10);
  await expectError(
    await post("/v1/clip/classify", { image: big, candidate_labels: ["a"] }),
    413,
    "body_too_large",
  );
  await stillServing();
});

Deno.test("GET /v1/world/scene: a seeded scene with captions and questions; bad query is a 400", async () => {
  const get = async (q: string) => {
    const res = await app.request(`/v1/world/scene${q}`);
    assert.equal(res.status, 200);
    return await res.json();
  };
  const a = await get("?seed=5&split=heldout&objects=2");
  assert.equal(a.seed, 5);
  assert.equal(a.split, "heldout");
  assert.match(a.caption, / background$/);
  assert.ok(a.questions.length > 0 && a.references.includes(a.caption));
  const { data, info } = await sharp(Uint8Array.fromBase64(a.b64_json)).raw().toBuffer({
    resolveWithObject: true,
  });
  assert.deepEqual([info.width, info.height, data.length], [64, 64, 64 * 64 * 3]);
  assert.deepEqual(await get("?seed=5&split=heldout&objects=2"), a, "same seed, same scene");
  assert.notEqual((await get("?seed=6&split=heldout&objects=2")).b64_json, a.b64_json);
  assert.equal(typeof (await get("")).seed, "number", "a random seed is returned");
  await expectError(
    await app.request("/v1/world/scene?split=nope"),
    400,
    "invalid_request",
    "split",
  );
  await expectError(
    await app.request("/v1/world/scene?objects=9"),
    400,
    "invalid_request",
    "objects",
  );
});

Deno.test("repeated form fields collect into one list, in order", async () => {
  const form = new FormData();
  form.append("image", new Blob([redCircle], { type: "image/png" }));
  for (const label of ["red circle", "blue square", "green triangle"]) {
    form.append("candidate_labels", label);
  }
  const res = await post("/v1/clip/classify", form);
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.deepEqual(
    body.results.map((r: { label: string }) => r.label).sort(),
    ["blue square", "green triangle", "red circle"],
  );
});
