/**
 * The model registry: which models are installed, which pipeline serves each family, and the
 * loaded pipelines. Routes ask it for a pipeline by id (or the family's default).
 */
import { ApiError } from "../core/errors.ts";
import type { SessionRegistry } from "../core/sessions.ts";
import { ClipPipeline } from "./clip/pipeline.ts";
import type { Family, ModelEntry } from "./manifest.ts";

interface Pipelines {
  clip: ClipPipeline;
}
type ServedFamily = keyof Pipelines;

/** How each family's pipeline loads; families without one are listed but not served yet. */
const LOADERS: {
  [F in ServedFamily]: (e: ModelEntry, s: SessionRegistry) => Promise<Pipelines[F]>;
} = {
  clip: ClipPipeline.load,
};

export interface ModelInfo {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
  family: Family;
  description: string;
  capabilities: string[];
  modalities: { input: string[]; output: string[] };
  backend: string;
  execution_provider: string;
  device: string;
  loaded: boolean;
}

export class ModelRegistry {
  #pipelines = new Map<string, Promise<{ warmup(): Promise<void> }>>();
  #loaded = new Set<string>();
  #ready = false;

  constructor(readonly entries: ModelEntry[], readonly sessions: SessionRegistry) {}

  get ready(): boolean {
    return this.#ready;
  }

  /** Loads and warms every `preload` model; the server reports healthy afterwards. */
  async preload(): Promise<void> {
    for (
      const e of this.entries.filter((e) => e.manifest.preload && e.manifest.family in LOADERS)
    ) {
      await this.#load(e);
    }
    this.#ready = true;
  }

  /** The pipeline for `id`, or the family's first model when `id` is absent. */
  get<F extends ServedFamily>(family: F, id?: string): Promise<Pipelines[F]> {
    const entry = id === undefined
      ? this.entries.find((e) => e.manifest.family === family)
      : this.entries.find((e) => e.manifest.id === id);
    if (!entry) {
      const known = this.entries.filter((e) => e.manifest.family === family).map((e) =>
        e.manifest.id
      );
      throw new ApiError(
        "model_not_found",
        id === undefined
          ? `No ${family} model is installed`
          : `The model "${id}" does not exist; ${family} models here: ${
            known.join(", ") || "none"
          }`,
        "model",
      );
    }
    if (entry.manifest.family !== family) {
      throw new ApiError(
        "invalid_request",
        `The model "${entry.manifest.id}" is a ${entry.manifest.family} model, not a ${family} model`,
        "model",
      );
    }
    return this.#load(entry) as Promise<Pipelines[F]>;
  }

  #load(entry: ModelEntry) {
    const { id, family } = entry.manifest;
    let p = this.#pipelines.get(id);
    if (!p) {
      const loader = LOADERS[family as ServedFamily];
      if (!loader) {
        throw new ApiError("unsupported", `The ${family} family is not served yet`, "model");
      }
      p = loader(entry, this.sessions).then(async (pipeline) => {
        await pipeline.warmup();
        this.#loaded.add(id);
        return pipeline;
      });
      this.#pipelines.set(id, p);
      p.catch(() => this.#pipelines.delete(id));
    }
    return p;
  }

  list(): ModelInfo[] {
    const b = this.sessions.backend;
    return this.entries.map(({ manifest: m }) => ({
      id: m.id,
      object: "model",
      created: 0,
      owned_by: m.id.includes("/") ? m.id.split("/")[0] : "mm-edge",
      family: m.family,
      description: m.description,
      capabilities: m.capabilities,
      modalities: m.modalities,
      backend: b.name,
      execution_provider: b.executionProvider,
      device: b.device,
      loaded: this.#loaded.has(m.id),
    }));
  }
}
