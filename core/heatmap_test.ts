import assert from "node:assert/strict";
import sharp from "sharp";
import { bilinear, heatmapOverlay } from "./heatmap.ts";
import { argmax, cellHeat } from "../tests/heat.ts";

Deno.test("heatmapOverlay() is hottest where the weights peak, over the whole image", async () => {
  const image = { width: 64, height: 48, data: new Uint8Array(64 * 48 * 3).fill(128) };
  for (const [rows, cols, peak] of [[8, 8, 21], [6, 8, 47], [4, 4, 0]]) {
    const w = new Float32Array(rows * cols).fill(0.01);
    w[peak] = 1;
    const png = await heatmapOverlay(image, w, rows, cols);
    const meta = await sharp(png).metadata();
    assert.deepEqual([meta.width, meta.height, meta.channels], [64 * 6, 48 * 6, 3]);
    const heat = await cellHeat(png, image, rows, cols);
    assert.equal(argmax(heat), peak, `${rows}×${cols}`);
    // Far from the peak the map is cold: no bands across the width.
    const far = heat.filter((_, i) =>
      Math.abs(Math.floor(i / cols) - Math.floor(peak / cols)) > 1 &&
      Math.abs((i % cols) - (peak % cols)) > 1
    );
    assert.ok(Math.max(...far) < 0.05, `cold away from the peak: ${Math.max(...far)}`);
  }
});

Deno.test("bilinear() keeps cell centres and interpolates between them", () => {
  const grid = [0, 1, 2, 3]; // 2 × 2
  const up = bilinear((i) => grid[i], 2, 2, 4, 4);
  assert.equal(up[0], 0); // corner clamps to the first cell
  assert.equal(up[15], 3);
  assert.ok(Math.abs(up[1] - 0.25) < 1e-6); // x = 1.5 px → 0.25 of the way to the next cell
});
