/**
 * Where the denoising loop keeps its latents, behind one interface so that the pipeline has one
 * loop: on WebGPU in GPU buffers for the whole run (the UNet reads its input buffer and one WGSL
 * dispatch per step applies guidance and the scheduler; only the final RGBA bytes come back), or
 * on the host with the kernels' TypeScript references (every other backend, an inpainting UNet's
 * wider input, and the benchmark's baseline). The word maps' sum over the steps (return_attention)
 * is kept the same way: `mapSum`.
 */
import type { Tensor } from "../../core/backend.ts";
import type { SessionRegistry } from "../../core/sessions.ts";
import { readBuffer, storageBuffer } from "../../kernels/gpu.ts";
import {
  addWordMapsCpu,
  sumLength,
  type WordMapLayout,
  WordMapSum,
} from "../../kernels/word_maps.ts";
import {
  GpuDenoiser,
  IDENTITY,
  initReference,
  type Inpaint,
  type LoopShape,
  type StepParams,
  stepReference,
  toRgbaGpu,
  toRgbaReference,
} from "../../kernels/denoise.ts";

export interface Denoiser {
  readonly where: "gpu-resident" | "host";
  /** The UNet's `sample` input for the coming step. */
  sample(): Tensor;
  /** The latents and the raw model output before `step` moves them (a preview reads these). */
  peek(modelOut: Tensor): Promise<{ latents: Float32Array; modelOut: Float32Array }>;
  /** Guidance and one scheduler step, in place. */
  step(modelOut: Tensor, p: StepParams): Promise<void>;
  /** After the last step: latents / scaling_factor, [n, C, h, w], the VAE decoder's input. */
  decoderInput(): Tensor;
  /** The VAE decoder's output as RGBA bytes, image after image. */
  toRgba(decoded: Tensor): Promise<Uint8Array>;
  destroy(): void;
}

export interface DenoiserSetup {
  shape: LoopShape;
  /** [batch, C, h, w] of the UNet's input (batch = 2n when guiding). */
  dims: number[];
  /** Initial latents: initAlpha · known + initSigma · noise, scaled by scaleFirst for the UNet. */
  init: { alpha: number; sigma: number; scaleFirst: number };
  inpaint?: Inpaint;
  /** An inpainting UNet's extra input channels per image (mask, masked-image latents). */
  extra?: Float32Array;
}

const hostData = async (t: Tensor) =>
  (t.location === "gpu-buffer" ? await t.getData(true) : t.data) as Float32Array;

export class GpuResidentDenoiser implements Denoiser {
  readonly where = "gpu-resident";
  #loop: GpuDenoiser;

  constructor(
    private gpu: GPUDevice,
    private sessions: SessionRegistry,
    private s: DenoiserSetup,
  ) {
    this.#loop = new GpuDenoiser(gpu, s.shape, s.inpaint);
    this.#loop.init(s.init.alpha, s.init.sigma, s.init.scaleFirst);
  }

  #view(dims: number[]): Tensor {
    return this.sessions.backend.ort.Tensor.fromGpuBuffer(this.#loop.unetIn, {
      dataType: "float32",
      dims,
    });
  }

  sample(): Tensor {
    return this.#view(this.s.dims);
  }

  async peek(modelOut: Tensor) {
    const { images, perImage } = this.s.shape, batch = this.s.dims[0];
    const [latents, out] = await Promise.all([
      readBuffer(this.gpu, this.#loop.latents, images * perImage * 4),
      readBuffer(this.gpu, modelOut.gpuBuffer as GPUBuffer, batch * perImage * 4),
    ]);
    return { latents: new Float32Array(latents), modelOut: new Float32Array(out) };
  }

  async step(modelOut: Tensor, p: StepParams): Promise<void> {
    this.#loop.step(modelOut.gpuBuffer as GPUBuffer, p);
    await this.gpu.queue.onSubmittedWorkDone();
    modelOut.dispose();
  }

  decoderInput(): Tensor {
    // The first n images of the UNet's input buffer hold the scaled latents after the last step.
    return this.#view([this.s.shape.images, ...this.s.dims.slice(1)]);
  }

  async toRgba(decoded: Tensor): Promise<Uint8Array> {
    const px = decoded.dims[2] * decoded.dims[3];
    const gpu = decoded.gpuBuffer as GPUBuffer;
    const rgba = await toRgbaGpu(this.gpu, gpu, this.s.shape.images, 3, px);
    decoded.dispose();
    return rgba;
  }

  destroy(): void {
    this.#loop.destroy();
  }
}

export class HostDenoiser implements Denoiser {
  readonly where = "host";
  #latents: Float32Array;
  #unetIn: Float32Array;
  /** The model output last read to the host (a preview and the step read the same one). */
  #read?: { tensor: Tensor; data: Float32Array };

  constructor(private sessions: SessionRegistry, private s: DenoiserSetup) {
    const { latents, unetIn } = initReference(
      s.shape,
      s.init.alpha,
      s.init.sigma,
      s.init.scaleFirst,
      s.inpaint?.known,
    );
    this.#latents = latents;
    this.#unetIn = unetIn;
  }

  sample(): Tensor {
    const { extra, dims, shape } = this.s;
    if (!extra) return this.sessions.tensor("float32", this.#unetIn, dims);
    const [batch, C, h, w] = dims, per = shape.perImage, wide = per + extra.length;
    const input = new Float32Array(batch * wide);
    for (let b = 0; b < batch; b++) {
      input.set(this.#unetIn.subarray(b * per, (b + 1) * per), b * wide);
      input.set(extra, b * wide + per);
    }
    return this.sessions.tensor("float32", input, [batch, C + extra.length / (h * w), h, w]);
  }

  async #host(t: Tensor): Promise<Float32Array> {
    if (this.#read?.tensor !== t) this.#read = { tensor: t, data: await hostData(t) };
    return this.#read.data;
  }

  async peek(modelOut: Tensor) {
    return { latents: this.#latents.slice(), modelOut: await this.#host(modelOut) };
  }

  async step(modelOut: Tensor, p: StepParams): Promise<void> {
    const out = await this.#host(modelOut);
    stepReference(this.s.shape, p, out, this.#latents, this.#unetIn, this.s.inpaint);
  }

  decoderInput(): Tensor {
    const { images, perImage } = this.s.shape;
    return this.sessions.tensor("float32", this.#unetIn.slice(0, images * perImage), [
      images,
      ...this.s.dims.slice(1),
    ]);
  }

  async toRgba(decoded: Tensor): Promise<Uint8Array> {
    const px = decoded.dims[2] * decoded.dims[3];
    return toRgbaReference(await hostData(decoded), this.s.shape.images, 3, px, IDENTITY);
  }

  destroy(): void {}
}

/** The word maps' sum over the denoising steps (kernels/word_maps.ts). */
export interface MapSum {
  /** Adds one UNet call's `attention_maps` [batch, tokens, h, w] (it stays the caller's). */
  add(maps: Tensor): Promise<void>;
  /** The sum, [images, words, h, w]. */
  read(): Promise<Float32Array>;
  destroy(): void;
}

/** The sum on the GPU where the loop is GPU-resident (`gpu`), else on the host. */
export function mapSum(gpu: GPUDevice | null, layout: WordMapLayout): MapSum {
  if (!gpu) {
    const sum = new Float32Array(sumLength(layout));
    return {
      add: async (maps) => addWordMapsCpu(layout, await hostData(maps), sum),
      read: () => Promise.resolve(sum),
      destroy: () => {},
    };
  }
  const sum = new WordMapSum(gpu, layout);
  return {
    add: async (maps) => {
      if (maps.location === "gpu-buffer") return sum.add(maps.gpuBuffer as GPUBuffer);
      const upload = storageBuffer(gpu, (maps.data as Float32Array<ArrayBuffer>).slice());
      sum.add(upload);
      await gpu.queue.onSubmittedWorkDone();
      upload.destroy();
    },
    read: () => sum.read(),
    destroy: () => sum.destroy(),
  };
}
