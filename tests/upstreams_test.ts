/**
 * MM_UPSTREAMS on loopback with two real servers: an edge that serves CLIP itself and sends
 * sd-tiny and vlm-tiny to an upstream instance of this service. The model list merges both; the
 * upstream's own metrics show which requests reached it; streams pass through as they come; a
 * client that leaves stops the upstream's job; an upstream killed mid-stream ends the stream with
 * an `upstream_failed` event, and the next request gets a 503 `upstream_unavailable` — nothing
 * hangs. Every wait is on an event (a stream event, a metric, an exit), bounded as a whole.
 */
import assert from "node:assert/strict";
import { bounded, readEvents } from "./child.ts";

const json = { "content-type": "application/json" };
const generation = (stream: boolean) =>
  JSON.stringify({
    model: "sd-tiny",
    prompt: "a red circle",
    num_inference_steps: 100,
    n: 4,
    size: "128x128",
    guidance_scale: 1,
    seed: 1,
    stream,
  });

/** How many requests of `route` the server answered, from its /metrics. */
async function answered(url: string, route: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const re = new RegExp(
    `^mm_http_requests_total\\{route="${route.replace(/\//g, "\\/")}"[^}]*\\} (\\d+)$`,
    "gm",
  );
  return [...text.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);
}

/** Waits until the server has no request of `route` in flight (polled; an event, not a speed). */
async function untilIdle(url: string, route: string) {
  const re = new RegExp(
    `^mm_http_requests_in_flight\\{route="${route.replace(/\//g, "\\/")}"\\} 0$`,
    "m",
  );
  while (!re.test(await (await fetch(`${url}/metrics`)).text())) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test({
  name: "upstreams: an edge serves CLIP itself and sd-tiny, vlm-tiny through another instance",
  sanitizeResources: false,
  fn: async () => {
    await bounded({ MM_LOG: "0" }, async (up) => {
      const upstreams = [{ models: ["sd-tiny", "vlm-tiny"], urls: [up.url] }];
      await bounded({ MM_LOG: "0", MM_UPSTREAMS: JSON.stringify(upstreams) }, async (edge) => {
        // The list: local models as they are, the upstream's marked (once its list is polled).
        let list: Array<{ id: string; upstream?: boolean }> = [];
        while (!list.some((m) => m.id === "sd-tiny" && m.upstream)) {
          list = (await (await fetch(`${edge.url}/v1/models`)).json()).data;
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.equal(list.find((m) => m.id === "vlm-tiny")?.upstream, true);
        assert.equal(list.find((m) => m.id === "clip-tiny")?.upstream, undefined);
        assert.equal(list.filter((m) => m.id === "sd-tiny").length, 1);

        // CLIP answers at the edge; the upstream never sees it.
        const e = await fetch(`${edge.url}/v1/embeddings`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({ input: "a red circle" }),
        });
        assert.equal(e.status, 200);
        assert.equal(await answered(up.url, "/v1/embeddings"), 0);

        // A chat stream through the upstream: chunks as they come, then [DONE].
        const chat = await fetch(`${edge.url}/v1/chat/completions`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({
            model: "vlm-tiny",
            stream: true,
            max_tokens: 8,
            messages: [{ role: "user", content: "what shape is it?" }],
          }),
        });
        assert.equal(chat.status, 200);
        assert.match(chat.headers.get("content-type") ?? "", /^text\/event-stream/);
        const chunks = await readEvents(chat.body!).all;
        assert.equal(chunks.at(-1)?.data, "[DONE]");
        assert.ok(chunks.length >= 2);
        assert.equal(await answered(up.url, "/v1/chat/completions"), 1);

        // A plain generation, and bad input answered by the upstream's own 400.
        const g = await fetch(`${edge.url}/v1/images/generations`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({
            model: "sd-tiny",
            prompt: "a red circle",
            num_inference_steps: 2,
          }),
        });
        assert.equal(g.status, 200, await g.clone().text());
        assert.ok((await g.json()).data[0].b64_json.length > 100);
        const bad = await fetch(`${edge.url}/v1/images/generations`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({ model: "sd-tiny", prompt: "x", num_inference_steps: 5000 }),
        });
        assert.equal(bad.status, 400);
        assert.equal((await bad.json()).error.param, "num_inference_steps");

        // The client leaves mid-stream: the upstream's request ends too.
        const left = await fetch(`${edge.url}/v1/images/generations`, {
          method: "POST",
          headers: json,
          body: generation(true),
        });
        const reader = left.body!.getReader();
        await reader.read();
        await reader.cancel();
        await untilIdle(up.url, "/v1/images/generations");

        // The upstream dies mid-stream: the stream ends with an error event; then a clear 503.
        const cut = await fetch(`${edge.url}/v1/images/generations`, {
          method: "POST",
          headers: json,
          body: generation(true),
        });
        const events = readEvents(cut.body!);
        await events.first;
        up.child.kill("SIGKILL");
        const all = await events.all;
        assert.equal(all.at(-1)?.event, "error");
        assert.equal(JSON.parse(all.at(-1)!.data).error.code, "upstream_failed");
        const after = await fetch(`${edge.url}/v1/images/generations`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({ model: "sd-tiny", prompt: "a red circle" }),
        });
        assert.equal(after.status, 503);
        assert.ok(Number(after.headers.get("retry-after")) > 0);
        assert.equal((await after.json()).error.code, "upstream_unavailable");
        // The edge itself is fine.
        assert.equal((await fetch(`${edge.url}/health`)).status, 200);
      });
    });
  },
});
