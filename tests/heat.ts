/**
 * Reads a heatmap overlay back (test helper): undoes the blend with the known image and inverts
 * the colour ramp, giving the heat in [0, 1] at each grid cell's centre.
 */
import sharp from "sharp";
import { heatColour } from "../core/heatmap.ts";
import type { RgbImage } from "../core/image.ts";

const RAMP = Array.from({ length: 256 }, (_, i) => heatColour(i / 255));

export async function cellHeat(
  png: Uint8Array,
  image: RgbImage,
  rows: number,
  cols: number,
  alpha = 0.55,
): Promise<Float32Array> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  const scale = info.width / image.width;
  const heatAt = (x: number, y: number) => {
    const p = (y * info.width + x) * info.channels;
    const b = (Math.floor(y / scale) * image.width + Math.floor(x / scale)) * 3;
    const c = [0, 1, 2].map((k) => (data[p + k] - (1 - alpha) * image.data[b + k]) / alpha);
    let best = 0, dist = Infinity;
    for (const [i, r] of RAMP.entries()) {
      const d = (r[0] - c[0]) ** 2 + (r[1] - c[1]) ** 2 + (r[2] - c[2]) ** 2;
      if (d < dist) best = i, dist = d;
    }
    return best / 255;
  };
  // Read at each cell's centre (the mean of the pixels around it), where the map is the cell's own.
  return Float32Array.from({ length: rows * cols }, (_, cell) => {
    const cx = ((cell % cols) + 0.5) * info.width / cols - 0.5;
    const cy = (Math.floor(cell / cols) + 0.5) * info.height / rows - 0.5;
    const xs = [Math.floor(cx), Math.ceil(cx)], ys = [Math.floor(cy), Math.ceil(cy)];
    return ys.flatMap((y) => xs.map((x) => heatAt(x, y))).reduce((a, b) => a + b) / 4;
  });
}

export const argmax = (xs: ArrayLike<number>) =>
  Array.from(xs).reduce((best, v, i, all) => v > all[best] ? i : best, 0);
