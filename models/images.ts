/**
 * The image-generator contract that diffusion and DALL-E both meet: one request in the
 * pipelines' own words, `plan()` checking it against the model and filling in the model's
 * defaults before any work (so a bad request is a 400 before a stream starts), and a job that
 * runs with a signal and a progress sink. Seeds (candidate j from seed + j), previews (exactly
 * the number asked, spread over the steps) and CLIP reranking (the best k of n) are the same for
 * both and live here.
 */
import type { Tokenizer } from "@huggingface/tokenizers";
import type { RgbImage } from "../core/image.ts";
import type { Family } from "./manifest.ts";
import {
  type AttentionMaps,
  attentionWords,
  type ImageScorer,
  OptionError,
  type Pipeline,
  type RunContext,
} from "./pipeline.ts";

export interface ImageRequest {
  prompt: string;
  /** Candidates to make (all returned, or the best `rerank` of them). */
  n: number;
  /** Candidate j uses seed + j; random when absent (and returned). */
  seed?: number;
  width?: number;
  height?: number;
  /** Diffusion: half, the default or twice the default steps. DALL-E: the default only. */
  quality?: "low" | "medium" | "high";
  /** Exactly this many previews while it runs (at most one per step). */
  previews?: number;
  /** Keep the k candidates CLIP rates closest to the prompt, best first. */
  rerank?: number;
  /** Per prompt word, where in each image it acted (generators that declare `explainable`). */
  returnAttention?: boolean;
  // Diffusion only.
  negativePrompt?: string;
  steps?: number;
  guidance?: number;
  scheduler?: string;
  image?: RgbImage;
  mask?: RgbImage;
  strength?: number;
  // DALL-E only.
  temperature?: number;
  topK?: number;
  topP?: number;
}

/** The options only one kind of generator takes: set for the other, they are an error. */
export const DIFFUSION_OPTIONS = [
  "negativePrompt",
  "steps",
  "guidance",
  "scheduler",
  "image",
  "mask",
  "strength",
] as const satisfies readonly (keyof ImageRequest)[];
export const DALLE_OPTIONS = [
  "temperature",
  "topK",
  "topP",
] as const satisfies readonly (keyof ImageRequest)[];

export interface ImageProgress {
  step: number;
  total: number;
  /** The image each candidate is becoming, at the output size. */
  preview?: RgbImage[];
}

export interface ImageOutput {
  images: RgbImage[];
  seeds: number[];
  /** CLIP's score of each returned image, when reranked. */
  scores?: number[];
  /** With returnAttention, from the generator: each candidate's prompt-word maps. */
  maps?: WordMaps[];
  /** ... and once the candidates to return are chosen, those images' maps with overlays. */
  attention?: AttentionMaps[];
  /** The prompt's tokens (unpadded), for usage. */
  promptTokens: number;
  /** Image tokens sampled per image (DALL-E; 0 for diffusion), for usage. */
  outputTokens: number;
  /** Denoising steps run, or image tokens sampled. */
  steps: number;
  scheduler: string;
  /** Diffusion: where the denoising loop kept its latents. */
  loop?: "gpu-resident" | "host";
  /** DALL-E: which implementation ran the transformer. */
  decoder?: "wgsl-kernels" | "onnxruntime";
  timings: Record<string, number | number[]>;
}

/** A checked request with the model's defaults filled in, ready to run. */
export interface ImageJob {
  model: string;
  family: Family;
  steps: number;
  width: number;
  height: number;
  /** The quality level the job runs at, where it matches one. */
  quality?: "low" | "medium" | "high";
  run(context?: RunContext<ImageProgress>): Promise<ImageOutput>;
}

export interface ImageGenerator extends Pipeline {
  /** Checks `request` against the model (an `OptionError` before any work) and plans the job. */
  plan(request: ImageRequest): ImageJob;
}

/** A job's seed: the client's, else a random one. */
export const seedOf = (r: ImageRequest): number => r.seed ?? Math.floor(Math.random() * 2 ** 32);

/**
 * The checks every generator makes: no option of the other kind (`kind` names this one in the
 * message), and no more kept candidates than made.
 */
export function checkCommon(
  r: ImageRequest,
  model: string,
  kind: string,
  foreign: readonly (keyof ImageRequest)[],
): void {
  const set = foreign.find((o) => r[o] != null);
  if (set) {
    throw new OptionError(set, (f) => `${f(set)} does not apply to ${model}, a ${kind} model`);
  }
  if (r.rerank != null && r.rerank > r.n) {
    throw new OptionError(
      "rerank",
      (f) => `${f("rerank")} (${r.rerank}) must not exceed ${f("n")} (${r.n})`,
    );
  }
}

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

/** An RGB image as planar floats [3, H, W] in [-1, 1], what the autoencoders read. */
export function toPlanar(img: RgbImage): Float32Array {
  const n = img.width * img.height, out = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) out[c * n + i] = img.data[i * 3 + c] / 127.5 - 1;
  }
  return out;
}

/** `n` RGBA images, one after the other in `rgba`, as RGB images. */
export function rgbaImages(rgba: Uint8Array, n: number, width: number, height: number): RgbImage[] {
  const px = width * height;
  return Array.from({ length: n }, (_, j) => {
    const data = new Uint8Array(px * 3);
    for (let i = 0; i < px; i++) {
      data.set(rgba.subarray((j * px + i) * 4, (j * px + i) * 4 + 3), i * 3);
    }
    return { width, height, data };
  });
}

/**
 * `run`, then the best `request.rerank` of its candidates by `scorer` (the registry's CLIP); a
 * request to rerank where no scorer is at hand fails at planning, before any work.
 */
export function reranked(
  run: (context: RunContext<ImageProgress>) => Promise<ImageOutput>,
  request: ImageRequest,
  scorer: (() => Promise<ImageScorer>) | undefined,
): (context?: RunContext<ImageProgress>) => Promise<ImageOutput> {
  const k = request.rerank;
  if (k == null) return async (context = {}) => withOverlays(await run(context));
  if (!scorer) {
    throw new OptionError(
      "rerank",
      (f) => `${f("rerank")}: no CLIP model is installed to rerank with`,
      "unsupported",
    );
  }
  return async (context = {}) =>
    withOverlays(
      await keepBest(await run(context), k, request.prompt, await scorer(), context.signal),
    );
}

/**
 * The returned images' maps with their overlays, drawn only now: candidates the reranking drops
 * never cost a PNG.
 */
async function withOverlays(out: ImageOutput): Promise<ImageOutput> {
  if (!out.maps) return out;
  const attention = await Promise.all(out.maps.map(async ({ rows, cols, words }, j) => ({
    rows,
    cols,
    words: await attentionWords(out.images[j], words, rows, cols),
  })));
  return { ...out, attention };
}

/**
 * Keeps the `k` candidates `score` rates highest, best first, with their scores; the time it
 * took goes into `timings.rerank_ms`.
 */
export async function keepBest(
  out: ImageOutput,
  k: number,
  prompt: string,
  score: ImageScorer,
  signal?: AbortSignal,
): Promise<ImageOutput> {
  const t0 = performance.now();
  const all = await score(out.images, prompt, signal);
  const order = all.map((s, j) => [s, j]).sort((a, b) => b[0] - a[0]).slice(0, k);
  const ms = performance.now() - t0;
  return {
    ...out,
    images: order.map(([, j]) => out.images[j]),
    seeds: order.map(([, j]) => out.seeds[j]),
    scores: order.map(([s]) => s),
    ...(out.maps ? { maps: order.map(([, j]) => out.maps![j]) } : {}),
    timings: {
      ...out.timings,
      rerank_ms: ms,
      total_ms: Number(out.timings.total_ms) + ms,
    },
  };
}

/**
 * returnAttention asked of a generator that has no maps to give: the "unsupported" OptionError
 * every generator throws (a 400 naming the route's field), `why` saying what the model lacks.
 */
export function checkExplainable(
  r: Pick<ImageRequest, "returnAttention">,
  g: Pick<Pipeline, "id" | "capabilities">,
  why: string,
): void {
  if (!r.returnAttention || g.capabilities.explainable) return;
  throw new OptionError(
    "returnAttention",
    (f) => `${f("returnAttention")}: ${g.id} has no word maps to return (${why})`,
    "unsupported",
  );
}

/**
 * The prompt's real word tokens (no BOS, EOS or padding): where they start among the ids the
 * model reads (`tokenizer.encode(prompt)`, special tokens added) and their text.
 */
export function promptWords(tokenizer: Tokenizer, prompt: string): {
  first: number;
  tokens: string[];
} {
  const full = tokenizer.encode(prompt).ids;
  const words = tokenizer.encode(prompt, { add_special_tokens: false });
  const k = words.ids.length;
  const first = Array.from({ length: full.length - k + 1 }, (_, i) => i)
    .find((i) => words.ids.every((id, j) => full[i + j] === id)) ?? 0;
  return { first, tokens: words.tokens };
}

/** One image's prompt-word maps: rows × cols each, row-major, summing to 1. */
export interface WordMaps {
  rows: number;
  cols: number;
  words: Array<{ token: string; weights: Float32Array }>;
}

/**
 * Word maps from each word's `weights` (rows × cols, row-major, any non-negative scale),
 * normalized to sum to 1 (uniform where a map is all zero).
 */
export function wordMaps(
  words: Array<{ token: string; weights: ArrayLike<number> }>,
  rows: number,
  cols: number,
): WordMaps {
  const normalized = words.map(({ token, weights }) => {
    let sum = 0;
    for (let i = 0; i < weights.length; i++) sum += Math.max(0, weights[i]);
    const w = Float32Array.from(
      weights,
      (v) => sum > 0 ? Math.max(0, v) / sum : 1 / weights.length,
    );
    return { token, weights: w };
  });
  return { rows, cols, words: normalized };
}
