/**
 * The captioning pipeline: find the word sequence S that maximises P(S | I). An encoder reads the
 * image once; a step decoder proposes each next word; a decoding strategy (greedy, beam, sample)
 * picks them. Attention models also say, for every word, where in the image they looked.
 *
 * Architectures (manifest `settings.architecture`):
 * - "lstm": Show and Tell / Show, Attend and Tell exports (encoder_model.onnx, decoder_step.onnx);
 * - "vision-encoder-decoder": ViT + GPT-2 in the public Xenova/vit-gpt2-image-captioning layout
 *   (encoder_model.onnx, decoder_model_merged.onnx with a KV cache).
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { countTokens } from "../../core/metrics.ts";
import type { RgbImage } from "../../core/image.ts";
import { preprocess, type ProcessorConfig } from "../../core/preprocess.ts";
import type { SessionRegistry } from "../../core/sessions.ts";
import { BatchedSession, type Runs } from "../../core/batched_session.ts";
import { rowsOf, stack } from "../../core/tensor.ts";
import type { ModelEntry } from "../manifest.ts";
import {
  type AttentionMaps,
  attentionWords,
  type Capabilities,
  type LoadContext,
  OptionError,
  type Pipeline,
  type RunContext,
} from "../pipeline.ts";
import {
  decode,
  type DecodeOptions,
  type Hypothesis,
  logSoftmax,
  type StepDecoder,
} from "../decoding.ts";

export type CaptionOptions = Omit<DecodeOptions, "bos" | "eos" | "signal"> & {
  returnAttention: boolean;
};

/** Greedy decoding up to 32 tokens, nothing extra: the defaults to spread other options over. */
export const GREEDY: CaptionOptions = {
  strategy: "greedy",
  maxTokens: 32,
  n: 1,
  beamSize: 3,
  temperature: 1,
  topK: 0,
  topP: 1,
  seed: 0,
  topLogprobs: 0,
  returnAttention: false,
};

export interface CaptionToken {
  token: string;
  logprob: number;
  top_logprobs?: Array<{ token: string; logprob: number }>;
}

export interface Caption {
  text: string;
  logprob: number;
  /** "stop": the caption ended by itself; "length": cut at max_tokens. */
  finish_reason: "stop" | "length";
  tokens: CaptionToken[];
  /** Per word, its attention over the rows × cols grid, and a PNG overlay (base64). */
  attention?: AttentionMaps;
}

export type Alternative = Pick<Caption, "text" | "logprob" | "finish_reason">;

const finishReason = (h: Hypothesis) => h.finished ? "stop" as const : "length" as const;

/**
 * The image's encoder output repeated for a batch of B hypotheses. Decoders feed it at every
 * step with the same B, so the copy is made once per (image, B), not once per word.
 */
const tiles = new WeakMap<Float32Array, { b: number; data: Float32Array }>();
function tiled(rowData: Float32Array, b: number): Float32Array {
  const hit = tiles.get(rowData);
  if (hit?.b === b) return hit.data;
  const data = stack(Array(b).fill(rowData));
  tiles.set(rowData, { b, data });
  return data;
}

interface LstmState {
  h: Float32Array[];
  c: Float32Array[];
}

/** Show and Tell / Show, Attend and Tell: state is the LSTM's (h, c); annotations stay fixed. */
class LstmDecoder implements StepDecoder<LstmState> {
  constructor(
    private sessions: SessionRegistry,
    private decoder: Runs,
    private annotations: Float32Array, // [L * D] of the one image
    private dims: [number, number],
    private first: LstmState,
    private signal?: AbortSignal,
  ) {}

  start(count: number): Promise<LstmState> {
    return Promise.resolve({
      h: Array(count).fill(this.first.h[0]),
      c: Array(count).fill(this.first.c[0]),
    });
  }

  async step(state: LstmState, tokens: number[]) {
    const B = tokens.length, H = state.h[0].length, [L, D] = this.dims;
    const feeds: Record<string, ReturnType<SessionRegistry["tensor"]>> = {
      input_ids: this.sessions.tensor("int64", BigInt64Array.from(tokens.map(BigInt)), [B]),
      h: this.sessions.tensor("float32", stack(state.h), [B, H]),
      c: this.sessions.tensor("float32", stack(state.c), [B, H]),
    };
    if (this.decoder.inputNames.includes("annotations")) {
      feeds.annotations = this.sessions.tensor("float32", tiled(this.annotations, B), [
        B,
        L,
        D,
      ]);
    }
    const out = await this.decoder.run(feeds, this.signal);
    return {
      logprobs: rowsOf(out.logits).map(logSoftmax),
      attention: out.attention ? rowsOf(out.attention) : null,
      state: { h: rowsOf(out.h_out), c: rowsOf(out.c_out) },
    };
  }

  select(state: LstmState, rows: number[]): LstmState {
    return { h: rows.map((r) => state.h[r]), c: rows.map((r) => state.c[r]) };
  }
}

type Tensor = ReturnType<SessionRegistry["tensor"]>;

interface KvState {
  /** Per hypothesis, per past tensor (layer key, layer value, ...): [heads, P, head_dim]. */
  past: Float32Array[][];
  length: number;
}

/** ViT + GPT-2 (merged decoder): the state is the self-attention KV cache, kept per hypothesis. */
class EncoderDecoderDecoder implements StepDecoder<KvState> {
  constructor(
    private sessions: SessionRegistry,
    private decoder: Runs,
    private encoderStates: Float32Array, // [S * D] of the one image
    private encDims: [number, number],
    private kv: { layers: number; heads: number; headDim: number },
    private signal?: AbortSignal,
  ) {}

  start(count: number): Promise<KvState> {
    return Promise.resolve({
      past: Array.from(
        { length: count },
        () => Array(2 * this.kv.layers).fill(new Float32Array(0)),
      ),
      length: 0,
    });
  }

  async step(state: KvState, tokens: number[]) {
    const B = tokens.length,
      P = state.length,
      [S, D] = this.encDims,
      { layers, heads, headDim } = this.kv;
    const feeds: Record<string, Tensor> = {
      input_ids: this.sessions.tensor("int64", BigInt64Array.from(tokens.map(BigInt)), [B, 1]),
      encoder_hidden_states: this.sessions.tensor(
        "float32",
        tiled(this.encoderStates, B),
        [B, S, D],
      ),
    };
    for (let i = 0; i < 2 * layers; i++) {
      const name = `past_key_values.${i >> 1}.${i % 2 ? "value" : "key"}`;
      feeds[name] = this.sessions.tensor("float32", stack(state.past.map((p) => p[i])), [
        B,
        heads,
        P,
        headDim,
      ]);
    }
    const names = this.decoder.inputNames;
    if (names.includes("use_cache_branch")) {
      feeds.use_cache_branch = this.sessions.tensor("bool", Uint8Array.of(P > 0 ? 1 : 0), [1]);
    }
    if (names.includes("encoder_attention_mask")) {
      feeds.encoder_attention_mask = this.sessions.tensor(
        "int64",
        new BigInt64Array(B * S).fill(1n),
        [B, S],
      );
    }
    if (names.includes("attention_mask")) {
      feeds.attention_mask = this.sessions.tensor(
        "int64",
        new BigInt64Array(B * (P + 1)).fill(1n),
        [B, P + 1],
      );
    }
    const out = await this.decoder.run(feeds, this.signal);
    const presents = Array.from(
      { length: 2 * layers },
      (_, i) => rowsOf(out[`present.${i >> 1}.${i % 2 ? "value" : "key"}`]),
    );
    let attention: Float32Array[] | null = null;
    if (out.cross_attentions) {
      // [B, 1, S]: drop the class token and renormalize over the patches.
      attention = rowsOf(out.cross_attentions).map((a) => {
        const patches = a.slice(a.length - (S - 1));
        const z = patches.reduce((x, y) => x + y, 0);
        return patches.map((v) => v / z);
      });
    }
    return {
      logprobs: rowsOf(out.logits).map(logSoftmax),
      attention,
      state: {
        past: Array.from({ length: B }, (_, b) => presents.map((p) => p[b])),
        length: P + 1,
      },
    };
  }

  select(state: KvState, rows: number[]): KvState {
    return { past: rows.map((r) => state.past[r]), length: state.length };
  }
}

/** Runs the encoder for one image and returns the step decoder that continues from it. */
type Begin = (
  pixels: { data: Float32Array; width: number; height: number },
  signal?: AbortSignal,
) => Promise<StepDecoder<unknown>>;

export class CaptionPipeline implements Pipeline {
  readonly family = "captioning";

  private constructor(
    readonly id: string,
    private tokenizer: Tokenizer,
    private processor: ProcessorConfig,
    private generation: {
      bos_token_id?: number;
      decoder_start_token_id?: number;
      eos_token_id: number;
      max_length: number;
    },
    private begin: Begin,
    readonly grid: number,
    readonly hasAttention: boolean,
    /**
     * Which steps' maps explain a word, relative to its own (0), averaged: where the model looks
     * at an object a step before it names it, [-1, 0] (settings.attention_steps, as measured by
     * `deno task eval pointing`).
     */
    private attentionSteps: number[] = [0],
  ) {}

  /** Explainable where the model attends: each word's attention map comes with it. */
  get capabilities(): Capabilities {
    return { streaming: false, batchable: false, explainable: this.hasAttention };
  }

  static async load(
    entry: ModelEntry,
    { sessions, maxBatch = 32 }: LoadContext,
  ): Promise<CaptionPipeline> {
    const read = async (name: string) => JSON.parse(await Deno.readTextFile(entry.dir + name));
    const { manifest: m } = entry;
    const [tokJson, tokConfig, processor, generation, config] = await Promise.all([
      read("tokenizer.json"),
      read("tokenizer_config.json"),
      read("preprocessor_config.json"),
      read("generation_config.json"),
      read("config.json"),
    ]);
    // Concurrent captions share runs: the encoder's images, and each decode step's rows
    // (continuous batching: a caption joins at its next step and leaves when it ends).
    const batched = async (file: string) =>
      new BatchedSession(sessions, await sessions.load(entry.dir + file), {
        maxBatch,
        shared: ["use_cache_branch"],
      });
    const [encoder, decoder] = await Promise.all([
      batched(m.files.encoder),
      batched(m.files.decoder),
    ]);
    const tokenizer = new Tokenizer(tokJson, tokConfig);
    const pixelTensor = (p: { data: Float32Array; width: number; height: number }) =>
      sessions.tensor("float32", p.data, [1, 3, p.height, p.width]);
    let begin: Begin, grid: number, attention: boolean;
    if (m.settings.architecture === "lstm") {
      grid = Number(m.settings.grid ?? 8);
      attention = decoder.outputNames.includes("attention");
      begin = async (p, signal) => {
        const enc = await encoder.run({ pixel_values: pixelTensor(p) }, signal);
        const [, L, D] = enc.annotations.dims as number[];
        const first = { h: [enc.h.data as Float32Array], c: [enc.c.data as Float32Array] };
        return new LstmDecoder(
          sessions,
          decoder,
          enc.annotations.data as Float32Array,
          [L, D],
          first,
          signal,
        );
      };
    } else if (m.settings.architecture === "vision-encoder-decoder") {
      const e = config.encoder, d = config.decoder;
      grid = Number(m.settings.grid ?? Math.round(e.image_size / e.patch_size));
      attention = decoder.outputNames.includes("cross_attentions");
      const kv = { layers: d.n_layer, heads: d.n_head, headDim: d.n_embd / d.n_head };
      begin = async (p, signal) => {
        const enc = await encoder.run({ pixel_values: pixelTensor(p) }, signal);
        const [, S, D] = enc.last_hidden_state.dims as number[];
        return new EncoderDecoderDecoder(
          sessions,
          decoder,
          enc.last_hidden_state.data as Float32Array,
          [S, D],
          kv,
          signal,
        );
      };
    } else {
      throw new Error(`Captioning architecture "${m.settings.architecture}" is not supported`);
    }
    const steps = m.settings.attention_steps ?? [0];
    if (!Array.isArray(steps) || !steps.length || !steps.every(Number.isInteger)) {
      throw new Error(`${m.id}: settings.attention_steps must be a list of step offsets`);
    }
    return new CaptionPipeline(
      m.id,
      tokenizer,
      processor,
      generation,
      begin,
      grid,
      attention,
      steps,
    );
  }

  get maxTokens(): number {
    return this.generation.max_length;
  }

  async warmup(): Promise<void> {
    const gray = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(128) };
    await this.caption(gray, { ...GREEDY, maxTokens: 2 });
  }

  /** Captions of an image; for beam search also the other finished beams (`alternatives`). */
  async caption(
    image: RgbImage,
    o: CaptionOptions,
    { signal }: RunContext = {},
  ): Promise<{ captions: Caption[]; alternatives: Alternative[] }> {
    if (o.returnAttention && !this.capabilities.explainable) {
      throw new OptionError(
        "returnAttention",
        (f) =>
          `${
            f("returnAttention")
          }: ${this.id} has no attention to return (Show and Tell reads the image once)`,
        "unsupported",
      );
    }
    const decoder = await this.begin(await preprocess(image, this.processor), signal);
    const hyps = await decode(decoder, {
      ...o,
      maxTokens: Math.min(o.maxTokens, this.generation.max_length),
      bos: this.generation.decoder_start_token_id ?? this.generation.bos_token_id ?? 0,
      eos: this.generation.eos_token_id,
      signal,
    });
    countTokens("captioning", this.id, hyps.slice(0, o.n).reduce((t, h) => t + h.ids.length, 0));
    return {
      captions: await Promise.all(hyps.slice(0, o.n).map((h) => this.#describe(h, image, o))),
      alternatives: hyps.slice(o.n).map((h) => ({
        text: this.tokenizer.decode(h.ids, { skip_special_tokens: true }),
        logprob: round(h.logprob),
        finish_reason: finishReason(h),
      })),
    };
  }

  async #describe(h: Hypothesis, image: RgbImage, o: CaptionOptions): Promise<Caption> {
    const word = (id: number) => this.tokenizer.decode([id], { skip_special_tokens: false });
    const caption: Caption = {
      text: this.tokenizer.decode(h.ids, { skip_special_tokens: true }),
      logprob: round(h.logprob),
      finish_reason: finishReason(h),
      tokens: h.ids.map((id, i) => ({
        token: word(id),
        logprob: round(h.logprobs[i]),
        ...(o.topLogprobs > 0
          ? { top_logprobs: h.top[i].map(([t, l]) => ({ token: word(t), logprob: round(l) })) }
          : {}),
      })),
    };
    if (o.returnAttention) {
      const side = this.grid;
      caption.attention = {
        rows: side,
        cols: side,
        words: await attentionWords(
          image,
          h.attention.map((_, i) => ({
            token: word(h.ids[i]),
            weights: this.#wordMap(h.attention, i),
          })),
          side,
          side,
        ),
      };
    }
    return caption;
  }

  /** Word i's map: the mean of its steps' maps (clamped to the caption's steps). */
  #wordMap(maps: Float32Array[], i: number): Float32Array {
    const out = new Float32Array(maps[i].length);
    for (const d of this.attentionSteps) {
      const m = maps[Math.min(Math.max(i + d, 0), maps.length - 1)];
      for (let k = 0; k < out.length; k++) out[k] += m[k] / this.attentionSteps.length;
    }
    return out;
  }
}

const round = (v: number) => Math.round(v * 1e4) / 1e4;
