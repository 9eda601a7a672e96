/**
 * The shipped clip-tiny weights are good at what they were trained for: zero-shot colour and
 * shape on a freshly generated test split, and colour on held-out compositions. The thresholds
 * sit below the model card's measured scores (`deno task eval clip`) with a margin for sampling.
 */
import assert from "node:assert/strict";
import { resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { retrieval, zeroShot } from "../models/clip/eval.ts";
import { ClipPipeline } from "../models/clip/pipeline.ts";
import { scanModels } from "../models/manifest.ts";

const entry = (await scanModels([EMBEDDED_MODELS_DIR])).find((e) => e.manifest.id === "clip-tiny")!;
const clip = await ClipPipeline.load(entry, new SessionRegistry(await resolveBackend("cpu")));

Deno.test("clip-tiny zero-shot on the test split: colour and shape well above chance", async () => {
  const s = await zeroShot(clip, "test", 300, 42);
  console.log(
    `  test: colour ${s.colour.toFixed(3)}, shape ${s.shape.toFixed(3)}, both ${s.both.toFixed(3)}`,
  );
  assert.ok(s.colour >= 0.95, `colour ${s.colour} (chance 1/6)`);
  assert.ok(s.shape >= 0.42, `shape ${s.shape} (chance 1/4; the card measured 53–56%)`);
});

Deno.test("clip-tiny zero-shot on held-out compositions: colour still right", async () => {
  const s = await zeroShot(clip, "heldout", 300, 42);
  console.log(
    `  heldout: colour ${s.colour.toFixed(3)}, shape ${s.shape.toFixed(3)}, both ${
      s.both.toFixed(3)
    }`,
  );
  assert.ok(s.colour >= 0.95, `colour ${s.colour} (chance 1/6)`);
});

Deno.test("clip-tiny retrieves a scene from its caption among 100", async () => {
  const r = await retrieval(clip, "test", 100, 42);
  console.log(`  caption → image R@1: ${r.toFixed(2)}`);
  assert.ok(r >= 0.7, `R@1 ${r} (chance 0.01; the eval measured 0.87)`);
});
