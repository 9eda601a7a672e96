/**
 * The real server as a child process for end-to-end tests: `deno run main.ts` with `deno task
 * serve`'s permissions (PORT=0, the port read from its "listening on" line), its stdout as lines
 * to wait on, server-sent events read as they come, and a bound on the whole run.
 */
import { SERVE_ARGS } from "../bench/child_server.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const BOUND_MS = 10 * 60_000;

/** A child's stdout as lines, with a way to wait for the first line matching a pattern. */
export class Lines {
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

export interface Server {
  child: Deno.ChildProcess;
  out: Lines;
  stderr: Promise<string>;
  url: string;
}

export async function startServer(
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

export interface SseEvent {
  event?: string;
  data: string;
}

/** Reads a stream of server-sent events; `first` resolves on the first, `all` at the end, `seen` so far. */
export function readEvents(body: ReadableStream<Uint8Array>) {
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
  return { first, all, seen: events };
}

export const generation = (steps: number) =>
  JSON.stringify({
    model: "sd-tiny",
    prompt: "a large red circle in the center on a white background",
    num_inference_steps: steps,
    guidance_scale: 1,
    seed: 1,
    stream: true,
  });

/** Waits until /metrics shows a request of `route` in flight (a poll on an event, not a sleep). */
export async function untilInFlight(url: string, route: string) {
  const re = new RegExp(`^mm_http_requests_in_flight\\{route="${route}"\\} ([1-9]\\d*)$`, "m");
  for (;;) {
    const text = await (await fetch(`${url}/metrics`)).text();
    if (re.test(text)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts the server and runs `fn` under the overall bound; the child is killed afterwards. */
export async function bounded(env: Record<string, string>, fn: (s: Server) => Promise<void>) {
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
