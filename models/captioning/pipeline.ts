/**
 * The captioning pipeline: find the word sequence S that maximises P(S | I). An encoder reads the
 * image once; a step decoder proposes each next word; a decoding strategy (greedy, beam, sample)
 * picks them. Attention models also say, for every word, where in the image they looked.
 *
 * Architectures (manifest `settings.architecture`):
 * - "lstm": Show and Tell / Show, Attend and Tell exports (encoder_model.onnx, decoder_step.onnx).
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { ApiError } from "../../core/errors.ts";
import { heatmapOverlay } from "../../core/heatmap.ts";
import type { RgbImage } from "../../core/image.ts";
import { preprocess, type ProcessorConfig } from "../../core/preprocess.ts";
import type { Session, SessionRegistry } from "../../core/sessions.ts";
import type { ModelEntry } from "../manifest.ts";
import {
  decode,
  type DecodeOptions,
  type Hypothesis,
  logSoftmax,
  type StepDecoder,
} from "./decoding.ts";

export type CaptionOptions = Omit<DecodeOptions, "bos" | "eos" | "signal"> & {
  returnAttention: boolean;
};

export interface CaptionToken {
  token: string;
  logprob: number;
  top_logprobs?: Array<{ token: string; logprob: number }>;
}

export interface Caption {
  text: string;
  logprob: number;
  tokens: CaptionToken[];
  /** Per word, its attention over the rows × cols grid, and a PNG overlay (base64). */
  attention?: {
    rows: number;
    cols: number;
    words: Array<{ token: string; weights: number[]; overlay_png: string }>;
  };
}

interface LstmState {
  h: Float32Array[];
  c: Float32Array[];
}

/** Show and Tell / Show, Attend and Tell: state is the LSTM's (h, c); annotations stay fixed. */
class LstmDecoder implements StepDecoder<LstmState> {
  constructor(
    private sessions: SessionRegistry,
    private decoder: Session,
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
    const flat = (rows: Float32Array[]) => {
      const out = new Float32Array(rows.length * rows[0].length);
      rows.forEach((r, i) => out.set(r, i * r.length));
      return out;
    };
    const feeds: Record<string, ReturnType<SessionRegistry["tensor"]>> = {
      input_ids: this.sessions.tensor("int64", BigInt64Array.from(tokens.map(BigInt)), [B]),
      h: this.sessions.tensor("float32", flat(state.h), [B, H]),
      c: this.sessions.tensor("float32", flat(state.c), [B, H]),
    };
    if (this.decoder.inputNames.includes("annotations")) {
      feeds.annotations = this.sessions.tensor("float32", flat(Array(B).fill(this.annotations)), [
        B,
        L,
        D,
      ]);
    }
    const out = await this.decoder.run(feeds, this.signal);
    const rows = (t: { data: unknown }, width: number) => {
      const d = t.data as Float32Array;
      return Array.from({ length: B }, (_, i) => d.slice(i * width, (i + 1) * width));
    };
    const V = out.logits.dims[1] as number;
    return {
      logprobs: rows(out.logits, V).map(logSoftmax),
      attention: out.attention ? rows(out.attention, L) : null,
      state: { h: rows(out.h_out, H), c: rows(out.c_out, H) },
    };
  }

  select(state: LstmState, rows: number[]): LstmState {
    return { h: rows.map((r) => state.h[r]), c: rows.map((r) => state.c[r]) };
  }
}

export class CaptionPipeline {
  private constructor(
    readonly id: string,
    private tokenizer: Tokenizer,
    private processor: ProcessorConfig,
    private generation: { bos_token_id: number; eos_token_id: number; max_length: number },
    private encoder: Session,
    private decoder: Session,
    private sessions: SessionRegistry,
    readonly grid: number,
    readonly hasAttention: boolean,
  ) {}

  static async load(entry: ModelEntry, sessions: SessionRegistry): Promise<CaptionPipeline> {
    const read = async (name: string) => JSON.parse(await Deno.readTextFile(entry.dir + name));
    const { manifest: m } = entry;
    if (m.settings.architecture !== "lstm") {
      throw new ApiError(
        "unsupported",
        `Captioning architecture "${m.settings.architecture}" is not served yet`,
        "model",
      );
    }
    const [tokJson, tokConfig, processor, generation] = await Promise.all([
      read("tokenizer.json"),
      read("tokenizer_config.json"),
      read("preprocessor_config.json"),
      read("generation_config.json"),
    ]);
    const [encoder, decoder] = await Promise.all([
      sessions.load(entry.dir + m.files.encoder),
      sessions.load(entry.dir + m.files.decoder),
    ]);
    return new CaptionPipeline(
      m.id,
      new Tokenizer(tokJson, tokConfig),
      processor,
      generation,
      encoder,
      decoder,
      sessions,
      Number(m.settings.grid ?? 8),
      decoder.outputNames.includes("attention"),
    );
  }

  get maxTokens(): number {
    return this.generation.max_length;
  }

  async warmup(): Promise<void> {
    const gray = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(128) };
    await this.caption(gray, {
      strategy: "greedy",
      maxTokens: 2,
      n: 1,
      beamSize: 1,
      temperature: 1,
      topK: 0,
      topP: 1,
      seed: 0,
      topLogprobs: 0,
      returnAttention: false,
    });
  }

  async caption(image: RgbImage, o: CaptionOptions, signal?: AbortSignal): Promise<Caption[]> {
    if (o.returnAttention && !this.hasAttention) {
      throw new ApiError(
        "unsupported",
        `${this.id} has no attention to return (Show and Tell reads the image once)`,
        "return_attention",
      );
    }
    const px = await preprocess(image, this.processor);
    const enc = await this.encoder.run(
      { pixel_values: this.sessions.tensor("float32", px.data, [1, 3, px.height, px.width]) },
      signal,
    );
    const [, L, D] = enc.annotations.dims as number[];
    const decoder = new LstmDecoder(
      this.sessions,
      this.decoder,
      enc.annotations.data as Float32Array,
      [L, D],
      { h: [enc.h.data as Float32Array], c: [enc.c.data as Float32Array] },
      signal,
    );
    const hyps = await decode(decoder, {
      ...o,
      maxTokens: Math.min(o.maxTokens, this.generation.max_length),
      bos: this.generation.bos_token_id,
      eos: this.generation.eos_token_id,
      signal,
    });
    return await Promise.all(hyps.slice(0, o.n).map((h) => this.#describe(h, image, o)));
  }

  async #describe(h: Hypothesis, image: RgbImage, o: CaptionOptions): Promise<Caption> {
    const word = (id: number) => this.tokenizer.decode([id], { skip_special_tokens: false });
    const caption: Caption = {
      text: this.tokenizer.decode(h.ids, { skip_special_tokens: true }),
      logprob: round(h.logprob),
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
        words: await Promise.all(h.attention.map(async (a, i) => ({
          token: word(h.ids[i]),
          weights: Array.from(a, round),
          overlay_png: (await heatmapOverlay(image, a, side, side)).toBase64(),
        }))),
      };
    }
    return caption;
  }
}

const round = (v: number) => Math.round(v * 1e4) / 1e4;
