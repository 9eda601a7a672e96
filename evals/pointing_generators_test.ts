import assert from "node:assert/strict";
import type { Detected } from "../world/judge.ts";
import { findObject, peakIn, promptObjects } from "./pointing_generators.ts";

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
