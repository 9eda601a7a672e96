/**
 * Image input: data URLs and base64 to bytes, format and size from the header (before any
 * decoding), and decoding to RGB with EXIF orientation applied. PNG, JPEG, WebP and GIF.
 */
import sharp from "sharp";
// Names sharp's WebAssembly build in the module graph, so that Deno installs it with the rest:
// sharp loads it by itself (`require`) where its native addon cannot load.
import "@img/sharp-wasm32/versions" with { type: "json" };
import { ApiError } from "./errors.ts";

/**
 * Which build of sharp loaded: the native libvips addon, or its WebAssembly build, which sharp
 * falls back to where native addons cannot load (no --allow-ffi: the portable profile). Both
 * decode and resize byte for byte alike (tests/portable_test.ts).
 */
export const imageCodec = {
  name: `libvips ${sharp.versions.vips}`,
  wasm: "emscripten" in sharp.versions,
};

/** An 8-bit RGB image, row-major, 3 bytes a pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
  /** The source's alpha channel, one byte a pixel, when it had one (masks read it). */
  alpha?: Uint8Array;
}

export type ImageFormat = "png" | "jpeg" | "gif" | "webp";
export interface ImageHeader {
  format: ImageFormat;
  width: number;
  height: number;
}

/** Decodes `data:image/...;base64,...` or bare base64 into bytes. */
export function imageBytesFromString(input: string, param = "image"): Uint8Array {
  let b64 = input.trim();
  if (b64.startsWith("data:")) {
    const comma = b64.indexOf(",");
    const meta = b64.slice(5, comma);
    if (comma < 0 || !meta.endsWith(";base64")) {
      throw new ApiError(
        "invalid_image",
        "Image data URL must be base64-encoded (data:image/png;base64,...)",
        param,
      );
    }
    b64 = b64.slice(comma + 1);
  } else if (/^https?:\/\//i.test(b64)) {
    throw new ApiError(
      "invalid_image",
      "Image URLs are not fetched by this server; send the image as a data URL or base64",
      param,
    );
  }
  b64 = b64.replace(/\s+/g, "");
  try {
    const alphabet = /[-_]/.test(b64) ? "base64url" : "base64";
    const bytes = Uint8Array.fromBase64(b64, { alphabet });
    if (bytes.length > 0) return bytes;
  } catch { /* reported below */ }
  throw new ApiError("invalid_image", "Image is neither a data URL nor valid base64", param);
}

const u16be = (b: Uint8Array, i: number) => (b[i] << 8) | b[i + 1];
const u16le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8);
const u24le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16);
const u32be = (b: Uint8Array, i: number) =>
  ((b[i] << 24) >>> 0) + ((b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]);
const ascii = (b: Uint8Array, i: number, n: number) => String.fromCharCode(...b.subarray(i, i + n));

/**
 * Reads format and dimensions from the first bytes of the file, without decoding pixels, or
 * returns null when the bytes are not a supported image (or the header is cut short).
 */
export function readImageHeader(b: Uint8Array): ImageHeader | null {
  if (b.length >= 24 && u32be(b, 0) === 0x89504e47 && ascii(b, 12, 4) === "IHDR") {
    return { format: "png", width: u32be(b, 16), height: u32be(b, 20) };
  }
  if (b.length >= 10 && (ascii(b, 0, 6) === "GIF87a" || ascii(b, 0, 6) === "GIF89a")) {
    return { format: "gif", width: u16le(b, 6), height: u16le(b, 8) };
  }
  if (b.length >= 30 && ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "WEBP") {
    const chunk = ascii(b, 12, 4);
    if (chunk === "VP8X") {
      return { format: "webp", width: u24le(b, 24) + 1, height: u24le(b, 27) + 1 };
    }
    if (chunk === "VP8L" && b[20] === 0x2f) {
      const bits = b[21] | (b[22] << 8) | (b[23] << 16) | (b[24] << 24);
      return { format: "webp", width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
    }
    if (chunk === "VP8 ") {
      return { format: "webp", width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff };
    }
    return null;
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    // Walk the JPEG segments to the first start-of-frame marker.
    let i = 2;
    while (i + 9 < b.length) {
      if (b[i] !== 0xff) return null;
      const marker = b[i + 1];
      if (marker === 0xff) {
        i++;
        continue;
      }
      const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 &&
        marker !== 0xcc;
      if (isSof) return { format: "jpeg", height: u16be(b, i + 5), width: u16be(b, i + 7) };
      i += 2 + u16be(b, i + 2);
    }
  }
  return null;
}

export interface DecodeLimits {
  maxPixels: number;
  /** The client leaving stops the work before the decoder starts and after it ends. */
  signal?: AbortSignal;
}

/**
 * Decodes an image into RGB: EXIF orientation applied, alpha kept aside, grey expanded, first
 * frame of an animation. The pixel count is checked from the header before anything decodes.
 */
export async function decodeImage(
  bytes: Uint8Array,
  { maxPixels, signal }: DecodeLimits,
  param = "image",
): Promise<RgbImage> {
  signal?.throwIfAborted();
  const header = readImageHeader(bytes);
  if (!header) {
    throw new ApiError(
      "invalid_image",
      "Not a supported image: expected PNG, JPEG, WebP or GIF",
      param,
    );
  }
  if (header.width === 0 || header.height === 0) {
    throw new ApiError(
      "invalid_image",
      `Image has a zero dimension (${header.width} × ${header.height})`,
      param,
    );
  }
  if (header.width * header.height > maxPixels) {
    throw new ApiError(
      "image_too_large",
      `Image is ${header.width} × ${header.height} pixels; the limit is ${maxPixels} pixels`,
      param,
    );
  }
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn: "error" })
      .rotate()
      .raw()
      .toBuffer({ resolveWithObject: true });
    signal?.throwIfAborted();
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const hasAlpha = info.channels === 2 || info.channels === 4;
    return {
      width: info.width,
      height: info.height,
      data: toRgb(raw, info.channels),
      ...(hasAlpha ? { alpha: channel(raw, info.channels, info.channels - 1) } : {}),
    };
  } catch (e) {
    if (signal?.aborted) throw e;
    // The decoder's own wording ("vipspng: libpng read error") means nothing to a client.
    throw new ApiError(
      "invalid_image",
      `Cannot decode the ${header.format.toUpperCase()} image: the file is damaged or cut short`,
      param,
    );
  }
}

/**
 * Converts 1 (grey), 2 (grey + alpha), 3 or 4 (RGBA) channel pixels to RGB, dropping alpha. Plain
 * indexed loops: a 4096² RGBA image takes milliseconds (per-pixel `subarray`/`fill` or `filter`
 * with a closure took seconds and blocked the server).
 */
export function toRgb(data: Uint8Array, channels: number): Uint8Array {
  if (channels === 3) return data;
  const n = data.length / channels;
  const out = new Uint8Array(n * 3);
  for (let i = 0, s = 0, d = 0; i < n; i++, s += channels, d += 3) {
    const grey = channels <= 2;
    out[d] = data[s];
    out[d + 1] = data[grey ? s : s + 1];
    out[d + 2] = data[grey ? s : s + 2];
  }
  return out;
}

/** One channel of interleaved pixels. */
function channel(data: Uint8Array, channels: number, c: number): Uint8Array {
  const out = new Uint8Array(data.length / channels);
  for (let i = 0, s = c; i < out.length; i++, s += channels) out[i] = data[s];
  return out;
}

/** Encodes RGB pixels as PNG (for overlays and previews). */
export async function encodePng(img: RgbImage): Promise<Uint8Array> {
  const buf = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .png().toBuffer();
  return new Uint8Array(buf);
}
