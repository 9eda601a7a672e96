/** Process configuration, parsed once from the environment and passed down. */
import { z } from "zod";

export const BACKENDS = ["auto", "webgpu", "cpu", "wasm"] as const;
export type BackendChoice = typeof BACKENDS[number];

const Env = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8000),
  MM_BACKEND: z.enum(BACKENDS, {
    error: (issue) => `MM_BACKEND must be one of ${BACKENDS.join(", ")}; got "${issue.input}"`,
  }).default("auto"),
  /** Extra model folders (pulled models); the embedded ones ship in models/embedded. */
  MM_MODELS_DIR: z.string().optional(),
  /** Largest accepted image, in pixels (width × height), checked from the header. */
  MM_MAX_IMAGE_PIXELS: z.coerce.number().int().positive().default(4096 * 4096),
  /** Largest accepted request body in bytes. */
  MM_MAX_BODY_BYTES: z.coerce.number().int().positive().default(20 * 1024 * 1024),
  /** Threads for the native CPU backend (0 = ORT's default). */
  MM_THREADS: z.coerce.number().int().min(0).default(0),
});

export type Config = {
  port: number;
  backend: BackendChoice;
  modelsDirs: string[];
  maxImagePixels: number;
  maxBodyBytes: number;
  threads: number;
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
  return {
    port: e.PORT,
    backend: e.MM_BACKEND,
    modelsDirs: [EMBEDDED_MODELS_DIR, ...(e.MM_MODELS_DIR ? [e.MM_MODELS_DIR] : [])],
    maxImagePixels: e.MM_MAX_IMAGE_PIXELS,
    maxBodyBytes: e.MM_MAX_BODY_BYTES,
    threads: e.MM_THREADS,
  };
}
