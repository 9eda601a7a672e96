/**
 * The CLIP pipeline: text and image embeddings in one space, zero-shot classification with
 * prompt templates (averaged as in the CLIP paper), image × text similarity, and patch
 * similarity maps. Serves clip-tiny and public CLIP exports (text_model.onnx, vision_model.onnx)
 * through the same code.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import type { RgbImage } from "../../core/image.ts";
import { preprocess, type ProcessorConfig } from "../../core/preprocess.ts";
import type { Session, SessionRegistry } from "../../core/sessions.ts";
import { Batcher } from "../../core/batcher.ts";
import { dot, l2normalize, rowsOf, softmax } from "../../core/tensor.ts";
import type { ModelEntry } from "../manifest.ts";
import {
  type Capabilities,
  type LoadContext,
  OptionError,
  type Pipeline,
  type RunContext,
} from "../pipeline.ts";

export interface PatchMap {
  /** Grid rows and columns; `values`, row-major, is how much each patch made the image match. */
  rows: number;
  cols: number;
  values: number[];
}

export interface ClassifyResult {
  label: string;
  score: number;
  patch_map?: PatchMap;
}

export const DEFAULT_TEMPLATE = "a photo of a {}";

/** "a photo of a {}" with "a" before a vowel sound fixed to "an", as a person writes it. */
export function fillTemplate(template: string, label: string): string {
  const text = template.includes("{}") ? template.replaceAll("{}", label) : `${template} ${label}`;
  return text.replace(/\ba ([aeiou])/gi, "an $1");
}

export interface ClassifyOptions {
  labels: string[];
  /** Each label is written into every template; the templates' embeddings are averaged. */
  templates: string[];
  /** Also each label's occlusion map over the patch grid. */
  patchMaps?: boolean;
}

type Preprocessed = Awaited<ReturnType<typeof preprocess>>;

/** Preprocessed images of one size as one batch [B, 3, H, W]. */
function stack(
  images: Preprocessed[],
): { data: Float32Array; dims: [number, number, number, number] } {
  const { width, height } = images[0];
  if (images.some((p) => p.width !== width || p.height !== height)) {
    throw new Error("images of different sizes in one batch");
  }
  const data = new Float32Array(images.length * 3 * width * height);
  images.forEach((p, i) => data.set(p.data, i * p.data.length));
  return { data, dims: [images.length, 3, height, width] };
}

export class ClipPipeline implements Pipeline {
  readonly family = "clip";
  readonly capabilities: Capabilities = { streaming: false, batchable: true, explainable: true };
  /** Concurrent requests' texts and images, each tower's batched into shared passes. */
  #texts: Batcher<number[], Float32Array>;
  #images: Batcher<Preprocessed, Float32Array>;

  private constructor(
    readonly id: string,
    private tokenizer: Tokenizer,
    private maxTokens: number,
    private padId: number,
    private processor: ProcessorConfig,
    private text: Session,
    private vision: Session,
    private sessions: SessionRegistry,
    /** exp(logit_scale) of the trained model: CLIP's temperature for softmax over labels. */
    readonly logitScale: number,
    private patchSize: number,
    maxBatch: number,
  ) {
    this.#texts = new Batcher((rows) => this.#runTexts(rows), { maxBatch });
    this.#images = new Batcher((pixels) => this.#runImages(pixels), { maxBatch });
  }

  static async load(
    entry: ModelEntry,
    { sessions, maxBatch = 32 }: LoadContext,
  ): Promise<ClipPipeline> {
    const read = async (name: string) => JSON.parse(await Deno.readTextFile(entry.dir + name));
    const [tokJson, tokConfig, processor, config] = await Promise.all([
      read("tokenizer.json"),
      read("tokenizer_config.json"),
      read("preprocessor_config.json"),
      read("config.json"),
    ]);
    const tokenizer = new Tokenizer(tokJson, tokConfig);
    const padId = tokenizer.token_to_id(tokConfig.pad_token ?? "<|endoftext|>") ?? 0;
    const [text, vision] = await Promise.all([
      sessions.load(entry.dir + entry.manifest.files.text),
      sessions.load(entry.dir + entry.manifest.files.vision),
    ]);
    const scale = Number(entry.manifest.settings.logit_scale ?? 100);
    return new ClipPipeline(
      entry.manifest.id,
      tokenizer,
      Math.min(tokConfig.model_max_length ?? 77, 4096),
      padId,
      processor,
      text,
      vision,
      sessions,
      scale,
      config.vision_config?.patch_size ?? 32,
      maxBatch,
    );
  }

  /** Token ids of a text, with the model's special tokens. */
  tokenize(text: string): number[] {
    return this.tokenizer.encode(text).ids;
  }

  /** Runs one text and one image through both towers, so the first request is not the slow one. */
  async warmup(): Promise<void> {
    const side = typeof this.processor.crop_size === "object"
      ? this.processor.crop_size.height
      : 224;
    const gray: RgbImage = {
      width: side,
      height: side,
      data: new Uint8Array(side * side * 3).fill(128),
    };
    await this.embedTexts(["a photo of a shape"]);
    await this.embedImages([gray]);
  }

  /**
   * L2-normalized text embeddings, one batch. `option` is what the caller calls the texts
   * (classification's are its labels), for errors.
   */
  async embedTexts(
    texts: string[],
    { signal }: RunContext = {},
    option = "texts",
  ): Promise<{ embeds: Float32Array[]; tokens: number }> {
    const rows = texts.map((t, i) => {
      const ids = this.tokenize(t);
      if (ids.length > this.maxTokens) {
        throw new OptionError(
          option,
          (f) =>
            `${
              f(option)
            }: text ${i} is ${ids.length} tokens; ${this.id} accepts at most ${this.maxTokens}`,
        );
      }
      return ids;
    });
    const embeds = await this.#texts.submit(rows, signal);
    return { embeds, tokens: rows.reduce((n, r) => n + r.length, 0) };
  }

  /** One text-tower pass over token rows (padded to the longest), as one batch. */
  async #runTexts(rows: number[][]): Promise<Float32Array[]> {
    const width = Math.max(...rows.map((r) => r.length));
    const ids = new BigInt64Array(rows.length * width).fill(BigInt(this.padId));
    const mask = new BigInt64Array(rows.length * width);
    rows.forEach((r, i) => {
      r.forEach((id, j) => (ids[i * width + j] = BigInt(id), mask[i * width + j] = 1n));
    });
    const feeds: Record<string, ReturnType<SessionRegistry["tensor"]>> = {
      input_ids: this.sessions.tensor("int64", ids, [rows.length, width]),
    };
    if (this.text.inputNames.includes("attention_mask")) {
      feeds.attention_mask = this.sessions.tensor("int64", mask, [rows.length, width]);
    }
    const out = await this.text.run(feeds);
    return rowsOf(out.text_embeds).map(l2normalize);
  }

  /** One vision-tower pass over preprocessed images of one size, as one batch. */
  #runImages(images: Preprocessed[]): Promise<Float32Array[]> {
    const { data, dims } = stack(images);
    return this.embedPixels(data, dims);
  }

  /** Preprocessed pixels of a batch of images: [B, 3, H, W]. */
  async pixels(
    images: RgbImage[],
  ): Promise<{ data: Float32Array; dims: [number, number, number, number] }> {
    return stack(await Promise.all(images.map((img) => preprocess(img, this.processor))));
  }

  /** L2-normalized image embeddings of preprocessed pixels [B, 3, H, W]. */
  async embedPixels(
    data: Float32Array,
    dims: readonly number[],
    signal?: AbortSignal,
  ): Promise<Float32Array[]> {
    const out = await this.vision.run(
      { pixel_values: this.sessions.tensor("float32", data, dims) },
      signal,
    );
    return rowsOf(out.image_embeds).map(l2normalize);
  }

  /** L2-normalized image embeddings, one batch. */
  async embedImages(
    images: RgbImage[],
    { signal }: RunContext = {},
  ): Promise<{ embeds: Float32Array[] }> {
    const pixels = await Promise.all(images.map((img) => preprocess(img, this.processor)));
    return { embeds: await this.#images.submit(pixels, signal) };
  }

  /**
   * Occlusion maps: for each patch of the model's grid, how much the image's similarity to each
   * target drops when that patch is blanked. Positive values mark
   * the patches that made the image match; this needs no model internals, so it works for any
   * CLIP export. All occluded copies run as one batch.
   */
  async occlusionMaps(
    image: RgbImage,
    targets: Float32Array[],
    signal?: AbortSignal,
  ): Promise<PatchMap[]> {
    const { data, dims: [, , h, w] } = await this.pixels([image]);
    const rows = Math.max(1, Math.round(h / this.patchSize)),
      cols = Math.max(1, Math.round(w / this.patchSize));
    const ph = Math.ceil(h / rows), pw = Math.ceil(w / cols);
    const n = rows * cols;
    const plane = h * w;
    // The occluder is the image's per-channel median: its background, for most images, so a
    // blanked patch reads as "nothing here" rather than as a new grey object.
    const fill = [0, 1, 2].map((ch) => data.slice(ch * plane, (ch + 1) * plane).sort()[plane >> 1]);
    const batch = new Float32Array((n + 1) * data.length); // [1 + rows * cols, 3, H, W]; the first is intact
    for (let k = 0; k <= n; k++) {
      const copy = batch.subarray(k * data.length, (k + 1) * data.length);
      copy.set(data);
      if (k === 0) continue;
      const r = Math.floor((k - 1) / cols), c = (k - 1) % cols;
      for (let ch = 0; ch < 3; ch++) {
        for (let y = r * ph; y < Math.min(h, (r + 1) * ph); y++) {
          copy.fill(
            fill[ch],
            ch * plane + y * w + c * pw,
            ch * plane + y * w + Math.min(w, (c + 1) * pw),
          );
        }
      }
    }
    const embeds = await this.embedPixels(batch, [n + 1, 3, h, w], signal);
    return targets.map((t) => {
      const base = dot(embeds[0], t);
      return { rows, cols, values: embeds.slice(1).map((e) => round(base - dot(e, t))) };
    });
  }

  /**
   * Zero-shot classification: each label is written into every template, the template
   * embeddings are averaged and renormalized, and a softmax over labels gives the scores.
   */
  async classify(
    image: RgbImage,
    { labels, templates, patchMaps = false }: ClassifyOptions,
    { signal }: RunContext = {},
  ): Promise<ClassifyResult[]> {
    const texts = labels.flatMap((label) => templates.map((t) => fillTemplate(t, label)));
    const [{ embeds: textEmbeds }, { embeds: [img] }] = await Promise.all([
      this.embedTexts(texts, { signal }, "labels"),
      this.embedImages([image], { signal }),
    ]);
    const classEmbeds = labels.map((_, i) => {
      const mean = new Float32Array(textEmbeds[0].length);
      for (let t = 0; t < templates.length; t++) {
        textEmbeds[i * templates.length + t].forEach((v, k) => (mean[k] += v));
      }
      return l2normalize(mean);
    });
    const scores = softmax(classEmbeds.map((e) => this.logitScale * dot(img, e)));
    const maps = patchMaps ? await this.occlusionMaps(image, classEmbeds, signal) : null;
    const results = labels.map((label, i): ClassifyResult => ({
      label,
      score: scores[i],
      ...(maps ? { patch_map: maps[i] } : {}),
    }));
    return results.sort((a, b) => b.score - a.score);
  }

  /** Each image's cosine similarity to one text: the score CLIP reranking sorts by. */
  async scoreImages(images: RgbImage[], text: string, signal?: AbortSignal): Promise<number[]> {
    return (await this.similarity(images, [text], { signal })).cosine.map((row) => row[0]);
  }

  /** Images × texts: cosine similarities and, per image, a softmax over the texts. */
  async similarity(images: RgbImage[], texts: string[], run: RunContext = {}) {
    const [{ embeds: ie }, { embeds: te }] = await Promise.all([
      this.embedImages(images, run),
      this.embedTexts(texts, run),
    ]);
    const cosine = ie.map((i) => te.map((t) => dot(i, t)));
    const probabilities = cosine.map((row) => softmax(row.map((c) => this.logitScale * c)));
    return { cosine, probabilities };
  }
}

const round = (v: number) => Math.round(v * 1e4) / 1e4;
