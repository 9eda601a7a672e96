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

/** Images larger than this are shrunk to fit it before a map is drawn over them, once per image. */
const shrunk = new WeakMap<RgbImage, Promise<RgbImage>>();
function fitWithin(image: RgbImage, maxSide: number): Promise<RgbImage> {
  if (Math.max(image.width, image.height) <= maxSide) return Promise.resolve(image);
  let done = shrunk.get(image);
  if (!done) {
    const raw = { width: image.width, height: image.height, channels: 3 as const };
    done = sharp(image.data, { raw })
      .resize({ width: maxSide, height: maxSide, fit: "inside" })
      .raw().toBuffer({ resolveWithObject: true })
      .then(({ data, info }) => ({
        width: info.width,
        height: info.height,
        data: new Uint8Array(data),
      }));
    shrunk.set(image, done);
  }
  return done;
}

/**
 * PNG of `image` with `values` (row-major rows × cols) as a heatmap, `alpha` opacity, enlarged by
 * whole pixels so that the short side is at least `minSide` pixels, and never more than `maxSide`
 * on its long side (a larger image is shrunk to fit): the map has a few cells a side, and a
 * 1 × 65536 strip enlarged to a 256-pixel short side was 4 G pixels, which hung the server.
 */
export async function heatmapOverlay(
  source: RgbImage,
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  { alpha = 0.55, minSide = 256, maxSide = 512 } = {},
): Promise<Uint8Array> {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    lo = Math.min(lo, values[i]), hi = Math.max(hi, values[i]);
  }
  const norm = (i: number) => hi > lo ? (values[i] - lo) / (hi - lo) : 0;
  const image = await fitWithin(source, maxSide);
  const scale = Math.max(
    1,
    Math.min(
      Math.ceil(minSide / Math.min(image.width, image.height)),
      Math.floor(maxSide / Math.max(image.width, image.height)),
    ),
  );
  const w = image.width * scale, h = image.height * scale;
  const up = bilinear(norm, rows, cols, w, h);
  // The image enlarged by whole pixels (nearest), so its pixels stay sharp under the map.
  const base = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const src = (Math.floor(y / scale) * image.width + Math.floor(x / scale)) * 3;
      base.set(image.data.subarray(src, src + 3), (y * w + x) * 3);
    }
  }
  const out = new Uint8Array(w * h * 3);
  for (let p = 0; p < w * h; p++) {
    const c = heatColour(up[p]);
    for (let k = 0; k < 3; k++) {
      out[p * 3 + k] = Math.round((1 - alpha) * base[p * 3 + k] + alpha * c[k]);
    }
  }
  return new Uint8Array(
    await sharp(out, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer(),
  );
}

/**
 * Bilinear upsampling of a rows × cols grid (`at(i)`, row-major) to width × height, sampling at
 * pixel centres as image resizers do (align_corners = false); edges clamp.
 */
export function bilinear(
  at: (i: number) => number,
  rows: number,
  cols: number,
  width: number,
  height: number,
): Float32Array {
  const out = new Float32Array(width * height);
  const axis = (n: number, cells: number) =>
    Array.from({ length: n }, (_, i) => {
      const v = Math.min(cells - 1, Math.max(0, ((i + 0.5) * cells) / n - 0.5));
      const i0 = Math.floor(v);
      return [i0, Math.min(cells - 1, i0 + 1), v - i0] as const;
    });
  const xs = axis(width, cols), ys = axis(height, rows);
  for (let y = 0; y < height; y++) {
    const [r0, r1, fy] = ys[y];
    for (let x = 0; x < width; x++) {
      const [c0, c1, fx] = xs[x];
      const top = at(r0 * cols + c0) * (1 - fx) + at(r0 * cols + c1) * fx;
      const bottom = at(r1 * cols + c0) * (1 - fx) + at(r1 * cols + c1) * fx;
      out[y * width + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}
