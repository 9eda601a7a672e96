/**
 * Upstream forwarding against small servers in this process (Deno.serve on loopback): round
 * robin past a dead URL, retries on 503 and 429, the head timeout, a stream that breaks, and the
 * client leaving. Every wait is on an event or a bounded promise, never on a speed.
 */
import assert from "node:assert/strict";
import { ApiError } from "./errors.ts";
import { Upstream } from "./upstream.ts";

const quiet = { timeoutMs: 1000, pollMs: 60_000, log: () => {} };

function serve(handler: (r: Request) => Response | Promise<Response>) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  return { url: `http://127.0.0.1:${server.addr.port}`, server };
}

/** A loopback port nothing listens on. */
function deadUrl(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return `http://127.0.0.1:${port}`;
}

const post = () =>
  new Request("http://edge/v1/embeddings?x=1", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer edge-key" },
  });

Deno.test("the request goes on as it came, with the upstream's key; a dead URL is passed over", async () => {
  let seen: { path: string; auth: string | null; body: string } | null = null;
  const live = serve(async (r) => {
    seen = {
      path: new URL(r.url).pathname + new URL(r.url).search,
      auth: r.headers.get("authorization"),
      body: await r.text(),
    };
    return Response.json({ ok: true }, { headers: { "x-up": "1" } });
  });
  const u = new Upstream({ models: ["m"], urls: [deadUrl(), live.url], apiKey: "up-key" }, quiet);
  for (let i = 0; i < 3; i++) {
    const res = await u.fetch(post(), new TextEncoder().encode('{"model":"m"}').buffer);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-up"), "1");
    assert.deepEqual(await res.json(), { ok: true });
  }
  assert.deepEqual(seen, {
    path: "/v1/embeddings?x=1",
    auth: "Bearer up-key",
    body: '{"model":"m"}',
  });
  await live.server.shutdown();
});

Deno.test("503 and 429 are retried; the last answer is passed on when they persist", async () => {
  let calls = 0;
  const flaky = serve(() =>
    ++calls < 3
      ? new Response("busy", { status: 503, headers: { "retry-after": "0" } })
      : Response.json({ attempt: calls })
  );
  const u = new Upstream({ models: ["m"], urls: [flaky.url] }, quiet);
  assert.deepEqual(await (await u.fetch(post(), null)).json(), { attempt: 3 });
  await flaky.server.shutdown();

  const full = serve(() => Response.json({ error: { code: "queue_full" } }, { status: 429 }));
  const v = new Upstream({ models: ["m"], urls: [full.url] }, quiet);
  const res = await v.fetch(post(), null);
  assert.equal(res.status, 429);
  assert.equal((await res.json()).error.code, "queue_full");
  await full.server.shutdown();
});

Deno.test("no upstream answering: upstream_unavailable (a 503 with Retry-After), after the head timeout", async () => {
  // Never answers (until the caller gives up on it).
  const never = serve((r) =>
    new Promise<Response>((resolve) =>
      r.signal.addEventListener("abort", () => resolve(new Response(null)))
    )
  );
  const u = new Upstream({ models: ["m"], urls: [never.url, deadUrl()] }, {
    ...quiet,
    timeoutMs: 200,
  });
  await assert.rejects(u.fetch(post(), null), (e: unknown) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.code, "upstream_unavailable");
    assert.equal(e.status, 503);
    assert.ok((e.retryAfter ?? 0) > 0);
    return true;
  });
  await never.server.shutdown();
});

Deno.test("a stream that breaks ends with an upstream_failed event in its own style", async () => {
  for (const named of [true, false]) {
    const breaking = serve(() =>
      new Response(
        new ReadableStream({
          start(c) {
            c.enqueue(
              new TextEncoder().encode(named ? "event: progress\ndata: {}\n\n" : "data: {}\n\n"),
            );
          },
          pull(c) {
            return new Promise((_, reject) =>
              setTimeout(() => {
                c.error(new Error("gone"));
                reject();
              }, 20)
            );
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      )
    );
    const u = new Upstream({ models: ["m"], urls: [breaking.url] }, quiet);
    const text = await (await u.fetch(post(), null)).text();
    const last = text.trim().split("\n\n").at(-1)!;
    if (named) assert.match(last, /^event: error\ndata: /);
    else assert.match(last, /^data: /);
    assert.equal(JSON.parse(last.slice(last.indexOf("data: ") + 6)).error.code, "upstream_failed");
    await breaking.server.shutdown().catch(() => {});
  }
});

Deno.test("the client leaving aborts the upstream's request", async () => {
  const aborted = Promise.withResolvers<void>();
  const ticking = serve((r) => {
    r.signal.addEventListener("abort", () => aborted.resolve());
    let n = 0;
    return new Response(
      new ReadableStream({
        async pull(c) {
          await new Promise((resolve) => setTimeout(resolve, 10));
          c.enqueue(new TextEncoder().encode(`data: ${n++}\n\n`));
        },
      }),
      { headers: { "content-type": "text/event-stream" } },
    );
  });
  const client = new AbortController();
  const u = new Upstream({ models: ["m"], urls: [ticking.url] }, quiet);
  const res = await u.fetch(
    new Request("http://edge/v1/chat/completions", { method: "POST", signal: client.signal }),
    null,
  );
  const reader = res.body!.getReader();
  await reader.read();
  client.abort();
  await reader.cancel().catch(() => {});
  await aborted.promise; // the upstream saw its request end
  await ticking.server.shutdown().catch(() => {});
});
