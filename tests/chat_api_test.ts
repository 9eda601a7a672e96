/**
 * `POST /v1/chat/completions` through the official `openai` npm client (its fetch pointed at the
 * app), for every installed chat model: answers about an image, streaming, several images, no
 * image, an image without a question (or with an empty text part), stop strings,
 * log-probabilities, penalties and logit bias, usage chunks as OpenAI sends them, attention maps
 * (return_attention), disconnects, concurrent conversations sharing decode steps (continuous
 * batching, answers as alone), and clear 400s for what is not supported (never a silent 200).
 */
import { TEST_BACKEND } from "./profile.ts";
import assert from "node:assert/strict";
import OpenAI from "openai";
import sharp from "sharp";
import { loadConfig } from "../core/config.ts";
import { loadTokenizer } from "../core/tokenizers.ts";
import { createApp } from "../main.ts";
import { stepLogprobs } from "../models/chat/pipeline.ts";
import { renderScene, type Scene } from "../world/world.ts";
import { slowRuns } from "./slow_runs.ts";

const { app, registry } = await createApp(loadConfig({ MM_BACKEND: TEST_BACKEND }));
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

    // OpenAI's rule: a usage chunk only when asked for.
    for (const include_usage of [undefined, false, null]) {
      const res = await app.request("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model,
          messages,
          max_tokens: 40,
          stream: true,
          ...(include_usage === undefined ? {} : { stream_options: { include_usage } }),
        }),
      });
      const datas = (await res.text()).split("\n\n").filter(Boolean).map((b) => b.slice(6));
      assert.equal(datas.at(-1), "[DONE]");
      const chunks = datas.slice(0, -1).map((d) => JSON.parse(d));
      assert.ok(chunks.every((c) => c.usage === undefined && c.choices.length === 1));
      assert.equal(chunks.at(-1).choices[0].finish_reason, whole.choices[0].finish_reason);
    }
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
    // An empty (or blank) text part beside the image is no question either.
    for (const text of ["", "  "]) {
      const blank = await client.chat.completions.create({
        model,
        max_tokens: 40,
        messages: [{
          role: "user",
          content: [{ type: "text", text }, { type: "image_url", image_url: { url: whiteUrl } }],
        }],
      });
      assert.equal(blank.choices[0].message.content, alone.choices[0].message.content);
    }
  });

  Deno.test(`${model}: logit_bias bans and forces tokens`, async () => {
    const entry = registry.entries.find((e) => e.manifest.id === model)!;
    const { tokenizer } = await loadTokenizer(entry.dir);
    const id = (token: string) => tokenizer.token_to_id(token)!;
    const messages = [ask(whiteUrl, "what color is the background?")];
    const plain = await client.chat.completions.create({ model, messages, logprobs: true });
    assert.equal(plain.choices[0].message.content, "white");
    const banned = await client.chat.completions.create({
      model,
      messages,
      logprobs: true,
      logit_bias: { [id("white")]: -100 },
    });
    const tokens = banned.choices[0].logprobs!.content!.map((t) => t.token);
    console.log(`  ${model}, "white" banned: "${banned.choices[0].message.content}"`);
    assert.ok(tokens.length >= 1 && !tokens.includes("white"), tokens.join(" "));
    const forced = await client.chat.completions.create({
      model,
      messages,
      max_tokens: 4,
      logit_bias: { [id("red")]: 100 },
    });
    assert.equal(forced.choices[0].message.content, "red red red red");
    assert.equal(forced.choices[0].finish_reason, "length");
  });

  Deno.test(`${model}: frequency and presence penalties shift the logits of repeated tokens`, async () => {
    const request = {
      model,
      max_tokens: 40,
      logprobs: true,
      top_logprobs: 5,
      messages: [ask(blackUrl, "describe the image.")],
    };
    type Lp = OpenAI.ChatCompletionTokenLogprob;
    const plain = (await client.chat.completions.create(request)).choices[0].logprobs!.content!;
    const tokens = plain.map((t) => t.token);
    assert.ok(tokens.length > new Set(tokens).size, "the plain answer repeats a token");
    for (const [fp, pp] of [[2, 2], [-2, 0], [0.5, -1]]) {
      const run = (await client.chat.completions.create({
        ...request,
        frequency_penalty: fp,
        presence_penalty: pp,
      })).choices[0].logprobs!.content!;
      // Up to the first token where the answers part, both runs read the same prefix.
      let shared = 0;
      while (shared < Math.min(run.length, plain.length) && run[shared].token === tokens[shared]) {
        shared++;
      }
      // There, every logit gap between two tokens moved by the difference of their penalties,
      // count · frequency + (count > 0) · presence, counted over the answer so far.
      let checked = 0;
      const pen = (token: string, i: number) => {
        const n = tokens.slice(0, i).filter((x) => x === token).length;
        return n * fp + (n > 0 ? pp : 0);
      };
      const lpOf = (t: Lp, token: string) =>
        t.token === token ? t.logprob : t.top_logprobs.find((x) => x.token === token)?.logprob;
      run.slice(0, shared + 1).forEach((t, i) => {
        if (i >= plain.length) return;
        for (const alt of t.top_logprobs) {
          const was = [lpOf(plain[i], t.token), lpOf(plain[i], alt.token)];
          if (alt.token === t.token || was.includes(undefined)) continue;
          const now = [t.logprob, alt.logprob];
          if (Math.max(...[...was, ...now].map((v) => -v!)) > 40) continue; // masked (−∞) and far-tail tokens
          const expected = was[0]! - was[1]! - (pen(t.token, i) - pen(alt.token, i));
          assert.ok(
            Math.abs(now[0] - now[1] - expected) < 1e-2,
            `fp ${fp} pp ${pp}, token ${i} "${t.token}" vs "${alt.token}": gap ${
              now[0] - now[1]
            }, expected ${expected}`,
          );
          if (pen(t.token, i) !== pen(alt.token, i)) checked++;
        }
      });
      assert.ok(checked > 0, `fp ${fp} pp ${pp}: some gap was shifted`);
    }
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
    // The end of the utterance banned, the answer runs to max_tokens whatever the model's training.
    const { tokenizer } = await loadTokenizer(entry.dir);
    const request = {
      model,
      max_tokens: 150,
      temperature: 2,
      seed: 1,
      logit_bias: { [tokenizer.token_to_id("<end_of_utterance>")!]: -100 },
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

  Deno.test(`${model}: return_attention maps each answer token over the image, streamed too`, async () => {
    const post = async (body: Record<string, unknown>) => {
      const res = await app.request("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model, max_tokens: 40, ...body }),
      });
      return { status: res.status, text: await res.text() };
    };
    const messages = [ask(blackUrl, "describe the image.")];
    const plain = JSON.parse((await post({ messages, logprobs: true })).text);
    assert.equal(plain.choices[0].attention, undefined, "no maps unless asked");
    const r = await post({ messages, logprobs: true, return_attention: true });
    assert.equal(r.status, 200, r.text);
    const choice = JSON.parse(r.text).choices[0];
    assert.equal(choice.message.content, plain.choices[0].message.content, "the same answer");
    const { rows, cols, words } = choice.attention;
    assert.deepEqual(
      words.map((w: { token: string }) => w.token),
      plain.choices[0].logprobs.content.map((t: { token: string }) => t.token),
      "one map per answer token",
    );
    for (const w of words) {
      assert.equal(w.weights.length, rows * cols);
      assert.ok(w.weights.every((v: number) => v >= 0));
      assert.ok(Math.abs(w.weights.reduce((a: number, b: number) => a + b, 0) - 1) < 2e-3);
      assert.ok(w.overlay_png.startsWith("iVBORw0KGgo"), "a PNG");
    }
    // The maps move with the words (whether they point right is the pointing game's to say:
    // tests/quality_test.ts).
    assert.ok(new Set(words.map((w: { weights: number[] }) => w.weights.join())).size > 1);

    // Streamed: each chunk carries its tokens' maps; together they are the whole answer's.
    const stream = await post({ messages, stream: true, return_attention: true });
    const streamed = stream.text.split("\n\n").filter((b) => b && b !== "data: [DONE]")
      .flatMap((b) => JSON.parse(b.slice(6)).choices[0]?.attention?.words ?? []);
    // (The same maps: on several WASM threads a run's sums may round the last digit otherwise.)
    assert.deepEqual(
      streamed.map((w: { token: string }) => w.token),
      words.map((w: { token: string }) => w.token),
    );
    streamed.forEach((w: { weights: number[] }, i: number) =>
      w.weights.forEach((v, j) => assert.ok(Math.abs(v - words[i].weights[j]) < 1e-3))
    );

    // What cannot be explained is a 400 naming the field: no image, two images.
    const two = [
      ask(whiteUrl, "what color is the background?"),
      { role: "assistant", content: "white" },
      ask(blackUrl, "what color is the background?"),
    ];
    for (const m of [[{ role: "user", content: "hi" }], two]) {
      for (const stream of [false, true]) {
        const bad = await post({ messages: m, stream, return_attention: true });
        assert.equal(bad.status, 400, bad.text);
        assert.equal(JSON.parse(bad.text).error.param, "return_attention");
      }
    }
  });

  Deno.test(`${model}: concurrent chats share decode steps and answer as they would alone`, async () => {
    // Different lengths (so caches of different lengths share runs), with and without an image.
    const requests = [
      { messages: [ask(whiteUrl, "what color is the background?")] },
      { messages: [ask(blackUrl, "describe the image.")] },
      { messages: [ask(whiteUrl, "describe the image.")] },
      { messages: [{ role: "user" as const, content: "how many shapes are there?" }] },
      { messages: [ask(blackUrl, "where is the red circle?")], return_attention: true },
      { messages: [ask(blackUrl, "describe the image.")], temperature: 1, seed: 5 },
    ].map((r) => ({ model, max_tokens: 40, logprobs: true, ...r }));
    const create = (r: (typeof requests)[number]) =>
      client.chat.completions.create(r as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const alone: OpenAI.ChatCompletion[] = [];
    for (const r of requests) alone.push(await create(r));

    const entry = registry.entries.find((e) => e.manifest.id === model)!;
    const decoder = await registry.sessions.load(entry.dir + entry.manifest.files.decoder);
    const { rows: batches, restore } = slowRuns(decoder, (f) => f.attention_mask.dims[0], 30);
    let together;
    try {
      together = await Promise.all(requests.map(create));
    } finally {
      restore();
    }
    console.log(`  ${model}: decoder runs of ${batches.join(" ")} conversations`);
    if (registry.sessions.backend.can.gpuBuffers) {
      assert.ok(batches.every((b) => b === 1), "WebGPU: each conversation runs alone");
    } else {
      assert.ok(Math.max(...batches) >= 3, "steps of several conversations shared a run");
    }
    together.forEach((r, i) => {
      const [got, want] = [r.choices[0], alone[i].choices[0]];
      assert.equal(got.message.content, want.message.content, `conversation ${i}`);
      got.logprobs!.content!.forEach((t, k) => {
        assert.ok(Math.abs(t.logprob - want.logprobs!.content![k].logprob) < 1e-4, `${i}: ${k}`);
      });
      assert.deepEqual(
        (got as { attention?: unknown }).attention !== undefined,
        i === 4,
        "maps where asked",
      );
    });
  });
}

Deno.test("stepLogprobs: bias, frequency and presence penalties as OpenAI defines them", () => {
  const lp = new Float32Array([Math.log(0.5), Math.log(0.25), Math.log(0.25)]);
  const none = stepLogprobs(lp.map((v) => v + 3), new Map([[0, 3]]), {});
  lp.forEach((v, i) => assert.ok(Math.abs(none[i] - v) < 1e-6, `nothing asked: token ${i}`));
  const out = stepLogprobs(lp, new Map([[0, 2], [1, 1]]), {
    frequencyPenalty: 0.5,
    presencePenalty: 0.25,
    logitBias: new Map([[2, 1]]),
  });
  // logits: 0 - 2·0.5 - 0.25, -ln 2 - 0.5 - 0.25, -ln 2 + 1; renormalized.
  const logits = [Math.log(0.5) - 1.25, Math.log(0.25) - 0.75, Math.log(0.25) + 1];
  const z = Math.log(logits.reduce((a, v) => a + Math.exp(v), 0));
  logits.forEach((v, i) => assert.ok(Math.abs(out[i] - (v - z)) < 1e-6, `token ${i}`));
});

Deno.test({
  name: "chat: fields that cannot be honoured are 400s naming them; null means not given",
  ignore: !chatModels.length,
  fn: async () => {
    const post = (body: Record<string, unknown>) =>
      app.request("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], ...body }),
      });
    const tool = { type: "function", function: { name: "f", parameters: { type: "object" } } };
    const cases: [Record<string, unknown>, string][] = [
      [{ response_format: { type: "json_object" } }, "response_format"],
      [{ response_format: { type: "json_schema", json_schema: { name: "x" } } }, "response_format"],
      [{ response_format: { type: "yaml" } }, "response_format.type"],
      [{ tools: [tool] }, "tools"],
      [{ tools: [tool], tool_choice: "none" }, "tools"],
      [{ tool_choice: "auto" }, "tool_choice"],
      [{ tool_choice: "required" }, "tool_choice"],
      [{ tool_choice: { type: "function", function: { name: "f" } } }, "tool_choice"],
      [{ functions: [tool.function] }, "functions"],
      [{ modalities: ["text", "audio"] }, "modalities"],
      [{ audio: { voice: "alloy", format: "wav" } }, "audio"],
      [{ frequency_penalty: 3 }, "frequency_penalty"],
      [{ presence_penalty: -2.5 }, "presence_penalty"],
      [{ logit_bias: { "red": 5 } }, "logit_bias.red"],
      [{ logit_bias: { "99999999": 5 } }, "logit_bias.99999999"],
      [{ logit_bias: { "5": 101 } }, "logit_bias.5"],
      [{ messages: [{ role: "user", content: null }] }, "messages.0.content"],
    ];
    for (const [body, param] of cases) {
      const res = await post(body);
      const err = await res.json();
      assert.equal(res.status, 400, JSON.stringify({ body, err }).slice(0, 300));
      assert.equal(err.error.param, param, JSON.stringify(err));
      assert.ok(err.error.message.length > 0);
    }
    // What is honoured, or a null (many clients send every field), is a 200.
    const plain = await (await post({ max_tokens: 8 })).json();
    const nulls = {
      model: null,
      max_tokens: 8,
      max_completion_tokens: null,
      temperature: null,
      top_p: null,
      top_k: null,
      frequency_penalty: null,
      presence_penalty: null,
      logit_bias: null,
      seed: null,
      stop: null,
      n: null,
      stream: null,
      stream_options: null,
      logprobs: null,
      top_logprobs: null,
      response_format: null,
      tools: null,
      tool_choice: null,
      parallel_tool_calls: null,
      functions: null,
      function_call: null,
      audio: null,
      modalities: null,
      user: null,
    };
    for (
      const body of [
        nulls,
        { max_tokens: 8, response_format: { type: "text" } },
        { max_tokens: 8, tool_choice: "none", tools: [] },
        { max_tokens: 8, modalities: ["text"], parallel_tool_calls: false },
        {
          max_tokens: 8,
          messages: [
            { role: "user", content: "hi" },
            { role: "assistant", content: null, refusal: null },
            { role: "user", content: "hi" },
          ],
        },
      ]
    ) {
      const res = await post(body);
      const r = await res.json();
      assert.equal(res.status, 200, JSON.stringify({ body, r }).slice(0, 400));
      if (body === nulls) {
        assert.equal(r.choices[0].message.content, plain.choices[0].message.content);
      }
    }
  },
});

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
