/** Process configuration, parsed once from the environment and passed down. */
import { z } from "zod";

export const BACKENDS = ["auto", "webgpu", "cpu", "wasm"] as const;
export type BackendChoice = typeof BACKENDS[number];

/** An API key: what a `Authorization: Bearer` token may hold (RFC 6750's token68). */
const API_KEY = /^[A-Za-z0-9._~+/-]+=*$/;

/** A comma-separated list; blanks and surrounding spaces dropped. */
const list = (v: string) => v.split(",").map((s) => s.trim()).filter((s) => s !== "");

const Upstreams = z.array(
  z.object({
    models: z.array(z.string().min(1)).min(1),
    urls: z.array(z.url({ protocol: /^https?$/ })).min(1),
    api_key: z.string().min(1).optional(),
  }).strict(),
).transform((list) => list.map((u) => ({ models: u.models, urls: u.urls, apiKey: u.api_key })));

const Env = z.object({
  /**
   * The address to listen on: loopback unless asked (`0.0.0.0` or `::` for every interface).
   * On Deno Deploy always every interface (`0.0.0.0`, or `::` when HOST says so).
   */
  HOST: z.string().trim().min(1).optional(),
  PORT: z.coerce.number().int().min(0).max(65535).default(8000),
  /** Comma-separated keys: when set, `/v1/*` and `/metrics` need `Authorization: Bearer <key>`. */
  MM_API_KEYS: z.string().default("").transform(list).refine(
    (keys) => keys.every((k) => API_KEY.test(k)),
    "each key is letters, digits and . _ ~ + / - (then = padding), comma-separated",
  ),
  /** Comma-separated origins (scheme://host[:port]) whose pages may call the API, or `*`. */
  MM_CORS_ORIGINS: z.string().default("").transform(list).transform((origins, ctx) =>
    origins.map((o) => {
      if (o === "*") return o;
      try {
        const u = new URL(o);
        const bare = u.pathname === "/" && !u.search && !u.hash && !u.username && !o.endsWith("#");
        if (u.origin !== "null" && bare) return u.origin;
      } catch { /* reported below */ }
      ctx.addIssue({
        code: "custom",
        message: `"${o}" is not an origin like https://app.example.com`,
      });
      return o;
    })
  ),
  /** Seconds in-flight requests get to finish after SIGTERM or SIGINT (then they are cut). */
  MM_DRAIN_S: z.coerce.number().min(0).max(3600).optional(),
  /** Deno Deploy sets these (it kills a process 5 s after SIGINT). */
  DENO_DEPLOY: z.string().optional(),
  DENO_DEPLOYMENT_ID: z.string().optional(),
  DENO_TIMELINE: z.string().optional(),
  /** "0": no request log on stdout. */
  MM_LOG: z.enum(["0", "1", ""]).default("1"),
  MM_BACKEND: z.enum(BACKENDS, {
    error: (issue) => `MM_BACKEND must be one of ${BACKENDS.join(", ")}; got "${issue.input}"`,
  }).default("auto"),
  /** Where pulled models live (shared by the server and `deno task models`). */
  MM_MODELS_DIR: z.string().optional(),
  /** "1": the server may pull a known model that a request names but that is not installed. */
  MM_ALLOW_DOWNLOADS: z.enum(["0", "1", ""]).default("0"),
  /** The hub to pull from, and its token (the variables the ecosystem's own clients read). */
  HF_ENDPOINT: z.string().url().default("https://huggingface.co"),
  HF_TOKEN: z.string().optional(),
  HF_HUB_OFFLINE: z.enum(["0", "1", ""]).default("0"),
  HOME: z.string().optional(),
  XDG_CACHE_HOME: z.string().optional(),
  /** Largest accepted image, in pixels (width × height), checked from the header. */
  MM_MAX_IMAGE_PIXELS: z.coerce.number().int().positive().default(4096 * 4096),
  /** Largest accepted request body in bytes. */
  MM_MAX_BODY_BYTES: z.coerce.number().int().positive().default(20 * 1024 * 1024),
  /**
   * Where the pipelines run: `families` one Worker per group of families (the generators share
   * one), `1` one Worker for all, `0` on the HTTP thread itself (what tests and benches use).
   */
  MM_WORKERS: z.enum(["families", "1", "0"], {
    error: (issue) => `MM_WORKERS must be families, 1 or 0; got "${issue.input}"`,
  }).default("families"),
  /**
   * Models to load and warm at start (`/health` is 503 until they are): `all` (every installed
   * model whose manifest says `preload`), or comma-separated ids; empty: none, each model loads
   * on its first request (the fastest cold start).
   */
  MM_PRELOAD: z.string().default("").transform((v) =>
    v.trim() === "all" ? "all" as const : list(v)
  ),
  /**
   * Other servers for some models, as JSON: `[{"models": ["sd-tiny"], "urls":
   * ["http://gpu-box:8000"], "api_key": "…"}]`. Requests for those models are sent there, even
   * where a local copy exists.
   */
  MM_UPSTREAMS: z.string().default("").transform((v, ctx) => {
    if (v.trim() === "") return [];
    let json: unknown;
    try {
      json = JSON.parse(v);
    } catch {
      ctx.addIssue({ code: "custom", message: "is not JSON" });
      return z.NEVER;
    }
    const parsed = Upstreams.safeParse(json);
    if (parsed.success) return parsed.data;
    const i = parsed.error.issues[0];
    ctx.addIssue({ code: "custom", message: `${i.path.join(".") || "(top)"}: ${i.message}` });
    return z.NEVER;
  }),
  /** Seconds an upstream has to start answering (its stream afterwards is not limited). */
  MM_UPSTREAM_TIMEOUT_S: z.coerce.number().positive().default(30),
  /** Threads for the native CPU backend (0 = ORT's default) and WASM (0 = one per core, ≤ 16). */
  MM_THREADS: z.coerce.number().int().min(0).default(0),
  /** Per model: jobs that run at once, jobs that may wait (then 429), and the wait limit (503). */
  MM_MAX_CONCURRENT: z.coerce.number().int().min(1).default(4),
  MM_MAX_QUEUE: z.coerce.number().int().min(0).default(32),
  MM_QUEUE_TIMEOUT_S: z.coerce.number().positive().default(60),
  /** q8: serve the int8 files (`*_quantized.onnx`) of the models that ship them. */
  MM_DTYPE: z.enum(["fp32", "q8"]).default("fp32"),
  /** Items per shared forward pass of a batching model (CLIP); 1: every request runs alone. */
  MM_MAX_BATCH: z.coerce.number().int().min(1).max(256).default(32),
});

/** Where Deno Deploy runs us, as its environment says. */
export interface DeployInfo {
  deploymentId: string | null;
  /** `production`, `git-branch/<name>` or `preview/<revision>`. */
  timeline: string | null;
}

export type Config = {
  host: string;
  port: number;
  /** Set when running on Deno Deploy (`DENO_DEPLOY` or `DENO_DEPLOYMENT_ID` in the environment). */
  deploy: DeployInfo | null;
  /** A HOST that was not used because Deploy needs every interface (the server says so). */
  ignoredHost: string | null;
  /** API keys; empty: the API is open. */
  apiKeys: string[];
  /** Origins allowed to call the API from a browser (`*`: any); empty: same origin only. */
  corsOrigins: string[];
  /** Seconds to let in-flight requests finish on SIGTERM/SIGINT. */
  drainSeconds: number;
  /** One JSON line per request on stdout (the server; `createApp` logs only when given a sink). */
  log: boolean;
  backend: BackendChoice;
  /** Folders scanned for models: the embedded ones first, then `pulledModelsDir`. */
  modelsDirs: string[];
  pulledModelsDir: string;
  allowDownloads: boolean;
  hub: { endpoint: string; token?: string; offline: boolean };
  maxImagePixels: number;
  maxBodyBytes: number;
  threads: number;
  /** Models served by other servers (MM_UPSTREAMS), and how long they have to answer. */
  upstreams: Array<{ models: string[]; urls: string[]; apiKey?: string }>;
  upstreamTimeoutMs: number;
  /** What loads at start: `all` manifests that say `preload`, or these ids. */
  preload: "all" | string[];
  workers: "families" | "one" | "none";
  scheduler: { concurrency: number; maxQueue: number; queueTimeoutMs: number };
  /** Items per shared forward pass of a batching model (1: none shared). */
  maxBatch: number;
  /** Which files of the installed models to serve: fp32, or their q8 ones where they have them. */
  dtype: "fp32" | "q8";
};

export const EMBEDDED_MODELS_DIR = new URL("../models/embedded/", import.meta.url).pathname;

/** Reads the configuration; throws a readable error for a bad value. */
export function loadConfig(env: Record<string, string | undefined> = Deno.env.toObject()): Config {
  const parsed = Env.safeParse(env);
  if (!parsed.success) {
    throw new RangeError(
      parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
    );
  }
  const e = parsed.data;
  const onDeploy = Boolean(e.DENO_DEPLOY || e.DENO_DEPLOYMENT_ID);
  // Deploy routes requests to the process over the network: loopback would never be reached.
  const wildcard = e.HOST === "0.0.0.0" || e.HOST === "::";
  const host = onDeploy ? (wildcard ? e.HOST! : "0.0.0.0") : e.HOST ?? "127.0.0.1";
  const pulled = e.MM_MODELS_DIR ??
    `${e.XDG_CACHE_HOME ?? `${e.HOME ?? "."}/.cache`}/mm-edge/models`;
  return {
    host,
    port: e.PORT,
    deploy: onDeploy
      ? { deploymentId: e.DENO_DEPLOYMENT_ID || null, timeline: e.DENO_TIMELINE || null }
      : null,
    ignoredHost: onDeploy && e.HOST !== undefined && !wildcard ? e.HOST : null,
    apiKeys: e.MM_API_KEYS,
    corsOrigins: e.MM_CORS_ORIGINS,
    // Deno Deploy sends SIGKILL 5 s after SIGINT: drain in 4 there unless told otherwise.
    drainSeconds: e.MM_DRAIN_S ?? (onDeploy ? 4 : 30),
    log: e.MM_LOG !== "0",
    backend: e.MM_BACKEND,
    modelsDirs: [EMBEDDED_MODELS_DIR, pulled],
    pulledModelsDir: pulled,
    allowDownloads: e.MM_ALLOW_DOWNLOADS === "1",
    hub: {
      endpoint: e.HF_ENDPOINT,
      token: e.HF_TOKEN || undefined,
      offline: e.HF_HUB_OFFLINE === "1",
    },
    maxImagePixels: e.MM_MAX_IMAGE_PIXELS,
    maxBodyBytes: e.MM_MAX_BODY_BYTES,
    threads: e.MM_THREADS,
    preload: e.MM_PRELOAD,
    upstreams: e.MM_UPSTREAMS,
    upstreamTimeoutMs: e.MM_UPSTREAM_TIMEOUT_S * 1000,
    workers: ({ families: "families", "1": "one", "0": "none" } as const)[e.MM_WORKERS],
    scheduler: {
      concurrency: e.MM_MAX_CONCURRENT,
      maxQueue: e.MM_MAX_QUEUE,
      queueTimeoutMs: e.MM_QUEUE_TIMEOUT_S * 1000,
    },
    maxBatch: e.MM_MAX_BATCH,
    dtype: e.MM_DTYPE,
  };
}
