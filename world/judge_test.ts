import assert from "node:assert/strict";
import { judge, parsePrompt } from "./judge.ts";
import { canonicalCaption, referenceSet, renderScene, sampleScenes } from "./world.ts";

Deno.test("the prompt parser reads every caption form of the world", () => {
  assert.deepEqual(parsePrompt("a small red circle in the top left on a white background"), {
    objects: [{ colour: "red", shape: "circle", size: "small" }],
    background: "white",
    position: "top left",
  });
  const two = parsePrompt("an orange square to the right of a large blue diamond");
  assert.equal(two.relation, "right of");
  assert.equal(two.background, undefined);
  assert.deepEqual(two.objects.map((o) => o.colour), ["orange", "blue"]);
  const three = parsePrompt(
    "there are three shapes : a red circle , a blue square and a green diamond",
  );
  assert.equal(three.objects.length, 3);
  assert.equal(three.relation, undefined);
});

Deno.test("the judge accepts rendered world scenes against their own captions", () => {
  for (const split of ["test", "heldout"] as const) {
    const scenes = sampleScenes({ split, count: 150, seed: 11 });
    let all = 0, refs = 0, refsOk = 0;
    scenes.forEach((scene, i) => {
      const rgb = renderScene(scene, i);
      if (judge(canonicalCaption(scene), rgb).all) all++;
      for (const r of referenceSet(scene)) {
        refs++;
        if (judge(r, rgb).all) refsOk++;
      }
    });
    assert.ok(all / scenes.length >= 0.95, `${split}: ${all}/${scenes.length} canonical captions`);
    assert.ok(refsOk / refs >= 0.95, `${split}: ${refsOk}/${refs} references`);
  }
});

Deno.test("the judge rejects a scene against a prompt that changes one attribute", () => {
  const scenes = sampleScenes({ split: "test", count: 100, seed: 5, objects: 1 });
  let rejected = 0;
  scenes.forEach((scene, i) => {
    const rgb = renderScene(scene, i);
    const o = scene.objects[0];
    const colour = o.colour === "red" ? "blue" : "red";
    const wrong = canonicalCaption({ ...scene, objects: [{ ...o, colour }] });
    if (!judge(wrong, rgb).all && judge(wrong, rgb).colour === 0) rejected++;
  });
  assert.equal(rejected, scenes.length);
});
