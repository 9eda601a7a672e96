/**
 * Every OpenAI-shaped response and stream event of this server, validated against the schemas of
 * OpenAI's own OpenAPI document (github.com/openai/openai-openapi, trimmed to the schemas used:
 * tests/fixtures/openai/schemas.json, which names its source commit; extract.ts beside it made
 * it). Our extensions (seed, timings, progress events, …) are extra properties, which these
 * schemas allow; the official client is run over the same routes to show it is not broken by them.
 *
 * One deviation is allowed, and only this one: OpenAI's `size` enums list the sizes of OpenAI's
 * own image models (1024x1024, …); ours draw 32–128 px images and report them in the same
 * "WIDTHxHEIGHT" form, which the test checks by pattern instead.
 */
import { TEST_BACKEND } from "./profile.ts";
import assert from "node:assert/strict";
import OpenAI from "openai";
import sharp from "sharp";
import { loadConfig } from "../core/config.ts";
import { createApp } from "../main.ts";
import { renderScene } from "../world/world.ts";
import { type Schema, Validator } from "./openai_schema.ts";

const fixture = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/openai/schemas.json", import.meta.url)),
);
const schemas: Record<string, Schema> = structuredClone(fixture.schemas);
const SIZE = { type: "string", pattern: "^(\\d+x\\d+|auto)$" };
for (
  const name of [
    "ImagesResponse",
    "ImageGenPartialImageEvent",
    "ImageGenCompletedEvent",
    "ImageEditPartialImageEvent",
    "ImageEditCompletedEvent",
  ]
) {
  const props = schemas[name].properties as Record<string, Schema>;
  assert.ok(props.size?.enum, `${name}.size is an enum in the fixture`);
  props.size = SIZE;
}
const spec = new Validator(schemas);

const { app, registry } = await createApp(loadConfig({ MM_BACKEND: TEST_BACKEND }));
await registry.preload();
const installed = (family: string) =>
  registry.list().filter((m) => m.family === family && m.installed).map((m) => m.id);
const [chatModel] = installed("chat");
const hasDalle = installed("dalle").length > 0;

const client = new OpenAI({
  apiKey: "unused",
  baseURL: "http://mm-edge.test/v1",
  fetch: async (url: string | URL | Request, init?: RequestInit) =>
    await app.request(url.toString(), init),
  maxRetries: 0,
});
const post = (path: string, body: unknown) =>
  app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });

/** The `data:` payloads of an SSE body, with their `event:` names. */
async function events(res: Response) {
  assert.equal(res.status, 200);
  const text = await res.text();
  return text.split("\n\n").filter((b) => b.trim()).map((block) => ({
    event: block.match(/^event: (.*)$/m)?.[1] ?? "message",
    data: block.match(/^data: (.*)$/m)![1],
  }));
}

const imageUrl = `data:image/png;base64,${
  new Uint8Array(
    await sharp(
      renderScene({
        background: "white",
        objects: [{ shape: "square", colour: "blue", size: "large", side: 22, x: 21, y: 21 }],
      }, 3),
      { raw: { width: 64, height: 64, channels: 3 } },
    ).png().toBuffer(),
  ).toBase64()
}`;
const messages = [{
  role: "user",
  content: [{ type: "image_url", image_url: { url: imageUrl } }, {
    type: "text",
    text: "describe the image.",
  }],
}];

Deno.test("the validator rejects what the schemas forbid", () => {
  const ok = { error: { message: "m", type: "t", param: null, code: null } };
  assert.deepEqual(spec.validate("ErrorResponse", ok), []);
  assert.ok(spec.validate("ErrorResponse", { error: { message: "m", type: "t" } }).length > 0);
  assert.ok(spec.validate("ErrorResponse", { error: { ...ok.error, param: 3 } }).length > 0);
  assert.ok(spec.validate("Model", { id: "x", object: "models", created: 0, owned_by: "me" })[0]);
  assert.ok(spec.validate("Model", { id: "x", object: "model", created: 0.5, owned_by: "me" })[0]);
  const message = { role: "assistant", content: "hi" }; // no refusal
  const completion = {
    id: "c",
    object: "chat.completion",
    created: 1,
    model: "m",
    choices: [{ index: 0, message, logprobs: null, finish_reason: "stop" }],
  };
  assert.match(spec.validate("CreateChatCompletionResponse", completion).join(), /refusal/);
  assert.throws(() => new Validator({ X: { minItems: 1 } }).validate("X", []), /not supported/);
});

Deno.test({
  name: "chat: completion and every stream chunk match OpenAI's schemas; logprobs per chunk",
  ignore: !chatModel,
  fn: async () => {
    const res = await post("/v1/chat/completions", {
      model: chatModel,
      messages,
      logprobs: true,
      top_logprobs: 2,
      max_tokens: 12,
    });
    const whole = await res.json();
    assert.equal(res.status, 200, JSON.stringify(whole));
    spec.assert("CreateChatCompletionResponse", whole);
    assert.equal(whole.choices[0].message.refusal, null);
    assert.equal(whole.choices[0].logprobs.refusal, null);

    const chunks = (await events(
      await post("/v1/chat/completions", {
        model: chatModel,
        messages,
        logprobs: true,
        top_logprobs: 2,
        max_tokens: 12,
        stream: true,
        stream_options: { include_usage: true },
      }),
    )).map((e) => e.data);
    assert.equal(chunks.at(-1), "[DONE]");
    const parsed = chunks.slice(0, -1).map((d) => JSON.parse(d));
    for (const chunk of parsed) spec.assert("CreateChatCompletionStreamResponse", chunk);
    // Logprobs travel with the content they score, as OpenAI streams them.
    const streamed = [];
    for (const chunk of parsed) {
      const c = chunk.choices[0];
      if (!c) continue;
      if (c.delta.content) {
        assert.ok(c.logprobs?.content?.length >= 1, `content chunk without logprobs`);
        assert.equal(
          c.logprobs.content.map((t: { token: string }) => t.token).join("").length > 0,
          true,
        );
      }
      streamed.push(...(c.logprobs?.content ?? []));
    }
    assert.deepEqual(
      streamed.map((t: { token: string }) => t.token),
      whole.choices[0].logprobs.content.map((t: { token: string }) => t.token),
    );
    const last = parsed.at(-1);
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, whole.usage);
    for (const chunk of parsed.slice(0, -1)) assert.equal(chunk.usage, null);

    // And the official client reads the stream whole.
    let text = "";
    for await (
      const chunk of await client.chat.completions.create({
        model: chatModel,
        messages: messages as OpenAI.ChatCompletionMessageParam[],
        max_tokens: 12,
        stream: true,
      })
    ) text += chunk.choices[0]?.delta?.content ?? "";
    assert.equal(text, whole.choices[0].message.content);
  },
});

Deno.test("embeddings, the model list and one model match OpenAI's schemas", async () => {
  const res = await post("/v1/embeddings", { input: ["a red circle", "a blue square"] });
  spec.assert("CreateEmbeddingResponse", await res.json());
  const list = await (await app.request("/v1/models")).json();
  spec.assert("ListModelsResponse", list);
  for (const m of list.data) spec.assert("Model", m);
  const one = await app.request("/v1/models/sd-tiny");
  assert.equal(one.status, 200);
  const model = await one.json();
  spec.assert("Model", model);
  assert.equal(model.id, "sd-tiny");
  const retrieved = await client.models.retrieve("sd-tiny");
  assert.equal(retrieved.id, "sd-tiny");
  assert.deepEqual(retrieved, list.data.find((m: { id: string }) => m.id === "sd-tiny"));
  // Hub ids hold a slash: found whether the client encodes it (the official one does) or not.
  const slashed = list.data.find((m: { id: string }) => m.id.includes("/"));
  if (slashed) {
    for (const path of [slashed.id, encodeURIComponent(slashed.id)]) {
      const r = await app.request(`/v1/models/${path}`);
      assert.equal(r.status, 200, path);
      assert.deepEqual(await r.json(), slashed);
    }
    assert.equal((await client.models.retrieve(slashed.id)).id, slashed.id);
  }
  const missing = await app.request("/v1/models/nope");
  assert.equal(missing.status, 404);
  const err = await missing.json();
  spec.assert("ErrorResponse", err);
  assert.equal(err.error.param, "model");
});

Deno.test("errors match OpenAI's schema", async () => {
  for (
    const res of [
      await post("/v1/chat/completions", { messages: [] }),
      await post("/v1/images/generations", { prompt: "x", size: "big" }),
      await post("/v1/embeddings", { model: "nope", input: "x" }),
    ]
  ) {
    assert.ok(res.status >= 400 && res.status < 500);
    spec.assert("ErrorResponse", await res.json());
  }
});

Deno.test("images: the response and the generation stream's events match OpenAI's schemas", async () => {
  const prompt = "a large red circle in the center on a white background";
  const res = await post("/v1/images/generations", { prompt, num_inference_steps: 4, seed: 1 });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  spec.assert("ImagesResponse", body);

  const stream = await events(
    await post("/v1/images/generations", {
      prompt,
      num_inference_steps: 6,
      seed: 1,
      n: 2,
      stream: true,
      partial_images: 2,
    }),
  );
  const kinds = new Set(stream.map((e) => e.event));
  assert.deepEqual(
    [...kinds].sort(),
    ["image_generation.completed", "image_generation.partial_image", "image_generation.progress"],
  );
  for (const e of stream) {
    const data = JSON.parse(e.data);
    assert.equal(data.type, e.event, "the event name is the payload's type");
    if (e.event === "image_generation.progress") continue; // our extension
    spec.assert("ImageGenStreamEvent", data);
    spec.assert(
      e.event.endsWith("completed") ? "ImageGenCompletedEvent" : "ImageGenPartialImageEvent",
      data,
    );
  }
  const completed = stream.filter((e) => e.event === "image_generation.completed");
  assert.equal(completed.length, 2, "one completed event per image");

  // The official client's streaming API reads the same events.
  const seen: string[] = [];
  for await (
    const event of await client.images.generate({
      prompt,
      stream: true,
      partial_images: 1,
      num_inference_steps: 4, // ours: the client passes it on
    } as OpenAI.ImageGenerateParamsStreaming)
  ) seen.push(event.type);
  assert.equal(seen.filter((t) => t === "image_generation.partial_image").length, 1);
  assert.equal(seen.at(-1), "image_generation.completed");
});

Deno.test("images: the edit stream uses image_edit.* events that match OpenAI's schemas", async () => {
  const stream = await events(
    await post("/v1/images/edits", {
      prompt: "a large blue square in the center on a white background",
      image: imageUrl,
      strength: 0.6,
      num_inference_steps: 10,
      stream: true,
      partial_images: 2,
      seed: 2,
    }),
  );
  assert.deepEqual(
    [...new Set(stream.map((e) => e.event))].sort(),
    ["image_edit.completed", "image_edit.partial_image", "image_edit.progress"],
  );
  for (const e of stream) {
    const data = JSON.parse(e.data);
    assert.equal(data.type, e.event);
    if (e.event === "image_edit.progress") continue;
    spec.assert("ImageEditStreamEvent", data);
    spec.assert(
      e.event.endsWith("completed") ? "ImageEditCompletedEvent" : "ImageEditPartialImageEvent",
      data,
    );
  }
});

Deno.test({
  name: "images: dalle-tiny's response and stream events match OpenAI's schemas",
  ignore: !hasDalle,
  fn: async () => {
    const prompt = "a large blue square in the center on a white background";
    const res = await post("/v1/images/generations", { model: "dalle-tiny", prompt, seed: 1 });
    spec.assert("ImagesResponse", await res.json());
    const stream = await events(
      await post("/v1/images/generations", {
        model: "dalle-tiny",
        prompt,
        seed: 1,
        stream: true,
        partial_images: 1,
      }),
    );
    for (const e of stream) {
      if (e.event.endsWith(".progress")) continue;
      spec.assert("ImageGenStreamEvent", JSON.parse(e.data));
    }
  },
});
