/**
 * Pulling public models from a hub, against a mock hub served by the test on localhost: pull,
 * resume after a cut, corruption detected, 404, 401 for a gated repo, offline mode, and the
 * server serving the pulled model through the same pipeline as the embedded one.
 */
import assert from "node:assert/strict";
import sharp from "sharp";
import { loadConfig } from "../core/config.ts";
import { createApp } from "../main.ts";
import { isInstalled, loadCatalog, pullModel, verifyModel } from "../models/catalog.ts";
import { downloadFile, HubError, sha256File } from "../models/hub.ts";
import { startMockHub } from "./mock_hub.ts";

const REPO = "Xenova/clip-vit-base-patch32";
const FIXTURES = new URL("./fixtures/hub", import.meta.url).pathname;
const TOKENIZER = new URL("../../shared/assets/clip-tokenizer/", import.meta.url).pathname;
const tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];
let haveTokenizer = true;
try {
  for (const f of tokenizerFiles) Deno.statSync(TOKENIZER + f);
} catch {
  haveTokenizer = false;
  console.warn(`hub_test: skipping: the public CLIP tokenizer files are not in ${TOKENIZER}`);
}

const extra: Record<string, string> = {};
for (const repo of [REPO, "acme/gated-clip"]) {
  for (const f of tokenizerFiles) extra[`${repo}/${f}`] = TOKENIZER + f;
  for (
    const f of [
      "config.json",
      "preprocessor_config.json",
      "onnx/text_model.onnx",
      "onnx/vision_model.onnx",
    ]
  ) {
    extra[`${repo}/${f}`] = `${FIXTURES}/${REPO}/${f}`;
  }
}
const catalog = await loadCatalog();
const clipEntry = catalog.find((e) => e.id === REPO)!;

function hubTest(
  name: string,
  fn: (ctx: { hub: ReturnType<typeof startMockHub>; dir: string }) => Promise<void>,
) {
  Deno.test({
    name,
    ignore: !haveTokenizer,
    fn: async () => {
      const hub = startMockHub({
        root: FIXTURES,
        extra,
        gated: { "acme/gated-clip": "hf_secret" },
      });
      const dir = await Deno.makeTempDir({ prefix: "mm-models-" });
      try {
        await fn({ hub, dir });
      } finally {
        await hub.close();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

hubTest(
  "pullModel() fetches every file, verifies LFS files by SHA-256 and writes a manifest",
  async ({ hub, dir }) => {
    const manifest = await pullModel(clipEntry, { endpoint: hub.url, modelsDir: dir });
    assert.equal(manifest.id, REPO);
    assert.deepEqual(manifest.files, {
      text: "onnx/text_model.onnx",
      vision: "onnx/vision_model.onnx",
    });
    assert.ok(await isInstalled(dir, REPO));
    const onnx = `${dir}/${REPO}/onnx/text_model.onnx`;
    assert.equal(
      await sha256File(onnx),
      await sha256File(`${FIXTURES}/${REPO}/onnx/text_model.onnx`),
    );
    assert.deepEqual(await verifyModel(dir, REPO), []);
    // The LFS metadata came from a HEAD that did not follow the redirect.
    assert.ok(hub.log.some((r) => r.method === "HEAD" && r.path.endsWith("text_model.onnx")));
  },
);

hubTest(
  "a download cut mid-file resumes with a Range request and completes",
  async ({ hub, dir }) => {
    hub.cutOnce(`${REPO}/onnx/text_model.onnx`);
    await assert.rejects(pullModel(clipEntry, { endpoint: hub.url, modelsDir: dir }));
    const part = `${dir}/${REPO}/onnx/text_model.onnx.part`;
    const partial = (await Deno.stat(part)).size;
    const full = (await Deno.stat(`${FIXTURES}/${REPO}/onnx/text_model.onnx`)).size;
    assert.ok(partial > 0 && partial < full, `partial ${partial} of ${full}`);
    assert.equal(await isInstalled(dir, REPO), false, "a half pull is never a model");
    await pullModel(clipEntry, { endpoint: hub.url, modelsDir: dir });
    assert.ok(
      hub.log.some((r) => r.range === `bytes=${partial}-`),
      "resumed from where it stopped",
    );
    assert.deepEqual(await verifyModel(dir, REPO), []);
  },
);

hubTest("a corrupted file fails loudly and is deleted", async ({ hub, dir }) => {
  hub.corruptOnce(`${REPO}/onnx/vision_model.onnx`);
  await assert.rejects(
    pullModel(clipEntry, { endpoint: hub.url, modelsDir: dir }),
    /SHA-256 mismatch/,
  );
  const gone = async (p: string) => await Deno.stat(p).then(() => false, () => true);
  assert.ok(await gone(`${dir}/${REPO}/onnx/vision_model.onnx`));
  assert.ok(await gone(`${dir}/${REPO}/onnx/vision_model.onnx.part`));
  assert.equal(await isInstalled(dir, REPO), false);
});

hubTest(
  "an unknown repo is a 404 and a gated one a 401 without the token",
  async ({ hub, dir }) => {
    await assert.rejects(
      downloadFile(
        { endpoint: hub.url },
        "nobody/nothing",
        "main",
        "config.json",
        `${dir}/x/config.json`,
      ),
      (e: unknown) => e instanceof HubError && e.status === 404 && /not found/.test(e.message),
    );
    const get = (token?: string) =>
      downloadFile(
        { endpoint: hub.url, token },
        "acme/gated-clip",
        "main",
        "config.json",
        `${dir}/g/config.json`,
      );
    await assert.rejects(
      get(),
      (e: unknown) => e instanceof HubError && e.status === 401 && /HF_TOKEN/.test(e.message),
    );
    await assert.rejects(
      get("hf_wrong"),
      (e: unknown) => e instanceof HubError && /no access/.test(e.message),
    );
    assert.ok((await get("hf_secret")).size > 0);
  },
);

hubTest(
  "offline mode refuses to pull; the server never pulls unless allowed",
  async ({ hub, dir }) => {
    await assert.rejects(
      pullModel(clipEntry, { endpoint: hub.url, modelsDir: dir, offline: true }),
      /Offline/,
    );
    assert.equal(hub.log.length, 0, "no request reached the hub");
    const { app, registry } = await createApp(
      loadConfig({ MM_BACKEND: "cpu", MM_MODELS_DIR: dir, HF_ENDPOINT: hub.url }),
    );
    await registry.preload();
    const models = (await (await app.request("/v1/models")).json()).data;
    assert.equal(models.find((m: { id: string }) => m.id === REPO).installed, false);
    const res = await app.request("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: REPO, input: "a photo of a cat" }),
    });
    assert.equal(res.status, 404);
    assert.match(
      (await res.json()).error.message,
      /deno task models pull Xenova\/clip-vit-base-patch32/,
    );
    assert.equal(hub.log.length, 0);
  },
);

async function classify(app: Awaited<ReturnType<typeof createApp>>["app"]) {
  const png = await sharp({
    create: { width: 320, height: 240, channels: 3, background: "#c02828" },
  }).png().toBuffer();
  return await app.request("/v1/clip/classify", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: REPO,
      image: new Uint8Array(png).toBase64(),
      candidate_labels: ["cat", "dog", "red wall"],
      return_patch_maps: true,
    }),
  });
}

hubTest(
  "the server serves a pulled public CLIP through the same pipeline",
  async ({ hub, dir }) => {
    await pullModel(clipEntry, { endpoint: hub.url, modelsDir: dir });
    const { app, registry } = await createApp(
      loadConfig({ MM_BACKEND: "cpu", MM_MODELS_DIR: dir }),
    );
    await registry.preload();
    const res = await classify(app);
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.model, REPO);
    assert.equal(body.results.length, 3);
    assert.ok(
      Math.abs(body.results.reduce((s: number, r: { score: number }) => s + r.score, 0) - 1) < 1e-6,
    );
    assert.equal(body.results[0].patch_map.rows, 7, "224 / 32 = 7 patches a side");
    const emb = await (await app.request("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: REPO, input: ["a photo of a cat", "a dog"] }),
    })).json();
    assert.equal(emb.data[0].embedding.length, 16);
  },
);

hubTest(
  "with MM_ALLOW_DOWNLOADS=1 the server pulls a known model on first use",
  async ({ hub, dir }) => {
    const { app, registry } = await createApp(
      loadConfig({
        MM_BACKEND: "cpu",
        MM_MODELS_DIR: dir,
        HF_ENDPOINT: hub.url,
        MM_ALLOW_DOWNLOADS: "1",
      }),
    );
    await registry.preload();
    const res = await classify(app);
    assert.equal(res.status, 200, await res.clone().text());
    assert.ok(await isInstalled(dir, REPO));
  },
);

hubTest("verifyModel() finds a file changed after the pull", async ({ hub, dir }) => {
  await pullModel(clipEntry, { endpoint: hub.url, modelsDir: dir });
  const f = `${dir}/${REPO}/onnx/vision_model.onnx`;
  const bytes = await Deno.readFile(f);
  bytes[100] ^= 1;
  await Deno.writeFile(f, bytes);
  const problems = await verifyModel(dir, REPO);
  assert.deepEqual(problems.map((p) => p.path), ["onnx/vision_model.onnx"]);
});

/** Pulls a catalogue model from `endpoint`, checks it, and serves it as the server would. */
async function servePulled(id: string, endpoint: string, dir: string) {
  const entry = catalog.find((e) => e.id === id)!;
  await pullModel(entry, { endpoint, modelsDir: dir });
  assert.deepEqual(await verifyModel(dir, id), []);
  const { app, registry } = await createApp(loadConfig({ MM_BACKEND: "cpu", MM_MODELS_DIR: dir }));
  await registry.preload();
  const post = (path: string, body: Record<string, unknown>) =>
    Promise.resolve(app.request(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    }));
  return { entry, post };
}

/** A plain 300 × 200 blue PNG, as base64. */
const bluePng = async () =>
  new Uint8Array(
    await sharp({ create: { width: 300, height: 200, channels: 3, background: "#2050d0" } }).png()
      .toBuffer(),
  ).toBase64();

hubTest(
  "a pulled public ViT-GPT2 captioner is served by the captioning pipeline",
  async ({ hub, dir }) => {
    const { entry, post } = await servePulled("Xenova/vit-gpt2-image-captioning", hub.url, dir);
    const res = await post("/v1/captions", {
      model: entry.id,
      image: await bluePng(),
      strategy: "beam",
      n: 2,
      max_tokens: 6,
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.model, entry.id);
    assert.equal(body.captions.length, 2);
    for (const c of body.captions) assert.ok(c.tokens.length <= 6);
  },
);

hubTest(
  "a pulled public SD-Turbo export (tokenizer from vocab.json + merges.txt) is served by the diffusion pipeline",
  async ({ dir }) => {
    // The real repo's tokenizer/ has vocab.json and merges.txt, not tokenizer.json: derive them
    // from the public CLIP tokenizer.json and serve them as the hub would.
    const repo = "onnxruntime/sd-turbo";
    const pub = JSON.parse(await Deno.readTextFile(TOKENIZER + "tokenizer.json"));
    const tmp = await Deno.makeTempDir();
    await Deno.writeTextFile(`${tmp}/vocab.json`, JSON.stringify(pub.model.vocab));
    await Deno.writeTextFile(
      `${tmp}/merges.txt`,
      `#version: 0.2\n${pub.model.merges.join("\n")}\n`,
    );
    const hub = startMockHub({
      root: FIXTURES,
      extra: {
        [`${repo}/tokenizer/vocab.json`]: `${tmp}/vocab.json`,
        [`${repo}/tokenizer/merges.txt`]: `${tmp}/merges.txt`,
        [`${repo}/tokenizer/tokenizer_config.json`]: TOKENIZER + "tokenizer_config.json",
        [`${repo}/tokenizer/special_tokens_map.json`]: TOKENIZER + "special_tokens_map.json",
      },
    });
    try {
      const { post } = await servePulled(repo, hub.url, dir);
      const res = await post("/v1/images/generations", {
        model: repo,
        prompt: "an astronaut riding a horse",
        seed: 1,
      });
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.model, repo);
      assert.equal(body.steps, 1, "SD-Turbo's one step, from the catalogue's settings");
      assert.equal(body.scheduler, "euler", "from its scheduler_config.json");
      const { info } = await sharp(Uint8Array.fromBase64(body.data[0].b64_json)).raw().toBuffer({
        resolveWithObject: true,
      });
      assert.deepEqual([info.width, info.height], [512, 512]);
      const small = await post("/v1/images/generations", {
        model: repo,
        prompt: "a cat",
        size: "300x300",
      });
      assert.equal(small.status, 400);
      assert.match((await small.json()).error.message, /multiple of 64/);
      // Public SD exports have no attention output: word maps are a clear 400.
      const explain = await post("/v1/images/generations", {
        model: repo,
        prompt: "a cat",
        return_attention: true,
      });
      const error = (await explain.json()).error;
      assert.equal(explain.status, 400);
      assert.equal(error.param, "return_attention");
      assert.match(error.message, /has no word maps/);
    } finally {
      await hub.close();
      await Deno.remove(tmp, { recursive: true });
    }
  },
);

hubTest(
  "a pulled public SmolVLM (Idefics3 layout) is served by the chat pipeline",
  async ({ hub, dir }) => {
    const { entry, post } = await servePulled("HuggingFaceTB/SmolVLM-256M-Instruct", hub.url, dir);
    const res = await post("/v1/chat/completions", {
      model: entry.id,
      max_tokens: 5,
      messages: [{
        role: "user",
        content: [
          { type: "image_url", image_url: { url: `data:image/png;base64,${await bluePng()}` } },
          { type: "text", text: "what color is the background?" },
        ],
      }],
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.model, entry.id);
    assert.ok(
      body.usage.prompt_tokens > 64,
      "64 image tokens in the prompt, as Idefics3 expands <image>",
    );
    assert.ok(body.usage.completion_tokens <= 5);
    // Public exports have no attention output: maps are a clear 400, not an empty field.
    const explain = await post("/v1/chat/completions", {
      model: entry.id,
      max_tokens: 5,
      return_attention: true,
      messages: [{
        role: "user",
        content: [{
          type: "image_url",
          image_url: { url: `data:image/png;base64,${await bluePng()}` },
        }],
      }],
    });
    const error = (await explain.json()).error;
    assert.equal(explain.status, 400);
    assert.equal(error.param, "return_attention");
    assert.match(error.message, /exports no attention/);
  },
);
