/** Operations: health, the model list, the OpenAPI document and the docs page. */
import { z } from "@hono/zod-openapi";
import type { BackendInfo } from "../models/registry.ts";
import type { Config } from "../core/config.ts";
import { ApiError } from "../core/errors.ts";
import { imageCodec } from "../core/image.ts";
import type { Metrics } from "../core/metrics.ts";
import { type App, type Deps, ErrorBody, route } from "./http.ts";

const Adapter = z.object({
  vendor: z.string(),
  architecture: z.string(),
  device: z.string(),
  description: z.string(),
  is_fallback_adapter: z.boolean().nullable().openapi({
    description: "As the adapter reports it; null where the runtime does not say. Deno 2.5 " +
      "says false for Mesa's llvmpipe, so `software` is decided from the names as well",
  }),
  software: z.boolean().openapi({ description: "A software rasterizer: `auto` never uses one" }),
  software_reason: z.string().nullable(),
  used: z.boolean().openapi({ description: "Whether the backend runs on it" }),
}).openapi("Adapter");

const Runtime = z.object({
  deno: z.string().openapi({ example: "2.5.7" }),
  v8: z.string(),
  typescript: z.string(),
  os: z.string(),
  arch: z.string(),
  cpus: z.number().int(),
  deploy: z.object({ deployment_id: z.string().nullable(), timeline: z.string().nullable() })
    .nullable().openapi({ description: "Set on Deno Deploy (DENO_DEPLOY / DENO_DEPLOYMENT_ID)" }),
  backend: z.object({
    requested: z.string().openapi({ description: "MM_BACKEND" }),
    name: z.string(),
    execution_provider: z.string(),
    device: z.string(),
    notes: z.array(z.string()).openapi({
      description: "Why `auto` passed over a backend (software adapter, WebGPU failing at start, " +
        "native addon not loading)",
    }),
  }),
  adapter: Adapter.nullable().openapi({
    description: "The WebGPU adapter navigator.gpu offered, used or not; null: none",
  }),
  image_codec: z.object({ name: z.string(), wasm: z.boolean() }).openapi({
    description: "sharp's build: native libvips, or WebAssembly where native code cannot load",
  }),
  rss_mb: z.number().openapi({ description: "Resident memory of the process" }),
}).openapi("Runtime");

const Health = z.object({
  status: z.literal("ok"),
  backend: z.string(),
  execution_provider: z.string(),
  device: z.string(),
  models: z.array(z.string()),
  runtime: Runtime,
}).openapi("Health");

/** The backend while the engine workers start (lazy loading: /health is 200 before they are up). */
const STARTING = (choice: Config["backend"]) => ({
  choice,
  name: "starting",
  executionProvider: "starting",
  device: "engine workers starting",
  notes: [] as string[],
  adapter: null,
});

/** What a first deploy needs to see: the runtime, the backend and why, the adapter. */
export function runtimeReport(
  known: BackendInfo | null,
  config: Pick<Config, "deploy" | "backend">,
) {
  const backend = known ?? STARTING(config.backend);
  const a = backend.adapter;
  return {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    os: Deno.build.os,
    arch: Deno.build.arch,
    cpus: navigator.hardwareConcurrency,
    deploy: config.deploy
      ? { deployment_id: config.deploy.deploymentId, timeline: config.deploy.timeline }
      : null,
    backend: {
      requested: backend.choice,
      name: backend.name,
      execution_provider: backend.executionProvider,
      device: backend.device,
      notes: backend.notes,
    },
    adapter: a
      ? {
        vendor: a.vendor,
        architecture: a.architecture,
        device: a.device,
        description: a.description,
        is_fallback_adapter: a.isFallbackAdapter,
        software: a.software,
        software_reason: a.softwareReason,
        used: backend.name === "webgpu",
      }
      : null,
    image_codec: imageCodec,
    rss_mb: Math.round(Deno.memoryUsage().rss / 2 ** 20),
  };
}

const Model = z.object({
  id: z.string(),
  object: z.literal("model"),
  created: z.number().int(),
  owned_by: z.string(),
  family: z.string(),
  description: z.string(),
  capabilities: z.array(z.string()),
  modalities: z.object({ input: z.array(z.string()), output: z.array(z.string()) }),
  backend: z.string(),
  execution_provider: z.string(),
  device: z.string(),
  installed: z.boolean().openapi({
    description: "false: known and pullable with `deno task models pull <id>`",
  }),
  loaded: z.boolean(),
  dtype: z.string().optional().openapi({
    description: 'Installed models: the weights served, "fp32" or "q8" (MM_DTYPE)',
  }),
  default: z.boolean().optional().openapi({
    description: "The family's default: what a request without `model` gets",
  }),
  upstream: z.boolean().optional().openapi({
    description: "Served by another server (MM_UPSTREAMS) through this one",
  }),
  license: z.string(),
}).openapi("Model");

const ModelList = z.object({ object: z.literal("list"), data: z.array(Model) }).openapi(
  "ModelList",
);

export function opsRoutes(app: App, { config, registry }: Deps): void {
  route(app, {
    method: "get",
    path: "/health",
    summary: "200 once the preloaded models are warm, with the runtime (Deno version, Deploy, " +
      "backend and why, WebGPU adapter); 503 with Retry-After while they load, and while the " +
      "server drains on shutdown",
    tags: ["Operations"],
    response: Health,
  }, (c) => {
    if (!registry.ready) {
      throw new ApiError("not_ready", "Models are still loading; retry shortly", null, 5);
    }
    const runtime = runtimeReport(registry.backend, config);
    return c.json({
      status: "ok" as const,
      backend: runtime.backend.name,
      execution_provider: runtime.backend.execution_provider,
      device: runtime.backend.device,
      models: registry.list().filter((m) => m.loaded).map((m) => m.id),
      runtime,
    });
  });

  route(app, {
    method: "get",
    path: "/v1/models",
    summary: "Installed models: family, capabilities, modalities, backend, loaded or not",
    tags: ["Operations"],
    response: ModelList,
  }, (c) => c.json({ object: "list" as const, data: registry.list() }));

  // OpenAI's `models.retrieve`. Ids may hold a slash (org/name): the route takes the rest of the
  // path, encoded or not.
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/v1/models/{model}",
    summary: "One model, as listed by /v1/models",
    tags: ["Operations"],
    request: { params: z.object({ model: z.string().min(1).openapi({ example: "sd-tiny" }) }) },
    responses: {
      200: { description: "OK", content: { "application/json": { schema: Model } } },
      404: { description: "Unknown model", content: { "application/json": { schema: ErrorBody } } },
    },
  });
  app.get("/v1/models/:model{.+}", (c) => {
    const id = c.req.param("model");
    const model = registry.list().find((m) => m.id === id);
    if (!model) throw new ApiError("model_not_found", `No model "${id}"`, "model");
    return c.json(model);
  });

  app.get("/openapi.json", (c) =>
    c.json(app.getOpenAPI31Document({
      openapi: "3.1.0",
      info: {
        title: "mm-edge: multimodal inference API",
        version: "0.1.0",
        description: "One OpenAI-compatible API for the multimodal systems of the course: " +
          "captioning (Show and Tell, Show Attend and Tell with attention maps, ViT + GPT-2), " +
          "CLIP (embeddings, zero-shot classification, similarity), image generation " +
          "(Stable Diffusion design with img2img and inpainting; DALL-E with CLIP reranking) " +
          "and multimodal chat (a unified embedding decoder and a cross-attention decoder), " +
          "on ONNX Runtime (WebGPU, native CPU, WASM) and our own WGSL kernels.",
      },
    })));
}

/**
 * `GET /metrics`: Prometheus text format. Behind the API key when keys are set (main.ts guards
 * it as it guards /v1/*; Prometheus sends one with `authorization: { credentials: <key> }`).
 */
export function metricsRoute(app: App, metrics: Metrics): void {
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/metrics",
    summary: "Prometheus metrics: requests, latency, in-flight, queues, tokens, steps, models, " +
      "memory (needs the API key when MM_API_KEYS is set)",
    tags: ["Operations"],
    responses: {
      200: {
        description: "Prometheus text exposition format",
        content: { "text/plain": { schema: { type: "string" } } },
      },
    },
  });
  app.get("/metrics", async (c) => {
    const { contentType, body } = await metrics.scrape();
    return c.body(body, 200, { "content-type": contentType });
  });
}
