/**
 * Graceful drain on the real server: `deno run main.ts` as a child process (PORT=0, the port read
 * from its "listening on" line), a streaming generation in flight, then SIGTERM or SIGINT.
 *
 * - With time to drain: new requests are refused (503 `shutting_down` with Retry-After, `/health`
 *   included) while the in-flight ones finish — the stream to its last `completed` event, and a
 *   plain request whose body was still uploading — then the process exits 0 and the port closes.
 * - With MM_DRAIN_S=0: the stream is cut with an error event in the envelope
 *   (`code: "shutting_down"`), and the process exits 0.
 *
 * Every wait is on an event (a log line, a stream event, a metric, the exit), never on a sleep;
 * the only timeout is a generous bound on the whole run.
 */
import assert from "node:assert/strict";
import { bounded, generation, readEvents, untilInFlight } from "./child.ts";

/** A refused request: a 503 `shutting_down` with Retry-After, or no connection at all. */
async function expectRefused(url: string, init?: RequestInit) {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch {
    return "closed";
  }
  const text = await res.text();
  assert.equal(res.status, 503, text);
  assert.equal(JSON.parse(text).error.code, "shutting_down");
  assert.ok(Number(res.headers.get("retry-after")) > 0, "Retry-After");
  return "503";
}

Deno.test({
  name: "SIGTERM: new requests are refused, in-flight ones finish (a stream, an upload), exit 0",
  sanitizeResources: false,
  fn: async () => {
    await bounded({ MM_DRAIN_S: "600", MM_LOG: "1" }, async ({ child, out, url, stderr }) => {
      // A plain request still uploading its body: in flight until we send the rest.
      let finishUpload!: () => void;
      const upload = fetch(`${url}/v1/embeddings`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(new TextEncoder().encode('{"input": "a red '));
            finishUpload = () => {
              c.enqueue(new TextEncoder().encode('circle"}'));
              c.close();
            };
          },
        }),
        // @ts-ignore: Deno's fetch takes a streaming body with duplex "half"
        duplex: "half",
      });
      await untilInFlight(url, "/v1/embeddings");

      const res = await fetch(`${url}/v1/images/generations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: generation(100),
      });
      assert.equal(res.status, 200);
      const stream = readEvents(res.body!);
      await stream.first; // the job is running

      child.kill("SIGTERM");
      await out.waitFor(/^SIGTERM: draining/);
      // Refused while the upload holds the drain open (so these are 503s, not closed ports).
      assert.equal(
        await expectRefused(`${url}/v1/embeddings`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ input: "a blue square" }),
        }),
        "503",
      );
      assert.equal(await expectRefused(`${url}/health`), "503");

      finishUpload();
      const done = await upload;
      assert.equal(done.status, 200, await done.clone().text());
      assert.equal((await done.json()).data.length, 1);

      const events = await stream.all;
      const last = events.at(-1)!;
      assert.equal(last.event, "image_generation.completed", JSON.stringify(last).slice(0, 300));
      assert.equal(JSON.parse(last.data).steps, 100);
      assert.ok(!events.some((e) => e.event === "error"));

      const status = await child.status;
      assert.equal(status.code, 0, (await stderr).slice(-2000));
      await out.done;
      assert.ok(out.all.includes("drained"), out.all.join("\n"));
      // One JSON line per request; the stream's logged when it ended, with its model.
      const logged = out.all.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
      const gen = logged.find((l) => l.route === "/v1/images/generations");
      assert.equal(gen?.status, 200);
      assert.equal(gen?.model, "sd-tiny");
      assert.ok(logged.some((l) => l.route === "/health" && l.status === 503));
      await assert.rejects(fetch(`${url}/health`), "the port is closed after exit");
    });
  },
});

Deno.test({
  name: "SIGINT with MM_DRAIN_S=0: a cut stream ends with a shutting_down error event, exit 0",
  sanitizeResources: false,
  fn: async () => {
    await bounded({ MM_DRAIN_S: "0", MM_LOG: "0" }, async ({ child, out, url, stderr }) => {
      const res = await fetch(`${url}/v1/images/generations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: generation(100), // cut within a step or two of the signal
      });
      assert.equal(res.status, 200);
      const stream = readEvents(res.body!);
      await stream.first;

      child.kill("SIGINT");
      await out.waitFor(/^SIGINT: draining/);
      await expectRefused(`${url}/v1/models`); // 503, or already closed: both refuse

      const events = await stream.all;
      const last = events.at(-1)!;
      assert.equal(last.event, "error", JSON.stringify(last).slice(0, 300));
      const error = JSON.parse(last.data).error;
      assert.deepEqual(Object.keys(error).sort(), ["code", "message", "param", "type"]);
      assert.equal(error.code, "shutting_down");
      assert.equal(error.type, "server_error");
      assert.ok(!events.some((e) => e.event === "image_generation.completed"));

      const status = await child.status;
      assert.equal(status.code, 0, (await stderr).slice(-2000));
      await out.done;
      assert.ok(
        out.all.some((l) => /drain time up: 1 request\(s\) cut/.test(l)),
        out.all.join("\n"),
      );
    });
  },
});
