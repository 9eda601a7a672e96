/**
 * Engine workers: the pipelines run in Workers, one per group of families, so that a long
 * generation never holds the thread that answers `/health`, nor another family's requests
 * (onnxruntime-node's `run()` and the tensor loops around it keep their thread busy).
 *
 * `EnginePool` starts the workers (engine.ts) and says which one serves a family;
 * `RemoteModels` is the HTTP thread's view of the models, merged from the workers' statuses.
 */
import type { GeneratedMetrics } from "../core/metrics.ts";
import { WorkerEndpoint } from "../core/worker_bridge.ts";
import { type Family, type Pipelines, workerGroups } from "./families.ts";
import type { BackendInfo, ModelInfo, Models } from "./registry.ts";

/** What an engine worker reports whenever a model loads (and when it starts and is ready). */
export interface EngineStatus {
  ready: boolean;
  models: ModelInfo[];
  backend: BackendInfo;
}

/**
 * The groups `MM_WORKERS=families` starts (those with an installed model), as models/families.ts
 * assigns them: the generators share one worker (one route, one CLIP for reranking).
 */
export const FAMILY_GROUPS: Family[][] = workerGroups();

export class RemoteModels implements Models {
  readonly #status = new Map<string, EngineStatus | null>();
  readonly #preloading: Set<string>;
  #waiting: Array<() => void> = [];

  /**
   * `preloading`: the workers that have models to load at start; `initial`: the list as the
   * HTTP thread read it from the manifests, until the workers report.
   */
  constructor(
    engines: string[],
    preloading: string[] = engines,
    private initial: ModelInfo[] = [],
  ) {
    for (const name of engines) this.#status.set(name, null);
    this.#preloading = new Set(preloading);
  }

  /** A worker's latest status; null while it (re)starts. */
  update(engine: string, status: EngineStatus | null): void {
    this.#status.set(engine, status);
    if (this.ready && this.backend) this.#waiting.splice(0).forEach((resolve) => resolve());
  }

  /** Resolves once every worker has loaded its share (and one has said which backend it got). */
  whenReady(): Promise<void> {
    return this.ready && this.backend
      ? Promise.resolve()
      : new Promise((resolve) => this.#waiting.push(resolve));
  }

  /**
   * Every worker with a share of MM_PRELOAD has loaded it. Workers with none count as ready
   * while they start: what is sent to them waits until they listen (a lazy cold start answers
   * /health at once).
   */
  get ready(): boolean {
    return [...this.#status].every(([name, s]) => s?.ready || !this.#preloading.has(name));
  }

  get backend(): BackendInfo | null {
    return [...this.#status.values()].find((s) => s)?.backend ?? null;
  }

  /** Every worker lists every model; a model is loaded (installed) if one of them has it so. */
  list(): ModelInfo[] {
    const reports = [...this.#status.values()].filter((s) => s);
    if (reports.length === 0) return this.initial;
    const byId = new Map<string, ModelInfo>();
    for (const s of reports) {
      for (const m of s?.models ?? []) {
        const seen = byId.get(m.id);
        byId.set(
          m.id,
          seen
            ? { ...seen, installed: seen.installed || m.installed, loaded: seen.loaded || m.loaded }
            : m,
        );
      }
    }
    return [...byId.values()];
  }

  defaultId(family: Family): string | undefined {
    const of = this.list().filter((m) => m.family === family && m.installed);
    return (of.find((m) => m.default) ?? of[0])?.id;
  }

  familyOf(id: string): Family | undefined {
    return this.list().find((m) => m.id === id)?.family;
  }

  get<F extends Family>(_family: F, _id?: string): Promise<Pipelines[F]> {
    // Requests that need a pipeline are forwarded to a worker before any route handler runs.
    throw new Error("pipelines run in the engine workers, not on the HTTP thread");
  }
}

/** Respawn delays after a worker dies: 1 s, doubling, at most 30 s. */
const RESPAWN_MS = [1000, 2000, 4000, 8000, 16000, 30000];

export class EnginePool {
  readonly models: RemoteModels;
  readonly #engines: Array<{ families: Family[]; name: string; endpoint: WorkerEndpoint }>;
  readonly #lastMetrics = new Map<string, GeneratedMetrics>();
  #stopped = false;

  /** Starts one worker (`url`, the engine module) per group of families. */
  constructor(
    readonly url: URL,
    groups: Family[][],
    { preloads, models }: {
      /** Whether a group has models to load at start. */
      preloads: (families: Family[]) => boolean;
      /** The model list until the workers report. */
      models: ModelInfo[];
    },
    private log: (line: string) => void = console.error,
  ) {
    const names = groups.map((g) => `engine:${g.join(",")}`);
    this.models = new RemoteModels(names, names.filter((_, i) => preloads(groups[i])), models);
    this.#engines = groups.map((families, i) => ({
      families,
      name: names[i],
      endpoint: this.#start(names[i], 0),
    }));
  }

  get names(): string[] {
    return this.#engines.map((e) => e.name);
  }

  /** The worker serving `family`; other routes (the world renderer) go to the first. */
  endpointFor(family: Family | undefined): WorkerEndpoint {
    const e = this.#engines.find((e) => family && e.families.includes(family)) ?? this.#engines[0];
    return e.endpoint;
  }

  /**
   * Every worker's generated-work counters. A worker busy in a long run that does not answer
   * within `timeoutMs` is counted with its last answer.
   */
  async generatedMetrics(timeoutMs = 2000): Promise<GeneratedMetrics[]> {
    await Promise.all(this.#engines.map(async (e) => {
      try {
        this.#lastMetrics.set(
          e.name,
          await e.endpoint.call<GeneratedMetrics>("metrics", timeoutMs),
        );
      } catch { /* keep the last answer */ }
    }));
    return [...this.#lastMetrics.values()];
  }

  /** Runs each worker's garbage collector, where V8 exposes it (`--v8-flags=--expose-gc`). */
  async collectGarbage(timeoutMs = 10_000): Promise<void> {
    await Promise.all(this.#engines.map((e) => e.endpoint.call("gc", timeoutMs).catch(() => {})));
  }

  stop(): void {
    this.#stopped = true;
    for (const e of this.#engines) e.endpoint.terminate();
  }

  #start(name: string, failures: number): WorkerEndpoint {
    const onEvent = (event: string, value: unknown) => {
      if (event === "status") this.models.update(name, value as EngineStatus);
    };
    const onExit = (error: Error) => {
      this.models.update(name, null);
      if (this.#stopped) return;
      const wait = RESPAWN_MS[Math.min(failures, RESPAWN_MS.length - 1)];
      this.log(`${error.message}; restarting it in ${wait / 1000} s`);
      setTimeout(() => {
        const e = this.#engines.find((e) => e.name === name);
        if (e && !this.#stopped) e.endpoint = this.#start(name, failures + 1);
      }, wait);
    };
    return new WorkerEndpoint(this.url, name, onEvent, onExit);
  }
}
