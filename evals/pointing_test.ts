import assert from "node:assert/strict";
import { canonicalCaption, sampleScenes, type Scene, SHAPES } from "../world/world.ts";
import { chanceOf, type Explain, namedObjects, pointing, pointsAt } from "./pointing.ts";

const scene: Scene = {
  background: "black",
  objects: [
    { shape: "circle", colour: "red", size: "large", side: 24, x: 0, y: 0 },
    { shape: "square", colour: "blue", size: "small", side: 12, x: 48, y: 48 },
  ],
};

Deno.test("namedObjects: colour and shape words of phrases that name an object of the scene", () => {
  const words = "a large red circle and a small green square on a black background".split(" ");
  // "green square" names nothing here; "black background" is no object.
  assert.deepEqual(namedObjects(words, scene), [{ at: 2, object: 0 }, { at: 3, object: 0 }]);
  assert.deepEqual(namedObjects("a blue square".split(" "), scene), [
    { at: 1, object: 1 },
    { at: 2, object: 1 },
  ]);
});

Deno.test("pointsAt: the peak cell must overlap the object's box", () => {
  const grid = (peak: number) => Array.from({ length: 64 }, (_, i) => i === peak ? 1 : 0.01);
  assert.equal(pointsAt(grid(0), 8, 8, scene.objects[0]), true); // top-left cell
  assert.equal(pointsAt(grid(2 * 8 + 2), 8, 8, scene.objects[0]), true); // (16..24) inside 0..24
  assert.equal(pointsAt(grid(3 * 8 + 3), 8, 8, scene.objects[0]), false); // 24..32: just past
  assert.equal(pointsAt(grid(63), 8, 8, scene.objects[1]), true);
  assert.equal(pointsAt(grid(63), 8, 8, scene.objects[0]), false);
});

Deno.test("chanceOf: the share of cells a random peak would find the object in", () => {
  // 24 px from the corner on an 8 x 8 grid of 8 px cells: 3 x 3 cells of 64.
  assert.equal(chanceOf(8, 8, scene.objects[0]), 9 / 64);
  assert.equal(chanceOf(8, 8, scene.objects[1]), 4 / 64); // 48..60: cells 6 and 7 both ways
});

Deno.test("pointing: the served map's hits for colour words and for shape words apart", async () => {
  // The scenes' true captions, each shape word's map peaking on its object, each colour word's on
  // a cell no object touches.
  const scenes = sampleScenes({ split: "test", count: 4, seed: 0 });
  const oneHot = (peak: number) => Array.from({ length: 256 }, (_, i) => i === peak ? 1 : 0);
  const cells = Array.from({ length: 256 }, (_, c) => c);
  let next = 0;
  const explain: Explain = (_image) => {
    const scene = scenes[next++];
    const words = canonicalCaption(scene).split(" ");
    const named = namedObjects(words, scene);
    const empty = cells.find((c) => scene.objects.every((o) => !pointsAt(oneHot(c), 16, 16, o)))!;
    const weights = words.map((w, at) => {
      const hit = named.find((n) => n.at === at);
      if (!hit || !(SHAPES as readonly string[]).includes(w)) return oneHot(empty);
      return oneHot(cells.find((c) => pointsAt(oneHot(c), 16, 16, scene.objects[hit.object]))!);
    });
    return Promise.resolve({
      rows: 16,
      cols: 16,
      words: words.map((token, i) => ({ token, weights: weights[i], overlay_png: "" })),
    });
  };
  const s = await pointing(explain, "test", 4);
  assert.ok(s.words > 0);
  assert.deepEqual(s.byKind, { colour: 0, shape: 1 });
  assert.equal(s.byOffset["0"], 0.5);
});
