/**
 * The contract every model family meets, so that the registry, the scheduler, batching and
 * explanations have one place to hook into all of them:
 *
 * - a family's pipeline is loaded by a `Loader` from its model folder, then warmed once;
 * - it declares what it can do (`Capabilities`), and routes ask that instead of the model id;
 * - each of its tasks is `task(input, options, run?)`: typed input and options, and a `RunContext`
 *   with the client's abort signal and a progress sink (tokens, steps, previews);
 * - what the input or options cannot do is an `OptionError` naming the option in the pipeline's
 *   own words; the route that knows the HTTP shape maps it to its request field.
 */
import { heatmapOverlay } from "../core/heatmap.ts";
import type { RgbImage } from "../core/image.ts";
import type { SessionRegistry } from "../core/sessions.ts";
import type { Family, ModelEntry } from "./manifest.ts";

export interface Capabilities {
  /** Reports progress while it runs (tokens, steps, previews): a route may stream it. */
  streaming: boolean;
  /** One call takes many inputs (images, texts, candidates) as one batch. */
  batchable: boolean;
  /** Can return where it looked: attention or patch maps beside its output. */
  explainable: boolean;
}

/** What a task gets besides its input and options. */
export interface RunContext<P = never> {
  /** The client left or the server is draining: stop between steps. */
  signal?: AbortSignal;
  /** Told after each step; awaited, so a slow reader slows the job instead of piling up. */
  progress?: (p: P) => void | Promise<void>;
}

export interface Pipeline {
  readonly id: string;
  readonly family: Family;
  readonly capabilities: Capabilities;
  /** One small run, so that the first request does not pay for the sessions' first pass. */
  warmup(): Promise<void>;
}

/** How images are scored against a text (CLIP's cosine): what reranking sorts by. */
export type ImageScorer = (
  images: RgbImage[],
  text: string,
  signal?: AbortSignal,
) => Promise<number[]>;

/** What a loader gets from the registry besides its folder. */
export interface LoadContext {
  sessions: SessionRegistry;
  /** Items per forward pass that concurrent requests may share (batching pipelines; default 32). */
  maxBatch?: number;
  /** The default CLIP model's scorer, loaded on first use (generators rerank with it); absent
   * where no CLIP model is installed. */
  scorer?: () => Promise<ImageScorer>;
}

export type Loader<P extends Pipeline = Pipeline> = (
  entry: ModelEntry,
  context: LoadContext,
) => Promise<P>;

/** How the caller knows an option: the route's request field for it. */
export type FieldName = (option: string) => string;

/**
 * An input or option the model cannot take. `option` is the pipeline's name for it ("steps",
 * "prompt", "texts"); `describe` writes the sentence around the names the caller knows, so the
 * route can say `num_inference_steps` where the pipeline says `steps`.
 */
export class OptionError extends Error {
  constructor(
    readonly option: string,
    readonly describe: (field: FieldName) => string,
    /** "unsupported": valid, but this model cannot do it; "invalid": out of the model's range. */
    readonly kind: "invalid" | "unsupported" = "invalid",
  ) {
    super(describe((o) => o));
    this.name = "OptionError";
  }
}

/**
 * Where a model looked, one map per word it wrote (or, for a generator, per prompt word): what
 * every explainable pipeline returns. Each map is rows × cols, row-major, summing to 1.
 */
export interface AttentionMaps {
  rows: number;
  cols: number;
  words: AttentionWord[];
}

export interface AttentionWord {
  token: string;
  weights: number[];
  /** The map over the image, as a base64 PNG. */
  overlay_png: string;
}

const round4 = (v: number) => Math.round(v * 1e4) / 1e4;

/** Maps as the API returns them: weights rounded to 4 places, each with its overlay on `image`. */
export function attentionWords(
  image: RgbImage,
  maps: Array<{ token: string; weights: ArrayLike<number> }>,
  rows: number,
  cols: number,
): Promise<AttentionWord[]> {
  return Promise.all(maps.map(async ({ token, weights }) => ({
    token,
    weights: Array.from(weights, round4),
    overlay_png: (await heatmapOverlay(image, weights, rows, cols)).toBase64(),
  })));
}
