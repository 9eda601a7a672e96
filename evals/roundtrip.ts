/**
 * What a generator's decoder can draw at best: a rendered scene through the generator's own
 * autoencoder and back (sd's VAE: encoder mean → decoder; DALL-E's dVAE: encoder → codebook
 * tokens → decoder), judged like a generated image. No sample of the generator can be more right
 * than this, so it says whether a low score is the denoiser's or transformer's fault or the
 * autoencoder's.
 */
import type { RgbImage } from "../core/image.ts";
import type { SessionRegistry } from "../core/sessions.ts";
import { toRgbaReference } from "../kernels/denoise.ts";
import { rgbaImages, toPlanar } from "../models/images.ts";
import type { ModelEntry } from "../models/manifest.ts";

export type RoundTrip = (img: RgbImage) => Promise<RgbImage>;

/** The generator's round trip, or null when it ships no encoder. */
export async function autoencoderRoundTrip(
  entry: ModelEntry,
  sessions: SessionRegistry,
): Promise<RoundTrip | null> {
  const files = entry.manifest.files;
  const [encoderFile, decoderFile] = entry.manifest.family === "diffusion"
    ? [files.vae_encoder, files.vae_decoder]
    : [files.vqvae_encoder, files.vqvae_decoder];
  if (!encoderFile || !decoderFile) return null;
  const [encoder, decoder] = await Promise.all([
    sessions.load(entry.dir + encoderFile),
    sessions.load(entry.dir + decoderFile),
  ]);
  // A VAE export may return the posterior's mean ‖ logvar: the decoder reads the mean.
  const channels = entry.manifest.family === "diffusion"
    ? JSON.parse(await Deno.readTextFile(entry.dir + "vae_decoder/config.json")).latent_channels ??
      4
    : 0;
  return async (img) => {
    const pixels = sessions.tensor("float32", toPlanar(img), [1, 3, img.height, img.width]);
    const encoded = Object.values(await encoder.run({ [encoder.inputNames[0]]: pixels }))[0];
    const code = channels
      ? sessions.tensor(
        "float32",
        (encoded.data as Float32Array).slice(0, channels * encoded.dims[2] * encoded.dims[3]),
        [1, channels, encoded.dims[2], encoded.dims[3]],
      )
      : encoded;
    const sample = Object.values(await decoder.run({ [decoder.inputNames[0]]: code }))[0];
    const rgba = toRgbaReference(sample.data as Float32Array, 1, 3, img.width * img.height);
    return rgbaImages(rgba, 1, img.width, img.height)[0];
  };
}
