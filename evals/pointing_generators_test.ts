import assert from "node:assert/strict";
import { type Detected, readImage } from "../world/judge.ts";
import { canonicalCaption, CANVAS, renderScene, sampleScenes } from "../world/world.ts";
import {
  type DrawWithMaps,
  findObject,
  generatorPointing,
  peakIn,
  promptObjects,
} from "./pointing_generators.ts";

const drawn = (colour: string, shape: string, box: Detected["box"]): Detected =>
  ({ colour, shape, size: "large", position: "center", cx: 0, cy: 0, box, area: 100 }) as Detected;

Deno.test("promptObjects: the colour word of each 'a [size] colour shape' phrase", () => {
  const words = "a large red circle to the left of a blue square on a white background".split(" ");
  assert.deepEqual(promptObjects(words), [
    { at: 2, colour: "red", shape: "circle" },
    { at: 9, colour: "blue", shape: "square" },
  ]);
});

Deno.test("findObject: same colour and shape first, else the same colour, else none", () => {
  const found = [drawn("red", "diamond", [0, 0, 9, 9]), drawn("red", "circle", [20, 20, 29, 29])];
  assert.deepEqual(findObject(found, "red", "circle"), { object: found[1], exact: true });
  assert.deepEqual(findObject(found, "red", "square"), { object: found[0], exact: false });
  assert.equal(findObject(found, "blue", "circle"), null);
});

Deno.test("peakIn: the peak cell must overlap the box (inclusive pixels)", () => {
  const grid = (peak: number) => Array.from({ length: 256 }, (_, i) => i === peak ? 1 : 0.001);
  const box: Detected["box"] = [20, 8, 27, 11]; // cells 5..6 across, 2 down (4-pixel cells)
  assert.equal(peakIn(grid(2 * 16 + 5), 16, 16, box, 64), true);
  assert.equal(peakIn(grid(2 * 16 + 6), 16, 16, box, 64), true);
  assert.equal(peakIn(grid(2 * 16 + 7), 16, 16, box, 64), false); // x 28..32: just past
  assert.equal(peakIn(grid(3 * 16 + 5), 16, 16, box, 64), false); // y 12..16: just below
});

Deno.test("generatorPointing: colour and shape words are scored apart", async () => {
  // Rendered scenes as the "generated" images; each shape word's map peaks inside the box the
  // judge finds for its object, each colour word's on a cell no object touches.
  const scenes = sampleScenes({ split: "test", count: 4, seed: 0 });
  const byPrompt = new Map(scenes.map((s) => [canonicalCaption(s), s]));
  const oneHot = (peak: number) => Array.from({ length: 256 }, (_, i) => i === peak ? 1 : 0);
  const cell = (box: Detected["box"]) =>
    Math.floor((box[1] + box[3]) / 8) * 16 + Math.floor((box[0] + box[2]) / 8);
  const draw: DrawWithMaps = (prompt) => {
    const data = renderScene(byPrompt.get(prompt)!);
    const found = readImage(data, CANVAS).objects;
    const empty = Array.from({ length: 256 }, (_, c) => c).find((c) =>
      found.every((d) => !peakIn(oneHot(c), 16, 16, d.box, CANVAS))
    )!;
    const words = prompt.split(" ");
    const phrases = promptObjects(words);
    const weights = words.map((_, at) => {
      const phrase = phrases.find((p) => p.at + 1 === at);
      const object = phrase && findObject(found, phrase.colour, phrase.shape)?.object;
      return oneHot(object ? cell(object.box) : empty);
    });
    return Promise.resolve({
      image: { width: CANVAS, height: CANVAS, data },
      maps: {
        rows: 16,
        cols: 16,
        words: words.map((token, i) => ({ token, weights: weights[i], overlay_png: "" })),
      },
    });
  };
  const s = await generatorPointing(draw, "test", 4);
  assert.ok(s.words > 0);
  assert.equal(s.shapeHits, 1);
  assert.equal(s.colourHits, 0);
  assert.equal(s.hits, 0.5);
});
