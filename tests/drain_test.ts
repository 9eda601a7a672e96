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
import { SERVE_ARGS } from "../bench/child_server.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const BOUND_MS = 10 * 60_000;

/** A child's stdout as lines, with a way to wait for the first line matching a pattern. */
class Lines {
  #seen: string[] = [];
  #waiters: Array<{ re: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];
  #closed = false;
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      let buffer = "";
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        buffer += decoder.decode(chunk, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n")) >= 0) {
          this.#line(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 1);
        }
      }
      this.#closed = true;
      for (const w of this.#waiters.splice(0)) w.resolve(["(stdout closed)"]);
    })();
  }

  #line(line: string) {
    this.#seen.push(line);
    this.#waiters = this.#waiters.filter((w) => {
      const m = line.match(w.re);
      if (m) w.resolve(m);
      return !m;
    });
  }

  get all(): string[] {
    return this.#seen;
  }

  async waitFor(re: RegExp): Promise<RegExpMatchArray> {
    const old = this.#seen.map((l) => l.match(re)).find(Boolean);
    if (old) return old;
    if (this.#closed) throw new Error(`stdout closed before ${re}:\n${this.#seen.join("\n")}`);
    const m = await new Promise<RegExpMatchArray>((resolve) => this.#waiters.push({ re, resolve }));
    if (m[0] === "(stdout closed)") {
      throw new Error(`stdout closed before ${re}:\n${this.#seen.join("\n")}`);
    }
    return m;
  }
}

interface Server {
  child: Deno.ChildProcess;
  out: Lines;
  stderr: Promise<string>;
  url: string;
}

async function startServer(
  env: Record<string, string>,
  spawned: (child: Deno.ChildProcess) => void,
): Promise<Server> {
  const child = new Deno.Command(Deno.execPath(), {
    args: SERVE_ARGS, // `deno task serve`'s, so the test also proves they suffice
    cwd: ROOT,
    env: { PORT: "0", HOST: "127.0.0.1", MM_BACKEND: "cpu", NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  spawned(child);
  const out = new Lines(child.stdout);
  const stderr = new Response(child.stderr).text();
  const [, url] = await out.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
  await out.waitFor(/^ready in /);
  return { child, out, stderr, url };
}

interface SseEvent {
  event?: string;
  data: string;
}

/** Reads a stream of server-sent events; `first` resolves on the first, `all` at the end. */
function readEvents(body: ReadableStream<Uint8Array>) {
  const events: SseEvent[] = [];
  let onFirst!: () => void;
  const first = new Promise<void>((resolve) => onFirst = resolve);
  const all = (async () => {
    let buffer = "";
    const decoder = new TextDecoder();
    for await (const chunk of body) {
      buffer += decoder.decode(chunk, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = block.match(/^event: (.*)$/m)?.[1];
        const data = block.match(/^data: (.*)$/m)?.[1] ?? "";
        events.push({ event, data });
        onFirst();
      }
    }
    onFirst();
    return events;
  })();
  return { first, all };
}

const generation = (steps: number) =>
  JSON.stringify({
    model: "sd-tiny",
    prompt: "a large red circle in the center on a white background",
    num_inference_steps: steps,
    guidance_scale: 1,
    seed: 1,
    stream: true,
  });

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

/** Waits until /metrics shows a request of `route` in flight (a poll on an event, not a sleep). */
async function untilInFlight(url: string, route: string) {
  const re = new RegExp(`^mm_http_requests_in_flight\\{route="${route}"\\} ([1-9]\\d*)$`, "m");
  for (;;) {
    const text = await (await fetch(`${url}/metrics`)).text();
    if (re.test(text)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts the server and runs `fn` under the overall bound; the child is killed afterwards. */
async function bounded(env: Record<string, string>, fn: (s: Server) => Promise<void>) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<never>((_, reject) =>
    timer = setTimeout(() => reject(new Error(`no end after ${BOUND_MS} ms`)), BOUND_MS)
  );
  let child: Deno.ChildProcess | undefined;
  try {
    await Promise.race([startServer(env, (c) => child = c).then(fn), bound]);
  } finally {
    clearTimeout(timer);
    try {
      child?.kill("SIGKILL");
    } catch { /* it exited */ }
  }
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
