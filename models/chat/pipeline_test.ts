import assert from "node:assert/strict";
import { visionBatch } from "./pipeline.ts";

Deno.test("chat: a vision run encodes at most 512² pixels, at least one image", () => {
  assert.equal(visionBatch(512, 32), 1); // SmolVLM's size: one image a run
  assert.equal(visionBatch(256, 32), 4);
  assert.equal(visionBatch(64, 32), 32); // the tiny models: up to maxBatch
  assert.equal(visionBatch(64, 1), 1); // unbatched stays unbatched
  assert.equal(visionBatch(1024, 32), 1); // larger than the budget: alone, not refused
});
