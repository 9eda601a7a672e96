/**
 * The multimodal chat pipeline, for both architectures of the course:
 *
 * - unified embedding decoder (`model_type: "idefics3"`: vlm-tiny, SmolVLM): the chat template's
 *   `<image>` becomes the processor's run of image tokens, and the vision encoder's features take
 *   those tokens' places in the embedding sequence the decoder reads;
 * - cross-attention decoder (`model_type: "mm_xattn"`: vlm-xattn-tiny): the prompt keeps one
 *   `<image>` marker per image, and every decoder step also reads the image features
 *   (`cross_attention_states`), which its cross-attention layers attend to.
 *
 * Prefill runs the prompt once; each new token then runs one decoder step over the KV cache
 * (`past_key_values.*`), which stays in GPU buffers on WebGPU. Greedy or seeded sampling with
 * temperature / top-k / top-p, stop strings, per-token log-probabilities, streaming callbacks.
 *
 * On the CPU backends concurrent conversations share runs (core/batched_session.ts: continuous
 * batching — a conversation joins the running batch at its next step and leaves it when it ends;
 * each keeps its own cache length, sampling and cancellation).
 *
 * Explainable where the decoder exports its attention (`attentions`, `cross_attentions`): each
 * answer token comes with the attention of the step that chose it over the image's tokens.
 */
import { Template } from "@huggingface/jinja";
import type { Tokenizer } from "@huggingface/tokenizers";
import type { Tensor } from "../../core/backend.ts";
import { BatchedSession, type Runs } from "../../core/batched_session.ts";
import type { RgbImage } from "../../core/image.ts";
import { resize } from "../../core/preprocess.ts";
import type { SessionRegistry } from "../../core/sessions.ts";
import { loadTokenizer } from "../../core/tokenizers.ts";
import {
  decode,
  type Hypothesis,
  logSoftmax,
  type StepDecoder,
  StopStrings,
  topK,
} from "../decoding.ts";
import {
  type DecoderConfig,
  decoderConfig,
  GpuDecoder,
  GpuWeights,
} from "../../kernels/decoder.ts";
import { readSafetensors } from "../../core/safetensors.ts";
import type { ModelEntry } from "../manifest.ts";
import {
  type AttentionMaps,
  type AttentionWord,
  attentionWords,
  type Capabilities,
  type LoadContext,
  OptionError,
  type Pipeline,
  type RunContext,
} from "../pipeline.ts";

export type Part = { type: "text"; text: string } | { type: "image"; image: RgbImage };
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: Part[];
}

export interface ChatOptions {
  maxTokens: number;
  /** 0: greedy. */
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  stop: string[];
  topLogprobs: number;
  /** OpenAI's sampling-time adjustments (see `stepLogprobs`); absent: none. */
  frequencyPenalty?: number;
  presencePenalty?: number;
  /** Token id → bias added to its logit (-100 bans it, +100 all but forces it). */
  logitBias?: Map<number, number>;
  /** On WebGPU, run a decoder that has `model.safetensors` on our own kernels (default true). */
  kernels?: boolean;
  /** Each answer token's attention over the image (explainable models, one image). */
  returnAttention?: boolean;
}

/** Greedy decoding with no extras: what evaluations and benchmarks ask (set maxTokens). */
export const GREEDY: ChatOptions = {
  maxTokens: 64,
  temperature: 0,
  topP: 1,
  topK: 0,
  seed: 0,
  stop: [],
  topLogprobs: 0,
};

/**
 * What a chat reports as it decodes: each new piece of text, and the tokens decoded since the
 * last report (their text is in this piece or held back for a stop string; a last report may
 * carry tokens and no text).
 */
export interface ChatDelta {
  text: string;
  tokens: ChatToken[];
  /** With returnAttention: these tokens' maps. */
  attention?: AttentionMaps;
}

export interface ChatToken {
  token: string;
  logprob: number;
  top_logprobs: Array<{ token: string; logprob: number }>;
}

export interface ChatResult {
  text: string;
  tokens: ChatToken[];
  finishReason: "stop" | "length";
  promptTokens: number;
  completionTokens: number;
  timings: { vision_ms: number; prefill_ms: number; decode_ms: number; tokens_per_second: number };
  /** What ran the decoder: ONNX Runtime, or our WGSL kernels. */
  decoder: "onnxruntime" | "wgsl-kernels";
  /** With returnAttention: one map per answer token, over the image's token grid. */
  attention?: AttentionMaps;
}

interface Processor {
  longestEdge: number;
  mean: number[];
  std: number[];
}

interface State {
  past: Tensor[];
  length: number;
}

/** One decoder call: the last position's log-probabilities and, when asked, its image attention. */
/** One decoder run: the last position's logits (and its image attention, where asked). */
type Forward = (tokens: number[]) => Promise<{ logits: Float32Array; attention?: Float32Array }>;

const now = () => performance.now();

/** A float output's values on the host, wherever the session left it. */
const hostData = async (t: Tensor): Promise<Float32Array> =>
  t.location === "gpu-buffer" ? await t.getData(true) as Float32Array : t.data as Float32Array;

/**
 * One step's log-probabilities from its logits, after OpenAI's penalties and logit bias: each
 * token's logit gets its bias, minus `frequency · count` and `presence · (count > 0)` where count
 * is how often the answer already holds it. One log-softmax a token, adjusted or not: over a real
 * vocabulary (~50,000 tokens) a second one cost a visible part of a decode step.
 */
export function stepLogprobs(
  logits: Float32Array,
  counts: Map<number, number>,
  o: Pick<ChatOptions, "frequencyPenalty" | "presencePenalty" | "logitBias">,
): Float32Array {
  const fp = o.frequencyPenalty ?? 0, pp = o.presencePenalty ?? 0;
  const bias = o.logitBias ?? new Map<number, number>();
  if (!bias.size && ((fp === 0 && pp === 0) || !counts.size)) return logSoftmax(logits);
  const out = logits.slice();
  for (const [id, b] of bias) if (id < out.length) out[id] += b;
  for (const [id, n] of counts) if (id < out.length) out[id] -= n * fp + (n > 0 ? pp : 0);
  return logSoftmax(out);
}

/**
 * One query's attention over the image: the decoder's probabilities [1, layers, heads, T, S] at
 * the last query position, averaged over layers and heads, read at the image's `slots` along S
 * and renormalized over them.
 */
export function imageAttention(
  maps: { data: Float32Array; dims: readonly number[] },
  slots: number[],
): Float32Array {
  const [, L, H, T, S] = maps.dims;
  const out = new Float32Array(slots.length);
  for (let lh = 0; lh < L * H; lh++) {
    const row = (lh * T + T - 1) * S;
    slots.forEach((s, i) => out[i] += maps.data[row + s]);
  }
  const z = out.reduce((a, b) => a + b, 0);
  return z > 0 ? out.map((v) => v / z) : out.fill(1 / slots.length);
}

/** Does `o` ask for any logit adjustment? */
const adjusts = (o: ChatOptions) =>
  (o.frequencyPenalty ?? 0) !== 0 || (o.presencePenalty ?? 0) !== 0 || (o.logitBias?.size ?? 0) > 0;

/**
 * How the image reaches the decoder: the one difference between the course's two architectures,
 * chosen once at load.
 */
interface ImageWiring {
  readonly name: "unified" | "cross-attention";
  /** The prompt after the chat template: image placeholders expanded, or left as they are. */
  expandPrompt(text: string): string;
  /** Checks the prompt's image slots against the features; throws a 400 if they differ. */
  check(ids: number[], features: Tensor | null): void;
  /** What the decoder gets besides tokens on a call after `seen` tokens. */
  inputs(features: Tensor | null, seen: number): { features: Tensor | null; cross: Tensor | null };
  /** The token embeddings with image features in the image tokens' places (unified only). */
  merge(tokens: number[], embeds: Tensor, features: Tensor): Tensor;
  /** The decoder output that holds its attention to the image, if it exports one. */
  readonly attentionOutput: "attentions" | "cross_attentions";
  /** Where the image's tokens are along that output's last axis. */
  imageSlots(ids: number[], features: Tensor): number[];
}

/** Method A (SmolVLM): image features take the places of the `<image>` tokens, at prefill. */
function unified(
  sessions: SessionRegistry,
  imageTokenId: number,
  imageSeqLen: number,
): ImageWiring {
  const image = "<fake_token_around_image><global-img>" + "<image>".repeat(imageSeqLen) +
    "<fake_token_around_image>";
  return {
    name: "unified",
    expandPrompt: (text) => text.replaceAll("<image>", image),
    check(ids, features) {
      if (!features) return;
      const slots = ids.filter((t) => t === imageTokenId).length;
      const rows = features.dims.slice(0, -1).reduce((a, b) => a * b, 1);
      if (slots !== rows) {
        throw new OptionError(
          "messages",
          (f) =>
            `${f("messages")}: the prompt has ${slots} image tokens for ${rows} image features`,
        );
      }
    },
    inputs: (features, seen) => ({ features: seen === 0 ? features : null, cross: null }),
    merge(tokens, embeds, features) {
      const data = (embeds.data as Float32Array).slice();
      const H = embeds.dims.at(-1)!;
      const f = features.data as Float32Array;
      let row = 0; // feature rows go to the image tokens in order
      tokens.forEach((t, i) => {
        if (t === imageTokenId) data.set(f.subarray(row * H, ++row * H), i * H);
      });
      return sessions.tensor("float32", data, embeds.dims);
    },
    // Self-attention over the whole sequence: the image tokens sit at their prompt positions.
    attentionOutput: "attentions",
    imageSlots: (ids) => ids.flatMap((t, i) => t === imageTokenId ? [i] : []),
  };
}

/**
 * Images per vision run. A run holds every stream's next token back (ORT's CPU runs occupy the
 * thread), and a tower over many patches gains nothing from a batch (it is compute bound), so a
 * run encodes at most 512² pixels: SmolVLM's size one image at a time, with the streams already
 * decoding stepping between images, and the tiny models' 64² images up to `maxBatch` at once.
 */
export function visionBatch(longestEdge: number, maxBatch: number): number {
  return Math.max(1, Math.min(maxBatch, Math.floor(512 ** 2 / longestEdge ** 2)));
}

/**
 * Method B (Llama 3.2 Vision): text attends to the image's features through gated
 * cross-attention layers at every step; without an image, one zero state (its keys and values
 * are zero, so it contributes nothing).
 */
function crossAttention(sessions: SessionRegistry, hidden: number): ImageWiring {
  const none = sessions.tensor("float32", new Float32Array(hidden), [1, 1, hidden]);
  return {
    name: "cross-attention",
    expandPrompt: (text) => text,
    check() {},
    inputs: (features) => ({ features: null, cross: features ?? none }),
    merge: (_tokens, embeds) => embeds,
    attentionOutput: "cross_attentions",
    imageSlots: (_ids, features) => Array.from({ length: features.dims[1] }, (_, i) => i),
  };
}

export class ChatPipeline implements Pipeline {
  readonly family = "chat";

  private constructor(
    readonly id: string,
    private wiring: ImageWiring,
    private sessions: SessionRegistry,
    private tokenizer: Tokenizer,
    private template: Template,
    private specialTokens: Record<string, string>,
    private processor: Processor,
    private vision: Runs,
    private embed: Runs | null,
    private decoder: Runs,
    private layers: number,
    private kvHeads: number,
    private headDim: number,
    private hidden: number,
    private eos: number,
    readonly maxPositions: number,
    /** The cross-attention decoder's shape and weights file, for the WGSL path. */
    private kernelDecoder: { config: DecoderConfig; weights: string } | null,
  ) {}

  #gpuWeights: Promise<GpuWeights> | null = null;

  /** Explainable where the decoder exports its attention to the image. */
  get capabilities(): Capabilities {
    const explainable = this.decoder.outputNames.includes(this.wiring.attentionOutput);
    return { streaming: true, batchable: false, explainable };
  }

  static async load(
    entry: ModelEntry,
    { sessions, maxBatch = 32 }: LoadContext,
  ): Promise<ChatPipeline> {
    const read = async (name: string) => JSON.parse(await Deno.readTextFile(entry.dir + name));
    const optional = (name: string) => read(name).catch(() => ({}));
    const [config, preprocessor, processorConfig, generation, tok, chatTemplate] = await Promise
      .all([
        read("config.json"),
        read("preprocessor_config.json"),
        optional("processor_config.json"),
        optional("generation_config.json"),
        loadTokenizer(entry.dir),
        optional("chat_template.json"),
      ]);
    const files = entry.manifest.files;
    // Concurrent conversations share runs: their images, their tokens' embeddings, and their
    // decoder steps whatever their cache lengths.
    const batched = async (file: string, gpuOutputs = false, most = maxBatch) =>
      new BatchedSession(sessions, await sessions.load(entry.dir + file, { gpuOutputs }), {
        maxBatch: most,
        cache: { lastAxis: ["attentions"] },
      });
    const longestEdge = preprocessor.max_image_size?.longest_edge ??
      preprocessor.size?.longest_edge ?? 512;
    const [vision, embed, decoder] = await Promise.all([
      batched(files.vision, false, visionBatch(longestEdge, maxBatch)),
      files.embed ? batched(files.embed) : null,
      batched(files.decoder, true),
    ]);
    const text = config.text_config ?? config;
    const template = chatTemplate.chat_template ?? tok.config.chat_template;
    if (typeof template !== "string") {
      throw new Error(`${entry.manifest.id}: no chat template in tokenizer_config.json`);
    }
    const name = (t: unknown) =>
      typeof t === "string" ? t : (t as { content?: string } | undefined)?.content ?? "";
    const eos = [generation.eos_token_id ?? text.eos_token_id].flat()[0];
    return new ChatPipeline(
      entry.manifest.id,
      config.model_type === "idefics3"
        ? unified(sessions, config.image_token_id, processorConfig.image_seq_len ?? 64)
        : crossAttention(sessions, text.hidden_size),
      sessions,
      tok.tokenizer,
      new Template(template),
      { bos_token: name(tok.config.bos_token), eos_token: name(tok.config.eos_token) },
      {
        longestEdge,
        mean: preprocessor.image_mean ?? [0.5, 0.5, 0.5],
        std: preprocessor.image_std ?? [0.5, 0.5, 0.5],
      },
      vision,
      embed,
      decoder,
      text.num_hidden_layers,
      text.num_key_value_heads ?? text.num_attention_heads,
      text.head_dim ?? text.hidden_size / text.num_attention_heads,
      text.hidden_size,
      eos,
      text.max_position_embeddings ?? 2048,
      files.weights && config.model_type === "mm_xattn"
        ? { weights: entry.dir + files.weights, config: decoderConfig(text) }
        : null,
    );
  }

  /** A WGSL decoder for one conversation, where the backend and the model allow one. */
  async #kernelDecoder(o: ChatOptions): Promise<GpuDecoder | null> {
    if (!this.kernelDecoder || o.kernels === false) return null;
    const device = await this.sessions.gpuDevice();
    if (!device) return null;
    const { weights, config } = this.kernelDecoder;
    this.#gpuWeights ??= readSafetensors(weights).then((w) => new GpuWeights(device, w));
    return new GpuDecoder(await this.#gpuWeights, config);
  }

  async warmup(): Promise<void> {
    const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) };
    await this.chat([{
      role: "user",
      content: [{ type: "image", image }, { type: "text", text: "what color is the background?" }],
    }], { ...GREEDY, maxTokens: 2 });
  }

  /** The prompt text: the chat template, then `<image>` expanded as the processor does. */
  prompt(messages: ChatMessage[]): string {
    const text = this.template.render({
      messages: messages.map((m) => ({
        role: m.role,
        content: m.content.map((p) => p.type === "text" ? p : { type: "image" }),
      })),
      add_generation_prompt: true,
      ...this.specialTokens,
    });
    return this.wiring.expandPrompt(text);
  }

  /** Idefics3 without splitting: longest edge to the model's size, padded, with a pixel mask. */
  async #pixels(images: RgbImage[]): Promise<{ values: Float32Array; mask: Uint8Array }> {
    const S = this.processor.longestEdge, plane = S * S;
    const values = new Float32Array(images.length * 3 * plane);
    const mask = new Uint8Array(images.length * plane);
    for (const [n, img] of images.entries()) {
      const scale = S / Math.max(img.width, img.height);
      const w = Math.max(1, Math.round(img.width * scale));
      const h = Math.max(1, Math.round(img.height * scale));
      const r = await resize(img, w, h, 2);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const i = y * S + x;
          mask[n * plane + i] = 1;
          for (let c = 0; c < 3; c++) {
            values[(n * 3 + c) * plane + i] =
              (r.data[(y * w + x) * 3 + c] / 255 - this.processor.mean[c]) / this.processor.std[c];
          }
        }
      }
      // Padding stays 0 after normalization, as the processor pads normalized pixels.
    }
    return { values, mask };
  }

  #emptyPast(): Tensor[] {
    return Array.from(
      { length: 2 * this.layers },
      () =>
        this.sessions.tensor("float32", new Float32Array(0), [1, this.kvHeads, 0, this.headDim]),
    );
  }

  /** Is `id` a token of this model's vocabulary (for logit_bias)? */
  hasToken(id: number): boolean {
    return this.tokenizer.id_to_token(id) !== undefined;
  }

  /**
   * The prompt's token ids; a conversation too long for the model, or attention asked of a model
   * or conversation that cannot show it, is a clear 400.
   */
  validate(messages: ChatMessage[], maxTokens: number, returnAttention = false): number[] {
    if (returnAttention) this.#checkExplainable(messages);
    const ids = this.tokenizer.encode(this.prompt(messages), { add_special_tokens: false }).ids;
    if (ids.length + maxTokens > this.maxPositions) {
      throw new OptionError(
        "messages",
        (f) =>
          `${f("messages")}: the conversation is ${ids.length} tokens and ${
            f("maxTokens")
          } ${maxTokens}; ${this.id} reads at most ${this.maxPositions} tokens in all`,
      );
    }
    return ids;
  }

  #checkExplainable(messages: ChatMessage[]): void {
    const images = messages.flatMap((m) => m.content.filter((p) => p.type === "image")).length;
    const problem = !this.capabilities.explainable
      ? `${this.id}'s decoder exports no attention`
      : images !== 1
      ? `the maps are over one image, and this conversation has ${images}`
      : null;
    if (problem) {
      throw new OptionError(
        "returnAttention",
        (f) => `${f("returnAttention")}: ${problem}`,
        "unsupported",
      );
    }
  }

  async chat(
    messages: ChatMessage[],
    o: ChatOptions,
    run: RunContext<ChatDelta> = {},
  ): Promise<ChatResult> {
    const { signal } = run;
    const images = messages.flatMap((m) =>
      m.content.flatMap((p) => p.type === "image" ? [p.image] : [])
    );
    const ids = this.validate(messages, o.maxTokens, o.returnAttention);
    const S = this.processor.longestEdge;
    let t0 = now();
    // Image features: where they go is the architecture's (this.wiring).
    let features: Tensor | null = null;
    if (images.length) {
      const { values, mask } = await this.#pixels(images);
      const feeds: Record<string, Tensor> = {
        pixel_values: this.sessions.tensor("float32", values, [1, images.length, 3, S, S]),
      };
      if (this.vision.inputNames.includes("pixel_attention_mask")) {
        feeds.pixel_attention_mask = this.sessions.tensor("bool", mask, [1, images.length, S, S]);
      }
      const out = await this.vision.run(feeds, signal);
      features = out[this.vision.outputNames[0]];
    }
    this.wiring.check(ids, features);
    const visionMs = now() - t0;

    // Prefill everything but the last prompt token; decoding starts by feeding that one.
    // Our WGSL decoder has no attention output: maps come from ONNX Runtime's.
    const kernels = o.returnAttention ? null : await this.#kernelDecoder(o);
    const slots = o.returnAttention ? this.wiring.imageSlots(ids, features!) : undefined;
    let forward: Forward;
    if (kernels) {
      const image = features
        ? features.data as Float32Array<ArrayBuffer>
        : new Float32Array(this.hidden);
      kernels.reset(image, features ? features.dims[1] : 1);
      const logitsWanted = o.temperature > 0 || o.topLogprobs > 0 || adjusts(o);
      forward = async (tokens) => {
        const r = await this.sessions.schedule(() => kernels.step(tokens, logitsWanted));
        if (r.logits) return { logits: r.logits };
        // Greedy without log-probabilities: only the token id came back from the GPU.
        const oneHot = new Float32Array(this.kernelDecoder!.config.vocab).fill(-Infinity);
        oneHot[r.token] = 0;
        return { logits: oneHot };
      };
    } else {
      let state: State = { past: this.#emptyPast(), length: 0 };
      forward = async (tokens) => {
        const out = await this.#forward(tokens, state, {
          ...this.wiring.inputs(features, state.length),
          slots,
          signal,
        });
        state = out.state;
        return out;
      };
    }
    t0 = now();
    try {
      await forward(ids.slice(0, -1));
      const prefillMs = now() - t0;
      const image = o.returnAttention ? images[0] : undefined;
      return await this.#generate(ids, forward, o, run, {
        visionMs,
        prefillMs,
        decoder: kernels ? "wgsl-kernels" : "onnxruntime",
        explained: image && slots
          ? { image, side: Math.round(Math.sqrt(slots.length)) }
          : undefined,
      });
    } finally {
      kernels?.destroy();
    }
  }

  async #generate(
    ids: number[],
    forward: Forward,
    o: ChatOptions,
    { signal, progress }: RunContext<ChatDelta>,
    info: {
      visionMs: number;
      prefillMs: number;
      decoder: ChatResult["decoder"];
      /** With returnAttention: the image and its token grid's side. */
      explained?: { image: RgbImage; side: number };
    },
  ): Promise<ChatResult> {
    const counts = new Map<number, number>();
    let last: Float32Array = new Float32Array(0); // the distribution the latest token was chosen from
    let lastMap: Float32Array | undefined; // and the image attention of the step that computed it
    const decoder: StepDecoder<null> = {
      start: () => Promise.resolve(null),
      step: async (state, tokens) => {
        signal?.throwIfAborted();
        const out = await forward(tokens);
        last = stepLogprobs(out.logits, counts, o);
        lastMap = out.attention;
        return { logprobs: [last], attention: null, state };
      },
      select: (state) => state,
    };
    const stops = new StopStrings(o.stop);
    let reported = 0;
    const generated: number[] = [];
    const tokens: ChatToken[] = [];
    const maps: Float32Array[] = []; // with returnAttention, one per token
    const name = (id: number) => this.tokenizer.id_to_token(id) ?? "";
    const explained = info.explained;
    // Each token's map and overlay, made once: the stream's chunks and the result share them.
    const words: AttentionWord[] = [];
    const mapsOf = async (from: number, to: number): Promise<AttentionMaps | undefined> => {
      if (!explained) return undefined;
      const { image, side } = explained;
      const made = words.length;
      words.push(
        ...await attentionWords(
          image,
          maps.slice(made, to).map((weights, i) => ({ token: tokens[made + i].token, weights })),
          side,
          side,
        ),
      );
      return { rows: side, cols: side, words: words.slice(from, to) };
    };
    const unreported = async (): Promise<Omit<ChatDelta, "text">> => {
      const from = reported;
      reported = tokens.length;
      const attention = await mapsOf(from, reported);
      return { tokens: tokens.slice(from, reported), ...(attention ? { attention } : {}) };
    };
    const t0 = now();
    const [h]: Hypothesis[] = await decode(decoder, {
      strategy: o.temperature > 0 ? "sample" : "greedy",
      maxTokens: o.maxTokens,
      n: 1,
      beamSize: 1,
      temperature: o.temperature,
      topK: o.topK,
      topP: o.topP,
      seed: o.seed,
      topLogprobs: 0, // reported from the same distributions by onToken, as it streams
      bos: ids.at(-1)!,
      eos: this.eos,
      signal,
      onToken: async (_i, id, logprob) => {
        generated.push(id);
        counts.set(id, (counts.get(id) ?? 0) + 1);
        tokens.push({
          token: name(id),
          logprob,
          top_logprobs: o.topLogprobs > 0
            ? topK(last, o.topLogprobs).map(([t, lp]) => ({ token: name(t), logprob: lp }))
            : [],
        });
        if (lastMap) maps.push(lastMap);
        const piece = stops.next(this.#text(generated));
        if (piece && progress) await progress({ text: piece, ...await unreported() });
        return stops.stopped;
      },
    });
    const decodeMs = now() - t0;
    const { text, rest } = stops.finish(this.#text(h.ids));
    if (progress && (rest || reported < tokens.length)) {
      await progress({ text: rest, ...await unreported() });
    }
    const finishedByEos = h.ids.length < o.maxTokens;
    const attention = await mapsOf(0, tokens.length);
    return {
      text,
      tokens,
      finishReason: stops.stopped || finishedByEos ? "stop" : "length",
      promptTokens: ids.length,
      completionTokens: h.ids.length,
      timings: {
        vision_ms: info.visionMs,
        prefill_ms: info.prefillMs,
        decode_ms: decodeMs,
        tokens_per_second: h.ids.length / Math.max(decodeMs / 1000, 1e-9),
      },
      decoder: info.decoder,
      ...(attention ? { attention } : {}),
    };
  }

  #text(ids: number[]): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: true }).trim();
  }

  /** One decoder run over `tokens` after `state`; returns the last position's logits. */
  async #forward(
    tokens: number[],
    state: State,
    x: {
      features: Tensor | null;
      cross: Tensor | null;
      /** The image's places in the attention output, when its maps are wanted. */
      slots?: number[];
      signal?: AbortSignal;
    },
  ): Promise<{ logits: Float32Array; attention?: Float32Array; state: State }> {
    const T = tokens.length, total = state.length + T;
    const feeds: Record<string, Tensor> = {
      attention_mask: this.sessions.tensor("int64", new BigInt64Array(total).fill(1n), [1, total]),
      position_ids: this.sessions.tensor(
        "int64",
        BigInt64Array.from({ length: T }, (_, i) => BigInt(state.length + i)),
        [1, T],
      ),
    };
    const idsTensor = this.sessions.tensor("int64", BigInt64Array.from(tokens, BigInt), [1, T]);
    if (this.embed) {
      const out = await this.embed.run({ input_ids: idsTensor }, x.signal);
      let embeds = out[this.embed.outputNames[0]];
      if (x.features) embeds = this.wiring.merge(tokens, embeds, x.features);
      feeds.inputs_embeds = embeds;
    } else {
      feeds.input_ids = idsTensor;
    }
    if (x.cross) feeds.cross_attention_states = x.cross;
    for (let i = 0; i < this.layers; i++) {
      feeds[`past_key_values.${i}.key`] = state.past[2 * i];
      feeds[`past_key_values.${i}.value`] = state.past[2 * i + 1];
    }
    const out = await this.decoder.run(feeds, x.signal);
    for (const t of state.past) t.dispose?.();
    const V = out.logits.dims.at(-1)!;
    const last = (await hostData(out.logits)).subarray((T - 1) * V, T * V);
    const past = Array.from(
      { length: 2 * this.layers },
      (_, j) => out[`present.${j >> 1}.${j % 2 ? "value" : "key"}`],
    );
    const maps = out[this.wiring.attentionOutput];
    let attention: Float32Array | undefined;
    if (maps && x.slots) {
      attention = imageAttention({ data: await hostData(maps), dims: maps.dims }, x.slots);
    } else {
      maps?.dispose?.(); // a GPU buffer each step on WebGPU, unread
    }
    return { logits: last, attention, state: { past, length: total } };
  }
}
