import assert from "node:assert/strict";
import { AutoTokenizer, env } from "@huggingface/transformers";
import { resolveBackend } from "../../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../../core/config.ts";
import { SessionRegistry } from "../../core/sessions.ts";
import { renderScene, type Scene } from "../../world/world.ts";
import { maxAbsDiff } from "../../tests/tolerance.ts";
import { scanModels } from "../manifest.ts";
import { ClipPipeline, fillTemplate } from "./pipeline.ts";

env.allowRemoteModels = false;
const golden = JSON.parse(
  await Deno.readTextFile(new URL("../../tests/fixtures/clip-tiny.golden.json", import.meta.url)),
);
const [entry] = (await scanModels([EMBEDDED_MODELS_DIR])).filter((e) =>
  e.manifest.id === "clip-tiny"
);
const clip = await ClipPipeline.load(entry, {
  sessions: new SessionRegistry(await resolveBackend("cpu")),
});
const SHARED_CLIP_TOKENIZER =
  new URL("../../../shared/assets/clip-tokenizer/", import.meta.url).pathname;
const TEXTS = [
  "a photo of a red circle",
  "A Large BLUE square, to the left of: a small green diamond?",
  "photos of zebras",
  "  an orange   triangle.  ",
];

Deno.test("ClipPipeline.tokenize() gives the ids the trainer used", () => {
  golden.texts.forEach((t: string, i: number) =>
    assert.deepEqual(clip.tokenize(t), golden.input_ids[i])
  );
});

Deno.test("ClipPipeline.tokenize() equals transformers' AutoTokenizer on clip-tiny's files", async () => {
  const theirs = await AutoTokenizer.from_pretrained(entry.dir);
  for (const t of TEXTS) assert.deepEqual(clip.tokenize(t), theirs.encode(t));
});

let sharedTokenizer = false;
try {
  sharedTokenizer = Deno.statSync(`${SHARED_CLIP_TOKENIZER}tokenizer.json`).isFile;
} catch {
  console.warn(
    `pipeline_test: skipping the public CLIP tokenizer test: ${SHARED_CLIP_TOKENIZER} is absent`,
  );
}
Deno.test({
  name: "our tokenizer path equals transformers' on the public CLIP ViT-B/32 tokenizer",
  ignore: !sharedTokenizer,
  fn: async () => {
    const { Tokenizer } = await import("@huggingface/tokenizers");
    const read = (f: string) => JSON.parse(Deno.readTextFileSync(SHARED_CLIP_TOKENIZER + f));
    const ours = new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json"));
    const theirs = await AutoTokenizer.from_pretrained(SHARED_CLIP_TOKENIZER);
    for (const t of [...TEXTS, "naïve café — 東京 🙂", "it's 3.14 o'clock!!"]) {
      assert.deepEqual(ours.encode(t).ids, theirs.encode(t), t);
    }
  },
});

Deno.test("fillTemplate() puts the label in the template and fixes 'a' before a vowel", () => {
  assert.equal(fillTemplate("a photo of a {}", "red circle"), "a photo of a red circle");
  assert.equal(fillTemplate("a photo of a {}", "orange circle"), "a photo of an orange circle");
  assert.equal(fillTemplate("a drawing of", "square"), "a drawing of square");
});

const scene = (colour: "red" | "blue", shape: "circle" | "square", x = 20, y = 20): Scene => ({
  background: "black",
  objects: [{ colour, shape, size: "large", side: 24, x, y }],
});
const image = (s: Scene) => ({ width: 64, height: 64, data: renderScene(s) });

Deno.test("ClipPipeline.classify() returns sorted scores that sum to 1, with patch maps on request", async () => {
  const results = await clip.classify(image(scene("red", "circle")), {
    labels: ["red circle", "blue square", "green diamond"],
    templates: ["a photo of a {}", "a {}"],
    patchMaps: true,
  });
  assert.equal(results.length, 3);
  assert.ok(Math.abs(results.reduce((s, r) => s + r.score, 0) - 1) < 1e-6);
  assert.ok(results[0].score >= results[1].score && results[1].score >= results[2].score);
  assert.equal(results[0].label, "red circle");
  const map = results[0].patch_map!;
  assert.equal(map.rows * map.cols, 64);
  assert.equal(map.values.length, 64);
});

Deno.test("ClipPipeline patch map is highest where the object is", async () => {
  // One object per corner in turn: the map of its label must move most in that quadrant, and
  // blanking plain background (already the occluder's colour) must change nothing.
  const quadrant = (v: number[], top: boolean, left: boolean) => {
    let sum = 0;
    for (let r = 0; r < 8; r++) {
      for (let c = 0; c < 8; c++) {
        if ((r < 4) === top && (c < 4) === left) sum += Math.abs(v[r * 8 + c]);
      }
    }
    return sum / 16;
  };
  for (const [top, left] of [[true, true], [false, false], [true, false], [false, true]]) {
    const s: Scene = {
      background: "black",
      objects: [{
        colour: "blue",
        shape: "square",
        size: "large",
        side: 22,
        x: left ? 4 : 38,
        y: top ? 4 : 38,
      }],
    };
    const [r] = await clip.classify(image(s), {
      labels: ["blue square"],
      templates: ["a photo of a {}"],
      patchMaps: true,
    });
    const v = r.patch_map!.values;
    const own = quadrant(v, top, left);
    assert.ok(own > 0);
    const farCorner = v[(top ? 7 : 0) * 8 + (left ? 7 : 0)];
    assert.ok(
      Math.abs(farCorner) < 1e-3,
      `plain background patch changed the match by ${farCorner}`,
    );
    for (const [t, l] of [[true, true], [false, false], [true, false], [false, true]]) {
      if (t !== top || l !== left) {
        assert.ok(own > quadrant(v, t, l), `object at top=${top} left=${left}: ${v}`);
      }
    }
  }
});

Deno.test("ClipPipeline.similarity() pairs each image with its own text", async () => {
  const { cosine, probabilities } = await clip.similarity(
    [image(scene("red", "circle")), image(scene("blue", "square", 30, 30))],
    ["a photo of a red circle", "a photo of a blue square"],
  );
  assert.ok(cosine[0][0] > cosine[0][1]);
  assert.ok(cosine[1][1] > cosine[1][0]);
  for (const row of probabilities) assert.ok(Math.abs(row[0] + row[1] - 1) < 1e-6);
});

Deno.test("ClipPipeline.embedTexts() rejects a text over the model's context with a clear 400", async () => {
  await assert.rejects(clip.embedTexts(["red ".repeat(40)]), /accepts at most 32/);
});

Deno.test("ClipPipeline: concurrent calls, batched into shared passes, get what lone calls get", async () => {
  const scenes = [scene("red", "circle"), scene("blue", "square", 10, 30), scene("red", "square")]
    .map(image);
  const texts = ["a red circle", "a small blue square on the left", "red"];
  const lone = [];
  for (const [i, img] of scenes.entries()) {
    lone.push({
      image: (await clip.embedImages([img])).embeds[0],
      text: (await clip.embedTexts([texts[i]])).embeds[0],
    });
  }
  // All at once: the first of each tower runs alone, the rest share the next pass (texts of
  // different lengths padded together).
  const together = await Promise.all(scenes.map(async (img, i) => ({
    image: (await clip.embedImages([img])).embeds[0],
    text: (await clip.embedTexts([texts[i]])).embeds[0],
  })));
  for (const [i, t] of together.entries()) {
    assert.ok(maxAbsDiff(t.image, lone[i].image) < 1e-5, `image ${i}`);
    assert.ok(maxAbsDiff(t.text, lone[i].text) < 1e-5, `text ${i}`);
  }
});
