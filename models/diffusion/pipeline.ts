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
 *
 * Word maps (`returnAttention`, DAAM: Tang et al. 2022): where the export ships a second UNet
 * graph that also returns its cross-attention to each text token (manifest `unet_attention`:
 * averaged over heads and blocks at latent resolution), that graph runs instead, and the maps of
 * the conditional half are summed over the steps (on the GPU in the GPU-resident loop); each
 * prompt word's sum, normalized, is its map. Without the option the plain UNet runs, as always.
 */
import type { Tokenizer } from "@huggingface/tokenizers";
import type { RgbImage } from "../../core/image.ts";
import { loadTokenizer } from "../../core/tokenizers.ts";
import { resize } from "../../core/preprocess.ts";
import type { Session, SessionRegistry } from "../../core/sessions.ts";
import type { Tensor } from "../../core/backend.ts";
import { IDENTITY, type Inpaint, type LoopShape, toRgbaReference } from "../../kernels/denoise.ts";
import type { WordMapLayout } from "../../kernels/word_maps.ts";
import {
  checkCommon,
  checkExplainable,
  DALLE_OPTIONS,
  type ImageGenerator,
  type ImageJob,
  type ImageOutput,
  type ImageProgress,
  type ImageRequest,
  previewSteps,
  promptWords,
  reranked,
  rgbaImages,
  seedOf,
  toPlanar,
  wordMaps,
} from "../images.ts";
import type { ModelEntry } from "../manifest.ts";
import {
  type Capabilities,
  type ImageScorer,
  type LoadContext,
  OptionError,
  type RunContext,
} from "../pipeline.ts";
import {
  type Denoiser,
  GpuResidentDenoiser,
  HostDenoiser,
  type MapSum,
  mapSum,
} from "./denoiser.ts";
import {
  alphasCumprod,
  defaultScheduler,
  type Plan,
  plan,
  SchedulerConfig,
  type SchedulerName,
  SCHEDULERS,
} from "./schedulers.ts";

/** One generation, every option given (`plan()` fills them in from a request). */
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
  /** Read the latents back every step even on WebGPU (the benchmark's baseline). */
  hostLoop?: boolean;
  /** Each prompt word's map in each image (explainable exports only). */
  returnAttention?: boolean;
}

export type Timings = {
  text_encoder_ms: number;
  vae_encoder_ms: number;
  unet_ms: number[];
  vae_decoder_ms: number;
  total_ms: number;
};

export interface Generated extends ImageOutput {
  scheduler: SchedulerName;
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

export class DiffusionPipeline implements ImageGenerator {
  readonly family = "diffusion";
  #attentionUnet: Promise<Session> | null = null;

  private constructor(
    readonly id: string,
    private sessions: SessionRegistry,
    private scorer: (() => Promise<ImageScorer>) | undefined,
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
    /** The UNet graph that also returns word maps (`attention_maps`), if the export has one. */
    private attentionUnetPath: string | null,
  ) {}

  /** Explainable where the export ships the UNet graph with word maps. */
  get capabilities(): Capabilities {
    return { streaming: true, batchable: true, explainable: this.attentionUnetPath !== null };
  }

  /** The word-map UNet, loaded on the first request that asks for maps. */
  #mapsUnet(): Promise<Session> {
    return this.#attentionUnet ??= this.sessions.load(this.attentionUnetPath!, {
      gpuOutputs: true,
    });
  }

  static async load(
    entry: ModelEntry,
    { sessions, scorer }: LoadContext,
  ): Promise<DiffusionPipeline> {
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
      scorer,
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
      files.unet_attention ? entry.dir + files.unet_attention : null,
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

  /**
   * A request with the model's defaults filled in; `quality` picks half, the default or twice
   * the default steps.
   */
  plan(r: ImageRequest): ImageJob {
    checkCommon(r, this.id, "diffusion", DALLE_OPTIONS);
    const s = this.settings;
    if (r.quality != null && r.steps != null) {
      throw new OptionError(
        "quality",
        (f) =>
          `${f("quality")} chooses the denoising steps: give ${f("quality")} or ${
            f("steps")
          }, not both`,
      );
    }
    const levels = {
      low: Math.max(1, Math.round(s.defaultSteps / 2)),
      medium: s.defaultSteps,
      high: Math.min(s.maxSteps, 2 * s.defaultSteps),
    };
    const steps = r.steps ?? levels[r.quality ?? "medium"];
    const scheduler = r.scheduler ?? s.defaultScheduler;
    if (!SCHEDULERS.includes(scheduler as SchedulerName)) {
      throw new OptionError(
        "scheduler",
        (f) => `${f("scheduler")} must be one of ${SCHEDULERS.join(", ")}, got "${scheduler}"`,
      );
    }
    const o: GenerateOptions = {
      prompt: r.prompt,
      negativePrompt: r.negativePrompt,
      steps,
      guidance: r.guidance ?? s.defaultGuidance,
      seed: seedOf(r),
      scheduler: scheduler as SchedulerName,
      width: r.width ?? s.defaultSize,
      height: r.height ?? s.defaultSize,
      n: r.n,
      image: r.image,
      mask: r.mask,
      strength: r.strength,
      previews: r.previews,
      returnAttention: r.returnAttention,
    };
    this.validate(o);
    return {
      model: this.id,
      family: this.family,
      steps,
      width: o.width,
      height: o.height,
      quality: (["low", "medium", "high"] as const).find((l) => levels[l] === steps),
      run: reranked((context) => this.generate(o, context), r, this.scorer),
    };
  }

  /** Token ids padded to the encoder's length (as SD pads to 77); too long is a clear 400. */
  #tokens(text: string, option: "prompt" | "negativePrompt"): number[] {
    const ids = this.tokenizer.encode(text).ids;
    if (ids.length > this.maxTokens) {
      throw new OptionError(
        option,
        (f) =>
          `${f(option)} is ${ids.length} tokens long; this model reads at most ${this.maxTokens}`,
      );
    }
    return [...ids, ...new Array(this.maxTokens - ids.length).fill(this.padId)];
  }

  /** Checks what only the model knows (size multiple, limits); routes check the rest. */
  validate(o: GenerateOptions): void {
    checkExplainable(o, this, "its UNet export has no attention output");
    const { minSize, maxSize, multiple, maxSteps } = this.settings;
    for (const [name, v] of [["width", o.width], ["height", o.height]] as const) {
      if (v < minSize || v > maxSize || v % multiple !== 0) {
        throw new OptionError(
          name,
          (f) =>
            `${
              f(name)
            } must be a multiple of ${multiple} between ${minSize} and ${maxSize} for ${this.id}, got ${v}`,
        );
      }
    }
    if (o.steps > maxSteps) {
      throw new OptionError(
        "steps",
        (f) => `${f("steps")} must be at most ${maxSteps} for ${this.id}`,
      );
    }
    const steps = this.planSteps(o);
    if ((o.previews ?? 0) > steps) {
      throw new OptionError(
        "previews",
        (f) =>
          `${
            f("previews")
          } (${o.previews}) must not exceed the ${steps} denoising steps this job runs`,
      );
    }
    if ((o.image || o.mask) && !this.vaeEncoder) {
      throw new OptionError(
        "image",
        () => `${this.id} has no VAE encoder: no img2img or inpainting`,
        "unsupported",
      );
    }
    if (this.inpaintingUnet && !(o.image && o.mask)) {
      const missing = o.image ? "mask" : "image";
      throw new OptionError(
        missing,
        () => `${this.id} is an inpainting model: send an image and a mask to /v1/images/edits`,
        "unsupported",
      );
    }
    this.#tokens(o.prompt, "prompt");
    if (o.negativePrompt) this.#tokens(o.negativePrompt, "negativePrompt");
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

  /** Previews of the clean image predicted from latents x and the raw model output. */
  async #preview(
    o: GenerateOptions,
    shape: LoopShape,
    timestep: number,
    { latents: x, modelOut }: { latents: Float32Array; modelOut: Float32Array },
    inpaint: Inpaint | undefined,
    signal?: AbortSignal,
  ): Promise<RgbImage[]> {
    const count = shape.images * shape.perImage;
    const { x: X, out: OUT } = this.#cleanAffine(o.scheduler, timestep);
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
    const rgba = toRgbaReference(pixels, o.n, 3, o.width * o.height, IDENTITY);
    return rgbaImages(rgba, o.n, o.width, o.height);
  }

  /** One generation: n images from seeds seed … seed + n − 1, all of `o` given. */
  async generate(
    o: GenerateOptions,
    { signal, progress }: RunContext<ImageProgress> = {},
  ): Promise<Generated> {
    this.validate(o);
    const start = now();
    const guided = o.guidance > 1;
    const C = this.latentChannels, h = o.height / this.vaeFactor, w = o.width / this.vaeFactor;
    const shape: LoopShape = {
      images: o.n,
      perImage: C * h * w,
      spatial: h * w,
      seed: o.seed >>> 0,
      guided,
    };
    const batch = guided ? 2 * o.n : o.n;
    let t0 = now();
    const context = await this.#encodeText(o, guided, batch, signal);
    const textMs = now() - t0;
    t0 = now();
    const { inpaint, extra, strength } = await this.#knownLatents(o, w, h, signal);
    const vaeEncMs = o.image ? now() - t0 : 0;

    const p: Plan = plan(o.scheduler, this.schedulerConfig, o.steps, strength);
    // After the last step the UNet input buffer holds latents / scaling_factor: the VAE's input.
    const scaleAt = (i: number) => i < p.steps.length ? p.steps[i].scaleIn : 1 / this.scalingFactor;
    // The GPU-resident loop feeds the UNet its own buffer: an inpainting UNet's wider input is
    // assembled on the host instead.
    const gpu = o.hostLoop || extra ? null : await this.sessions.gpuDevice();
    const setup = {
      shape,
      dims: [batch, C, h, w],
      init: { alpha: p.initAlpha, sigma: p.initSigma, scaleFirst: scaleAt(0) },
      inpaint,
      extra,
    };
    const denoiser: Denoiser = gpu
      ? new GpuResidentDenoiser(gpu, this.sessions, setup)
      : new HostDenoiser(this.sessions, setup);
    const previewAt = previewSteps(p.steps.length, o.previews ?? 0);
    const words = o.returnAttention ? promptWords(this.tokenizer, o.prompt) : null;
    const layout: WordMapLayout | null = words && {
      images: o.n,
      tokens: this.maxTokens,
      first: words.first,
      words: words.tokens.length,
      spatial: h * w,
      guided,
    };
    const unet = layout ? await this.#mapsUnet() : this.unet;
    const maps: MapSum | null = layout && mapSum(gpu, layout);
    const unetMs: number[] = [];
    let rgba: Uint8Array, vaeDecMs: number, sums: Float32Array | null = null;
    try {
      for (const [i, s] of p.steps.entries()) {
        signal?.throwIfAborted();
        t0 = now();
        const out = await unet.run({
          sample: denoiser.sample(),
          timestep: this.#timestep(s.timestep, batch),
          encoder_hidden_states: context,
        }, signal);
        const modelOut = out.out_sample ?? out[unet.outputNames[0]];
        if (maps) await maps.add(out.attention_maps);
        // A preview reads this step's latents and model output before the step moves them.
        const before = previewAt.has(i + 1) ? await denoiser.peek(modelOut) : null;
        await denoiser.step(modelOut, {
          ...s,
          guidance: o.guidance,
          scaleNext: scaleAt(i + 1),
          stream: i + 1,
        });
        out.attention_maps?.dispose(); // added to the sum (the step waited for the GPU's queue)
        unetMs.push(now() - t0);
        const preview = before
          ? await this.#preview(o, shape, s.timestep, before, inpaint, signal)
          : undefined;
        await progress?.({ step: i + 1, total: p.steps.length, ...(preview ? { preview } : {}) });
      }
      signal?.throwIfAborted();
      t0 = now();
      rgba = await denoiser.toRgba(await this.#decode(denoiser.decoderInput(), signal));
      vaeDecMs = now() - t0;
      sums = maps && await maps.read();
    } finally {
      denoiser.destroy();
      maps?.destroy();
    }
    const images = rgbaImages(rgba, o.n, o.width, o.height);
    return {
      images,
      ...(words && sums ? { maps: this.#wordMaps(o.n, words.tokens, sums, h, w) } : {}),
      seeds: Array.from({ length: o.n }, (_, j) => (o.seed + j) >>> 0),
      promptTokens: this.promptTokens(o.prompt),
      outputTokens: 0,
      steps: p.steps.length,
      scheduler: o.scheduler,
      loop: denoiser.where,
      timings: {
        text_encoder_ms: textMs,
        vae_encoder_ms: vaeEncMs,
        unet_ms: unetMs,
        vae_decoder_ms: vaeDecMs,
        total_ms: now() - start,
      },
    };
  }

  /** Each image's word maps from the summed maps [images, words, h, w]. */
  #wordMaps(images: number, tokens: string[], sums: Float32Array, h: number, w: number) {
    const k = tokens.length, px = h * w;
    return Array.from({ length: images }, (_, j) =>
      wordMaps(
        tokens.map((token, t) => ({
          token,
          weights: sums.subarray((j * k + t) * px, (j * k + t + 1) * px),
        })),
        h,
        w,
      ));
  }

  #timestep(t: number, batch: number): Tensor {
    return this.unet.inputType("timestep") === "int64"
      ? this.sessions.tensor("int64", new BigInt64Array(batch).fill(BigInt(Math.round(t))), [batch])
      : this.sessions.tensor("float32", new Float32Array(batch).fill(t), [batch]);
  }

  /** The UNet's text context: [uncond × n; cond × n] when guiding, else cond × n. */
  async #encodeText(
    o: GenerateOptions,
    guided: boolean,
    batch: number,
    signal?: AbortSignal,
  ): Promise<Tensor> {
    const texts = guided ? [o.negativePrompt ?? "", o.prompt] : [o.prompt];
    const ids = texts.map((t, i) =>
      this.#tokens(t, i === 0 && guided ? "negativePrompt" : "prompt")
    )
      .flat();
    const shape = [texts.length, this.maxTokens];
    const idsTensor = this.textEncoder.inputType("input_ids") === "int32"
      ? this.sessions.tensor("int32", Int32Array.from(ids), shape)
      : this.sessions.tensor("int64", BigInt64Array.from(ids, BigInt), shape);
    const encoded = await this.textEncoder.run({ input_ids: idsTensor }, signal);
    const hidden = encoded.last_hidden_state ?? encoded[this.textEncoder.outputNames[0]];
    const [, L, D] = hidden.dims;
    const data = hidden.data as Float32Array;
    const context = new Float32Array(batch * L * D);
    for (let b = 0; b < batch; b++) {
      const src = guided ? Math.floor(b / o.n) : 0;
      context.set(data.subarray(src * L * D, (src + 1) * L * D), b * L * D);
    }
    return this.sessions.tensor("float32", context, [batch, L, D]);
  }

  /**
   * What img2img and inpainting start from: the input image's latents (and the mask at latent
   * size) and, for an inpainting UNet, its extra channels per image (mask, masked-image latents).
   */
  async #knownLatents(o: GenerateOptions, w: number, h: number, signal?: AbortSignal): Promise<{
    inpaint?: Inpaint;
    extra?: Float32Array;
    strength: number;
  }> {
    if (!o.image) return { strength: 1 };
    const strength = o.strength ?? (o.mask ? 1 : 0.8);
    const image = await resize(o.image, o.width, o.height);
    const known = await this.#encode(image, signal);
    const mask = o.mask ? this.#maskLatent(o.mask, w, h) : undefined;
    if (!this.inpaintingUnet) {
      // The known latents start img2img; the blend keeps them outside the mask.
      return { inpaint: { known, mask }, strength };
    }
    const hidden = this.#maskLatent(o.mask!, o.width, o.height); // per pixel, 1 = repaint
    const masked = {
      ...image,
      data: image.data.map((v, i) => hidden[Math.floor(i / 3)] ? 128 : v),
    };
    const extra = new Float32Array((1 + this.latentChannels) * h * w);
    extra.set(mask!);
    extra.set(await this.#encode(masked, signal), h * w);
    // The UNet keeps the unmasked region itself: no blend.
    return { inpaint: { known }, extra, strength };
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
