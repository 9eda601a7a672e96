/**
 * The CLIP pipeline: text and image embeddings in one space, zero-shot classification with
 * prompt templates (averaged as in the CLIP paper), image × text similarity, and patch
 * similarity maps. Serves clip-tiny and public CLIP exports (text_model.onnx, vision_model.onnx)
 * through the same code.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { ApiError } from "../../core/errors.ts";
import type { RgbImage } from "../../core/image.ts";
import { preprocess, type ProcessorConfig } from "../../core/preprocess.ts";
import type { Session, SessionRegistry } from "../../core/sessions.ts";
import { dot, l2normalize, softmax } from "../../core/tensor.ts";
import type { ModelEntry } from "../manifest.ts";

export interface PatchMap {
  /** Grid rows and columns; `values` is row-major cosine similarity of each patch to the label. */
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

export class ClipPipeline {
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
  ) {}

  static async load(entry: ModelEntry, sessions: SessionRegistry): Promise<ClipPipeline> {
    const read = async (name: string) => JSON.parse(await Deno.readTextFile(entry.dir + name));
    const [tokJson, tokConfig, processor] = await Promise.all([
      read("tokenizer.json"),
      read("tokenizer_config.json"),
      read("preprocessor_config.json"),
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

  /** L2-normalized text embeddings, one batch. `param` names the request field in errors. */
  async embedTexts(
    texts: string[],
    signal?: AbortSignal,
    param = "input",
  ): Promise<{ embeds: Float32Array[]; tokens: number }> {
    const rows = texts.map((t, i) => {
      const ids = this.tokenize(t);
      if (ids.length > this.maxTokens) {
        throw new ApiError(
          "invalid_request",
          `Text ${i} is ${ids.length} tokens; ${this.id} accepts at most ${this.maxTokens}`,
          param,
        );
      }
      return ids;
    });
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
    const out = await this.text.run(feeds, signal);
    return {
      embeds: rowsOf(out.text_embeds).map(l2normalize),
      tokens: rows.reduce((n, r) => n + r.length, 0),
    };
  }

  /** L2-normalized image embeddings (and normalized patch embeddings where the model has them). */
  async embedImages(
    images: RgbImage[],
    signal?: AbortSignal,
  ): Promise<{ embeds: Float32Array[]; patches: Float32Array[][] | null }> {
    const pixels = await Promise.all(images.map((img) => preprocess(img, this.processor)));
    signal?.throwIfAborted();
    const { width, height } = pixels[0];
    const batch = new Float32Array(pixels.length * 3 * width * height); // [B, 3, H, W]
    pixels.forEach((p, i) => batch.set(p.data, i * p.data.length));
    const out = await this.vision.run(
      { pixel_values: this.sessions.tensor("float32", batch, [pixels.length, 3, height, width]) },
      signal,
    );
    const embeds = rowsOf(out.image_embeds).map(l2normalize);
    const p = out.patch_embeds;
    if (!p) return { embeds, patches: null };
    const [b, l, d] = p.dims as number[]; // [B, L, D]
    const data = p.data as Float32Array;
    const patches = Array.from(
      { length: b },
      (_, i) =>
        Array.from(
          { length: l },
          (_, j) => l2normalize(data.slice((i * l + j) * d, (i * l + j + 1) * d)),
        ),
    );
    return { embeds, patches };
  }

  /**
   * Zero-shot classification: each label is written into every template, the template
   * embeddings are averaged and renormalized, and a softmax over labels gives the scores.
   */
  async classify(
    image: RgbImage,
    labels: string[],
    templates: string[],
    { patchMaps = false, signal }: { patchMaps?: boolean; signal?: AbortSignal } = {},
  ): Promise<ClassifyResult[]> {
    const texts = labels.flatMap((label) => templates.map((t) => fillTemplate(t, label)));
    const [{ embeds: textEmbeds }, { embeds: [img], patches }] = await Promise.all([
      this.embedTexts(texts, signal, "candidate_labels"),
      this.embedImages([image], signal),
    ]);
    const classEmbeds = labels.map((_, i) => {
      const mean = new Float32Array(textEmbeds[0].length);
      for (let t = 0; t < templates.length; t++) {
        textEmbeds[i * templates.length + t].forEach((v, k) => (mean[k] += v));
      }
      return l2normalize(mean);
    });
    const scores = softmax(classEmbeds.map((e) => this.logitScale * dot(img, e)));
    if (patchMaps && !patches) {
      throw new ApiError(
        "unsupported",
        `Model ${this.id} does not export patch embeddings, so it cannot draw patch maps`,
        "return_patch_maps",
      );
    }
    const results = labels.map((label, i): ClassifyResult => {
      const r: ClassifyResult = { label, score: scores[i] };
      if (patchMaps && patches) {
        const side = Math.round(Math.sqrt(patches[0].length));
        r.patch_map = {
          rows: side,
          cols: side,
          values: patches[0].map((p) => round(dot(p, classEmbeds[i]))),
        };
      }
      return r;
    });
    return results.sort((a, b) => b.score - a.score);
  }

  /** Images × texts: cosine similarities and, per image, a softmax over the texts. */
  async similarity(images: RgbImage[], texts: string[], signal?: AbortSignal) {
    const [{ embeds: ie }, { embeds: te }] = await Promise.all([
      this.embedImages(images, signal),
      this.embedTexts(texts, signal, "texts"),
    ]);
    const cosine = ie.map((i) => te.map((t) => dot(i, t)));
    const probabilities = cosine.map((row) => softmax(row.map((c) => this.logitScale * c)));
    return { cosine, probabilities };
  }
}

/** Splits a [B, D] tensor into B rows. */
function rowsOf(t: { dims: readonly number[]; data: unknown }): Float32Array[] {
  const [b, d] = t.dims as number[];
  const data = t.data as Float32Array;
  return Array.from({ length: b }, (_, i) => data.slice(i * d, (i + 1) * d));
}

const round = (v: number) => Math.round(v * 1e4) / 1e4;
