/**
 * `/health`'s runtime report: the Deno version, Deploy, the backend `auto` chose and why, and
 * the WebGPU adapter (as reported and as judged), as a first deploy would read it. The app here
 * has the operations routes only and no models, so it is ready at once.
 */
import assert from "node:assert/strict";
import { OpenAPIHono } from "@hono/zod-openapi";
import { type AdapterLike, resolveBackend } from "../core/backend.ts";
import { loadConfig } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { ModelRegistry } from "../models/registry.ts";
import type { Env } from "./http.ts";
import { opsRoutes } from "./ops.ts";

const LLVMPIPE_2_5: AdapterLike = {
  info: {
    vendor: "65541",
    architecture: "",
    device: "0",
    description: "llvmpipe (LLVM 15.0.6, 256 bits)",
    isFallbackAdapter: false,
  },
};

async function health(env: Record<string, string>, adapter: AdapterLike | null) {
  const fake = (name: "cpu" | "wasm" | "webgpu") => () =>
    Promise.resolve({
      name,
      executionProvider: name,
      device: `fake ${name}`,
      ort: {} as never,
    });
  const backend = await resolveBackend("auto", {
    requestAdapter: () => Promise.resolve(adapter),
    webgpu: fake("webgpu"),
    cpu: fake("cpu"),
    wasm: fake("wasm"),
    probe: () => Promise.resolve(),
    log: () => {},
  });
  const registry = new ModelRegistry([], new SessionRegistry(backend));
  const app = new OpenAPIHono<Env>();
  opsRoutes(app, { config: loadConfig(env), registry });
  await registry.preload();
  const res = await app.request("/health");
  assert.equal(res.status, 200);
  return { body: await res.json(), app };
}

Deno.test("/health reports the runtime on Deploy: Deno, backend and why, the software adapter not used", async () => {
  const { body, app } = await health(
    { DENO_DEPLOY: "true", DENO_DEPLOYMENT_ID: "d1", DENO_TIMELINE: "production" },
    LLVMPIPE_2_5,
  );
  const r = body.runtime;
  assert.equal(r.deno, Deno.version.deno);
  assert.equal(r.v8, Deno.version.v8);
  assert.equal(r.os, Deno.build.os);
  assert.equal(r.cpus, navigator.hardwareConcurrency);
  assert.deepEqual(r.deploy, { deployment_id: "d1", timeline: "production" });
  assert.equal(r.backend.requested, "auto");
  assert.equal(r.backend.name, "cpu");
  assert.equal(r.backend.execution_provider, "cpu");
  assert.match(r.backend.notes[0], /llvmpipe .* is a software adapter/);
  assert.deepEqual(r.adapter, {
    vendor: "65541",
    architecture: "",
    device: "0",
    description: "llvmpipe (LLVM 15.0.6, 256 bits)",
    is_fallback_adapter: false,
    software: true,
    software_reason: r.adapter.software_reason,
    used: false,
  });
  assert.match(r.adapter.software_reason, /description "llvmpipe/);
  assert.ok(r.rss_mb > 0);
  assert.equal(body.backend, "cpu", "the top-level fields stay");

  // The OpenAPI document describes it.
  const doc = await (await app.request("/openapi.json")).json();
  const runtime = doc.components.schemas.Runtime;
  for (const k of ["deno", "deploy", "backend", "adapter"]) assert.ok(k in runtime.properties, k);
  assert.ok("is_fallback_adapter" in doc.components.schemas.Adapter.properties);
});

Deno.test("/health locally: no Deploy; a hardware adapter in use; no adapter at all", async () => {
  const gpu = await health({}, {
    info: { vendor: "nvidia", architecture: "ampere", description: "NVIDIA L4" },
  });
  assert.equal(gpu.body.runtime.deploy, null);
  assert.equal(gpu.body.runtime.backend.name, "webgpu");
  assert.deepEqual(gpu.body.runtime.backend.notes, []);
  assert.equal(gpu.body.runtime.adapter.used, true);
  assert.equal(gpu.body.runtime.adapter.software, false);
  assert.equal(gpu.body.runtime.adapter.is_fallback_adapter, null, "not reported");
  assert.equal(gpu.body.runtime.adapter.description, "NVIDIA L4");

  const none = await health({}, null);
  assert.equal(none.body.runtime.adapter, null);
  assert.deepEqual(none.body.runtime.backend.notes, ["no WebGPU adapter"]);
});
