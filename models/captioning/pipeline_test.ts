/**
 * The shipped captioning models: they reproduce PyTorch's greedy captions, caption generated test
 * images well, return attention maps of the grid's shape that sum to 1, and decode the same on
 * every backend; concurrent captions share decoder runs and come out as they would alone.
 */
import assert from "node:assert/strict";
import { type BackendName, resolveBackend } from "../../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../../core/config.ts";
import { SessionRegistry } from "../../core/sessions.ts";
import { scanModels } from "../manifest.ts";
import { evaluateCaptions } from "../../evals/captioning.ts";
import { CaptionPipeline, GREEDY } from "./pipeline.ts";
import { argmax, cellHeat } from "../../tests/heat.ts";
import { COLOURS, renderScene, sampleScenes } from "../../world/world.ts";
import { adapter } from "../../tests/gpu.ts";
import { slowRuns } from "../../tests/slow_runs.ts";

const entries = (await scanModels([EMBEDDED_MODELS_DIR])).filter((e) =>
  e.manifest.family === "captioning"
);
const cpu = new SessionRegistry(await resolveBackend("cpu"));
/** BLEU-4 each shipped model must reach on 100 generated test scenes (model cards list the measured scores). */
const MIN_BLEU4: Record<string, number> = {
  "nic-tiny": 0.8,
  "sat-soft-tiny": 0.85,
  "sat-hard-tiny": 0.8,
  "vit-gpt2-tiny": 0.85,
};

for (const entry of entries) {
  const id = entry.manifest.id;
  const golden = JSON.parse(
    await Deno.readTextFile(new URL(`../../tests/fixtures/${id}.golden.json`, import.meta.url)),
  );
  const images = (golden.images_rgb_base64 as string[]).map((b) => ({
    width: 64,
    height: 64,
    data: Uint8Array.fromBase64(b),
  }));
  const model = await CaptionPipeline.load(entry, { sessions: cpu });

  Deno.test(`${id}: greedy captions equal PyTorch's at export`, async () => {
    for (const [i, img] of images.entries()) {
      const { captions: [c] } = await model.caption(img, GREEDY);
      assert.equal(c.text, golden.greedy[i]);
    }
  });

  Deno.test(`${id}: concurrent captions share the decoder's runs and equal lone ones`, async () => {
    const scenes = sampleScenes({ split: "test", count: 8, seed: 11 }).map((s, i) => ({
      width: 64,
      height: 64,
      data: renderScene(s, i),
    }));
    // Greedy and beam search side by side: steps of 1 and of 3 rows merge.
    const options = (i: number) =>
      i % 2 ? { ...GREEDY, strategy: "beam" as const, beamSize: 3 } : GREEDY;
    const alone: Awaited<ReturnType<typeof model.caption>>[] = [];
    for (const [i, img] of scenes.entries()) alone.push(await model.caption(img, options(i)));
    const decoder = await cpu.load(entry.dir + entry.manifest.files.decoder);
    const { rows, restore } = slowRuns(decoder, (f) => f.input_ids.dims[0]);
    let together;
    try {
      together = await Promise.all(scenes.map((img, i) => model.caption(img, options(i))));
    } finally {
      restore();
    }
    assert.ok(Math.max(...rows) > 3, `runs of ${rows.join(" ")} rows: steps were shared`);
    together.forEach((r, i) => {
      assert.equal(r.captions[0].text, alone[i].captions[0].text);
      assert.ok(Math.abs(r.captions[0].logprob - alone[i].captions[0].logprob) < 1e-4);
    });
  });

  Deno.test(`${id}: captions generated test scenes (BLEU-4 ≥ ${MIN_BLEU4[id] ?? 0.5})`, async () => {
    const s = await evaluateCaptions(model, "test", 100, {}, 5);
    console.log(
      `  ${id}: BLEU-4 ${s.bleu[3].toFixed(3)}, METEOR ${s.meteor.toFixed(3)}, exact ${
        s.exact.toFixed(2)
      }`,
    );
    assert.ok(s.bleu[3] >= (MIN_BLEU4[id] ?? 0.5), `BLEU-4 ${s.bleu[3]}`);
  });

  Deno.test(`${id}: beam search never scores below greedy and never stops mid-phrase`, async () => {
    // 40 test scenes; every returned caption (best and alternatives) must end where a caption of
    // the world can end, unless it was cut at max_tokens.
    const dangling = new Set(["a", "an", "the", "on", "in", "of", "to", "and", ",", ":", "is"]);
    const adjectives = new Set(["small", "large", ...Object.keys(COLOURS)]);
    for (const [i, scene] of sampleScenes({ split: "test", count: 40, seed: 5 }).entries()) {
      const img = { width: 64, height: 64, data: renderScene(scene, i) };
      const { captions: [g] } = await model.caption(img, GREEDY);
      const beam = await model.caption(img, { ...GREEDY, strategy: "beam", beamSize: 3 });
      const best = beam.captions[0];
      assert.ok(
        best.logprob >= g.logprob - 1e-3,
        `scene ${i}: beam "${best.text}" (${best.logprob}) < greedy "${g.text}" (${g.logprob})`,
      );
      for (const c of [best, ...beam.alternatives]) {
        const last = c.text.split(" ").at(-1)!;
        if (c.finish_reason === "length") continue;
        assert.ok(!dangling.has(last) && !adjectives.has(last), `scene ${i}: "${c.text}"`);
      }
    }
  });

  if (model.hasAttention) {
    Deno.test(`${id}: attention maps have the grid's shape, sum to 1, and overlays peak where they do`, async () => {
      const { captions: [c] } = await model.caption(images[0], {
        ...GREEDY,
        returnAttention: true,
      });
      assert.equal(c.attention!.words.length, c.tokens.length);
      for (const w of c.attention!.words) {
        assert.equal(w.weights.length, model.grid * model.grid);
        assert.ok(Math.abs(w.weights.reduce((a, b) => a + b, 0) - 1) < 1e-3);
        // The overlay, read back at each cell's centre, shows that cell's weight (min–max scaled),
        // so it is hottest where the weights peak.
        const heat = await cellHeat(
          Uint8Array.fromBase64(w.overlay_png),
          images[0],
          model.grid,
          model.grid,
        );
        const lo = Math.min(...w.weights), hi = Math.max(...w.weights);
        for (const [i, v] of w.weights.entries()) {
          const want = hi > lo ? (v - lo) / (hi - lo) : 0;
          assert.ok(
            Math.abs(heat[i] - want) < 0.06,
            `"${w.token}" cell ${i}: ${heat[i]} ≠ ${want}`,
          );
        }
        assert.ok(w.weights[argmax(heat)] >= hi - 0.06 * (hi - lo), `hottest cell of "${w.token}"`);
      }
    });
  }

  if (Array.isArray(entry.manifest.settings.attention_steps)) {
    Deno.test(`${id}: each word's map is the mean of its attention_steps' maps`, async () => {
      const steps = entry.manifest.settings.attention_steps as number[];
      const withSteps = (s: number[]) =>
        CaptionPipeline.load(
          {
            ...entry,
            manifest: {
              ...entry.manifest,
              settings: { ...entry.manifest.settings, attention_steps: s },
            },
          },
          { sessions: cpu },
        );
      const maps = async (m: CaptionPipeline) =>
        (await m.caption(images[0], { ...GREEDY, returnAttention: true })).captions[0].attention!
          .words.map((w) => w.weights);
      const served = await maps(model);
      const each = await Promise.all(steps.map(async (d) => maps(await withSteps([d]))));
      assert.ok(served.length > 2);
      served.forEach((w, i) => {
        const mean = w.map((_, k) => each.reduce((a, m) => a + m[i][k], 0) / steps.length);
        // Served weights are rounded to 4 decimals.
        w.forEach((v, k) => assert.ok(Math.abs(v - mean[k]) < 1.5e-4, `word ${i} cell ${k}`));
      });
      // The steps differ: a word's map is not the same as its own step's alone.
      assert.ok(
        served.some((w, i) => w.some((v, k) => Math.abs(v - each[steps.indexOf(0)][i][k]) > 1e-3)),
      );
    });
  }

  const backends: BackendName[] = ["wasm", ...(adapter ? ["webgpu" as const] : [])];
  Deno.test({
    name: `${id}: greedy decoding gives the same caption on cpu, ${backends.join(" and ")}`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const { captions: [want] } = await model.caption(images[1], GREEDY);
      for (const b of backends) {
        const other = await CaptionPipeline.load(
          entry,
          { sessions: new SessionRegistry(await resolveBackend(b)) },
        );
        const { captions: [got] } = await other.caption(images[1], GREEDY);
        assert.equal(got.text, want.text, b);
      }
    },
  });
}
