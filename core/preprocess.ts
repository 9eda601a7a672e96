/**
 * Image preprocessing as a model's `preprocessor_config.json` describes it (the HF image
 * processor fields): resize (shortest edge or fixed size), center crop, rescale, normalize,
 * to a CHW float tensor. Resampling matches Pillow's through libvips' affine interpolators, as
 * `@huggingface/transformers` does in Node, so both give the same pixels.
 */
import sharp from "sharp";
import type { RgbImage } from "./image.ts";

type SizeSpec = number | {
  shortest_edge?: number;
  longest_edge?: number;
  height?: number;
  width?: number;
};

export interface ProcessorConfig {
  image_processor_type?: string;
  feature_extractor_type?: string;
  do_resize?: boolean;
  size?: SizeSpec;
  resample?: number;
  do_center_crop?: boolean;
  crop_size?: number | { height: number; width: number };
  do_rescale?: boolean;
  rescale_factor?: number;
  do_normalize?: boolean;
  image_mean?: number[] | number;
  image_std?: number[] | number;
}

/** Pillow's resample codes → libvips interpolators (box and hamming fall back to bilinear). */
const INTERPOLATORS: Record<number, "nearest" | "bilinear" | "bicubic"> = {
  0: "nearest",
  2: "bilinear",
  3: "bicubic",
  4: "bilinear",
  5: "bilinear",
};

/**
 * The (width, height) an image resizes to under `size`. A bare number means what HF's Python
 * processors make of it (get_size_dict): the shortest edge for CLIP-style processors
 * (`squareDefault` false), a square for the others (ViT, ...). transformers.js 4.3 reads it as
 * shortest and longest edge at once, which shrinks non-square images inside a CLIP crop; we
 * follow the Python behaviour the public checkpoints were trained and evaluated with.
 */
export function resizeTarget(
  width: number,
  height: number,
  size: SizeSpec,
  squareDefault = false,
): [number, number] {
  const spec = typeof size !== "number"
    ? size
    : squareDefault
    ? { height: size, width: size }
    : { shortest_edge: size };
  if (spec.shortest_edge !== undefined || spec.longest_edge !== undefined) {
    const up = spec.shortest_edge === undefined
      ? 1
      : Math.max(spec.shortest_edge / width, spec.shortest_edge / height);
    const w = width * up, h = height * up;
    const down = spec.longest_edge === undefined
      ? 1
      : Math.min(spec.longest_edge / w, spec.longest_edge / h);
    // Rounded to 2 decimals first, so that 223.99999 becomes 224, not 223.
    return [Math.floor(Number((w * down).toFixed(2))), Math.floor(Number((h * down).toFixed(2)))];
  }
  if (spec.width !== undefined && spec.height !== undefined) return [spec.width, spec.height];
  throw new RangeError(`Unsupported "size" in preprocessor config: ${JSON.stringify(size)}`);
}

export async function resize(
  img: RgbImage,
  width: number,
  height: number,
  resample = 2,
): Promise<RgbImage> {
  if (img.width === width && img.height === height) return img;
  const interpolator = INTERPOLATORS[resample];
  const raw = { width: img.width, height: img.height, channels: 3 as const };
  const pipeline = interpolator
    ? sharp(img.data, { raw }).affine([width / img.width, 0, 0, height / img.height], {
      interpolator,
    })
    : sharp(img.data, { raw }).resize({ width, height, fit: "fill", kernel: "lanczos3" });
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

/**
 * A shortest-edge resize followed by a center crop keeps only the middle of the resized image.
 * When that image would be much larger than the crop (a 1 × 65536 strip resizes to 64 × 4 M),
 * resize only the source region that survives the crop (with a few pixels of margin for the
 * filter) to the same scale: the crop's pixels are as good, and the work stays bounded by the
 * crop. Null when the plain path is cheap (then it is taken, exactly as the HF processors do).
 */
export function cropBeforeResize(
  img: { width: number; height: number },
  width: number,
  height: number,
  cropWidth: number,
  cropHeight: number,
): { region: [number, number, number, number]; width: number; height: number } | null {
  if (width * height <= 4 * cropWidth * cropHeight) return null;
  const axis = (size: number, target: number, keep: number) => {
    const scale = size / target, margin = Math.ceil(2 * Math.max(1, scale));
    const first = Math.max(0, (target - keep) / 2);
    const start = Math.max(0, Math.floor(first * scale) - margin);
    const end = Math.min(size, Math.ceil((first + Math.min(keep, target)) * scale) + margin);
    return [start, end - start, Math.max(1, Math.round((end - start) / scale))] as const;
  };
  const [x, w, outW] = axis(img.width, width, cropWidth);
  const [y, h, outH] = axis(img.height, height, cropHeight);
  return { region: [x, y, w, h], width: outW, height: outH };
}

function regionOf(img: RgbImage, [x, y, w, h]: [number, number, number, number]): RgbImage {
  if (x === 0 && y === 0 && w === img.width && h === img.height) return img;
  const data = new Uint8Array(w * h * 3);
  for (let r = 0; r < h; r++) {
    data.set(
      img.data.subarray(((y + r) * img.width + x) * 3, ((y + r) * img.width + x + w) * 3),
      r * w * 3,
    );
  }
  return { width: w, height: h, data };
}

/** Center crop; where the crop is larger than the image, the border is black. */
export function centerCrop(img: RgbImage, width: number, height: number): RgbImage {
  if (img.width === width && img.height === height) return img;
  const left = Math.floor((img.width - width) / 2), top = Math.floor((img.height - height) / 2);
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= img.height) continue;
    for (let x = 0; x < width; x++) {
      const sx = x + left;
      if (sx < 0 || sx >= img.width) continue;
      const s = (sy * img.width + sx) * 3, d = (y * width + x) * 3;
      out[d] = img.data[s], out[d + 1] = img.data[s + 1], out[d + 2] = img.data[s + 2];
    }
  }
  return { width, height, data: out };
}

/**
 * Runs the whole preprocessing of one image and returns [3, H, W] floats with H and W.
 *
 *   const { data, width, height } = await preprocess(image, config); // data: Float32Array
 */
export async function preprocess(
  image: RgbImage,
  config: ProcessorConfig,
): Promise<{ data: Float32Array; width: number; height: number }> {
  let img = image;
  const crop = config.crop_size ?? 224;
  const [cw, ch] = typeof crop === "number" ? [crop, crop] : [crop.width, crop.height];
  if (config.do_resize ?? true) {
    const clipStyle = /CLIP/.test(
      config.image_processor_type ?? config.feature_extractor_type ?? "",
    );
    const [w, h] = resizeTarget(
      img.width,
      img.height,
      config.size ?? { height: 224, width: 224 },
      !clipStyle,
    );
    const plan = config.do_center_crop ? cropBeforeResize(img, w, h, cw, ch) : null;
    img = plan
      ? await resize(regionOf(img, plan.region), plan.width, plan.height, config.resample ?? 2)
      : await resize(img, w, h, config.resample ?? 2);
  }
  if (config.do_center_crop) img = centerCrop(img, cw, ch);
  const scale = (config.do_rescale ?? true) ? (config.rescale_factor ?? 1 / 255) : 1;
  const channelValues = (v: number[] | number | undefined, fallback: number) =>
    Array.isArray(v) ? v : [v ?? fallback, v ?? fallback, v ?? fallback];
  const normalize = config.do_normalize ?? true;
  const mean = normalize ? channelValues(config.image_mean, 0.5) : [0, 0, 0];
  const std = normalize ? channelValues(config.image_std, 0.5) : [1, 1, 1];
  const plane = img.width * img.height;
  const out = new Float32Array(3 * plane); // [3, H, W]
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      // Same operation order (and float32 rounding) as the HF processors: rescale, then normalize.
      const rescaled = Math.fround(img.data[i * 3 + c] * scale);
      out[c * plane + i] = (rescaled - mean[c]) / std[c];
    }
  }
  return { data: out, width: img.width, height: img.height };
}
