/**
 * The shipped captioning models: they reproduce PyTorch's greedy captions, caption generated test
 * images well, return attention maps of the grid's shape that sum to 1, and decode the same on
 * every backend.
 */
import assert from "node:assert/strict";
import { type BackendName, resolveBackend } from "../../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../../core/config.ts";
import { SessionRegistry } from "../../core/sessions.ts";
import { scanModels } from "../manifest.ts";
import { evaluateCaptions } from "./eval.ts";
import { CaptionPipeline, GREEDY } from "./pipeline.ts";

const entries = (await scanModels([EMBEDDED_MODELS_DIR])).filter((e) =>
  e.manifest.family === "captioning"
);
const cpu = new SessionRegistry(await resolveBackend("cpu"));
/** BLEU-4 each shipped model must reach on 100 generated test scenes (model cards list the measured scores). */
const MIN_BLEU4: Record<string, number> = {
  "nic-tiny": 0.4,
  "sat-soft-tiny": 0.85,
  "sat-hard-tiny": 0.4,
  "vit-gpt2-tiny": 0.55,
};
const adapter = await navigator.gpu?.requestAdapter().catch(() => null);

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
  const model = await CaptionPipeline.load(entry, cpu);

  Deno.test(`${id}: greedy captions equal PyTorch's at export`, async () => {
    for (const [i, img] of images.entries()) {
      const { captions: [c] } = await model.caption(img, GREEDY);
      assert.equal(c.text, golden.greedy[i]);
    }
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

  if (model.hasAttention) {
    Deno.test(`${id}: attention maps have the grid's shape and sum to 1 at every word`, async () => {
      const { captions: [c] } = await model.caption(images[0], {
        ...GREEDY,
        returnAttention: true,
      });
      assert.equal(c.attention!.words.length, c.tokens.length);
      for (const w of c.attention!.words) {
        assert.equal(w.weights.length, model.grid * model.grid);
        assert.ok(Math.abs(w.weights.reduce((a, b) => a + b, 0) - 1) < 1e-3);
        assert.ok(
          Uint8Array.fromBase64(w.overlay_png).subarray(1, 4).every((b, k) =>
            b === "PNG".charCodeAt(k)
          ),
        );
      }
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
          new SessionRegistry(await resolveBackend(b)),
        );
        const { captions: [got] } = await other.caption(images[1], GREEDY);
        assert.equal(got.text, want.text, b);
      }
    },
  });
}
