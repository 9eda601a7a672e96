/**
 * Access: HOST, API keys (MM_API_KEYS), the origin policy and CORS (MM_CORS_ORIGINS). Every
 * refusal is the error envelope, and comes before any body is read (a request body that records
 * whether it was pulled proves it).
 */
import assert from "node:assert/strict";
import { loadConfig } from "../core/config.ts";
import { createApp, listenUrl } from "../main.ts";

const KEYS = "sk-first_key.1,sk-second~key";

const cpu = (env: Record<string, string> = {}) => loadConfig({ MM_BACKEND: "cpu", ...env });
// Models are loaded lazily by the requests that need them: these tests only need clip-tiny.
const open = await createApp(cpu());
const keyed = await createApp(cpu({ MM_API_KEYS: KEYS }));
const allowlisted = await createApp(
  cpu({ MM_CORS_ORIGINS: "https://app.example.com, http://localhost:5173/" }),
);
const everywhere = await createApp(cpu({ HOST: "0.0.0.0" }));

/** A body that says whether the server ever read it. */
function watchedBody(text: string) {
  const state = { read: false };
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      state.read = true;
      c.enqueue(new TextEncoder().encode(text));
      c.close();
    },
  }, { highWaterMark: 0 }); // pulled only when someone reads
  return { body, state };
}

const embedding = JSON.stringify({ input: "a red circle" });
const post = (
  app: typeof open.app,
  path: string,
  headers: Record<string, string>,
  body: BodyInit = embedding,
) =>
  app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
    // @ts-ignore: a streaming body needs duplex "half"
    duplex: "half",
  });

async function expectError(res: Response, status: number, code: string) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  const body = JSON.parse(text);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(body.error.code, code, text);
  return body.error;
}

Deno.test("HOST defaults to loopback; the printed address is the real one", () => {
  assert.equal(cpu().host, "127.0.0.1");
  assert.equal(cpu({ HOST: "0.0.0.0" }).host, "0.0.0.0");
  assert.equal(listenUrl("127.0.0.1", 8000), "http://127.0.0.1:8000");
  assert.equal(listenUrl("0.0.0.0", 8000), "http://0.0.0.0:8000 (all interfaces)");
  assert.equal(listenUrl("::1", 8000), "http://[::1]:8000");
  assert.equal(listenUrl("::", 8000), "http://[::]:8000 (all interfaces)");
});

Deno.test("MM_API_KEYS and MM_CORS_ORIGINS are lists, checked at start", () => {
  assert.deepEqual(cpu({ MM_API_KEYS: " a1, ,b2 " }).apiKeys, ["a1", "b2"]);
  assert.deepEqual(cpu().apiKeys, []);
  assert.throws(() => cpu({ MM_API_KEYS: "has space" }), /MM_API_KEYS/);
  assert.deepEqual(
    cpu({ MM_CORS_ORIGINS: "https://A.example.com/, http://localhost:3000" }).corsOrigins,
    ["https://a.example.com", "http://localhost:3000"],
  );
  assert.throws(() => cpu({ MM_CORS_ORIGINS: "https://a.example.com/app" }), /MM_CORS_ORIGINS/);
  assert.throws(() => cpu({ MM_CORS_ORIGINS: "example.com" }), /MM_CORS_ORIGINS/);
});

Deno.test("with MM_API_KEYS, /v1/* and /metrics need a Bearer key (401 invalid_api_key)", async () => {
  const { app } = keyed;
  const missing = await app.request("/v1/models");
  assert.match(missing.headers.get("www-authenticate") ?? "", /^Bearer/);
  await expectError(missing, 401, "invalid_api_key");
  for (const authorization of ["Bearer sk-wrong", "Basic c2s6eA==", "Bearer", "sk-first_key.1"]) {
    await expectError(
      await app.request("/v1/models", { headers: { authorization } }),
      401,
      "invalid_api_key",
    );
  }
  for (const key of KEYS.split(",")) {
    const res = await app.request("/v1/models", { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 200, key);
  }
  // A refused POST never reads its body.
  const { body, state } = watchedBody(embedding);
  await expectError(await post(app, "/v1/embeddings", {}, body), 401, "invalid_api_key");
  assert.equal(state.read, false);
  const ok = await post(app, "/v1/embeddings", { authorization: "Bearer sk-second~key" });
  assert.equal(ok.status, 200, await ok.clone().text());

  await expectError(await app.request("/metrics"), 401, "invalid_api_key");
  const metrics = await app.request("/metrics", {
    headers: { authorization: "bearer sk-first_key.1" },
  });
  assert.equal(metrics.status, 200);
  // Health and the pages stay open.
  for (const path of ["/health", "/", "/docs", "/openapi.json", "/static/app.js"]) {
    assert.notEqual((await app.request(path)).status, 401, path);
  }
});

Deno.test("with MM_API_KEYS, a model pull (MM_ALLOW_DOWNLOADS=1) needs the key too", async () => {
  const seen: string[] = [];
  const hub = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    seen.push(new URL(req.url).pathname);
    return new Response("no such repo", { status: 404 });
  });
  try {
    const { app } = await createApp(cpu({
      MM_API_KEYS: KEYS,
      MM_ALLOW_DOWNLOADS: "1",
      HF_ENDPOINT: `http://127.0.0.1:${hub.addr.port}`,
      MM_MODELS_DIR: await Deno.makeTempDir(),
    }));
    const pull = JSON.stringify({ model: "Xenova/clip-vit-base-patch32", input: "a cat" });
    await expectError(await post(app, "/v1/embeddings", {}, pull), 401, "invalid_api_key");
    assert.deepEqual(seen, [], "no download was tried without a key");
    const res = await post(app, "/v1/embeddings", { authorization: "Bearer sk-first_key.1" }, pull);
    await res.body?.cancel();
    assert.ok(seen.length > 0, "with the key, the pull was tried");
  } finally {
    await hub.shutdown();
  }
});

Deno.test("a foreign Origin is a 403 origin_not_allowed before the body is read", async () => {
  const { app } = open;
  const foreign: Record<string, string>[] = [
    { origin: "https://evil.example" },
    { origin: "null" }, // sandboxed frames, file: pages
    { origin: "http://localhost:3000", host: "localhost:8000" }, // another port: another origin
    // DNS rebinding: a page on evil.test rebound to 127.0.0.1 is same-"origin" by its Host, but
    // a loopback server answers only loopback names.
    { origin: "http://evil.test:8000", host: "evil.test:8000" },
  ];
  const types = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
  ];
  for (const headers of foreign) {
    for (const type of types) {
      const { body, state } = watchedBody(embedding);
      const res = await post(app, "/v1/embeddings", { ...headers, "content-type": type }, body);
      const e = await expectError(res, 403, "origin_not_allowed");
      assert.match(e.message, /MM_CORS_ORIGINS/);
      assert.equal(state.read, false, `${headers.origin} ${type}: body not read`);
    }
  }
  // No Origin, but a browser says the request is cross-site: a form post from an old page.
  const { body, state } = watchedBody("input=a+cat");
  await expectError(
    await post(app, "/v1/embeddings", {
      "content-type": "application/x-www-form-urlencoded",
      "sec-fetch-site": "cross-site",
    }, body),
    403,
    "origin_not_allowed",
  );
  assert.equal(state.read, false);
  // A cross-site GET of a page (a link) is fine.
  assert.equal(
    (await app.request("/", { headers: { "sec-fetch-site": "cross-site" } })).status,
    200,
  );
});

Deno.test("requests without Origin (curl, SDKs) and same-origin pages are unaffected", async () => {
  const { app } = open;
  const { body, state } = watchedBody(embedding);
  assert.equal((await post(app, "/v1/embeddings", {}, body)).status, 200);
  assert.equal(state.read, true, "the watch sees a body that is read");
  for (const host of ["localhost:8000", "127.0.0.1:8000", "[::1]:8000"]) {
    const res = await post(app, "/v1/embeddings", { origin: `http://${host}`, host });
    assert.equal(res.status, 200, host);
    assert.equal(res.headers.get("access-control-allow-origin"), null, "no CORS needed");
  }
  // The playground's multipart form, same origin.
  const form = new FormData();
  form.set("input", "a red circle");
  const res = await app.request("/v1/embeddings", {
    method: "POST",
    body: form,
    headers: {
      origin: "http://127.0.0.1:8000",
      host: "127.0.0.1:8000",
      "sec-fetch-site": "same-origin",
    },
  });
  assert.notEqual(res.status, 403, await res.clone().text());
  // On every interface (HOST=0.0.0.0) a named host is same-origin with itself.
  const named = await post(everywhere.app, "/v1/embeddings", {
    origin: "https://mm.example.com",
    host: "mm.example.com",
  });
  assert.equal(named.status, 200);
});

Deno.test("MM_CORS_ORIGINS: allowed origins get CORS and answered preflights; others 403", async () => {
  const { app } = allowlisted;
  const preflight = (origin: string) =>
    app.request("/v1/chat/completions", {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-stainless-os",
      },
    });
  const ok = await preflight("https://app.example.com");
  assert.equal(ok.status, 204);
  assert.equal(ok.headers.get("access-control-allow-origin"), "https://app.example.com");
  assert.match(ok.headers.get("access-control-allow-methods") ?? "", /POST/);
  assert.match(ok.headers.get("access-control-allow-headers") ?? "", /authorization/);
  assert.match(ok.headers.get("vary") ?? "", /Origin/);
  assert.equal((await preflight("http://localhost:5173")).status, 204);
  await expectError(await preflight("https://evil.example"), 403, "origin_not_allowed");

  const res = await post(app, "/v1/embeddings", { origin: "https://app.example.com" });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("access-control-allow-origin"), "https://app.example.com");
  assert.match(res.headers.get("access-control-expose-headers") ?? "", /x-request-id/);
  await expectError(
    await post(app, "/v1/embeddings", { origin: "https://evil.example" }),
    403,
    "origin_not_allowed",
  );

  // "*": any origin, and a preflight needs no key (browsers send none) while the call does.
  const star = await createApp(cpu({ MM_CORS_ORIGINS: "*", MM_API_KEYS: KEYS }));
  const pre = await star.app.request("/v1/embeddings", {
    method: "OPTIONS",
    headers: { origin: "https://any.example", "access-control-request-method": "POST" },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "*");
  await expectError(
    await post(star.app, "/v1/embeddings", { origin: "https://any.example" }),
    401,
    "invalid_api_key",
  );
});

Deno.test("without MM_CORS_ORIGINS there is no cross-origin access at all", async () => {
  const res = await open.app.request("/v1/models", {
    method: "OPTIONS",
    headers: { origin: "https://app.example.com", "access-control-request-method": "GET" },
  });
  await expectError(res, 403, "origin_not_allowed");
  assert.equal(res.headers.get("access-control-allow-origin"), null);
});

const CHROMIUM = Deno.env.get("MM_CHROMIUM") ?? "/usr/bin/chromium";
const haveChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);

Deno.test({
  name: "the playground on a keyed server asks for the key once and then works",
  ignore: !haveChromium,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { chromium } = await import("playwright-core");
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      keyed.app.fetch,
    );
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
    try {
      const page = await browser.newPage();
      const asked: string[] = [];
      page.on("dialog", (d) => {
        asked.push(d.message());
        d.accept("sk-second~key");
      });
      const url = `http://127.0.0.1:${server.addr.port}/`;
      await page.goto(url);
      await page.locator("#cap-model option").first().waitFor({ state: "attached" });
      assert.equal(asked.length, 1);
      assert.match(asked[0], /API key/);
      await page.reload();
      await page.locator("#cap-model option").first().waitFor({ state: "attached" });
      assert.equal(asked.length, 1, "kept in localStorage: not asked again");
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
});
