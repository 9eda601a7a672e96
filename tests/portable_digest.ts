/** What both sides of the portable parity test digest: decoded pixels, alpha, CLIP's input. */
import { decodeImage } from "../core/image.ts";
import { preprocess, type ProcessorConfig } from "../core/preprocess.ts";

const processor: ProcessorConfig = JSON.parse(
  await Deno.readTextFile(
    new URL("../models/embedded/clip-tiny/preprocessor_config.json", import.meta.url),
  ),
);
// A second processor that enlarges and crops off-centre sizes (CLIP's 224 from a 64 px scene).
const large: ProcessorConfig = { ...processor, size: { shortest_edge: 224 }, crop_size: 224 };

const sha = async (b: ArrayBufferView) =>
  new Uint8Array(
    await crypto.subtle.digest(
      "SHA-256",
      new Uint8Array(b.buffer, b.byteOffset, b.byteLength).slice(),
    ),
  ).toHex();

export async function digests(bytes: Uint8Array) {
  const img = await decodeImage(bytes, { maxPixels: 1 << 24 });
  return {
    size: `${img.width}x${img.height}`,
    rgb: await sha(img.data),
    alpha: img.alpha ? await sha(img.alpha) : null,
    clip: await sha((await preprocess(img, processor)).data),
    clip224: await sha((await preprocess(img, large)).data),
  };
}
