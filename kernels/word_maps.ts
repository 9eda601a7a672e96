/**
 * DAAM's sum over the denoising steps (Tang et al. 2022): each step's UNet gives word maps
 * [batch, tokens, h, w] (its cross-attention to every text token, averaged over heads and blocks:
 * unet/model_attention.onnx); the generator keeps, for the prompt's word tokens only, the sum of
 * the conditional half's maps over the steps: [images, words, h, w]. On WebGPU the sum stays in
 * a GPU buffer and one dispatch a step adds to it (the maps never leave the device until the
 * end); elsewhere `addWordMapsCpu` does the same on the host. Tests compare the two.
 *
 *   const sum = new WordMapSum(device, layout);   // or addWordMapsCpu(layout, maps, host)
 *   sum.add(mapsBuffer);                           // after every UNet call
 *   const maps = await sum.read();                 // [images, words, h, w]
 */
import {
  computePipeline,
  dispatch,
  readBuffer,
  storageBuffer,
  uniformBuffer,
  wgsl,
} from "./gpu.ts";
const source = await wgsl("word_maps.wgsl");

export interface WordMapLayout {
  images: number;
  /** Tokens per map (the padded prompt length) and the word tokens' place among them. */
  tokens: number;
  first: number;
  words: number;
  /** h·w of a map. */
  spatial: number;
  /** The maps hold [uncond; cond] halves (classifier-free guidance): the sum reads the second. */
  guided: boolean;
}

/** Values in the sum: images × words × spatial. */
export const sumLength = (l: WordMapLayout) => l.images * l.words * l.spatial;

/** Where the conditional maps start in one step's maps, in values. */
const offsetOf = (l: WordMapLayout) => l.guided ? l.images * l.tokens * l.spatial : 0;

/** The reference: adds one step's maps (`maps`, the UNet's output) to `sum`, in place. */
export function addWordMapsCpu(l: WordMapLayout, maps: ArrayLike<number>, sum: Float32Array): void {
  const offset = offsetOf(l);
  for (let image = 0; image < l.images; image++) {
    for (let w = 0; w < l.words; w++) {
      const from = offset + (image * l.tokens + l.first + w) * l.spatial;
      const to = (image * l.words + w) * l.spatial;
      for (let px = 0; px < l.spatial; px++) sum[to + px] += maps[from + px];
    }
  }
}

const compiled = new WeakMap<GPUDevice, GPUComputePipeline>();

/** The running sum in a GPU buffer; `add` reads a step's maps where ORT left them. */
export class WordMapSum {
  readonly #sum: GPUBuffer;
  readonly #params: GPUBuffer;
  readonly #pipeline: GPUComputePipeline;

  constructor(readonly device: GPUDevice, readonly layout: WordMapLayout) {
    let p = compiled.get(device);
    if (!p) compiled.set(device, p = computePipeline(device, source, "main"));
    this.#pipeline = p;
    this.#sum = storageBuffer(device, sumLength(layout) * 4); // zeroed at creation
    const l = layout;
    this.#params = uniformBuffer(
      device,
      Uint32Array.from([sumLength(l), l.spatial, l.words, l.tokens, l.first, offsetOf(l)]).buffer,
    );
  }

  /** Adds one step's maps ([batch, tokens, h, w] floats in a GPU buffer). */
  add(maps: GPUBuffer): void {
    const count = sumLength(this.layout);
    if (count > 0) dispatch(this.device, this.#pipeline, [this.#params, maps, this.#sum], count);
  }

  /** The sum so far, [images, words, h, w]. */
  async read(): Promise<Float32Array> {
    const n = sumLength(this.layout);
    return n
      ? new Float32Array(await readBuffer(this.device, this.#sum, n * 4))
      : new Float32Array();
  }

  destroy(): void {
    this.#sum.destroy();
    this.#params.destroy();
  }
}
