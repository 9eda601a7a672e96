/**
 * Prometheus metrics (prom-client), served as text on `GET /metrics`. Three registries merge at
 * scrape time: the app's (requests, models, queues, drain state; one per app, so tests that build
 * several apps do not collide), the process's (the standard `process_*` and `nodejs_*` metrics:
 * resident memory, CPU, heap, event-loop lag) and what the pipelines generate (tokens, diffusion
 * steps). Pipelines run in engine workers when the server has them: each worker's counts are
 * fetched at scrape time (`generatedMetrics()` there) and summed (`MetricSources.generated`).
 *
 * What is generated is counted with `countTokens` and `countDiffusionSteps` where the result is
 * in hand: routes/chat.ts, routes/images.ts, and CaptionPipeline.caption().
 */
import client from "prom-client";

const processRegistry = new client.Registry();
let defaultsStarted = false;
const generatedRegistry = new client.Registry();

/** This thread's generated-work counters as JSON (what an engine worker sends for a scrape). */
export function generatedMetrics(): Promise<
  client.MetricObjectWithValues<client.MetricValue<string>>[]
> {
  return generatedRegistry.getMetricsAsJSON();
}
export type GeneratedMetrics = Awaited<ReturnType<typeof generatedMetrics>>;

const tokens = new client.Counter({
  name: "mm_tokens_generated_total",
  help: "Tokens generated: chat completion tokens, caption tokens, DALL-E image tokens",
  labelNames: ["family", "model"] as const,
  registers: [generatedRegistry],
});
const steps = new client.Counter({
  name: "mm_diffusion_steps_total",
  help: "Denoising steps run, counted per image (n = 2 at 20 steps adds 40)",
  labelNames: ["model"] as const,
  registers: [generatedRegistry],
});

/** Counts `n` generated tokens of `model` (family: chat, captioning or dalle). */
export function countTokens(family: string, model: string, n: number): void {
  if (n > 0) tokens.inc({ family, model }, n);
}

/** Counts `n` denoising steps (steps × images) of a diffusion `model`. */
export function countDiffusionSteps(model: string, n: number): void {
  if (n > 0) steps.inc({ model }, n);
}

/** Latency buckets from a cached health check (1 ms) to a long generation (10 min). */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

/** What the app's gauges read at scrape time. */
export interface MetricSources {
  /** Installed models and whether each is loaded. */
  models(): Array<{ id: string; family: string; installed: boolean; loaded: boolean }>;
  ready(): boolean;
  draining(): boolean;
  /** Running and waiting jobs per scheduler lane. */
  queues(): Record<string, { running: number; waiting: number }>;
  /** The engine workers' generated-work counters; absent: this thread's own. */
  generated?: () => Promise<GeneratedMetrics[]>;
}

/** One finished request. `route` is the route pattern, never the raw path. */
export interface RequestSample {
  route: string;
  method: string;
  model: string;
  status: number;
  seconds: number;
}

export class Metrics {
  readonly registry = new client.Registry();
  #requests = new client.Counter({
    name: "mm_http_requests_total",
    help: "Requests answered, by route pattern, method, model (empty when none) and status",
    labelNames: ["route", "method", "model", "status"] as const,
    registers: [this.registry],
  });
  #duration = new client.Histogram({
    name: "mm_http_request_duration_seconds",
    help: "Time from the request to the last byte of its response (a stream's whole life)",
    labelNames: ["route", "method", "model", "status"] as const,
    buckets: BUCKETS,
    registers: [this.registry],
  });
  #inFlight = new client.Gauge({
    name: "mm_http_requests_in_flight",
    help: "Requests being answered now (streams until their last event), by route pattern",
    labelNames: ["route"] as const,
    registers: [this.registry],
  });
  #queueWait = new client.Histogram({
    name: "mm_queue_wait_seconds",
    help: "Time an inference request waited for a slot of its model's lane",
    labelNames: ["model"] as const,
    buckets: BUCKETS,
    registers: [this.registry],
  });

  constructor(private sources: MetricSources) {
    if (!defaultsStarted) {
      defaultsStarted = true;
      client.collectDefaultMetrics({ register: processRegistry });
    }
    const models = () => sources.models().filter((m) => m.installed);
    /** A lane's key as a label: an installed model's id, else "other" (keys come from bodies). */
    const lanes = () => {
      const out = new Map(models().map((m) => [m.id, { running: 0, waiting: 0 }]));
      for (const [key, d] of Object.entries(sources.queues())) {
        const k = out.has(key) ? key : "other";
        const o = out.get(k) ?? { running: 0, waiting: 0 };
        out.set(k, { running: o.running + d.running, waiting: o.waiting + d.waiting });
      }
      return out;
    };
    new client.Gauge({
      name: "mm_model_loaded",
      help: "1 for an installed model whose pipeline is loaded and warm, else 0",
      labelNames: ["model", "family"] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const m of models()) this.set({ model: m.id, family: m.family }, m.loaded ? 1 : 0);
      },
    });
    new client.Gauge({
      name: "mm_queue_running",
      help: "Jobs running now, per model lane",
      labelNames: ["model"] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [model, d] of lanes()) this.set({ model }, d.running);
      },
    });
    new client.Gauge({
      name: "mm_queue_waiting",
      help: "Jobs waiting for a slot, per model lane",
      labelNames: ["model"] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [model, d] of lanes()) this.set({ model }, d.waiting);
      },
    });
    new client.Gauge({
      name: "mm_ready",
      help: "1 once the preloaded models are warm (/health answers 200)",
      registers: [this.registry],
      collect() {
        this.set(sources.ready() ? 1 : 0);
      },
    });
    new client.Gauge({
      name: "mm_draining",
      help: "1 after SIGTERM or SIGINT, while in-flight requests finish",
      registers: [this.registry],
      collect() {
        this.set(sources.draining() ? 1 : 0);
      },
    });
    // Zero series for the routes that always exist, so a dashboard has lines before traffic.
    this.#inFlight.set({ route: "unmatched" }, 0);
  }

  /** A request started on `route`; returns the function that marks it finished. */
  started(route: string): () => void {
    this.#inFlight.inc({ route });
    let done = false;
    return () => {
      if (!done) this.#inFlight.dec({ route });
      done = true;
    };
  }

  /**
   * Labels only from bounded sets: `model` an installed model's id (else "other": the id came
   * from a request body, and each new one was a new series kept for ever), `method` a standard one.
   */
  observe(s: RequestSample): void {
    const known = s.model === "" ||
      this.sources.models().some((m) => m.installed && m.id === s.model);
    const labels = {
      route: s.route,
      method: METHODS.has(s.method) ? s.method : "other",
      model: known ? s.model : "other",
      status: String(s.status),
    };
    this.#requests.inc(labels);
    this.#duration.observe(labels, s.seconds);
  }

  /** `lane` is the scheduler's key: an installed model's id, else counted as "other". */
  observeQueueWait(lane: string, seconds: number): void {
    const known = this.sources.models().some((m) => m.installed && m.id === lane);
    this.#queueWait.observe({ model: known ? lane : "other" }, seconds);
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    const generated = this.sources.generated
      ? client.AggregatorRegistry.aggregate(await this.sources.generated()) as client.Registry
      : generatedRegistry;
    const merged = client.Registry.merge([this.registry, processRegistry, generated]);
    return { contentType: merged.contentType, body: await merged.metrics() };
  }
}
