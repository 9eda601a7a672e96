/**
 * An engine worker (started by models/remote.ts, one per group of families): the routes and
 * pipelines of the app, answering the requests the HTTP thread forwards. Its name says which
 * families are its share of MM_PRELOAD (`engine:diffusion,dalle`); it loads any model on demand
 * (the generators' worker loads CLIP for reranking).
 */
/// <reference lib="deno.worker" />
import { loadConfig } from "./core/config.ts";
import { generatedMetrics } from "./core/metrics.ts";
import { serveRequests } from "./core/worker_bridge.ts";
import { createEngine, warmRuntime } from "./main.ts";
import type { Family } from "./models/manifest.ts";
import { preloadChoice } from "./models/registry.ts";
import type { EngineStatus } from "./models/remote.ts";

const families = self.name.replace(/^engine:/, "").split(",") as Family[];
let report = () => {};
const config = loadConfig();
const { app, registry } = await createEngine(config, () => report());
const status = (): EngineStatus => {
  const { ort: _, ...backend } = registry.sessions.backend; // a module: not for postMessage
  return { ready: registry.ready, models: registry.list(), backend };
};
const gc = () => (globalThis as { gc?: () => void }).gc?.(); // with --v8-flags=--expose-gc
const { emit } = serveRequests(app.fetch, { metrics: generatedMetrics, status, gc });
report = () => emit("status", status());
report();
// This worker's share of MM_PRELOAD (the HTTP thread checked the ids).
const chosen = preloadChoice(config.preload, registry.entries);
await registry.preload((m) => families.includes(m.family) && chosen(m));
warmRuntime(registry.sessions.backend);
