/** `POST /v1/captions`: decoding options, attention, and errors. */
import { TEST_BACKEND } from "./profile.ts";
import assert from "node:assert/strict";
import sharp from "sharp";
import { loadConfig } from "../core/config.ts";
import { createApp } from "../main.ts";
import { canonicalCaption, renderScene, type Scene } from "../world/world.ts";

const { app, registry } = await createApp(loadConfig({ MM_BACKEND: TEST_BACKEND }));
await registry.preload();
const captioners = registry.list().filter((m) => m.family === "captioning" && m.installed).map((
  m,
) => m.id);
const scene: Scene = {
  background: "white",
  objects: [{ shape: "square", colour: "blue", size: "large", side: 22, x: 4, y: 6 }],
};
const png = new Uint8Array(
  await sharp(renderScene(scene), { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer(),
);
const post = (body: Record<string, unknown>) =>
  app.request("/v1/captions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ image: png.toBase64(), ...body }),
  });

Deno.test("POST /v1/captions captions an image with every shipped model", async () => {
  assert.ok(captioners.length >= 1);
  for (const model of captioners) {
    const res = await post({ model, top_logprobs: 2 });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.model, model);
    const [c] = body.captions;
    console.log(`  ${model}: "${c.text}" (reference "${canonicalCaption(scene)}")`);
    assert.ok(c.text.length > 0);
    assert.equal(c.tokens.length, c.text.split(" ").length);
    for (const t of c.tokens) assert.ok(t.logprob <= 0 && t.top_logprobs.length === 2);
    assert.match(res.headers.get("server-timing")!, /generate;dur=/);
  }
});

Deno.test("POST /v1/captions beam search returns n ranked captions; sampling repeats for a seed", async () => {
  const beam = await (await post({ strategy: "beam", beam_size: 4, n: 3 })).json();
  assert.equal(beam.captions.length, 3);
  const lp = beam.captions.map((c: { logprob: number }) => c.logprob);
  assert.ok(lp[0] >= lp[1] && lp[1] >= lp[2], "ranked by total log-probability");
  assert.ok(Array.isArray(beam.alternatives), "the other finished beams");
  for (const c of [...beam.captions, ...beam.alternatives]) assert.equal(c.finish_reason, "stop");
  for (const strategy of ["greedy", "beam"]) {
    const cut = await (await post({ strategy, max_tokens: 2 })).json();
    assert.equal(cut.captions[0].finish_reason, "length", strategy);
    assert.equal(cut.captions[0].tokens.length, 2, strategy);
  }
  const a = await (await post({ strategy: "sample", n: 3, seed: 123, temperature: 1.5 })).json();
  const b = await (await post({ strategy: "sample", n: 3, seed: 123, temperature: 1.5 })).json();
  assert.equal(a.seed, 123);
  assert.deepEqual(
    a.captions.map((c: { text: string }) => c.text),
    b.captions.map((c: { text: string }) => c.text),
  );
});

Deno.test("POST /v1/captions returns per-word attention with overlays where the model attends", async () => {
  const attending = registry.list()
    .filter((m) => m.family === "captioning" && m.capabilities.includes("attention-maps"))
    .map((m) => m.id);
  for (const model of attending) {
    const body = await (await post({ model, return_attention: true })).json();
    const att = body.captions[0].attention;
    assert.equal(att.words.length, body.captions[0].tokens.length);
    assert.equal(att.words[0].weights.length, att.rows * att.cols);
  }
});

Deno.test("POST /v1/captions errors: no attention to return, bad n, bad image, unknown or wrong model", async () => {
  const expect = async (res: Response, status: number, param?: string) => {
    const body = await res.json();
    assert.equal(res.status, status, JSON.stringify(body));
    if (param) assert.equal(body.error.param, param);
  };
  if (captioners.includes("nic-tiny")) {
    await expect(
      await post({ model: "nic-tiny", return_attention: true }),
      400,
      "return_attention",
    );
  }
  await expect(await post({ n: 2 }), 400, "n");
  await expect(await post({ strategy: "beam", beam_size: 2, n: 3 }), 400, "n");
  await expect(await post({ image: "bm90IGFuIGltYWdl" }), 400, "image");
  await expect(await post({ model: "nope" }), 404, "model");
  await expect(await post({ model: "clip-tiny" }), 400, "model");
  await expect(await post({ max_tokens: 0 }), 400, "max_tokens");
  assert.equal((await post({})).status, 200);
});

Deno.test("POST /v1/captions without a model uses the best captioner, marked default in /v1/models", async () => {
  const body = await (await post({})).json();
  assert.equal(body.model, "sat-soft-tiny");
  const { data } = await (await app.request("/v1/models")).json();
  const defaults = data.filter((m: { family: string; default?: boolean }) =>
    m.family === "captioning" && m.default
  );
  assert.deepEqual(defaults.map((m: { id: string }) => m.id), ["sat-soft-tiny"]);
});
