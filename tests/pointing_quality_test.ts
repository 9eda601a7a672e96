/**
 * The generators' word maps point at what they drew: the pointing game of
 * evals/pointing_generators.ts (boxes from the pixel judge) on the first 40 prompts of each split
 * that `deno task eval pointing` scores, held above the README's measured score with a margin
 * (and above a random cell's). Deterministic on a backend: fixed prompts and seeds.
 */
import assert from "node:assert/strict";
import { resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { generatorMaps, generatorPointing } from "../evals/pointing_generators.ts";
import { DallePipeline } from "../models/dalle/pipeline.ts";
import { DiffusionPipeline } from "../models/diffusion/pipeline.ts";
import { scanModels } from "../models/manifest.ts";

/** Below the eval's hits (100 prompts a split, README), with a margin for 40 prompts. */
const THRESHOLDS = {
  "sd-tiny": 0.4, // eval: 50.0% test, 48.7% held-out; a random cell 33-35%
  "dalle-tiny": 0.22, // eval: 32.3% test, 28.0% held-out; a random cell 15-16%
} as const;

const entries = await scanModels([EMBEDDED_MODELS_DIR]);
const sessions = new SessionRegistry(await resolveBackend("cpu"));

for (const [id, min] of Object.entries(THRESHOLDS)) {
  Deno.test(`${id}'s word maps point at the objects it drew (pointing game, pixel judge)`, async () => {
    const entry = entries.find((e) => e.manifest.id === id)!;
    const g = entry.manifest.family === "diffusion"
      ? await DiffusionPipeline.load(entry, { sessions })
      : await DallePipeline.load(entry, { sessions });
    const s = await generatorPointing(generatorMaps(g), "test", 40);
    console.log(
      `  ${id}: ${(s.hits * 100).toFixed(1)}% of ${s.words} words (random cell ${
        (s.chance * 100).toFixed(1)
      }%)`,
    );
    assert.ok(s.words >= 40, `only ${s.words} words had an object to point at`);
    assert.ok(s.hits >= min, `hits ${s.hits} (threshold ${min})`);
    assert.ok(s.hits > s.chance + 0.05, `hits ${s.hits} vs a random cell's ${s.chance}`);
  });
}
