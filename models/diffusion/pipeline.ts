/**
 * The diffusion pipeline, in the Stable Diffusion design: tokenizer + text encoder, a UNet that
 * predicts noise with cross-attention to the text, a scheduler, and a VAE. Text-to-image,
 * img2img (`strength`) and inpainting (`mask`: the kept region is re-noised to each step's level,
 * which works with any UNet). Serves sd-tiny and public SD ONNX exports (text_encoder/, unet/,
 * vae_decoder/, vae_encoder/, scheduler/, tokenizer/) through the same code.
 *
 * On WebGPU the latents live in GPU buffers for the whole loop: the UNet's output stays on the
 * device and one WGSL dispatch per step applies guidance and the scheduler (kernels/denoise.ts);
 * only the final RGBA bytes come back. Other backends run the kernels' TypeScript references.
 *
 * Previews show the image the step predicts (x0 from the latents and the guided model output,
 * through the VAE decoder), not the noisy latents; a `rerank` scorer (CLIP, from the route) keeps
 * the best of n candidates, as the DALL-E pipeline does.
 */
import type { Tokenizer } from "@huggingface/tokenizers";
import { ApiError } from "../../core/errors.ts";
import type { RgbImage } from "../../core/image.ts";
import { loadTokenizer } from "../../core/tokenizers.ts";
import { resize } from "../../core/preprocess.ts";
import type { Outputs, Session, SessionRegistry } from "../../core/sessions.ts";
import type { Tensor } from "../../core/backend.ts";
import { readBuffer } from "../../kernels/gpu.ts";
import {
  GpuDenoiser,
  IDENTITY,
  initReference,
  type Inpaint,
  type LoopShape,
  stepReference,
  toRgbaGpu,
  toRgbaReference,
} from "../../kernels/denoise.ts";
import type { ModelEntry } from "../manifest.ts";
import {
  alphasCumprod,
  defaultScheduler,
  type Plan,
  plan,
  SchedulerConfig,
  type SchedulerName,
  SCHEDULERS,
} from "./schedulers.ts";

export interface GenerateOptions {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  guidance: number;
  /** Image j uses seed + j. */
  seed: number;
  scheduler: SchedulerName;
  width: number;
  height: number;
  n: number;
  /** img2img / inpainting input, and how much of the schedule to run (1: all). */
  image?: RgbImage;
  strength?: number;
  /** Inpainting mask: transparent (alpha 0) or white pixels are repainted. */
  mask?: RgbImage;
  /** How many previews to send while denoising (spread over the steps; 0: none). */
  previews?: number;
  /** Keep the k candidates of n that `score` rates highest (CLIP similarity to the prompt). */
  rerank?: { k: number; score: (images: RgbImage[]) => Promise<number[]> };
  /** Read the latents back every step even on WebGPU (the benchmark's baseline). */
  hostLoop?: boolean;
}

export interface Progress {
  step: number;
  total: number;
  /** RGBA previews of the predicted clean image, one per image. */
  preview?: { width: number; height: number; rgba: Uint8Array[] };
}

export type Timings = {
  text_encoder_ms: number;
  vae_encoder_ms: number;
  unet_ms: number[];
  vae_decoder_ms: number;
  rerank_ms?: number;
  total_ms: number;
};

export interface Generated {
  images: RgbImage[];
  seeds: number[];
  /** CLIP scores of the returned images, when reranked. */
  scores?: number[];
  /** The prompt's tokens (unpadded), for usage. */
  promptTokens: number;
  steps: number;
  scheduler: SchedulerName;
  /** Where the denoising loop kept its latents: on the GPU throughout, or on the host. */
  loop: "gpu-resident" | "host";
  timings: Timings;
}

export interface DiffusionSettings {
  defaultSize: number;
  minSize: number;
  maxSize: number;
  defaultSteps: number;
  maxSteps: number;
  defaultGuidance: number;
  defaultScheduler: SchedulerName;
  /** Width and height must be multiples of this (VAE factor × UNet downsampling). */
  multiple: number;
}

const now = () => performance.now();

/**
 * The steps (1-based, of `total`) after which to send `count` previews: exactly `count`, spread
 * evenly and before the last step while there are enough steps, else one after every step.
 */
export function previewSteps(total: number, count: number): Set<number> {
  if (count <= 0) return new Set();
  if (count >= total) return new Set(Array.from({ length: total }, (_, i) => i + 1));
  return new Set(
    Array.from({ length: count }, (_, j) => Math.round((j + 1) * total / (count + 1))),
  );
}

function toPlanar(img: RgbImage): Float32Array {
  const n = img.width * img.height, out = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) out[c * n + i] = img.data[i * 3 + c] / 127.5 - 1;
  }
  return out;
}

/** Appends the same extra channels to every batch element's latents. */
function withExtra(latents: Float32Array, extra: Float32Array, batch: number, per: number) {
  const out = new Float32Array(batch * (per + extra.length));
  for (let b = 0; b < batch; b++) {
    out.set(latents.subarray(b * per, (b + 1) * per), b * (per + extra.length));
    out.set(extra, b * (per + extra.length) + per);
  }
  return out;
}

function rgbaToRgb(rgba: Uint8Array, width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set(rgba.subarray(i * 4, i * 4 + 3), i * 3);
  return { width, height, data };
}

export class DiffusionPipeline {
  private constructor(
    readonly id: string,
    private sessions: SessionRegistry,
    private tokenizer: Tokenizer,
    private maxTokens: number,
    private padId: number,
    private textEncoder: Session,
    private unet: Session,
    private vaeDecoder: Session,
    private vaeEncoder: Session | null,
    private schedulerConfig: SchedulerConfig,
    private latentChannels: number,
    private vaeFactor: number,
    private scalingFactor: number,
    /** A dedicated inpainting UNet reads 2C + 1 channels: latents, mask, masked-image latents. */
    private inpaintingUnet: boolean,
    readonly settings: DiffusionSettings,
  ) {}

  static async load(entry: ModelEntry, sessions: SessionRegistry): Promise<DiffusionPipeline> {
    const read = async (name: string) => JSON.parse(await Deno.readTextFile(entry.dir + name));
    // Public exports do not all ship the component configs: SD's values are the defaults.
    const optional = (name: string) => read(name).catch(() => ({}));
    const { files, settings: s } = entry.manifest;
    const [tok, schedulerJson, vaeConfig, unetConfig] = await Promise.all([
      loadTokenizer(entry.dir + "tokenizer/"),
      read("scheduler/scheduler_config.json"),
      optional("vae_decoder/config.json"),
      optional("unet/config.json"),
    ]);
    const gpuOutputs = { gpuOutputs: true };
    const [textEncoder, unet, vaeDecoder, vaeEncoder] = await Promise.all([
      sessions.load(entry.dir + files.text_encoder),
      sessions.load(entry.dir + files.unet, gpuOutputs),
      sessions.load(entry.dir + files.vae_decoder, gpuOutputs),
      files.vae_encoder ? sessions.load(entry.dir + files.vae_encoder) : null,
    ]);
    const schedulerConfig = SchedulerConfig.parse(schedulerJson);
    const vaeFactor = 2 ** ((vaeConfig.block_out_channels?.length ?? 4) - 1);
    const unetDown = 2 ** ((unetConfig.block_out_channels?.length ?? 4) - 1);
    const sample = (unetConfig.sample_size ?? 64) * vaeFactor;
    return new DiffusionPipeline(
      entry.manifest.id,
      sessions,
      tok.tokenizer,
      Math.min(tok.config.model_max_length ?? 77, 4096),
      tok.padId,
      textEncoder,
      unet,
      vaeDecoder,
      vaeEncoder,
      schedulerConfig,
      vaeConfig.latent_channels ?? 4,
      vaeFactor,
      vaeConfig.scaling_factor ?? 0.18215,
      (unetConfig.in_channels ?? unet.inputDims("sample")?.[1]) ===
        2 * (vaeConfig.latent_channels ?? 4) + 1,
      {
        defaultSize: Number(s.default_size ?? sample),
        minSize: Number(s.min_size ?? sample / 2),
        maxSize: Number(s.max_size ?? sample * 2),
        defaultSteps: Number(s.default_steps ?? 25),
        maxSteps: Number(s.max_steps ?? 100),
        defaultGuidance: Number(s.default_guidance ?? 7.5),
        defaultScheduler: (s.default_scheduler as SchedulerName) ??
          defaultScheduler(schedulerConfig),
        multiple: vaeFactor * unetDown,
      },
    );
  }

  get schedulers(): readonly SchedulerName[] {
    return SCHEDULERS;
  }

  async warmup(): Promise<void> {
    const size = this.settings.defaultSize;
    await this.generate({
      prompt: "",
      steps: 1,
      guidance: 1,
      seed: 0,
      scheduler: this.settings.defaultScheduler,
      width: size,
      height: size,
      n: 1,
    });
  }

  /** Token ids padded to the encoder's length (as SD pads to 77); too long is a clear 400. */
  #tokens(text: string, param: string): number[] {
    const ids = this.tokenizer.encode(text).ids;
    if (ids.length > this.maxTokens) {
      throw new ApiError(
        "invalid_request",
        `${param} is ${ids.length} tokens long; this model reads at most ${this.maxTokens}`,
        param,
      );
    }
    return [...ids, ...new Array(this.maxTokens - ids.length).fill(this.padId)];
  }

  /** Checks what only the model knows (size multiple, limits); routes check the rest. */
  validate(o: GenerateOptions): void {
    const { minSize, maxSize, multiple, maxSteps } = this.settings;
    for (const [name, v] of [["width", o.width], ["height", o.height]] as const) {
      if (v < minSize || v > maxSize || v % multiple !== 0) {
        throw new ApiError(
          "invalid_request",
          `${name} must be a multiple of ${multiple} between ${minSize} and ${maxSize} for ${this.id}, got ${v}`,
          name === "width" ? "size" : "size",
        );
      }
    }
    if (o.steps > maxSteps) {
      throw new ApiError(
        "invalid_request",
        `num_inference_steps must be at most ${maxSteps} for ${this.id}`,
        "num_inference_steps",
      );
    }
    if (o.rerank && o.rerank.k > o.n) {
      throw new ApiError(
        "invalid_request",
        `rerank (${o.rerank.k}) must not exceed n (${o.n})`,
        "rerank",
      );
    }
    const steps = this.planSteps(o);
    if ((o.previews ?? 0) > steps) {
      throw new ApiError(
        "invalid_request",
        `partial_images (${o.previews}) must not exceed the ${steps} denoising steps this job runs`,
        "partial_images",
      );
    }
    if ((o.image || o.mask) && !this.vaeEncoder) {
      throw new ApiError("unsupported", `${this.id} has no VAE encoder: no img2img or inpainting`);
    }
    if (this.inpaintingUnet && !(o.image && o.mask)) {
      throw new ApiError(
        "unsupported",
        `${this.id} is an inpainting model: send an image and a mask to /v1/images/edits`,
        o.image ? "mask" : "image",
      );
    }
    this.#tokens(o.prompt, "prompt");
    if (o.negativePrompt) this.#tokens(o.negativePrompt, "negative_prompt");
  }

  /** How many denoising steps `o` runs (fewer than `steps` for img2img with strength < 1). */
  planSteps(o: GenerateOptions): number {
    const strength = o.image ? (o.strength ?? (o.mask ? 1 : 0.8)) : 1;
    return Math.min(Math.floor(o.steps * strength), o.steps);
  }

  /** The unpadded token count of the prompt. */
  promptTokens(prompt: string): number {
    return this.tokenizer.encode(prompt).ids.length;
  }

  #alphas: Float64Array | null = null;

  /** x0 = X·x + OUT·out at timestep t: the clean latents a step's model output predicts. */
  #cleanAffine(scheduler: SchedulerName, t: number): { x: number; out: number } {
    this.#alphas ??= alphasCumprod(this.schedulerConfig);
    const at = this.#alphas[t];
    const vpred = this.schedulerConfig.prediction_type === "v_prediction";
    if (scheduler === "euler" || scheduler === "euler_a") { // sigma space: x = x0 + σ·ε
      const s = Math.sqrt((1 - at) / at);
      return vpred ? { x: 1 / (s * s + 1), out: -s / Math.sqrt(s * s + 1) } : { x: 1, out: -s };
    }
    return vpred
      ? { x: Math.sqrt(at), out: -Math.sqrt(1 - at) }
      : { x: 1 / Math.sqrt(at), out: -Math.sqrt(1 - at) / Math.sqrt(at) };
  }

  /** RGBA previews of the clean image predicted from latents x and the raw model output. */
  async #preview(
    o: GenerateOptions,
    shape: LoopShape,
    step: { timestep: number },
    x: Float32Array,
    modelOut: Float32Array,
    inpaint: Inpaint | undefined,
    signal?: AbortSignal,
  ): Promise<NonNullable<Progress["preview"]>> {
    const count = shape.images * shape.perImage;
    const { x: X, out: OUT } = this.#cleanAffine(o.scheduler, step.timestep);
    const latents = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      let out = modelOut[i];
      if (shape.guided) out = out + o.guidance * (modelOut[count + i] - out);
      let x0 = X * x[i] + OUT * out;
      if (inpaint?.mask) {
        const j = i % shape.perImage, m = inpaint.mask[j % shape.spatial];
        x0 = m * x0 + (1 - m) * inpaint.known[j];
      }
      latents[i] = x0 / this.scalingFactor;
    }
    const C = this.latentChannels, h = o.height / this.vaeFactor, w = o.width / this.vaeFactor;
    const decoded = await this.#decode(
      this.sessions.tensor("float32", latents, [o.n, C, h, w]),
      signal,
    );
    const pixels = decoded.location === "gpu-buffer"
      ? await decoded.getData(true) as Float32Array
      : decoded.data as Float32Array;
    const px = o.width * o.height;
    const rgba = toRgbaReference(pixels, o.n, 3, px, IDENTITY);
    return {
      width: o.width,
      height: o.height,
      rgba: Array.from({ length: o.n }, (_, j) => rgba.slice(j * px * 4, (j + 1) * px * 4)),
    };
  }

  async generate(
    o: GenerateOptions,
    onProgress?: (p: Progress) => void | Promise<void>,
    signal?: AbortSignal,
  ): Promise<Generated> {
    this.validate(o);
    const start = now();
    const ort = this.sessions.backend.ort;
    const guided = o.guidance > 1;
    const C = this.latentChannels, h = o.height / this.vaeFactor, w = o.width / this.vaeFactor;
    const shape: LoopShape = {
      images: o.n,
      perImage: C * h * w,
      spatial: h * w,
      seed: o.seed >>> 0,
      guided,
    };
    const count = o.n * shape.perImage;
    const batch = guided ? 2 * o.n : o.n;

    // Text: [uncond × n; cond × n] when guiding, else cond × n.
    let t0 = now();
    const texts = guided ? [o.negativePrompt ?? "", o.prompt] : [o.prompt];
    const ids = texts.map((t, i) =>
      this.#tokens(t, i === 0 && guided ? "negative_prompt" : "prompt")
    );
    const idsType = this.textEncoder.inputType("input_ids") === "int32" ? "int32" : "int64";
    const flat = ids.flat();
    const idsTensor = idsType === "int32"
      ? this.sessions.tensor("int32", Int32Array.from(flat), [texts.length, this.maxTokens])
      : this.sessions.tensor("int64", BigInt64Array.from(flat, BigInt), [
        texts.length,
        this.maxTokens,
      ]);
    const encoded = await this.textEncoder.run({ input_ids: idsTensor }, signal);
    const hidden = encoded.last_hidden_state ?? encoded[this.textEncoder.outputNames[0]];
    const [, L, D] = hidden.dims;
    const hiddenData = hidden.data as Float32Array;
    const context = new Float32Array(batch * L * D);
    for (let b = 0; b < batch; b++) {
      const src = guided ? Math.floor(b / o.n) : 0;
      context.set(hiddenData.subarray(src * L * D, (src + 1) * L * D), b * L * D);
    }
    const contextTensor = this.sessions.tensor("float32", context, [batch, L, D]);
    const textMs = now() - t0;

    // Known latents for img2img and inpainting.
    t0 = now();
    let inpaint: Inpaint | undefined;
    const strength = o.image ? (o.strength ?? (o.mask ? 1 : 0.8)) : 1;
    // An inpainting UNet's extra channels per image: the mask, then the masked image's latents.
    let extra: Float32Array | null = null;
    if (o.image) {
      const image = await resize(o.image, o.width, o.height);
      const known = await this.#encode(image, signal);
      const mask = o.mask ? this.#maskLatent(o.mask, w, h) : undefined;
      if (this.inpaintingUnet) {
        const hidden = this.#maskLatent(o.mask!, o.width, o.height); // per pixel, 1 = repaint
        const masked = {
          ...image,
          data: image.data.map((v, i) => hidden[Math.floor(i / 3)] ? 128 : v),
        };
        extra = new Float32Array((1 + C) * h * w);
        extra.set(mask!);
        extra.set(await this.#encode(masked, signal), h * w);
      }
      // The known latents start img2img; the blend keeps them outside the mask, unless the UNet
      // does that itself.
      inpaint = { known, mask: this.inpaintingUnet ? undefined : mask };
    }
    const vaeEncMs = o.image ? now() - t0 : 0;

    const p: Plan = plan(o.scheduler, this.schedulerConfig, o.steps, strength);
    // After the last step the UNet input buffer holds latents / scaling_factor: the VAE's input.
    const scaleAt = (i: number) => i < p.steps.length ? p.steps[i].scaleIn : 1 / this.scalingFactor;
    const timestepType = this.unet.inputType("timestep") ?? "float32";
    const timestep = (t: number) =>
      timestepType === "int64"
        ? this.sessions.tensor("int64", new BigInt64Array(batch).fill(BigInt(Math.round(t))), [
          batch,
        ])
        : this.sessions.tensor("float32", new Float32Array(batch).fill(t), [batch]);
    const dims = [batch, C, h, w];
    const unetMs: number[] = [];
    // The GPU-resident loop feeds the UNet its own buffer: an inpainting UNet's wider input is
    // assembled on the host instead.
    const gpu = o.hostLoop || extra ? null : await this.sessions.gpuDevice();
    const previewAt = previewSteps(p.steps.length, o.previews ?? 0);
    const wantsPreview = (i: number) => previewAt.has(i + 1);

    let rgba: Uint8Array;
    let vaeDecMs: number;
    if (gpu) {
      const loop = new GpuDenoiser(gpu, shape, inpaint);
      try {
        loop.init(p.initAlpha, p.initSigma, scaleAt(0));
        for (let i = 0; i < p.steps.length; i++) {
          signal?.throwIfAborted();
          const s = p.steps[i];
          t0 = now();
          const out = await this.unet.run({
            sample: ort.Tensor.fromGpuBuffer(loop.unetIn, { dataType: "float32", dims }),
            timestep: timestep(s.timestep),
            encoder_hidden_states: contextTensor,
          }, signal);
          const eps = out.out_sample ?? out[this.unet.outputNames[0]];
          // A preview reads this step's latents and model output before the step moves them.
          const before = wantsPreview(i)
            ? await Promise.all([
              readBuffer(gpu, loop.latents, count * 4),
              readBuffer(gpu, eps.gpuBuffer as GPUBuffer, batch * shape.perImage * 4),
            ])
            : null;
          loop.step(eps.gpuBuffer as GPUBuffer, {
            ...s,
            guidance: o.guidance,
            scaleNext: scaleAt(i + 1),
            stream: i + 1,
          });
          await gpu.queue.onSubmittedWorkDone();
          eps.dispose();
          unetMs.push(now() - t0);
          const preview = before
            ? await this.#preview(
              o,
              shape,
              s,
              new Float32Array(before[0]),
              new Float32Array(before[1]),
              inpaint,
              signal,
            )
            : undefined;
          await onProgress?.({
            step: i + 1,
            total: p.steps.length,
            ...(preview ? { preview } : {}),
          });
        }
        signal?.throwIfAborted();
        t0 = now();
        const decoded = await this.#decode(
          ort.Tensor.fromGpuBuffer(loop.unetIn, { dataType: "float32", dims: [o.n, C, h, w] }),
          signal,
        );
        rgba = await toRgbaGpu(gpu, decoded.gpuBuffer as GPUBuffer, o.n, 3, o.width * o.height);
        decoded.dispose();
        vaeDecMs = now() - t0;
      } finally {
        loop.destroy();
      }
    } else {
      const { latents, unetIn } = initReference(
        shape,
        p.initAlpha,
        p.initSigma,
        scaleAt(0),
        inpaint?.known,
      );
      for (let i = 0; i < p.steps.length; i++) {
        signal?.throwIfAborted();
        const s = p.steps[i];
        t0 = now();
        const out: Outputs = await this.unet.run({
          sample: extra
            ? this.sessions.tensor("float32", withExtra(unetIn, extra, batch, shape.perImage), [
              batch,
              C + extra.length / (h * w),
              h,
              w,
            ])
            : this.sessions.tensor("float32", unetIn, dims),
          timestep: timestep(s.timestep),
          encoder_hidden_states: contextTensor,
        }, signal);
        const eps = out.out_sample ?? out[this.unet.outputNames[0]];
        // On WebGPU the UNet's output is in a GPU buffer: the host loop reads it back.
        const modelOut = eps.location === "gpu-buffer"
          ? await eps.getData(true) as Float32Array
          : eps.data as Float32Array;
        const preview = wantsPreview(i)
          ? await this.#preview(o, shape, s, latents, modelOut, inpaint, signal)
          : undefined;
        stepReference(
          shape,
          { ...s, guidance: o.guidance, scaleNext: scaleAt(i + 1), stream: i + 1 },
          modelOut,
          latents,
          unetIn,
          inpaint,
        );
        unetMs.push(now() - t0);
        await onProgress?.({ step: i + 1, total: p.steps.length, ...(preview ? { preview } : {}) });
      }
      signal?.throwIfAborted();
      t0 = now();
      const decoded = await this.#decode(
        this.sessions.tensor("float32", unetIn.slice(0, count), [o.n, C, h, w]),
        signal,
      );
      const pixels = decoded.location === "gpu-buffer"
        ? await decoded.getData(true) as Float32Array
        : decoded.data as Float32Array;
      rgba = toRgbaReference(pixels, o.n, 3, o.width * o.height, IDENTITY);
      vaeDecMs = now() - t0;
    }

    const px = o.width * o.height * 4;
    let images = Array.from(
      { length: o.n },
      (_, j) => rgbaToRgb(rgba.subarray(j * px, (j + 1) * px), o.width, o.height),
    );
    let seeds = Array.from({ length: o.n }, (_, j) => (o.seed + j) >>> 0);
    let scores: number[] | undefined;
    t0 = now();
    if (o.rerank) {
      const all = await o.rerank.score(images);
      const order = all.map((v, j) => [v, j]).sort((a, b) => b[0] - a[0]).slice(0, o.rerank.k);
      images = order.map(([, j]) => images[j]);
      seeds = order.map(([, j]) => seeds[j]);
      scores = order.map(([v]) => v);
    }
    const rerankMs = now() - t0;
    return {
      images,
      seeds,
      ...(scores ? { scores } : {}),
      promptTokens: this.promptTokens(o.prompt),
      steps: p.steps.length,
      scheduler: o.scheduler,
      loop: gpu ? "gpu-resident" : "host",
      timings: {
        text_encoder_ms: textMs,
        vae_encoder_ms: vaeEncMs,
        unet_ms: unetMs,
        vae_decoder_ms: vaeDecMs,
        ...(o.rerank ? { rerank_ms: rerankMs } : {}),
        total_ms: now() - start,
      },
    };
  }

  async #decode(latents: Tensor, signal?: AbortSignal): Promise<Tensor> {
    const out = await this.vaeDecoder.run({ latent_sample: latents }, signal);
    return out.sample ?? out[this.vaeDecoder.outputNames[0]];
  }

  /** Image → scaled latents [C, h, w] (the encoder's latent_sample × scaling_factor). */
  async #encode(img: RgbImage, signal?: AbortSignal): Promise<Float32Array<ArrayBuffer>> {
    const input = this.sessions.tensor("float32", toPlanar(img), [1, 3, img.height, img.width]);
    const out = await this.vaeEncoder!.run({ sample: input }, signal);
    const latent = out.latent_sample ?? out[this.vaeEncoder!.outputNames[0]];
    const data = latent.data as Float32Array;
    // Exports that return the posterior's parameters (mean ‖ logvar) give 2C channels: take the mean.
    const mean = data.subarray(0, this.latentChannels * (data.length / latent.dims[1]));
    return Float32Array.from(mean, (v) => v * this.scalingFactor);
  }

  /**
   * The mask at latent resolution, 1 = repaint: transparent pixels where the mask has any (the
   * OpenAI convention), else white ones (diffusers'). A latent pixel is repainted if any pixel of
   * its area is, so that edits reach the mask's edge.
   */
  #maskLatent(mask: RgbImage, w: number, h: number): Float32Array<ArrayBuffer> {
    const transparent = mask.alpha?.some((a) => a < 255);
    const repaint = (i: number) =>
      transparent
        ? mask.alpha![i] < 128
        : mask.data[i * 3] + mask.data[i * 3 + 1] + mask.data[i * 3 + 2] > 3 * 127;
    const out = new Float32Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const y0 = Math.floor(y * mask.height / h), y1 = Math.ceil((y + 1) * mask.height / h);
        const x0 = Math.floor(x * mask.width / w), x1 = Math.ceil((x + 1) * mask.width / w);
        search: for (let sy = y0; sy < y1; sy++) {
          for (let sx = x0; sx < x1; sx++) {
            if (repaint(sy * mask.width + sx)) {
              out[y * w + x] = 1;
              break search;
            }
          }
        }
      }
    }
    return out;
  }
}
