/**
 * `POST /v1/images/generations` and `/v1/images/edits`: shapes, determinism, streaming (exactly
 * `partial_images` previews of the predicted image), edits, `quality`, CLIP rerank, fields that
 * cannot be honoured (400s naming them) and nulls (not given).
 */
import { TEST_BACKEND } from "./profile.ts";
import assert from "node:assert/strict";
import sharp from "sharp";
import { EMBEDDED_MODELS_DIR, loadConfig } from "../core/config.ts";
import { createApp } from "../main.ts";
import { renderScene, type Scene } from "../world/world.ts";
import { meanAbsDiff } from "./tolerance.ts";

const { app, registry } = await createApp(loadConfig({ MM_BACKEND: TEST_BACKEND }));
await registry.preload();

const post = (path: string, body: Record<string, unknown>, signal?: AbortSignal) =>
  app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
const generate = (body: Record<string, unknown>) =>
  post("/v1/images/generations", {
    prompt: "a large red circle in the center on a white background",
    ...body,
  });

async function pixels(b64: string) {
  const { data, info } = await sharp(Uint8Array.fromBase64(b64)).raw().toBuffer({
    resolveWithObject: true,
  });
  return {
    data: new Uint8Array(data),
    width: info.width,
    height: info.height,
    channels: info.channels,
  };
}
const meanAbs = meanAbsDiff;

Deno.test("generations: n PNGs of the asked size, a seed each, timings per stage", async () => {
  const res = await generate({ n: 2, seed: 41, num_inference_steps: 4, size: "64x64" });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.model, "sd-tiny");
  assert.deepEqual(body.data.map((d: { seed: number }) => d.seed), [41, 42]);
  for (const d of body.data) {
    const img = await pixels(d.b64_json);
    assert.deepEqual([img.width, img.height], [64, 64]);
  }
  assert.equal(body.timings.unet_ms.length, 4);
  assert.match(res.headers.get("server-timing")!, /text_encoder;dur=.*unet;dur=.*vae_decoder;dur=/);
});

Deno.test("generations: the same seed and parameters give the same image; image j is seed + j", async () => {
  const a = await (await generate({ seed: 7, num_inference_steps: 3 })).json();
  const b = await (await generate({ seed: 7, num_inference_steps: 3 })).json();
  assert.equal(a.data[0].b64_json, b.data[0].b64_json);
  const c = await (await generate({ seed: 8, num_inference_steps: 3 })).json();
  assert.notEqual(a.data[0].b64_json, c.data[0].b64_json);
  const pair = await (await generate({ seed: 7, n: 2, num_inference_steps: 3 })).json();
  const [p1, single] = await Promise.all([
    pixels(pair.data[1].b64_json),
    pixels(c.data[0].b64_json),
  ]);
  assert.ok(meanAbs(p1.data, single.data) < 1, "the second image of seed 7 is the first of seed 8");
});

Deno.test("generations: every scheduler runs, and a random seed is returned", async () => {
  for (const scheduler of ["ddpm", "ddim", "euler", "euler_a"]) {
    const res = await generate({ scheduler, num_inference_steps: 3, guidance_scale: 1 });
    const body = await res.json();
    assert.equal(res.status, 200, `${scheduler}: ${JSON.stringify(body)}`);
    assert.equal(body.scheduler, scheduler);
    assert.ok(Number.isInteger(body.data[0].seed));
  }
});

// deno-lint-ignore no-explicit-any
type SseEvent = { event: string; data: any };

async function readEvents(res: Response, stopAfter?: (events: SseEvent[]) => boolean) {
  const events: SseEvent[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = chunk.match(/^event: (.*)$/m)?.[1] ?? "message";
      const data = chunk.match(/^data: (.*)$/m)?.[1];
      if (data) events.push({ event, data: JSON.parse(data) });
    }
    if (stopAfter?.(events)) {
      await reader.cancel();
      break;
    }
  }
  return events;
}

Deno.test("generations with stream: progress per step to 100%, previews, then the image", async () => {
  const res = await generate({ stream: true, num_inference_steps: 6, partial_images: 2, seed: 3 });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /text\/event-stream/);
  const events = await readEvents(res);
  const progress = events.filter((e) => e.event === "image_generation.progress");
  assert.deepEqual(progress.map((e) => e.data.step), [1, 2, 3, 4, 5, 6]);
  assert.equal(progress.at(-1)!.data.percent, 100);
  const partials = events.filter((e) => e.event === "image_generation.partial_image");
  assert.equal(partials.length, 2);
  assert.equal((await pixels(partials[0].data.b64_json)).width, 64);
  const done = events.at(-1)!;
  assert.equal(done.event, "image_generation.completed");
  assert.equal(done.data.seed, 3);
  assert.equal(done.data.data[0].seed, 3);
  const same = await (await generate({ num_inference_steps: 6, seed: 3 })).json();
  assert.equal(done.data.b64_json, same.data[0].b64_json, "streaming changes nothing");
  assert.equal(done.data.data[0].b64_json, same.data[0].b64_json);
});

Deno.test("generations with stream: exactly partial_images previews, one completed per image", async () => {
  for (const [steps, partial_images] of [[20, 2], [20, 5], [20, 10], [6, 6], [3, 1]]) {
    const res = await generate({ stream: true, num_inference_steps: steps, partial_images, n: 2 });
    const events = await readEvents(res);
    const partials = events.filter((e) => e.event === "image_generation.partial_image");
    // One preview event per image at each preview step, indexed 0 … partial_images - 1.
    assert.equal(partials.length, 2 * partial_images, `${steps} steps, ${partial_images} previews`);
    assert.deepEqual(
      [...new Set(partials.map((e) => e.data.partial_image_index))],
      Array.from({ length: partial_images }, (_, i) => i),
    );
    const completed = events.filter((e) => e.event === "image_generation.completed");
    assert.deepEqual(completed.map((e) => e.data.image_index), [0, 1]);
  }
  const tooMany = await generate({ stream: true, num_inference_steps: 3, partial_images: 4 });
  assert.equal(tooMany.status, 400);
  assert.equal((await tooMany.json()).error.param, "partial_images");
});

Deno.test("generations with stream: previews show the predicted image, converging on the final one", async () => {
  for (const scheduler of ["ddim", "euler_a"]) {
    const res = await generate({
      stream: true,
      num_inference_steps: 20,
      partial_images: 4,
      seed: 3,
      scheduler,
    });
    const events = await readEvents(res);
    const final = await pixels(events.at(-1)!.data.b64_json);
    const gray = new Uint8Array(final.data.length).fill(128);
    const far = meanAbs(final.data, gray); // how far a blank image is from the final one
    const diffs = [];
    for (const e of events.filter((e) => e.event === "image_generation.partial_image")) {
      const p = await pixels(e.data.b64_json);
      assert.deepEqual([p.width, p.height, p.channels], [64, 64, final.channels]);
      diffs.push(meanAbs(p.data, final.data));
    }
    console.log(`  ${scheduler}: preview |Δ| to the final image ${diffs.map((d) => d.toFixed(1))}`);
    assert.equal(diffs.length, 4);
    assert.ok(diffs[0] < far / 3, `the first preview already resembles the image (${diffs[0]})`);
    assert.ok(diffs[3] < 8, `the last preview is nearly the image (${diffs[3]})`);
    assert.ok(diffs[3] < diffs[0]);
  }
});

Deno.test("generations: a client that disconnects stops the job between steps", async () => {
  const sd = registry.entries.find((e) => e.manifest.id === "sd-tiny")!;
  const unet = await registry.sessions.load(sd.dir + sd.manifest.files.unet); // the pipeline's
  let runs = 0;
  const run = unet.run.bind(unet);
  unet.run = (...args) => (runs++, run(...args));
  try {
    const res = await generate({ stream: true, num_inference_steps: 40 });
    const events = await readEvents(
      res,
      (es) => es.some((e) => e.event === "image_generation.progress"),
    );
    assert.ok(events.length >= 1);
    await new Promise((r) => setTimeout(r, 300));
    const after = runs;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(runs, after, "no UNet run after the disconnect settled");
    assert.ok(runs < 40, `stopped after ${runs} of 40 steps`);
  } finally {
    unet.run = run;
  }
});

Deno.test("generations: a long job does not hold up the health endpoint or other families", async () => {
  let generated = false;
  const job = Promise.resolve(generate({ num_inference_steps: 60 })).then(async (r) => {
    await r.arrayBuffer();
    generated = true;
  });
  await new Promise((r) => setTimeout(r, 50)); // the job is under way
  const health = await app.request("/health");
  assert.equal(health.status, 200);
  const emb = await post("/v1/embeddings", { input: "a photo of a red circle" });
  assert.equal(emb.status, 200);
  assert.equal(generated, false, "answered while the generation was still running");
  await job;
});

const scene: Scene = {
  background: "gray",
  objects: [
    { shape: "square", colour: "blue", size: "large", side: 22, x: 4, y: 20 },
    { shape: "circle", colour: "yellow", size: "large", side: 22, x: 38, y: 20 },
  ],
};
const input = renderScene(scene, 1);
// The VAE's measured round-trip error (mean |Δ| per channel, on validation scenes, at export).
const roundTrip = JSON.parse(
  await Deno.readTextFile(new URL("../models/embedded/sd-tiny/training.json", import.meta.url)),
).vae_roundtrip_mean_abs;
const inputPng = new Uint8Array(
  await sharp(input, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer(),
).toBase64();

Deno.test("edits: img2img with strength 0 returns the input (within the VAE's round-trip error)", async () => {
  const res = await post("/v1/images/edits", {
    image: inputPng,
    prompt: "a large blue square to the left of a large yellow circle on a gray background",
    strength: 0,
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.steps, 0);
  const out = await pixels(body.data[0].b64_json);
  const err = meanAbs(out.data, input);
  console.log(
    `  strength 0: mean |Δ| = ${err.toFixed(2)} / 255 (VAE round trip ${roundTrip.toFixed(2)})`,
  );
  assert.ok(err < 2 * roundTrip, `mean abs difference ${err}`);
});

Deno.test("edits: inpainting repaints the masked half and keeps the other", async () => {
  // Mask: left half transparent (repaint), right half opaque (keep).
  const rgba = new Uint8Array(64 * 64 * 4).fill(255);
  for (let y = 0; y < 64; y++) for (let x = 0; x < 32; x++) rgba[(y * 64 + x) * 4 + 3] = 0;
  const mask = new Uint8Array(
    await sharp(rgba, { raw: { width: 64, height: 64, channels: 4 } }).png().toBuffer(),
  ).toBase64();
  const form = new FormData();
  form.set("image", new Blob([Uint8Array.fromBase64(inputPng)], { type: "image/png" }), "in.png");
  form.set("mask", new Blob([Uint8Array.fromBase64(mask)], { type: "image/png" }), "mask.png");
  form.set(
    "prompt",
    "a large red triangle to the left of a large yellow circle on a gray background",
  );
  form.set("seed", "5");
  form.set("num_inference_steps", "10");
  const res = await app.request("/v1/images/edits", { method: "POST", body: form });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  const out = await pixels(body.data[0].b64_json);
  const half = (img: Uint8Array, left: boolean) =>
    img.filter((_, i) => {
      const x = Math.floor(i / 3) % 64;
      return left ? x < 28 : x >= 36; // one latent pixel of margin around the seam
    });
  const kept = meanAbs(half(out.data, false), half(input, false));
  const repainted = meanAbs(half(out.data, true), half(input, true));
  console.log(
    `  inpainting: kept half |Δ| = ${kept.toFixed(2)}, repainted half |Δ| = ${
      repainted.toFixed(2)
    }`,
  );
  assert.ok(kept < 2 * roundTrip, `kept region changed by ${kept}`);
  assert.ok(repainted > kept, "the masked region was redrawn");
});

Deno.test("generations: quality chooses the steps (low, medium, high; standard, hd, auto)", async () => {
  const steps = { low: 10, medium: 20, high: 40, standard: 20, hd: 40, auto: 20 };
  for (const [quality, n] of Object.entries(steps)) {
    const res = await generate({ quality, seed: 1 });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.steps, n, quality);
    assert.equal(body.timings.unet_ms.length, n);
    const level = quality === "standard" || quality === "auto"
      ? "medium"
      : quality === "hd"
      ? "high"
      : quality;
    assert.equal(body.quality, level);
  }
  const custom = await (await generate({ num_inference_steps: 7 })).json();
  assert.equal(custom.quality, undefined, "7 steps is none of the levels");
  const both = await generate({ quality: "high", num_inference_steps: 7 });
  assert.equal(both.status, 400);
  assert.equal((await both.json()).error.param, "quality");
});

Deno.test("generations: sd-tiny reranks by CLIP — the best k of n candidates, best first", async () => {
  const prompt = "a large red circle in the center on a white background";
  const all = await (await generate({ prompt, n: 3, seed: 41, num_inference_steps: 6 })).json();
  const res = await generate({ prompt, n: 3, rerank: 2, seed: 41, num_inference_steps: 6 });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.data.length, 2);
  assert.ok(body.data[0].clip_score >= body.data[1].clip_score);
  assert.ok(body.timings.rerank_ms >= 0);
  const clip = await registry.get("clip");
  const scores: number[] = await clip.scoreImages(
    await Promise.all(all.data.map(async (d: { b64_json: string }) => {
      const p = await pixels(d.b64_json);
      return { width: p.width, height: p.height, data: p.data };
    })),
    prompt,
  );
  const best = scores.map((v, j) => [v, all.data[j].seed]).sort((a, b) => b[0] - a[0]);
  assert.deepEqual(body.data.map((d: { seed: number }) => d.seed), [best[0][1], best[1][1]]);
  body.data.forEach((d: { clip_score: number }, i: number) =>
    assert.ok(Math.abs(d.clip_score - best[i][0]) < 1e-4)
  );
  const tooMany = await generate({ n: 2, rerank: 3 });
  assert.equal((await tooMany.json()).error.param, "rerank");
});

Deno.test("images: what cannot be honoured is a 400 naming it; null means not given", async () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ background: "transparent" }, "background"],
    [{ style: "vivid" }, "style"],
    [{ style: "natural" }, "style"],
    [{ moderation: "auto" }, "moderation"],
    [{ output_format: "webp" }, "output_format"],
    [{ output_compression: 80 }, "output_compression"],
    [{ quality: "ultra" }, "quality"],
  ];
  for (const [body, param] of cases) {
    const res = await generate({ num_inference_steps: 2, ...body });
    const err = await res.json();
    assert.equal(res.status, 400, JSON.stringify({ body, err }));
    assert.equal(err.error.param, param, JSON.stringify(err));
  }
  const fidelity = await post("/v1/images/edits", {
    prompt: "x",
    image: inputPng,
    input_fidelity: "high",
  });
  assert.equal((await fidelity.json()).error.param, "input_fidelity");
  const nulls = Object.fromEntries(
    [
      "model",
      "negative_prompt",
      "n",
      "size",
      "width",
      "height",
      "response_format",
      "output_format",
      "output_compression",
      "quality",
      "background",
      "style",
      "moderation",
      "guidance_scale",
      "scheduler",
      "temperature",
      "top_k",
      "top_p",
      "rerank",
      "stream",
      "partial_images",
      "user",
    ].map((k) => [k, null]),
  );
  const plain = await (await generate({ seed: 4, num_inference_steps: 2 })).json();
  for (
    const extra of [
      nulls,
      {
        background: "opaque",
        moderation: "low",
        output_format: "png",
        response_format: "b64_json",
      },
      { background: "auto" },
    ]
  ) {
    const res = await generate({ seed: 4, num_inference_steps: 2, ...extra });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify({ extra, body }).slice(0, 300));
    assert.equal(body.data[0].b64_json, plain.data[0].b64_json);
    assert.equal(body.background, "opaque");
  }
  const edit = await post("/v1/images/edits", {
    prompt: "x",
    image: inputPng,
    mask: null,
    strength: null,
    num_inference_steps: 2,
  });
  assert.equal(edit.status, 200);
});

Deno.test("images: clear 400s and 404s for bad requests", async () => {
  const cases: [Record<string, unknown>, number, string][] = [
    [{ size: "60x60" }, 400, "size"],
    [{ size: "4096x4096" }, 400, "size"],
    [{ size: "big" }, 400, "size"],
    [{ n: 9 }, 400, "n"],
    [{ num_inference_steps: 500 }, 400, "num_inference_steps"],
    [{ prompt: "red ".repeat(40) }, 400, "prompt"],
    [{ prompt: "" }, 400, "prompt"],
    [{ model: "nope" }, 404, "model"],
    [{ response_format: "url" }, 400, "response_format"],
    [{ scheduler: "magic" }, 400, "scheduler"],
  ];
  for (const [body, status, param] of cases) {
    const res = await generate(body);
    const err = await res.json();
    assert.equal(res.status, status, JSON.stringify({ body, err }));
    assert.equal(err.error.param, param, JSON.stringify(err));
    assert.ok(err.error.message.length > 0);
  }
  const bad = await post("/v1/images/edits", { prompt: "x", image: "bm90IGFuIGltYWdl" });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.param, "image");
  const missing = await post("/v1/images/edits", { prompt: "x" });
  assert.equal((await missing.json()).error.param, "image");
});

interface Maps {
  rows: number;
  cols: number;
  words: Array<{ token: string; weights: number[]; overlay_png: string }>;
}

/** The checks every word map passes: its grid, one per prompt word, sum 1, a PNG overlay. */
function checkMaps(maps: Maps, rows: number, words: string[]) {
  assert.deepEqual([maps.rows, maps.cols], [rows, rows]);
  assert.deepEqual(maps.words.map((w) => w.token), words, "one map per prompt word, in order");
  for (const w of maps.words) {
    assert.equal(w.weights.length, rows * rows);
    assert.ok(w.weights.every((v) => v >= 0));
    const sum = w.weights.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 0.01, `${w.token}: weights sum to ${sum}`);
    assert.ok(w.overlay_png.startsWith("iVBORw0KGgo"), "a PNG");
  }
}

Deno.test("generations: return_attention gives each prompt word's map per image, for both generators", async () => {
  const prompt = "a large red circle to the left of a small blue square";
  const words = prompt.split(" ");
  for (
    const [model, grid, extra] of [
      ["sd-tiny", 16, { num_inference_steps: 3 }],
      ["dalle-tiny", 8, {}],
    ] as const
  ) {
    const body = { model, prompt, n: 2, seed: 5, ...extra };
    const plain = await (await generate(body)).json();
    assert.equal(plain.data[0].attention, undefined, `${model}: no maps unless asked`);
    const res = await generate({ ...body, return_attention: true });
    const out = await res.json();
    assert.equal(res.status, 200, JSON.stringify(out).slice(0, 300));
    for (const [j, d] of out.data.entries()) {
      assert.equal(d.b64_json, plain.data[j].b64_json, `${model}: the same image ${j}`);
      checkMaps(d.attention, grid, words);
    }
    if (model === "dalle-tiny") assert.equal(out.decoder, "onnxruntime");
    // Streamed: each completed event carries its image's maps.
    const events = await readEvents(
      await generate({ ...body, return_attention: true, stream: true }),
    );
    const completed = events.filter((e) => e.event === "image_generation.completed");
    assert.deepEqual(
      completed.map((e) => e.data.attention),
      out.data.map((d: { attention: Maps }) => d.attention),
    );
  }
  // Reranked: the maps follow the images they belong to.
  const all = await (await generate({
    prompt,
    n: 2,
    seed: 9,
    num_inference_steps: 3,
    return_attention: true,
  })).json();
  const best = await (await generate({
    prompt,
    n: 2,
    rerank: 1,
    seed: 9,
    num_inference_steps: 3,
    return_attention: true,
  })).json();
  const kept = all.data.find((d: { seed: number }) => d.seed === best.data[0].seed);
  assert.deepEqual(best.data[0].attention, kept.attention);
});

// A temporary model folder needs write access, which the portable profile's run does not grant.
const canWrite = (await Deno.permissions.query({ name: "write" })).state === "granted";
if (!canWrite) {
  console.log(
    "images_api_test: no write access (the portable profile): the test of a model without " +
      "attention outputs is skipped here; it runs in deno task test",
  );
}

Deno.test({
  name: "generations: return_attention from a model without attention outputs is a 400 naming it",
  ignore: !canWrite,
}, async () => {
  // sd-tiny without unet/model_attention.onnx in its manifest, as public SD exports come.
  const dir = await Deno.makeTempDir();
  try {
    const sd = `${EMBEDDED_MODELS_DIR}sd-tiny/`;
    const manifest = JSON.parse(await Deno.readTextFile(`${sd}manifest.json`));
    delete manifest.files.unet_attention;
    await Deno.mkdir(`${dir}/sd-plain`);
    await Deno.writeTextFile(
      `${dir}/sd-plain/manifest.json`,
      JSON.stringify({ ...manifest, id: "sd-plain", preload: false }),
    );
    for (
      const part of ["text_encoder", "tokenizer", "unet", "vae_decoder", "vae_encoder", "scheduler"]
    ) {
      await Deno.symlink(`${sd}${part}`, `${dir}/sd-plain/${part}`);
    }
    const other = await createApp(
      loadConfig({ MM_BACKEND: TEST_BACKEND, MM_MODELS_DIR: dir, MM_WORKERS: "0" }),
    );
    for (const stream of [false, true]) {
      const res = await other.app.request("/v1/images/generations", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "sd-plain",
          prompt: "a red circle",
          return_attention: true,
          stream,
        }),
      });
      const { error } = await res.json();
      assert.equal(res.status, 400, JSON.stringify(error));
      assert.equal(error.param, "return_attention");
      assert.match(error.message, /return_attention: sd-plain has no word maps/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
