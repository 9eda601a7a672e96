/**
 * mm-edge: the HTTP service. Builds the Hono app from routes/ over the model registry, and
 * serves it when run directly (`deno task serve`); tests call `createApp()` and `app.request()`.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { timing } from "hono/timing";
import { apiKeyAuth, corsFor, originGuard } from "./core/access.ts";
import { adapterName, type Backend, probeBackend, resolveBackend } from "./core/backend.ts";
import { type Config, loadConfig } from "./core/config.ts";
import { ApiError } from "./core/errors.ts";
import { imageCodec } from "./core/image.ts";
import { Lifecycle, lifecycleMiddleware, type RequestLog } from "./core/lifecycle.ts";
import { Metrics } from "./core/metrics.ts";
import { Scheduler } from "./core/scheduler.ts";
import { SessionRegistry } from "./core/sessions.ts";
import { Upstreams } from "./core/upstream.ts";
import { type CatalogEntry, loadCatalog, modelDir, pullModel } from "./models/catalog.ts";
import { hubToApiError } from "./models/hub.ts";
import { scanModels, withQuantized } from "./models/manifest.ts";
import {
  type BackendInfo,
  describeModels,
  ModelRegistry,
  type Models,
  preloadChoice,
} from "./models/registry.ts";
import { EnginePool, FAMILY_GROUPS } from "./models/remote.ts";
import { UpstreamModels } from "./models/upstreams.ts";
import { admission } from "./routes/admission.ts";
import { captionRoutes } from "./routes/captions.ts";
import { chatRoutes } from "./routes/chat.ts";
import { clipRoutes } from "./routes/clip.ts";
import { forwardToEngines, forwardToUpstreams, keepRawBody } from "./routes/forward.ts";
import { checkResponses, type Deps, type Env, responsesChecked } from "./routes/http.ts";
import { imageRoutes } from "./routes/images.ts";
import { metricsRoute, opsRoutes } from "./routes/ops.ts";
import { worldRoutes } from "./routes/world.ts";
import { staticRoutes } from "./routes/static.ts";

export interface AppOptions {
  /** Receives one line per request (the server prints them as JSON; tests may collect them). */
  log?: (line: RequestLog) => void;
}

interface Served {
  app: OpenAPIHono<Env>;
  lifecycle: Lifecycle;
  metrics: Metrics;
}

/** The app with its pipelines in this thread (tests, benches, and `MM_WORKERS=0`). */
export async function createApp(config: Config, options: AppOptions = {}): Promise<
  Served & { registry: ModelRegistry }
> {
  const registry = await createRegistry(config);
  return { ...serve(config, registry, options), registry };
}

/**
 * The app on the HTTP thread with the pipelines in engine workers (the server's default):
 * access, admission, health, metrics and the model list here; every request that needs a
 * pipeline forwarded to the worker serving its family.
 */
export async function createFront(config: Config, options: AppOptions = {}): Promise<
  Served & { pool: EnginePool }
> {
  const entries = await scanModels(config.modelsDirs);
  const chosen = preloadChoice(config.preload, entries); // a typo fails here, before any worker
  const installed = new Set(entries.map((e) => e.manifest.family));
  const groups = config.workers === "one"
    ? [FAMILY_GROUPS.flat()]
    : FAMILY_GROUPS.filter((g) => g.some((f) => installed.has(f)));
  const pool = new EnginePool(
    new URL("./engine.ts", import.meta.url),
    groups.length ? groups : [FAMILY_GROUPS.flat()],
    {
      preloads: (families) =>
        entries.some((e) => families.includes(e.manifest.family) && chosen(e.manifest)),
      models: describeModels(entries, await loadCatalog(), null, () => false),
    },
  );
  return { ...serve(config, pool.models, options, pool), pool };
}

/** The app in an engine worker: routes and pipelines; the HTTP thread did the rest. */
export async function createEngine(config: Config, onChange: () => void): Promise<{
  app: OpenAPIHono<Env>;
  registry: ModelRegistry;
}> {
  const registry = await createRegistry(config, onChange);
  const app = new OpenAPIHono<Env>();
  app.use(requestId);
  app.use(timing({ total: false })); // the routes' own Server-Timing entries (decode, …)
  if (responsesChecked()) app.use(checkResponses());
  allRoutes(app, { config, registry });
  answerErrors(app);
  return { app, registry };
}

async function createRegistry(config: Config, onChange?: () => void): Promise<ModelRegistry> {
  const backend = await resolveBackend(config.backend);
  const pull = async (entry: CatalogEntry) => {
    console.log(`pulling ${entry.id} from ${config.hub.endpoint} (MM_ALLOW_DOWNLOADS=1)...`);
    await pullModel(entry, { ...config.hub, modelsDir: config.pulledModelsDir }).catch((e) => {
      throw hubToApiError(e); // a hub failure is the client's answer, not a 500 without a reason
    });
    const [installed] = await scanModels([modelDir(config.pulledModelsDir, entry.id)]);
    return installed;
  };
  const entries = await scanModels(config.modelsDirs);
  return new ModelRegistry(
    config.dtype === "q8" ? await Promise.all(entries.map(withQuantized)) : entries,
    new SessionRegistry(backend, config.threads),
    {
      catalog: await loadCatalog(),
      pull: config.allowDownloads ? pull : undefined,
      onChange,
      maxBatch: config.maxBatch,
    },
  );
}

/** The app that accepts requests: in this thread with `models`, or in front of `pool`. */
function serve(config: Config, here: Models, options: AppOptions, pool?: EnginePool): Served {
  const upstreams = config.upstreams.length
    ? new Upstreams(config.upstreams, {
      timeoutMs: config.upstreamTimeoutMs,
      pollMs: 10_000,
      log: (line) => console.error(line),
    })
    : undefined;
  upstreams?.start();
  const models = upstreams ? new UpstreamModels(here, upstreams) : here;
  const lifecycle = new Lifecycle();
  const metrics = new Metrics({
    models: () => models.list(),
    ready: () => models.ready,
    draining: () => lifecycle.draining,
    queues: () => scheduler.depth(),
    generated: pool && (() => pool.generatedMetrics()),
  });
  const app = new OpenAPIHono<Env>();

  app.use(requestId);
  // In flight until the last byte, metrics, the log line, and the drain; then who may call:
  // origins (before CORS answers a preflight), then keys; all before any body is read.
  app.use(lifecycleMiddleware(lifecycle, metrics, options.log));
  app.use(originGuard(config));
  app.use(corsFor(config));
  app.use("/v1/*", apiKeyAuth(config));
  app.use("/metrics", apiKeyAuth(config));
  app.use(timing({ crossOrigin: true }));
  if (responsesChecked()) app.use(checkResponses());
  app.use(bodyLimit({
    maxSize: config.maxBodyBytes,
    onError: () => {
      throw new ApiError(
        "body_too_large",
        `Request body is larger than ${config.maxBodyBytes} bytes`,
      );
    },
  }));

  const scheduler = new Scheduler(config.scheduler, {
    waited: (model, seconds) => metrics.observeQueueWait(model, seconds),
  });
  if (pool || upstreams) app.use("/v1/*", keepRawBody());
  app.use("/v1/*", admission(scheduler, models, config.maxBatch));
  if (upstreams) app.use("/v1/*", forwardToUpstreams(upstreams, models));
  if (pool) app.use("/v1/*", forwardToEngines(pool));

  allRoutes(app, { config, registry: models });
  metricsRoute(app, metrics);
  answerErrors(app);
  return { app, lifecycle, metrics };
}

/** Every route; in front of workers the inference ones still declare the OpenAPI document. */
function allRoutes(app: OpenAPIHono<Env>, deps: Deps): void {
  opsRoutes(app, deps);
  clipRoutes(app, deps);
  captionRoutes(app, deps);
  imageRoutes(app, deps);
  chatRoutes(app, deps);
  worldRoutes(app);
  staticRoutes(app);
}

/** A request id for the log and the error messages: the caller's if it is sane, else a new one. */
const requestId: MiddlewareHandler<Env> = async (c, next) => {
  const incoming = c.req.header("x-request-id");
  const id = incoming && /^[\w.-]{1,64}$/.test(incoming) ? incoming : crypto.randomUUID();
  c.set("requestId", id);
  await next();
  c.header("x-request-id", id);
};

/** 404 and 405 (with Allow) for what has no route; every error in the envelope. */
function answerErrors(app: OpenAPIHono<Env>): void {
  app.notFound((c) => {
    // A known path with another method is a 405 that says which methods it has.
    const allowed = methodsFor(app, c.req.path);
    // (A route that has the method but not the thing, as a missing /static/ file, is a 404.)
    if (allowed.length > 0 && !allowed.includes(c.req.method)) {
      c.header("allow", allowed.join(", "));
      const e = new ApiError(
        "method_not_allowed",
        `${c.req.method} is not allowed on ${c.req.path}; use ${allowed.join(" or ")}`,
      );
      return c.json(e.toJSON(), 405);
    }
    const e = new ApiError("invalid_request", `No route for ${c.req.method} ${c.req.path}`);
    return c.json(e.toJSON(), 404);
  });
  app.onError((err, c) => {
    if (err instanceof HTTPException) return err.getResponse(); // bearerAuth's 401, enveloped
    if (err instanceof ApiError) {
      if (err.retryAfter !== undefined) c.header("retry-after", String(err.retryAfter));
      return c.json(err.toJSON(), err.status as 400);
    }
    if (err instanceof DOMException && err.name === "AbortError") {
      return c.json(new ApiError("cancelled", "The request was cancelled").toJSON(), 499 as 400);
    }
    // Unknown failures are logged with the request id and answered without internals.
    console.error(`[${c.get("requestId")}] ${c.req.method} ${c.req.path}:`, err);
    const e = new ApiError("internal_error", `Internal error (request id ${c.get("requestId")})`);
    return c.json(e.toJSON(), 500);
  });
}

/** The methods the app answers on `path` (from its route table; middleware excluded). */
function methodsFor(app: OpenAPIHono<Env>, path: string): string[] {
  const pattern = (p: string) =>
    new RegExp(
      `^${
        p.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\/:[^/]+/g, "/[^/]+").replace(/\*/g, ".*")
      }$`,
    );
  const methods = new Set(
    app.routes.filter((r) => r.method !== "ALL" && pattern(r.path).test(path)).map((r) => r.method),
  );
  if (methods.has("GET")) methods.add("HEAD");
  return [...methods].sort();
}

/** `http://127.0.0.1:8000`, `http://[::1]:8000`; 0.0.0.0 and :: said as what they are. */
export function listenUrl(hostname: string, port: number): string {
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  const all = hostname === "0.0.0.0" || hostname === "::" ? " (all interfaces)" : "";
  return `http://${host}:${port}${all}`;
}

if (import.meta.main) {
  const config = loadConfig();
  if (config.deploy) {
    const { deploymentId, timeline } = config.deploy;
    console.log(
      `Deno ${Deno.version.deno} on Deno Deploy (deployment ${deploymentId ?? "?"}, timeline ${
        timeline ?? "?"
      }): binding ${config.host}:${config.port}` +
        (config.ignoredHost
          ? ` (HOST=${config.ignoredHost} ignored: Deploy needs every interface)`
          : ""),
    );
  }
  const t0 = performance.now();
  if (imageCodec.wasm && config.workers !== "none") {
    // Its emscripten runtime takes a Deno Worker for one of its own threads and answers the
    // Worker's messages itself, so engine workers and sharp's WebAssembly build cannot mix.
    console.log(
      `image codec: ${imageCodec.name} (WebAssembly): pipelines run on the HTTP thread (MM_WORKERS=0)`,
    );
    config.workers = "none";
  }
  const options = {
    log: config.log ? (line: RequestLog) => console.log(JSON.stringify(line)) : undefined,
  };
  const inProcess = config.workers === "none" ? await createApp(config, options) : null;
  const front = inProcess ? null : await createFront(config, options);
  const { app, lifecycle } = inProcess ?? front!;
  const models: Models = inProcess?.registry ?? front!.pool.models;
  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: ({ hostname, port }) =>
      console.log(`mm-edge listening on ${listenUrl(hostname, port)}`),
  }, app.fetch);

  // SIGTERM (Kubernetes, systemd, docker stop) and SIGINT (Ctrl-C, Deno Deploy): drain, exit 0.
  // A second signal exits at once.
  let stopping = false;
  const stop = async (signal: Deno.Signal) => {
    if (stopping) {
      console.log(`${signal} again: exiting without waiting`);
      Deno.exit(1);
    }
    stopping = true;
    const drained = lifecycle.drain(config.drainSeconds);
    console.log(
      `${signal}: draining, ${lifecycle.inFlight} request(s) in flight, up to ${config.drainSeconds} s`,
    );
    const { finished, cut } = await drained;
    console.log(finished ? "drained" : `drain time up: ${cut} request(s) cut`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      server.shutdown(),
      new Promise((resolve) => timer = setTimeout(resolve, 2000)),
    ]);
    clearTimeout(timer);
    Deno.exit(0);
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => stop(signal));
  }

  if (inProcess) {
    console.log(`${describeBackend(inProcess.registry.backend)}; loading models...`);
    const { registry } = inProcess;
    await registry.preload(preloadChoice(config.preload, registry.entries));
    warmRuntime(registry.sessions.backend);
  } else {
    const { pool } = front!;
    console.log(`engine workers: ${pool.names.join(", ")} (MM_WORKERS=0 runs in this thread)`);
    await pool.models.whenReady();
    console.log(describeBackend(pool.models.backend!)); // whenReady waited for it
  }
  console.log(
    `ready in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${
      models.list().filter((m) => m.loaded).map((m) => m.id).join(", ")
    }`,
  );
}

/**
 * Starts the backend's runtime in the background once serving (WASM compiles ONNX Runtime's
 * module on its first session: 1.4 s here), so that a lazy first request does not pay for it.
 */
export function warmRuntime(backend: Backend): void {
  probeBackend(backend).catch((e) => console.error(`backend warm-up failed: ${e}`));
}

/** `backend: cpu (cpu, …; no WebGPU adapter); Deno 2.9.6` */
function describeBackend(b: BackendInfo): string {
  const a = b.adapter;
  const gpu = !a
    ? "no WebGPU adapter"
    : `WebGPU adapter ${adapterName(a)}${a.software ? " (software)" : ""}${
      b.name === "webgpu" ? "" : ", not used"
    }`;
  return `backend: ${b.name} (${b.executionProvider}, ${b.device}; ${gpu}); Deno ${Deno.version.deno}`;
}
