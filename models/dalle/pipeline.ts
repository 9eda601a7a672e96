/**
 * DALL-E (Ramesh et al. 2021): the caption's tokens, padded to a fixed length, then the
 * transformer samples the image's codebook tokens one by one in raster order, and the dVAE
 * decoder turns the grid into pixels. n candidates are sampled (candidate j from seed + j, so a
 * candidate does not depend on n); the registry's CLIP scorer keeps the k best when asked.
 *
 * The transformer shares the chat decoder's architecture, so on WebGPU it runs on our WGSL
 * kernels (`GpuDecoder`, KV cache on the GPU, only the 576 logits read back per token); elsewhere
 * its ONNX export runs through ORT with past key/values, all candidates in one batch.
 *
 * Word maps (`returnAttention`): the decoder export's `attentions` output gives, at every image
 * token, the attention of the query that sampled it (the position before it) to each prompt
 * word, averaged over layers and heads: one value per grid cell and word. The WGSL decoder has
 * no such output, so a request for maps runs on ORT (the response's `decoder` says so).
 */
import type { Tokenizer } from "@huggingface/tokenizers";
import type { Tensor } from "../../core/backend.ts";
import { rng } from "../../core/random.ts";
import { BatchedSession, type Runs } from "../../core/batched_session.ts";
import type { Session, SessionRegistry } from "../../core/sessions.ts";
import { loadTokenizer } from "../../core/tokenizers.ts";
import { toRgbaReference } from "../../kernels/denoise.ts";
import {
  type DecoderConfig,
  decoderConfig,
  GpuDecoder,
  GpuWeights,
} from "../../kernels/decoder.ts";
import { readSafetensors } from "../../core/safetensors.ts";
import { logSoftmax, sampleToken } from "../decoding.ts";
import {
  checkCommon,
  checkExplainable,
  DIFFUSION_OPTIONS,
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

export interface DalleOptions {
  prompt: string;
  n: number;
  /** Candidate j uses seed + j. */
  seed: number;
  temperature: number;
  topK: number;
  topP: number;
  /** How many decoded previews of the grid to send while sampling (0: none). */
  previews?: number;
  /** false: ORT even where the WGSL decoder could run (tests, benchmark). */
  kernels?: boolean;
  /** Each prompt word's map over each image's token grid (runs on ORT). */
  returnAttention?: boolean;
}

export interface DalleGenerated extends ImageOutput {
  decoder: "wgsl-kernels" | "onnxruntime";
  timings: { transformer_ms: number; vqvae_decoder_ms: number; total_ms: number };
}

export interface DalleSettings {
  defaultTemperature: number;
  defaultTopK: number;
  size: number;
  /** The decoder heads, as [layer, head] pairs, whose attention makes the word maps (all when
   * absent): some heads ground words in the image, others attend by position (`attention_heads`). */
  attentionHeads?: Array<[number, number]>;
}

interface Layout {
  textLength: number;
  textPad: number;
  imageOffset: number;
  codebook: number;
  grid: number;
  size: number;
  layers: number;
  kvHeads: number;
  headDim: number;
}

const now = () => performance.now();

/** One generation's sampling state, shared by the two ways of running the transformer. */
interface Sampling {
  text: number[];
  /** Per candidate, the codes sampled so far (−1: not yet). */
  grids: number[][];
  pick(logits: Float32Array, candidate: number): number;
  report(step: number, of: number): Promise<void>;
  signal?: AbortSignal;
  /** With word maps: the prompt words' place in `text`, and per candidate and cell their
   * attention (filled by the ORT path). */
  words?: { first: number; count: number; cells: Float32Array[][] };
}

export class DallePipeline implements ImageGenerator {
  readonly family = "dalle";
  #gpuWeights: Promise<GpuWeights> | null = null;

  private constructor(
    readonly id: string,
    readonly settings: DalleSettings,
    private sessions: SessionRegistry,
    private scorer: (() => Promise<ImageScorer>) | undefined,
    private tokenizer: Tokenizer,
    private decoder: Runs,
    private vqDecoder: Session,
    private layout: Layout,
    private kernel: { config: DecoderConfig; weights: string } | null,
  ) {}

  /** Explainable where the decoder export returns its attention probabilities. */
  get capabilities(): Capabilities {
    return {
      streaming: true,
      batchable: true,
      explainable: this.decoder.outputNames.includes("attentions"),
    };
  }

  /** Image tokens sampled per image (the dVAE's grid). */
  get imageTokens(): number {
    return this.layout.grid ** 2;
  }

  static async load(
    entry: ModelEntry,
    { sessions, scorer, maxBatch = 32 }: LoadContext,
  ): Promise<DallePipeline> {
    const config = JSON.parse(await Deno.readTextFile(entry.dir + "config.json"));
    const files = entry.manifest.files;
    const [tok, transformer, vqDecoder] = await Promise.all([
      loadTokenizer(entry.dir),
      sessions.load(entry.dir + files.decoder),
      sessions.load(entry.dir + files.vqvae_decoder),
    ]);
    // Concurrent generations' steps share transformer runs, whatever their lengths so far.
    const decoder = new BatchedSession(sessions, transformer, {
      maxBatch,
      cache: { lastAxis: ["attentions"] },
    });
    const text = config.text_config;
    const s = entry.manifest.settings as Record<string, number>;
    const heads = entry.manifest.settings.attention_heads;
    if (
      heads !== undefined && !isHeadList(heads, text.num_hidden_layers, text.num_attention_heads)
    ) {
      throw new Error(`${entry.manifest.id}: settings.attention_heads must be [layer, head] pairs`);
    }
    return new DallePipeline(
      entry.manifest.id,
      {
        defaultTemperature: s.default_temperature ?? 1,
        defaultTopK: s.default_top_k ?? 0,
        size: config.image_size,
        attentionHeads: heads,
      },
      sessions,
      scorer,
      tok.tokenizer,
      decoder,
      vqDecoder,
      {
        textLength: config.text_length,
        textPad: config.text_pad_token_id,
        imageOffset: config.image_token_offset,
        codebook: config.codebook_size,
        grid: config.image_grid,
        size: config.image_size,
        layers: text.num_hidden_layers,
        kvHeads: text.num_key_value_heads,
        headDim: text.head_dim,
      },
      files.weights ? { weights: entry.dir + files.weights, config: decoderConfig(text) } : null,
    );
  }

  async warmup(): Promise<void> {
    await this.generate({
      prompt: "a red circle",
      n: 1,
      seed: 0,
      temperature: 1,
      topK: 0,
      topP: 1,
      kernels: false,
    });
  }

  /** The caption's ids, padded to the fixed text length; a prompt too long is a clear 400. */
  textIds(prompt: string): number[] {
    const ids = this.tokenizer.encode(prompt).ids;
    const L = this.layout.textLength;
    if (ids.length > L) {
      throw new OptionError(
        "prompt",
        (f) => `${f("prompt")} is ${ids.length - 2} words; ${this.id} reads at most ${L - 2}`,
      );
    }
    return [...ids, ...new Array(L - ids.length).fill(this.layout.textPad)];
  }

  /** A request with the model's sampling defaults filled in; the size and steps are fixed. */
  plan(r: ImageRequest): ImageJob {
    checkCommon(r, this.id, "DALL-E", DIFFUSION_OPTIONS);
    const S = this.settings.size;
    if ((r.width ?? S) !== S || (r.height ?? S) !== S) {
      const got = `${r.width ?? S}x${r.height ?? S}`;
      throw new OptionError("width", () => `${this.id} draws ${S}x${S} images only, not ${got}`);
    }
    if (r.quality === "low" || r.quality === "high") {
      throw new OptionError(
        "quality",
        (f) =>
          `${
            f("quality")
          }: ${this.id} samples a fixed ${this.imageTokens} image tokens; only the ` +
          `default quality (for more compute per image, use ${f("n")} with ${f("rerank")})`,
        "unsupported",
      );
    }
    const o: DalleOptions = {
      prompt: r.prompt,
      n: r.n,
      seed: seedOf(r),
      temperature: r.temperature ?? this.settings.defaultTemperature,
      topK: r.topK ?? this.settings.defaultTopK,
      topP: r.topP ?? 1,
      previews: r.previews,
      returnAttention: r.returnAttention,
    };
    this.textIds(o.prompt);
    checkExplainable(o, this, "its decoder export has no attentions output");
    return {
      model: this.id,
      family: this.family,
      steps: this.imageTokens,
      width: S,
      height: S,
      run: reranked((context) => this.generate(o, context), r, this.scorer),
    };
  }

  /** n candidates from seeds seed … seed + n − 1, every option given. */
  async generate(
    o: DalleOptions,
    { signal, progress }: RunContext<ImageProgress> = {},
  ): Promise<DalleGenerated> {
    checkExplainable(o, this, "its decoder export has no attentions output");
    const start = now();
    const text = this.textIds(o.prompt);
    const words = o.returnAttention ? promptWords(this.tokenizer, o.prompt) : null;
    const { imageOffset, codebook } = this.layout;
    const total = this.imageTokens;
    const rngs = Array.from({ length: o.n }, (_, j) => rng(o.seed + j));
    const grids = Array.from({ length: o.n }, () => new Array<number>(total).fill(-1));
    let vqMs = 0;
    const decodeGrids = async (fill: number[][]) => {
      const t = now();
      const images = await this.#decodeGrids(fill, signal);
      vqMs += now() - t;
      return images;
    };
    let previewAt: Set<number> | null = null;
    const sampling: Sampling = {
      text,
      grids,
      signal,
      ...(words
        ? {
          words: {
            first: words.first,
            count: words.tokens.length,
            cells: grids.map(() => new Array<Float32Array>(total)),
          },
        }
        : {}),
      // Image positions may only hold image codes: the text part of the vocabulary is masked out.
      pick: (logits, j) => {
        const lp = logSoftmax(logits.subarray(imageOffset, imageOffset + codebook));
        const { temperature, topK, topP } = o;
        return sampleToken(lp, { temperature, topK, topP }, rngs[j]);
      },
      report: async (step, of) => {
        previewAt ??= previewSteps(of, o.previews ?? 0);
        const preview = previewAt.has(step)
          // Unsampled cells take the first cell's code (mostly background), so that the grid
          // visibly fills in, row by row.
          ? await decodeGrids(grids.map((g) => g.map((v) => (v < 0 ? g[0] : v))))
          : undefined;
        await progress?.({ step, total: of, ...(preview ? { preview } : {}) });
      },
    };
    const t0 = now();
    const kernels = words ? null : await this.#kernelDecoder(o);
    if (kernels) await this.#sampleOnKernels(kernels, sampling);
    else await this.#sampleOnOrt(sampling);
    const transformerMs = now() - t0 - vqMs;
    const images = await decodeGrids(grids);
    const { grid } = this.layout;
    return {
      images,
      ...(words && sampling.words
        ? {
          maps: images.map((_, j) =>
            wordMaps(
              words.tokens.map((token, w) => ({
                token,
                weights: sampling.words!.cells[j].map((cell) => cell[w]),
              })),
              grid,
              grid,
            )
          ),
        }
        : {}),
      seeds: grids.map((_, j) => (o.seed + j) >>> 0),
      steps: total,
      outputTokens: total,
      scheduler: "sampling",
      promptTokens: this.tokenizer.encode(o.prompt).ids.length,
      decoder: kernels ? "wgsl-kernels" : "onnxruntime",
      timings: {
        transformer_ms: transformerMs,
        vqvae_decoder_ms: vqMs,
        total_ms: now() - start,
      },
    };
  }

  /** The WGSL decoder holds one sequence: the candidates run one after the other. */
  async #sampleOnKernels(kernels: GpuDecoder, s: Sampling): Promise<void> {
    const total = this.imageTokens, n = s.grids.length;
    const step = async (tokens: number[]) =>
      (await this.sessions.schedule(() => kernels.step(tokens, true))).logits!;
    try {
      for (let j = 0; j < n; j++) {
        kernels.reset(new Float32Array(kernels.c.hidden), 1); // no cross-attention layers
        let logits = await step(s.text);
        for (let i = 0; i < total; i++) {
          s.signal?.throwIfAborted();
          s.grids[j][i] = s.pick(logits, j);
          if (i + 1 < total) logits = await step([s.grids[j][i] + this.layout.imageOffset]);
          await s.report(j * total + i + 1, n * total);
        }
      }
    } finally {
      kernels.destroy();
    }
  }

  /** Through ORT with past key/values: all candidates in one batch, a token each per run. */
  async #sampleOnOrt(s: Sampling): Promise<void> {
    const total = this.imageTokens, n = s.grids.length, offset = this.layout.imageOffset;
    const texts = Array.from({ length: n }, () => s.text);
    let state = await this.#forward(texts, this.#emptyPast(n), s.signal, s.words);
    for (let i = 0; i < total; i++) {
      for (let j = 0; j < n; j++) {
        s.grids[j][i] = s.pick(state.logits[j], j);
        if (s.words) s.words.cells[j][i] = state.words![j];
      }
      if (i + 1 < total) {
        const next = s.grids.map((g) => [g[i] + offset]);
        state = await this.#forward(next, state.past, s.signal, s.words);
      }
      await s.report(i + 1, total);
    }
  }

  /** Code grids (−1: not sampled yet, drawn as code 0) through the dVAE decoder, as images. */
  async #decodeGrids(fill: number[][], signal?: AbortSignal) {
    const { grid, size: S } = this.layout;
    const ids = BigInt64Array.from(fill.flat(), (v) => BigInt(Math.max(0, v)));
    const out = await this.vqDecoder.run({
      image_tokens: this.sessions.tensor("int64", ids, [fill.length, grid, grid]),
    }, signal);
    const rgba = toRgbaReference(out.sample.data as Float32Array, fill.length, 3, S * S);
    return rgbaImages(rgba, fill.length, S, S);
  }

  async #kernelDecoder(o: DalleOptions): Promise<GpuDecoder | null> {
    if (!this.kernel || o.kernels === false) return null;
    const device = await this.sessions.gpuDevice();
    if (!device) return null;
    this.#gpuWeights ??= readSafetensors(this.kernel.weights).then((w) =>
      new GpuWeights(device, w)
    );
    return new GpuDecoder(await this.#gpuWeights, this.kernel.config);
  }

  #emptyPast(n: number): Tensor[] {
    const { layers, kvHeads, headDim } = this.layout;
    return Array.from(
      { length: 2 * layers },
      () => this.sessions.tensor("float32", new Float32Array(0), [n, kvHeads, 0, headDim]),
    );
  }

  /**
   * One batched decoder run over `rows` (equal lengths) after `past`; the last logits per row,
   * and with `words` the last query's attention to each of them, averaged over layers and heads.
   */
  async #forward(
    rows: number[][],
    past: Tensor[],
    signal?: AbortSignal,
    words?: { first: number; count: number },
  ) {
    const n = rows.length, T = rows[0].length, P = past[0].dims[2] as number, total = P + T;
    const feeds: Record<string, Tensor> = {
      input_ids: this.sessions.tensor("int64", BigInt64Array.from(rows.flat(), BigInt), [n, T]),
      attention_mask: this.sessions.tensor("int64", new BigInt64Array(n * total).fill(1n), [
        n,
        total,
      ]),
      position_ids: this.sessions.tensor(
        "int64",
        BigInt64Array.from({ length: n * T }, (_, i) => BigInt(P + (i % T))),
        [n, T],
      ),
    };
    for (let i = 0; i < this.layout.layers; i++) {
      feeds[`past_key_values.${i}.key`] = past[2 * i];
      feeds[`past_key_values.${i}.value`] = past[2 * i + 1];
    }
    const out = await this.decoder.run(feeds, signal);
    const all = out.logits.data as Float32Array;
    const V = out.logits.dims.at(-1) as number;
    return {
      logits: Array.from(
        { length: n },
        (_, j) => all.subarray(((j + 1) * T - 1) * V, (j + 1) * T * V),
      ),
      words: words &&
        lastQueryToWords(out.attentions, words.first, words.count, this.settings.attentionHeads),
      past: Array.from(
        { length: 2 * this.layout.layers },
        (_, k) => out[`present.${k >> 1}.${k % 2 ? "value" : "key"}`],
      ),
    };
  }
}

/**
 * Attention probabilities [n, layers, heads, T, S] at the last query position: per row, the
 * mean over `heads` ([layer, head] pairs; every head when absent) of its weights on keys
 * first … first + count − 1.
 */
export function lastQueryToWords(
  maps: Tensor,
  first: number,
  count: number,
  heads?: Array<[number, number]>,
): Float32Array[] {
  const [n, L, H, T, S] = maps.dims as number[];
  const data = maps.data as Float32Array;
  const chosen = heads ?? Array.from({ length: L * H }, (_, k) => [Math.floor(k / H), k % H]);
  return Array.from({ length: n }, (_, j) => {
    const out = new Float32Array(count);
    for (const [l, h] of chosen) {
      const row = (((j * L + l) * H + h) * T + T - 1) * S + first;
      for (let w = 0; w < count; w++) out[w] += data[row + w] / chosen.length;
    }
    return out;
  });
}

/** Whether `v` is a non-empty list of [layer, head] pairs inside an L-layer, H-head decoder. */
function isHeadList(v: unknown, L: number, H: number): v is Array<[number, number]> {
  return Array.isArray(v) && v.length > 0 &&
    v.every((p) =>
      Array.isArray(p) && p.length === 2 && Number.isInteger(p[0]) && Number.isInteger(p[1]) &&
      p[0] >= 0 && p[0] < L && p[1] >= 0 && p[1] < H
    );
}
