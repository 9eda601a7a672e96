/**
 * Attention heatmaps: a rows × cols map, upsampled bilinearly over the image, coloured (blue →
 * red) and blended with it, as in the figures of Show, Attend and Tell.
 */
import sharp from "sharp";
import type { RgbImage } from "./image.ts";

/** Blue (low) → cyan → yellow → red (high), for t in [0, 1]. */
export function heatColour(t: number): [number, number, number] {
  const stops: Array<[number, number, number]> = [[0, 0, 255], [0, 255, 255], [255, 255, 0], [
    255,
    0,
    0,
  ]];
  const x = Math.min(0.9999, Math.max(0, t)) * (stops.length - 1);
  const i = Math.floor(x), f = x - i;
  return [0, 1, 2].map((c) => Math.round(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]))) as [
    number,
    number,
    number,
  ];
}

/**
 * PNG of `image` with `values` (row-major rows × cols) as a heatmap, `alpha` opacity, enlarged so
 * that the short side is at least `minSide` pixels.
 */
export async function heatmapOverlay(
  image: RgbImage,
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  { alpha = 0.55, minSide = 256 } = {},
): Promise<Uint8Array> {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    lo = Math.min(lo, values[i]), hi = Math.max(hi, values[i]);
  }
  const grid = Uint8Array.from(
    { length: rows * cols },
    (_, i) => hi > lo ? Math.round(((values[i] - lo) / (hi - lo)) * 255) : 0,
  );
  const scale = Math.max(1, Math.ceil(minSide / Math.min(image.width, image.height)));
  const w = image.width * scale, h = image.height * scale;
  const up = await sharp(grid, { raw: { width: cols, height: rows, channels: 1 } })
    .resize({ width: w, height: h, fit: "fill", kernel: "linear" })
    .raw()
    .toBuffer();
  const base = await sharp(image.data, {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .resize({ width: w, height: h, kernel: "nearest" })
    .raw()
    .toBuffer();
  const out = new Uint8Array(w * h * 3);
  for (let p = 0; p < w * h; p++) {
    const c = heatColour(up[p] / 255);
    for (let k = 0; k < 3; k++) {
      out[p * 3 + k] = Math.round((1 - alpha) * base[p * 3 + k] + alpha * c[k]);
    }
  }
  return new Uint8Array(
    await sharp(out, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer(),
  );
}
