/**
 * An engine worker (started by models/remote.ts, one per group of families): the routes and
 * pipelines of the app, answering the requests the HTTP thread forwards. Its name says which
 * families it preloads (`engine:diffusion,dalle`); it can still load any model on demand (the
 * generators' worker loads CLIP for reranking).
 */
/// <reference lib="deno.worker" />
import { loadConfig } from "./core/config.ts";
import { generatedMetrics } from "./core/metrics.ts";
import { serveRequests } from "./core/worker_bridge.ts";
import { createEngine } from "./main.ts";
import type { Family } from "./models/manifest.ts";
import type { EngineStatus } from "./models/remote.ts";

const families = self.name.replace(/^engine:/, "").split(",") as Family[];
let report = () => {};
const { app, registry } = await createEngine(loadConfig(), () => report());
const status = (): EngineStatus => {
  const { ort: _, ...backend } = registry.sessions.backend; // a module: not for postMessage
  return { ready: registry.ready, models: registry.list(), backend };
};
const { emit } = serveRequests(app.fetch, { metrics: generatedMetrics, status });
report = () => emit("status", status());
report();
await registry.preload(families);
