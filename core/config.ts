/** Process configuration, parsed once from the environment and passed down. */
import { z } from "zod";

export const BACKENDS = ["auto", "webgpu", "cpu", "wasm"] as const;
export type BackendChoice = typeof BACKENDS[number];

const Env = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8000),
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
  /** Threads for the native CPU backend (0 = ORT's default). */
  MM_THREADS: z.coerce.number().int().min(0).default(0),
  /** Per model: jobs that run at once, jobs that may wait (then 429), and the wait limit (503). */
  MM_MAX_CONCURRENT: z.coerce.number().int().min(1).default(4),
  MM_MAX_QUEUE: z.coerce.number().int().min(0).default(32),
  MM_QUEUE_TIMEOUT_S: z.coerce.number().positive().default(60),
});

export type Config = {
  port: number;
  backend: BackendChoice;
  /** Folders scanned for models: the embedded ones first, then `pulledModelsDir`. */
  modelsDirs: string[];
  pulledModelsDir: string;
  allowDownloads: boolean;
  hub: { endpoint: string; token?: string; offline: boolean };
  maxImagePixels: number;
  maxBodyBytes: number;
  threads: number;
  scheduler: { concurrency: number; maxQueue: number; queueTimeoutMs: number };
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
  const pulled = e.MM_MODELS_DIR ??
    `${e.XDG_CACHE_HOME ?? `${e.HOME ?? "."}/.cache`}/mm-edge/models`;
  return {
    port: e.PORT,
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
    scheduler: {
      concurrency: e.MM_MAX_CONCURRENT,
      maxQueue: e.MM_MAX_QUEUE,
      queueTimeoutMs: e.MM_QUEUE_TIMEOUT_S * 1000,
    },
  };
}
