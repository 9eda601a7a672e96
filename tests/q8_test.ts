/**
 * MM_DTYPE=q8: the int8 files a model ships (training/quantize.py) are what is served, named in
 * /v1/models, and they answer as the fp32 ones do (the eval holds them to within a point).
 */
import assert from "node:assert/strict";
import sharp from "sharp";
import { loadConfig } from "../core/config.ts";
import { createApp } from "../main.ts";
import { renderScene } from "../world/world.ts";

const apps = {
  fp32: await createApp(loadConfig({ MM_BACKEND: "cpu", MM_LOG: "0" })),
  q8: await createApp(loadConfig({ MM_BACKEND: "cpu", MM_LOG: "0", MM_DTYPE: "q8" })),
};
const post = (app: (typeof apps)["q8"]["app"], path: string, body: unknown) =>
  app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
const png = async (colour: "red" | "blue", shape: "circle" | "square") =>
  `data:image/png;base64,${
    new Uint8Array(
      await sharp(
        renderScene({
          background: "white",
          objects: [{ shape, colour, size: "large", side: 24, x: 20, y: 20 }],
        }),
        { raw: { width: 64, height: 64, channels: 3 } },
      ).png().toBuffer(),
    ).toBase64()
  }`;

Deno.test("MM_DTYPE=q8 serves clip-tiny's quantized files, and they classify and embed as fp32 does", async () => {
  const models = await (await apps.q8.app.request("/v1/models")).json();
  const clip = models.data.find((m: { id: string }) => m.id === "clip-tiny");
  assert.equal(clip.dtype, "q8");
  const fp32Models = await (await apps.fp32.app.request("/v1/models")).json();
  assert.equal(fp32Models.data.find((m: { id: string }) => m.id === "clip-tiny").dtype, "fp32");
  const labels = ["red circle", "blue circle", "red square", "blue square"];
  for (const [colour, shape] of [["red", "circle"], ["blue", "square"]] as const) {
    const body = { model: "clip-tiny", image: await png(colour, shape), candidate_labels: labels };
    const [a, b] = await Promise.all(
      [apps.fp32, apps.q8].map(async ({ app }) =>
        (await (await post(app, "/v1/clip/classify", body)).json()).results
      ),
    );
    assert.equal(b[0].label, `${colour} ${shape}`);
    assert.equal(b[0].label, a[0].label);
  }
  const input = "a large red circle in the center on a white background";
  const [e32, e8] = await Promise.all(
    [apps.fp32, apps.q8].map(async ({ app }) =>
      (await (await post(app, "/v1/embeddings", { model: "clip-tiny", input })).json()).data[0]
        .embedding as number[]
    ),
  );
  const cosine = e32.reduce((s, v, i) => s + v * e8[i], 0);
  assert.ok(cosine > 0.98, `q8 text embedding's cosine to fp32's: ${cosine}`);
  assert.ok(e32.some((v, i) => v !== e8[i]), "the q8 answer came from other weights");
});

Deno.test("MM_DTYPE=q8 serves vit-gpt2-tiny's and vlm-tiny's quantized files: the same captions and answers as fp32", async () => {
  const models = await (await apps.q8.app.request("/v1/models")).json();
  for (const id of ["vit-gpt2-tiny", "vlm-tiny"]) {
    assert.equal(models.data.find((m: { id: string }) => m.id === id).dtype, "q8", id);
  }
  for (const [colour, shape] of [["red", "circle"], ["blue", "square"]] as const) {
    const image = await png(colour, shape);
    const [c32, c8] = await Promise.all(
      [apps.fp32, apps.q8].map(async ({ app }) =>
        (await (await post(app, "/v1/captions", { model: "vit-gpt2-tiny", image, top_logprobs: 3 }))
          .json()).captions[0]
      ),
    );
    assert.match(c8.text, new RegExp(`^a large ${colour} `), "caption");
    assert.equal(c8.text, c32.text, "caption");
    // The chosen words' logprobs round to 0 on a confident model; the runners-up's do not.
    assert.notDeepEqual(c8.tokens, c32.tokens, "the q8 caption came from other weights");
    const chat = {
      model: "vlm-tiny",
      messages: [{
        role: "user",
        content: [
          { type: "image_url", image_url: { url: image } },
          { type: "text", text: "what colour is the shape?" },
        ],
      }],
      max_tokens: 8,
      temperature: 0,
    };
    const [a32, a8] = await Promise.all(
      [apps.fp32, apps.q8].map(async ({ app }) =>
        (await (await post(app, "/v1/chat/completions", chat)).json()).choices[0].message.content
      ),
    );
    assert.equal(a8, a32, "answer");
    assert.match(a8, new RegExp(colour));
  }
});
