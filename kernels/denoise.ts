/**
 * The denoising loop's kernels: initial latents, one fused scheduler step (classifier-free
 * guidance + the scheduler's affine update + fresh noise + the inpainting blend), and planar
 * float images → RGBA8. Each has a TypeScript reference (what the CPU backends run) and a WGSL
 * version that works in place on GPU buffers, so that on WebGPU the latents stay on the device
 * between UNet calls. Tests run both on the software adapter and compare.
 *
 * Layout: latents [images, C, H, W]; the UNet input holds them scaled, twice when guiding
 * ([uncond; cond] halves, which is also how the model output comes back).
 */
import {
  computePipeline,
  dispatch,
  readBuffer,
  storageBuffer,
  uniformBuffer,
  wgsl,
} from "./gpu.ts";
import { gaussian, RANDOM_WGSL } from "./random.ts";
const denoiseSource = await wgsl("denoise.wgsl");
const rgbaSource = await wgsl("to_rgba.wgsl");

/** Noise streams: the initial latents draw stream 0, step k stream k + 1. */
export const INIT_STREAM = 0;
export const KNOWN_STREAM = 0xffffffff;

export interface LoopShape {
  images: number;
  /** C·H·W of one image's latents. */
  perImage: number;
  /** H·W. */
  spatial: number;
  /** Image j draws its noise from seed + j. */
  seed: number;
  /** Classifier-free guidance: the UNet runs on [uncond; cond]. */
  guided: boolean;
}

export interface StepParams {
  a: number;
  b: number;
  c: number;
  guidance: number;
  /** Scale of the UNet input at the next step. */
  scaleNext: number;
  knownAlpha: number;
  knownSigma: number;
  stream: number;
}

/** Known latents (x0 of the input image, [C, H, W]) and a mask ([H, W], 1 = repaint). */
export interface Inpaint {
  known: Float32Array<ArrayBuffer>;
  mask?: Float32Array<ArrayBuffer>;
}

// ------------------------------------------------------------------ references

function writeInput(
  s: LoopShape,
  i: number,
  x: number,
  latents: Float32Array,
  unetIn: Float32Array,
  scale: number,
) {
  latents[i] = x;
  unetIn[i] = x * scale;
  if (s.guided) unetIn[s.images * s.perImage + i] = x * scale;
}

/** Initial latents: initAlpha · known + initSigma · noise; returns latents and UNet input. */
export function initReference(
  s: LoopShape,
  initAlpha: number,
  initSigma: number,
  scaleFirst: number,
  known?: Float32Array,
): { latents: Float32Array; unetIn: Float32Array } {
  const count = s.images * s.perImage;
  const latents = new Float32Array(count);
  const unetIn = new Float32Array(s.guided ? 2 * count : count);
  for (let i = 0; i < count; i++) {
    const image = Math.floor(i / s.perImage), j = i % s.perImage;
    let x = Math.fround(initSigma * gaussian(s.seed + image, INIT_STREAM, j));
    if (initAlpha !== 0 && known) x += initAlpha * known[j];
    writeInput(s, i, x, latents, unetIn, scaleFirst);
  }
  return { latents, unetIn };
}

/** One fused step, in place on `latents` and `unetIn`. */
export function stepReference(
  s: LoopShape,
  p: StepParams,
  modelOut: Float32Array,
  latents: Float32Array,
  unetIn: Float32Array,
  inpaint?: Inpaint,
): void {
  const count = s.images * s.perImage;
  for (let i = 0; i < count; i++) {
    const image = Math.floor(i / s.perImage), j = i % s.perImage;
    let out = modelOut[i];
    if (s.guided) out = out + p.guidance * (modelOut[count + i] - out);
    let x = p.a * latents[i] + p.b * out;
    if (p.c !== 0) x += p.c * gaussian(s.seed + image, p.stream, j);
    if (inpaint?.mask) {
      const m = inpaint.mask[j % s.spatial];
      const k = p.knownAlpha * inpaint.known[j] +
        p.knownSigma * gaussian(s.seed + image, KNOWN_STREAM, j);
      x = m * x + (1 - m) * k;
    }
    writeInput(s, i, x, latents, unetIn, p.scaleNext);
  }
}

/** A 3 × C colour matrix and bias: identity for decoded images. */
export interface ColourMap {
  m: number[][];
  bias: number[];
}
export const IDENTITY: ColourMap = { m: [[1, 0, 0], [0, 1, 0], [0, 0, 1]], bias: [0, 0, 0] };

/** Planar [images, C, H, W] floats in [-1, 1] (after the map) → RGBA8 bytes [images, H, W, 4]. */
export function toRgbaReference(
  src: Float32Array,
  images: number,
  channels: number,
  pixels: number,
  map: ColourMap = IDENTITY,
): Uint8Array {
  const out = new Uint8Array(images * pixels * 4);
  for (let b = 0; b < images; b++) {
    for (let k = 0; k < pixels; k++) {
      const o = (b * pixels + k) * 4;
      for (let r = 0; r < 3; r++) {
        let v = map.bias[r];
        for (let ch = 0; ch < channels; ch++) {
          v += map.m[r][ch] * src[(b * channels + ch) * pixels + k];
        }
        const x = Math.min(Math.max((v + 1) * 0.5, 0), 1);
        out[o + r] = Math.floor(x * 255 + 0.5);
      }
      out[o + 3] = 255;
    }
  }
  return out;
}

// ------------------------------------------------------------------ WebGPU

interface Pipelines {
  init: GPUComputePipeline;
  step: GPUComputePipeline;
  rgba: GPUComputePipeline;
}
const compiled = new WeakMap<GPUDevice, Pipelines>();

function pipelines(device: GPUDevice): Pipelines {
  let p = compiled.get(device);
  if (!p) {
    const code = RANDOM_WGSL + denoiseSource;
    p = {
      init: computePipeline(device, code, "init"),
      step: computePipeline(device, code, "step"),
      rgba: computePipeline(device, rgbaSource, "main"),
    };
    compiled.set(device, p);
  }
  return p;
}

/** The loop's state on the GPU: latents and the UNet input, updated in place each step. */
export class GpuDenoiser {
  readonly latents: GPUBuffer;
  readonly unetIn: GPUBuffer;
  #known: GPUBuffer;
  #mask: GPUBuffer;
  #pipelines: Pipelines;
  #temp: GPUBuffer[] = [];

  constructor(readonly device: GPUDevice, readonly shape: LoopShape, inpaint?: Inpaint) {
    const count = shape.images * shape.perImage;
    this.#pipelines = pipelines(device);
    this.latents = storageBuffer(device, count * 4);
    this.unetIn = storageBuffer(device, (shape.guided ? 2 : 1) * count * 4);
    this.#known = storageBuffer(device, inpaint?.known ?? 16);
    this.#mask = storageBuffer(device, inpaint?.mask ?? 16);
    this.inpainting = Boolean(inpaint?.mask);
  }
  readonly inpainting: boolean;

  #params(p: StepParams): GPUBuffer {
    const s = this.shape;
    const bytes = new ArrayBuffer(64);
    const u = new Uint32Array(bytes), f = new Float32Array(bytes);
    u.set([
      s.images * s.perImage,
      s.perImage,
      s.spatial,
      s.seed >>> 0,
      p.stream >>> 0,
      (s.guided ? 1 : 0) | (this.inpainting ? 2 : 0),
    ]);
    f.set([p.a, p.b, p.c, p.guidance, p.scaleNext, p.knownAlpha, p.knownSigma], 6);
    const buffer = uniformBuffer(this.device, bytes);
    this.#temp.push(buffer);
    return buffer;
  }

  #release() {
    // Uniforms of earlier dispatches are safe to free once the queue has moved past them.
    const old = this.#temp.splice(0, Math.max(0, this.#temp.length - 2));
    for (const b of old) b.destroy();
  }

  init(initAlpha: number, initSigma: number, scaleFirst: number): void {
    const params = this.#params({
      a: initAlpha,
      b: 0,
      c: initSigma,
      guidance: 0,
      scaleNext: scaleFirst,
      knownAlpha: 0,
      knownSigma: 0,
      stream: INIT_STREAM,
    });
    dispatch(this.device, this.#pipelines.init, [
      params,
      null,
      this.latents,
      this.unetIn,
      this.#known,
      null,
    ], this.shape.images * this.shape.perImage);
  }

  step(modelOut: GPUBuffer, p: StepParams): void {
    dispatch(this.device, this.#pipelines.step, [
      this.#params(p),
      modelOut,
      this.latents,
      this.unetIn,
      this.#known,
      this.#mask,
    ], this.shape.images * this.shape.perImage);
    this.#release();
  }

  destroy(): void {
    for (const b of [this.latents, this.unetIn, this.#known, this.#mask, ...this.#temp]) {
      b.destroy();
    }
  }
}

/** RGBA8 bytes of planar [images, C, H, W] floats in a GPU buffer; only the bytes come back. */
export async function toRgbaGpu(
  device: GPUDevice,
  src: GPUBuffer,
  images: number,
  channels: number,
  pixels: number,
  map: ColourMap = IDENTITY,
): Promise<Uint8Array> {
  const bytes = new ArrayBuffer(80);
  new Uint32Array(bytes).set([pixels, images * pixels, channels, 0]);
  const f = new Float32Array(bytes);
  for (let r = 0; r < 3; r++) {
    for (let ch = 0; ch < channels; ch++) f[4 + r * 4 + ch] = map.m[r][ch];
    f[16 + r] = map.bias[r];
  }
  const params = uniformBuffer(device, bytes);
  const dst = storageBuffer(device, images * pixels * 4);
  dispatch(device, pipelines(device).rgba, [params, src, dst], images * pixels);
  const out = new Uint8Array(await readBuffer(device, dst, images * pixels * 4));
  params.destroy();
  dst.destroy();
  return out;
}
