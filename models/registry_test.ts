import assert from "node:assert/strict";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { scanModels } from "./manifest.ts";
import { describeModels, preloadChoice } from "./registry.ts";

const entries = await scanModels([EMBEDDED_MODELS_DIR]);

Deno.test("preloadChoice: all = the manifests that say preload; ids; a typo fails at start", () => {
  const all = preloadChoice("all", entries);
  assert.deepEqual(
    entries.filter((e) => all(e.manifest)).map((e) => e.manifest.id),
    entries.filter((e) => e.manifest.preload).map((e) => e.manifest.id),
  );
  const two = preloadChoice(["clip-tiny", "sd-tiny"], entries);
  assert.deepEqual(entries.filter((e) => two(e.manifest)).map((e) => e.manifest.id).sort(), [
    "clip-tiny",
    "sd-tiny",
  ]);
  const none = preloadChoice([], entries);
  assert.equal(entries.filter((e) => none(e.manifest)).length, 0);
  assert.throws(
    () => preloadChoice(["clip-tiny", "sd-tine"], entries),
    /MM_PRELOAD: no installed model "sd-tine" \(installed: .*sd-tiny/,
  );
});

Deno.test("describeModels: one default per family; a backend not known yet says starting", () => {
  const list = describeModels(entries, [], null, (id) => id === "clip-tiny");
  const families = new Set(list.map((m) => m.family));
  for (const f of families) {
    assert.equal(list.filter((m) => m.family === f && m.default).length, 1, f);
  }
  assert.equal(list.find((m) => m.family === "captioning" && m.default)?.id, "sat-soft-tiny");
  assert.deepEqual(list.filter((m) => m.loaded).map((m) => m.id), ["clip-tiny"]);
  assert.ok(list.every((m) => m.backend === "starting"));
});
