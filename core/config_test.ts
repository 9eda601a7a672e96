import assert from "node:assert/strict";
import { EMBEDDED_MODELS_DIR, loadConfig } from "./config.ts";

Deno.test("loadConfig() has working defaults and reads the environment once", () => {
  const c = loadConfig({ HOME: "/home/u" });
  assert.equal(c.port, 8000);
  assert.equal(c.backend, "auto");
  assert.deepEqual(c.modelsDirs, [EMBEDDED_MODELS_DIR, "/home/u/.cache/mm-edge/models"]);
  assert.equal(c.allowDownloads, false);
  const d = loadConfig({
    PORT: "9001",
    MM_BACKEND: "wasm",
    MM_MODELS_DIR: "/m",
    MM_ALLOW_DOWNLOADS: "1",
    HF_TOKEN: "t",
  });
  assert.equal(d.port, 9001);
  assert.equal(d.backend, "wasm");
  assert.equal(d.pulledModelsDir, "/m");
  assert.equal(d.allowDownloads, true);
  assert.equal(d.hub.token, "t");
});

Deno.test("loadConfig() rejects a bad backend with the list of valid ones", () => {
  assert.throws(
    () => loadConfig({ MM_BACKEND: "cuda" }),
    /MM_BACKEND must be one of auto, webgpu, cpu, wasm; got "cuda"/,
  );
  assert.throws(() => loadConfig({ PORT: "http" }), /PORT/);
});

Deno.test("loadConfig(): the serving variables (HOST, drain, log) and their defaults", () => {
  const c = loadConfig({});
  assert.equal(c.host, "127.0.0.1");
  assert.equal(c.drainSeconds, 30);
  assert.equal(c.log, true);
  assert.deepEqual(c.apiKeys, []);
  assert.deepEqual(c.corsOrigins, []);
  // Deno Deploy kills 5 s after SIGINT: drain in 4 there, unless MM_DRAIN_S says otherwise.
  assert.equal(loadConfig({ DENO_DEPLOYMENT_ID: "abc" }).drainSeconds, 4);
  assert.equal(loadConfig({ DENO_DEPLOYMENT_ID: "abc", MM_DRAIN_S: "2.5" }).drainSeconds, 2.5);
  assert.equal(loadConfig({ MM_LOG: "0" }).log, false);
  assert.equal(loadConfig({ HOST: "0.0.0.0" }).host, "0.0.0.0");
  assert.throws(() => loadConfig({ MM_DRAIN_S: "-1" }), /MM_DRAIN_S/);
  assert.throws(() => loadConfig({ MM_LOG: "yes" }), /MM_LOG/);
});

Deno.test("loadConfig(): on Deno Deploy the server binds every interface, whatever HOST says", () => {
  for (const env of [{ DENO_DEPLOY: "true" }, { DENO_DEPLOYMENT_ID: "abc123" }]) {
    const c = loadConfig(env);
    assert.equal(c.host, "0.0.0.0");
    assert.equal(c.port, 8000);
    assert.equal(c.drainSeconds, 4);
    assert.equal(c.ignoredHost, null);
    assert.ok(c.deploy);
  }
  const d = loadConfig({
    DENO_DEPLOY: "true",
    DENO_DEPLOYMENT_ID: "abc123",
    DENO_TIMELINE: "production",
    PORT: "8080",
    HOST: "127.0.0.1",
  });
  assert.deepEqual(d.deploy, { deploymentId: "abc123", timeline: "production" });
  assert.equal(d.host, "0.0.0.0", "loopback would never be reached on Deploy");
  assert.equal(d.port, 8080, "Deploy's PORT");
  assert.equal(d.ignoredHost, "127.0.0.1", "said at start");
  assert.equal(loadConfig({ DENO_DEPLOY: "true", HOST: "::" }).host, "::");
  // Locally: loopback unless asked, and no Deploy report.
  const local = loadConfig({});
  assert.equal(local.host, "127.0.0.1");
  assert.equal(local.deploy, null);
  assert.equal(loadConfig({ DENO_DEPLOY: "" }).deploy, null);
});

Deno.test("loadConfig(): MM_PRELOAD (none by default, all, or ids) and MM_WORKERS", () => {
  assert.deepEqual(loadConfig({}).preload, []);
  assert.equal(loadConfig({ MM_PRELOAD: " all " }).preload, "all");
  assert.deepEqual(loadConfig({ MM_PRELOAD: "clip-tiny, sd-tiny," }).preload, [
    "clip-tiny",
    "sd-tiny",
  ]);
  assert.equal(loadConfig({}).workers, "families");
  assert.equal(loadConfig({ MM_WORKERS: "0" }).workers, "none");
  assert.equal(loadConfig({ MM_WORKERS: "1" }).workers, "one");
  assert.throws(() => loadConfig({ MM_WORKERS: "4" }), /MM_WORKERS must be families, 1 or 0/);
});
