/**
 * clip-tiny has the layout and ONNX names of the public Xenova/clip-vit-base-patch32 export, so a
 * plain @huggingface/transformers pipeline loads it, and gives the scores our pipeline gives.
 */
import assert from "node:assert/strict";
import { env, pipeline, RawImage } from "@huggingface/transformers";
import { resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { ClipPipeline } from "../models/clip/pipeline.ts";
import { scanModels } from "../models/manifest.ts";
import { renderScene, sampleScenes } from "../world/world.ts";

env.allowRemoteModels = false;

Deno.test("transformers' zero-shot-image-classification on clip-tiny agrees with our pipeline", async () => {
  const entry = (await scanModels([EMBEDDED_MODELS_DIR])).find((e) =>
    e.manifest.id === "clip-tiny"
  )!;
  const ours = await ClipPipeline.load(entry, {
    sessions: new SessionRegistry(await resolveBackend("cpu")),
  });
  const theirs = await pipeline("zero-shot-image-classification", entry.dir, { dtype: "fp32" });
  const labels = ["red circle", "blue square", "green triangle", "yellow diamond"];
  for (const scene of sampleScenes({ split: "test", count: 4, seed: 11, objects: 1 })) {
    const rgb = renderScene(scene);
    const a = await ours.classify({ width: 64, height: 64, data: rgb }, {
      labels,
      templates: ["a photo of a {}"],
    });
    const b = await theirs(new RawImage(new Uint8ClampedArray(rgb), 64, 64, 3), labels, {
      hypothesis_template: "a photo of a {}",
    }) as Array<{ label: string; score: number }>;
    const byLabel = Object.fromEntries(b.map((r) => [r.label, r.score]));
    for (const r of a) {
      assert.ok(
        Math.abs(r.score - byLabel[r.label]) < 1e-4,
        `${r.label}: ${r.score} vs ${byLabel[r.label]}`,
      );
    }
  }
  await theirs.dispose();
});
