/**
 * The served families, one line each: the pipeline that loads a family's models (it meets the
 * contract in models/pipeline.ts), the HTTP API that serves it, the engine worker it runs in
 * (families in one worker share its memory; the two image generators share one), and for those
 * that batch across requests, how many requests may run at once. Adding a family
 * is a folder `models/<family>/` and one line here (README: "Adding a model family").
 */
import { CaptionPipeline } from "./captioning/pipeline.ts";
import { ChatPipeline } from "./chat/pipeline.ts";
import { ClipPipeline } from "./clip/pipeline.ts";
import { DallePipeline } from "./dalle/pipeline.ts";
import { DiffusionPipeline } from "./diffusion/pipeline.ts";
import { type Family, FAMILY_NAMES } from "./manifest.ts";
import type { Loader } from "./pipeline.ts";

interface FamilyEntry {
  load: Loader;
  /** The HTTP API that serves it (routes/). */
  api: string;
  /** The engine worker it runs in; families naming the same one share it. */
  worker: string;
  /** Concurrent requests share forward passes or decode steps (MM_MAX_BATCH items): admit a
   * batch's worth. */
  batches?: boolean;
}

export const FAMILIES = {
  clip: { load: ClipPipeline.load, api: "clip", worker: "clip", batches: true },
  captioning: { load: CaptionPipeline.load, api: "captions", worker: "captioning", batches: true },
  diffusion: { load: DiffusionPipeline.load, api: "images", worker: "images" },
  dalle: { load: DallePipeline.load, api: "images", worker: "images", batches: true },
  chat: { load: ChatPipeline.load, api: "chat", worker: "chat", batches: true },
} as const satisfies Record<Family, FamilyEntry>;

export { type Family, FAMILY_NAMES };

/** Each family's pipeline type. */
export type Pipelines = { [F in Family]: Awaited<ReturnType<typeof FAMILIES[F]["load"]>> };

/** The families an API serves (the images route: every image generator). */
export const familiesOf = (api: string): Family[] =>
  FAMILY_NAMES.filter((f) => FAMILIES[f].api === api);

/** The engine workers' families: one worker per distinct `worker`. */
export function workerGroups(): Family[][] {
  const groups = new Map<string, Family[]>();
  for (const f of FAMILY_NAMES) {
    groups.set(FAMILIES[f].worker, [...groups.get(FAMILIES[f].worker) ?? [], f]);
  }
  return [...groups.values()];
}

/** How many requests of a model of `family` run at once: `concurrency`, or a batch's worth. */
export function laneWidth(family: Family, concurrency: number, maxBatch: number): number {
  const entry: FamilyEntry = FAMILIES[family];
  return entry.batches ? Math.max(concurrency, maxBatch) : concurrency;
}
