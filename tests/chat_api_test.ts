/**
 * `POST /v1/chat/completions` through the official `openai` npm client (its fetch pointed at the
 * app), for every installed chat model: answers about an image, streaming, several images, no
 * image, an image without a question, stop strings, log-probabilities, disconnects, concurrency,
 * and clear errors.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import sharp from "sharp";
import { loadConfig } from "../core/config.ts";
import { createApp } from "../main.ts";
import { renderScene, type Scene } from "../world/world.ts";

const { app, registry } = await createApp(loadConfig({ MM_BACKEND: "cpu" }));
await registry.preload();
const chatModels = registry.list().filter((m) => m.family === "chat" && m.installed).map((m) =>
  m.id
);
if (!chatModels.length) console.log("chat_api_test: no chat model installed; skipped");

const client = new OpenAI({
  apiKey: "unused",
  baseURL: "http://mm-edge.test/v1",
  fetch: async (url: string | URL | Request, init?: RequestInit) =>
    await app.request(url.toString(), init),
  maxRetries: 0,
});

const png = async (scene: Scene) =>
  `data:image/png;base64,${
    new Uint8Array(
      await sharp(renderScene(scene, 3), { raw: { width: 64, height: 64, channels: 3 } }).png()
        .toBuffer(),
    ).toBase64()
  }`;
const white: Scene = {
  background: "white",
  objects: [{ shape: "square", colour: "blue", size: "large", side: 22, x: 21, y: 21 }],
};
const black: Scene = {
  background: "black",
  objects: [
    { shape: "circle", colour: "red", size: "large", side: 22, x: 2, y: 20 },
    { shape: "diamond", colour: "yellow", size: "small", side: 12, x: 44, y: 24 },
  ],
};
const [whiteUrl, blackUrl] = [await png(white), await png(black)];
const ask = (url: string, text: string) => ({
  role: "user" as const,
  content: [{ type: "image_url" as const, image_url: { url } }, { type: "text" as const, text }],
});

for (const model of chatModels) {
  Deno.test(`${model}: answers about an image (non-streaming, official client)`, async () => {
    const r = await client.chat.completions.create({
      model,
      messages: [ask(whiteUrl, "what color is the background?")],
    });
    console.log(`  ${model}: "${r.choices[0].message.content}"`);
    assert.equal(r.object, "chat.completion");
    assert.equal(r.model, model);
    assert.equal(r.choices[0].message.content, "white");
    assert.equal(r.choices[0].finish_reason, "stop");
    assert.ok(r.usage!.prompt_tokens > 5 && r.usage!.completion_tokens >= 1);
    assert.equal(r.usage!.total_tokens, r.usage!.prompt_tokens + r.usage!.completion_tokens);
  });

  Deno.test(`${model}: streams the same answer token by token, then usage and [DONE]`, async () => {
    const messages = [ask(blackUrl, "describe the image.")];
    const whole = await client.chat.completions.create({ model, messages, max_tokens: 40 });
    const stream = await client.chat.completions.create({
      model,
      messages,
      max_tokens: 40,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "", pieces = 0, usage, finish;
    for await (const chunk of stream) {
      assert.equal(chunk.object, "chat.completion.chunk");
      const c = chunk.choices[0];
      if (c?.delta?.content) (text += c.delta.content, pieces++);
      if (c?.finish_reason) finish = c.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    console.log(`  ${model}: "${text}" in ${pieces} pieces`);
    assert.equal(text, whole.choices[0].message.content);
    assert.ok(pieces >= 3, "streamed in pieces");
    assert.equal(finish, whole.choices[0].finish_reason);
    assert.deepEqual(usage, whole.usage);
  });

  Deno.test(`${model}: several images, no image, an image alone`, async () => {
    const two = await client.chat.completions.create({
      model,
      messages: [
        ask(whiteUrl, "what color is the background?"),
        { role: "assistant", content: "white" },
        ask(blackUrl, "what color is the background?"),
      ],
    });
    assert.ok(two.choices[0].message.content!.length > 0);
    const none = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "how many shapes are there?" }],
    });
    assert.ok(none.choices[0].message.content!.length > 0, "answers from text alone");
    const alone = await client.chat.completions.create({
      model,
      max_tokens: 40,
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: whiteUrl } }] }],
    });
    console.log(`  ${model}, image alone: "${alone.choices[0].message.content}"`);
    assert.match(alone.choices[0].message.content!, /background/, "described");
  });

  Deno.test(`${model}: stop strings, log-probabilities, seeded sampling`, async () => {
    const stopped = await client.chat.completions.create({
      model,
      max_tokens: 40,
      stop: ["background"],
      messages: [ask(blackUrl, "describe the image.")],
    });
    assert.doesNotMatch(stopped.choices[0].message.content!, /background/);
    assert.equal(stopped.choices[0].finish_reason, "stop");
    const lp = await client.chat.completions.create({
      model,
      logprobs: true,
      top_logprobs: 2,
      messages: [ask(whiteUrl, "what color is the background?")],
    });
    const content = lp.choices[0].logprobs!.content!;
    assert.ok(content.length >= 1);
    for (const t of content) {
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 2);
    }
    const sample = (seed: number) =>
      client.chat.completions.create({
        model,
        temperature: 1.5,
        seed,
        max_tokens: 20,
        messages: [ask(blackUrl, "describe the image.")],
      }).then((r) => r.choices[0].message.content);
    assert.equal(await sample(5), await sample(5));
  });

  Deno.test(`${model}: a client that disconnects stops the generation`, async () => {
    const entry = registry.entries.find((e) => e.manifest.id === model)!;
    const decoder = await registry.sessions.load(entry.dir + entry.manifest.files.decoder);
    // Sampling at a high temperature rarely ends early: the whole answer is several tokens.
    const request = {
      model,
      max_tokens: 150,
      temperature: 2,
      seed: 1,
      messages: [{ role: "user" as const, content: "describe the image." }],
    };
    const whole = await client.chat.completions.create(request);
    const full = whole.usage!.completion_tokens;
    assert.ok(full >= 8, `the uninterrupted answer has ${full} tokens`);
    let runs = 0;
    const run = decoder.run.bind(decoder);
    // Each step made slow, so that the client leaves long before the answer could end.
    decoder.run = async (...args) => {
      runs++;
      await new Promise((r) => setTimeout(r, 50));
      return run(...args);
    };
    try {
      const res = await app.request("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ ...request, stream: true }),
      });
      const reader = res.body!.getReader();
      await reader.read(); // the role chunk
      await reader.read(); // a first piece of text
      await reader.cancel();
      await new Promise((r) => setTimeout(r, 200));
      const after = runs;
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(runs, after, "no decoder run after the disconnect settled");
      assert.ok(runs < full, `stopped after ${runs} decoder runs of ${full + 1}`);
    } finally {
      decoder.run = run;
    }
  });

  Deno.test(`${model}: concurrent chats are all answered`, async () => {
    const answers = await Promise.all(
      Array.from({ length: 4 }, () =>
        client.chat.completions.create({
          model,
          messages: [ask(whiteUrl, "what color is the background?")],
        })),
    );
    assert.deepEqual(answers.map((a) => a.choices[0].message.content), Array(4).fill("white"));
  });
}

Deno.test({
  name: "chat: clear 400s and 404s",
  ignore: !chatModels.length,
  fn: async () => {
    const post = (body: Record<string, unknown>) =>
      app.request("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const cases: [Record<string, unknown>, number, string][] = [
      [{ messages: [] }, 400, "messages"],
      [{ messages: [{ role: "user", content: "hi" }], model: "nope" }, 404, "model"],
      [{ messages: [{ role: "assistant", content: "hi" }] }, 400, "messages.0.role"],
      [
        { messages: [ask("https://example.com/a.png", "hi")] },
        400,
        "messages.0.content.0.image_url.url",
      ],
      [
        { messages: [ask("data:image/png;base64,AAAA", "hi")] },
        400,
        "messages.0.content.0.image_url.url",
      ],
      [{ messages: [{ role: "user", content: "hi" }], n: 2 }, 400, "n"],
      [{ messages: [{ role: "user", content: "red ".repeat(400) }] }, 400, "messages"],
      [{ messages: [{ role: "user", content: "hi" }], max_tokens: 0 }, 400, "max_tokens"],
    ];
    for (const [body, status, param] of cases) {
      const res = await post(body);
      const err = await res.json();
      assert.equal(res.status, status, JSON.stringify({ body, err }).slice(0, 300));
      assert.equal(err.error.param, param, JSON.stringify(err));
    }
  },
});
