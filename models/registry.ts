/**
 * The model registry: which models are installed, which pipeline serves each family, and the
 * loaded pipelines. Routes ask it for a pipeline by id (or the family's default).
 */
import type { Backend } from "../core/backend.ts";
import { ApiError } from "../core/errors.ts";
import type { SessionRegistry } from "../core/sessions.ts";
import type { CatalogEntry } from "./catalog.ts";
import { FAMILIES, type Family, type Pipelines } from "./families.ts";
import type { Manifest, ModelEntry } from "./manifest.ts";
import type { LoadContext, Loader, Pipeline } from "./pipeline.ts";

/** The backend as plain data (what a worker can send to the HTTP thread). */
export type BackendInfo = Omit<Backend, "ort">;

/**
 * What routes need from the models: the list, defaults, readiness, the backend, and the
 * pipelines. `ModelRegistry` is it in-process; on the HTTP thread in front of engine workers,
 * `RemoteModels` (models/remote.ts) is it without pipelines (requests that need one are
 * forwarded to the worker that has it).
 */
export interface Models {
  readonly ready: boolean;
  /** null while engine workers start and none has said which backend it got. */
  readonly backend: BackendInfo | null;
  list(): ModelInfo[];
  defaultId(family: Family): string | undefined;
  familyOf(id: string): Family | undefined;
  get<F extends Family>(family: F, id?: string): Promise<Pipelines[F]>;
}

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
  /** Installed here (embedded or pulled); otherwise known from the catalogue and pullable. */
  installed: boolean;
  loaded: boolean;
  /** Installed models: the weights served (fp32, or q8 with MM_DTYPE=q8 where they ship). */
  dtype?: string;
  /** The family's default: what a request without `model` gets. */
  default?: boolean;
  /** Served by another server (MM_UPSTREAMS) through this one. */
  upstream?: boolean;
  license: string;
}

export interface RegistryOptions {
  /** Known models, installed or not (models/catalog.json). */
  catalog?: CatalogEntry[];
  /** Installs a known model on demand (only when MM_ALLOW_DOWNLOADS=1). */
  pull?: (entry: CatalogEntry) => Promise<ModelEntry>;
  /** Told after a model is loaded or installed (an engine worker reports its status). */
  onChange?: () => void;
  /** Items per shared forward pass, for pipelines that batch across requests. */
  maxBatch?: number;
}

/**
 * MM_PRELOAD as a choice of manifests; throws for an id that is not installed, so a typo shows
 * at start and not as a model that never warms.
 */
export function preloadChoice(
  preload: "all" | string[],
  entries: ModelEntry[],
): (m: Manifest) => boolean {
  if (preload === "all") return (m) => m.preload;
  const ids = new Set(entries.map((e) => e.manifest.id));
  const unknown = preload.filter((id) => !ids.has(id));
  if (unknown.length) {
    throw new RangeError(
      `MM_PRELOAD: no installed model ${unknown.map((id) => `"${id}"`).join(", ")} ` +
        `(installed: ${[...ids].join(", ")})`,
    );
  }
  return (m) => preload.includes(m.id);
}

export class ModelRegistry implements Models {
  #pipelines = new Map<string, Promise<Pipeline>>();
  #loaded = new Set<string>();
  #ready = false;
  #pulls = new Map<string, Promise<ModelEntry>>();

  constructor(
    readonly entries: ModelEntry[],
    readonly sessions: SessionRegistry,
    private options: RegistryOptions = {},
  ) {}

  get ready(): boolean {
    return this.#ready;
  }

  get backend(): BackendInfo {
    return this.sessions.backend;
  }

  /**
   * Loads and warms the models `wanted` picks (by default those whose manifest says `preload`);
   * the server reports healthy afterwards.
   */
  async preload(wanted: (m: Manifest) => boolean = (m) => m.preload): Promise<void> {
    for (const e of this.entries.filter((e) => wanted(e.manifest))) await this.#load(e);
    this.#ready = true;
    this.#changed();
  }

  /** The family of an installed or known model. */
  familyOf(id: string): Family | undefined {
    return this.entries.find((e) => e.manifest.id === id)?.manifest.family ??
      this.options.catalog?.find((e) => e.id === id)?.family;
  }

  /** The pipeline for `id`, or the family's default model when `id` is absent. */
  async get<F extends Family>(family: F, id?: string): Promise<Pipelines[F]> {
    const entry = id === undefined
      ? this.#defaultOf(family)
      : this.entries.find((e) => e.manifest.id === id) ?? await this.#install(id, family);
    if (!entry) throw new ApiError("model_not_found", `No ${family} model is installed`, "model");
    if (entry.manifest.family !== family) {
      throw new ApiError(
        "invalid_request",
        `The model "${entry.manifest.id}" is a ${entry.manifest.family} model, not a ${family} model`,
        "model",
      );
    }
    return await this.#load(entry) as Pipelines[F];
  }

  /** A model that is not installed: pulled when allowed, else a 404 that says how to get it. */
  #install(id: string, family: Family): Promise<ModelEntry> {
    const known = this.options.catalog?.find((e) => e.id === id && !e.embedded);
    if (!known) {
      const here = this.entries.filter((e) => e.manifest.family === family).map((e) =>
        e.manifest.id
      );
      throw new ApiError(
        "model_not_found",
        `The model "${id}" does not exist; ${family} models here: ${here.join(", ") || "none"}`,
        "model",
      );
    }
    if (!this.options.pull) {
      throw new ApiError(
        "model_not_found",
        `The model "${id}" is known but not installed: run \`deno task models pull ${id}\` ` +
          "(or start the server with MM_ALLOW_DOWNLOADS=1)",
        "model",
      );
    }
    let p = this.#pulls.get(id);
    if (!p) {
      p = this.options.pull(known).then((entry) => {
        this.entries.push(entry);
        this.#changed();
        return entry;
      });
      this.#pulls.set(id, p);
      p.catch(() => {}).finally(() => this.#pulls.delete(id));
    }
    return p;
  }

  /** What loaders get: the sessions, and CLIP's scorer where a CLIP model is installed. */
  get #context(): LoadContext {
    const scorer = async () => {
      const clip = await this.get("clip");
      return clip.scoreImages.bind(clip);
    };
    return {
      sessions: this.sessions,
      maxBatch: this.options.maxBatch,
      scorer: this.entries.some((e) => e.manifest.family === "clip") ? scorer : undefined,
    };
  }

  #load(entry: ModelEntry) {
    const { id, family } = entry.manifest;
    let p = this.#pipelines.get(id);
    if (!p) {
      const load: Loader = FAMILIES[family].load;
      p = load(entry, this.#context).then(async (pipeline) => {
        await pipeline.warmup();
        this.#loaded.add(id);
        this.#changed();
        return pipeline;
      });
      this.#pipelines.set(id, p);
      p.catch(() => this.#pipelines.delete(id));
    }
    return p;
  }

  /** The id a request of `family` without a model gets. */
  defaultId(family: Family): string | undefined {
    return this.#defaultOf(family)?.manifest.id;
  }

  #defaultOf(family: Family): ModelEntry | undefined {
    return defaultEntry(this.entries, family);
  }

  /** Built once per change: metrics read it on every request. */
  list(): ModelInfo[] {
    return this.#list ??= describeModels(
      this.entries,
      this.options.catalog ?? [],
      this.sessions.backend,
      (id) => this.#loaded.has(id),
    );
  }

  #list: ModelInfo[] | null = null;

  /** A model loaded or installed, or the preload done: the list is rebuilt, and it is told. */
  #changed(): void {
    this.#list = null;
    this.options.onChange?.();
  }
}

/** The family's model marked `default`, else its first. */
function defaultEntry(entries: ModelEntry[], family: Family): ModelEntry | undefined {
  const of = entries.filter((e) => e.manifest.family === family);
  return of.find((e) => e.manifest.default) ?? of[0];
}

/**
 * The model list: installed models (one default per family: the one marked, else the first)
 * and the catalogue's pullable ones. `backend` null: not known yet (engine workers starting).
 */
export function describeModels(
  entries: ModelEntry[],
  catalog: CatalogEntry[],
  backend: BackendInfo | null,
  loaded: (id: string) => boolean,
): ModelInfo[] {
  const where = {
    backend: backend?.name ?? "starting",
    execution_provider: backend?.executionProvider ?? "starting",
    device: backend?.device ?? "engine workers starting",
  };
  const defaults = new Set(entries.map((e) => defaultEntry(entries, e.manifest.family)));
  const installed = entries.map(({ manifest: m }): ModelInfo => ({
    id: m.id,
    object: "model",
    created: 0,
    owned_by: m.id.includes("/") ? m.id.split("/")[0] : "mm-edge",
    family: m.family,
    description: m.description,
    capabilities: m.capabilities,
    modalities: m.modalities,
    ...where,
    installed: true,
    loaded: loaded(m.id),
    dtype: String(m.settings.dtype ?? "fp32"),
    default: defaults.has(entries.find((e) => e.manifest.id === m.id)),
    license: m.license,
  }));
  const pullable = catalog
    .filter((c) => !c.embedded && !entries.some((e) => e.manifest.id === c.id))
    .map((c): ModelInfo => ({
      id: c.id,
      object: "model",
      created: 0,
      ...where,
      owned_by: c.id.split("/")[0],
      family: c.family,
      description: c.description,
      capabilities: c.capabilities,
      modalities: c.modalities,
      installed: false,
      loaded: false,
      license: c.license,
    }));
  return [...installed, ...pullable];
}
