import assert from "node:assert/strict";
import sharp from "sharp";
import { ApiError } from "./errors.ts";
import { decodeImage, encodePng, imageBytesFromString, readImageHeader } from "./image.ts";

const LIMITS = { maxPixels: 4096 * 4096 };

/** A w × h image whose left half is red and right half blue, encoded in `format`. */
async function halves(
  w: number,
  h: number,
  format: "png" | "jpeg" | "webp" | "gif",
  orientation?: number,
) {
  const raw = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) raw.set(x < w / 2 ? [220, 40, 40] : [40, 80, 220], (y * w + x) * 3);
  }
  let img = sharp(raw, { raw: { width: w, height: h, channels: 3 } }).toFormat(format, {
    quality: 95,
  });
  if (orientation) img = img.withMetadata({ orientation });
  return new Uint8Array(await img.toBuffer());
}

/** A PNG signature and IHDR claiming w × h, followed by nothing: a decompression bomb's header. */
function pngHeader(w: number, h: number): Uint8Array {
  const b = new Uint8Array(33);
  b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
  new DataView(b.buffer).setUint32(16, w);
  new DataView(b.buffer).setUint32(20, h);
  b.set([8, 2, 0, 0, 0], 24);
  return b;
}

async function rejects(p: Promise<unknown>, code: string) {
  await assert.rejects(p, (e: unknown) => e instanceof ApiError && e.code === code);
}

for (const format of ["png", "jpeg", "webp", "gif"] as const) {
  Deno.test(`readImageHeader() reads ${format} dimensions without decoding`, async () => {
    const bytes = await halves(37, 23, format);
    assert.deepEqual(readImageHeader(bytes), { format, width: 37, height: 23 });
  });
  Deno.test(`decodeImage() decodes ${format} to RGB`, async () => {
    const img = await decodeImage(await halves(32, 16, format), LIMITS);
    assert.equal(img.width, 32);
    assert.equal(img.height, 16);
    assert.equal(img.data.length, 32 * 16 * 3);
    const at = (
      x: number,
      y: number,
    ) => [...img.data.subarray((y * 32 + x) * 3, (y * 32 + x) * 3 + 3)];
    const near = (a: number[], b: number[]) => a.every((v, i) => Math.abs(v - b[i]) < 40);
    assert.ok(near(at(2, 8), [220, 40, 40]), `left is red, got ${at(2, 8)}`);
    assert.ok(near(at(29, 8), [40, 80, 220]), `right is blue, got ${at(29, 8)}`);
  });
}

Deno.test("decodeImage() applies EXIF orientation (6: rotate 90° clockwise)", async () => {
  const img = await decodeImage(await halves(40, 20, "jpeg", 6), LIMITS);
  assert.equal(img.width, 20);
  assert.equal(img.height, 40);
  const r = (x: number, y: number) => img.data[(y * 20 + x) * 3];
  assert.ok(r(10, 5) > 150, "the stored left half (red) is on top");
  assert.ok(r(10, 35) < 100, "the stored right half (blue) is at the bottom");
});

Deno.test("decodeImage() keeps the first frame of an animated GIF", async () => {
  const frames = new Uint8Array(8 * 16 * 4);
  for (let i = 0; i < 8 * 8; i++) frames.set([255, 0, 0, 255], i * 4); // frame 1 red
  for (let i = 8 * 8; i < 8 * 16; i++) frames.set([0, 0, 255, 255], i * 4); // frame 2 blue
  const gif = await sharp(frames, {
    raw: { width: 8, height: 16, channels: 4, pageHeight: 8 },
    animated: true,
  })
    .gif().toBuffer();
  const img = await decodeImage(new Uint8Array(gif), LIMITS);
  assert.equal(img.height, 8);
  assert.ok(img.data[0] > 200 && img.data[2] < 50, "first frame is red");
});

Deno.test("decodeImage() drops alpha and expands grey", async () => {
  const grey = await sharp(new Uint8Array(16).fill(77), {
    raw: { width: 4, height: 4, channels: 1 },
  }).png().toBuffer();
  const g = await decodeImage(new Uint8Array(grey), LIMITS);
  assert.deepEqual([...g.data.subarray(0, 3)], [77, 77, 77]);
  const rgba = await sharp(new Uint8Array(64).fill(200), {
    raw: { width: 4, height: 4, channels: 4 },
  }).png().toBuffer();
  assert.equal((await decodeImage(new Uint8Array(rgba), LIMITS)).data.length, 4 * 4 * 3);
});

Deno.test("decodeImage() answers a 20000 × 20000 header with image_too_large before decoding", async () => {
  const bomb = pngHeader(20000, 20000);
  assert.ok(bomb.length < 100);
  await rejects(decodeImage(bomb, LIMITS), "image_too_large");
});

Deno.test("decodeImage() rejects truncated, empty-dimension and non-image bytes as invalid_image", async () => {
  const png = await halves(64, 64, "png");
  await rejects(decodeImage(png.slice(0, png.length / 2), LIMITS), "invalid_image");
  for (const format of ["png", "jpeg", "webp", "gif"] as const) {
    const bytes = await halves(64, 64, format);
    await assert.rejects(decodeImage(bytes.slice(0, bytes.length / 2), LIMITS), (e: ApiError) => {
      assert.match(e.message, /damaged or cut short/);
      assert.doesNotMatch(e.message, /vips|lib|read error|jpeg:|gif:/i, "no decoder wording");
      return true;
    });
  }
  await rejects(decodeImage(pngHeader(0, 10), LIMITS), "invalid_image");
  await rejects(
    decodeImage(new TextEncoder().encode("hello, I am not an image"), LIMITS),
    "invalid_image",
  );
  await rejects(decodeImage(new Uint8Array([0xff, 0xd8, 0xff]), LIMITS), "invalid_image");
});

Deno.test("imageBytesFromString() takes data URLs, bare base64 and base64url", () => {
  const bytes = new Uint8Array([0x89, 0x50, 0xfb, 0xff]);
  const b64 = bytes.toBase64();
  assert.deepEqual(imageBytesFromString(`data:image/png;base64,${b64}`), bytes);
  assert.deepEqual(imageBytesFromString(b64), bytes);
  assert.deepEqual(imageBytesFromString(bytes.toBase64({ alphabet: "base64url" })), bytes);
  assert.throws(() => imageBytesFromString("data:image/png,rawtext"), ApiError);
  assert.throws(() => imageBytesFromString("not base64 at all!"), ApiError);
  assert.throws(() => imageBytesFromString("https://example.com/cat.png"), /not fetched/);
});

Deno.test("decodeImage() splits RGBA and grey + alpha into RGB and an alpha channel", async () => {
  const rgba = Uint8Array.of(10, 20, 30, 0, 40, 50, 60, 128, 70, 80, 90, 255);
  const png = new Uint8Array(
    await sharp(rgba, { raw: { width: 3, height: 1, channels: 4 } }).png().toBuffer(),
  );
  const img = await decodeImage(png, LIMITS);
  assert.deepEqual([...img.data], [10, 20, 30, 40, 50, 60, 70, 80, 90]);
  assert.deepEqual([...img.alpha!], [0, 128, 255]);
  const greyAlpha = Uint8Array.of(5, 9, 200, 100);
  const png2 = new Uint8Array(
    await sharp(greyAlpha, { raw: { width: 2, height: 1, channels: 2 } }).png().toBuffer(),
  );
  const g = await decodeImage(png2, LIMITS);
  assert.deepEqual([...g.data], [5, 5, 5, 200, 200, 200]);
  assert.deepEqual([...g.alpha!], [9, 100]);
});

Deno.test("decodeImage: a request already cancelled decodes nothing", async () => {
  const png = await encodePng({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 3) });
  const gone = new AbortController();
  gone.abort(new DOMException("The client left", "AbortError"));
  await assert.rejects(
    decodeImage(png, { maxPixels: 1 << 20, signal: gone.signal }),
    { name: "AbortError" },
  );
  const live = new AbortController();
  assert.equal((await decodeImage(png, { maxPixels: 1 << 20, signal: live.signal })).width, 8);
});
