/**
 * Upstreams: other instances of this service (or any OpenAI-compatible server) that serve some
 * models for this one — tiny models at the edge, heavy ones on a GPU box. `MM_UPSTREAMS` maps
 * model ids to base URLs; a request for one of them is sent on as it came (the body bytes
 * unchanged), and the answer streamed back unbuffered.
 *
 * - Round robin over the healthy URLs (each polled: `GET /health`, and `GET /v1/models` for the
 *   list this service merges into its own).
 * - Retries, with backoff, on 429 and 503 and on a connection that fails before any byte came
 *   back: on the next URL, at most `ATTEMPTS` times. Never after the response began.
 * - A timeout for the response head only: a long stream is not cut while its events flow.
 * - The client leaving aborts the upstream request, so the upstream's job stops as well.
 * - An upstream that dies mid-stream ends the stream with an error event in the envelope
 *   (`upstream_failed`), in the stream's own style; nothing hangs.
 */
import { ApiError } from "./errors.ts";
import { namesEvents, sseErrorEvent } from "./lifecycle.ts";

export interface UpstreamConfig {
  models: string[];
  urls: string[];
  apiKey?: string;
}

export interface UpstreamOptions {
  /** How long the response head may take (the stream after it is not limited). */
  timeoutMs: number;
  /** How often each URL's health and model list are polled. */
  pollMs: number;
  log: (line: string) => void;
}

/** Tries per request, across the URLs. */
const ATTEMPTS = 3;
/** Waits before a retry: the upstream's Retry-After when it says, capped; else these. */
const BACKOFF_MS = [100, 400, 1600];
const MAX_RETRY_AFTER_MS = 2000;

/** Request headers not sent on: hop-by-hop ones, the client's key, what fetch sets itself. */
const DROP_REQUEST = ["host", "connection", "content-length", "authorization", "accept-encoding"];
/** Response headers not passed back: fetch has already decoded and de-chunked the body. */
const DROP_RESPONSE = ["connection", "content-length", "content-encoding", "transfer-encoding"];

interface Target {
  url: string;
  healthy: boolean;
  /** The upstream's own `/v1/models` entries, from the last poll. */
  listed: Array<Record<string, unknown>>;
}

/** One `MM_UPSTREAMS` entry: its models, its URLs and their state. */
export class Upstream {
  readonly models: Set<string>;
  readonly #targets: Target[];
  #next = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(readonly config: UpstreamConfig, private options: UpstreamOptions) {
    this.models = new Set(config.models);
    this.#targets = config.urls.map((url) => ({
      url: url.replace(/\/+$/, ""),
      healthy: true, // until a poll or a request says otherwise
      listed: [],
    }));
  }

  /** Starts polling (immediately, then every `pollMs`; the timer does not keep Deno alive). */
  start(): void {
    const poll = () => Promise.all(this.#targets.map((t) => this.#poll(t)));
    poll();
    const timer = setInterval(poll, this.options.pollMs);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** The models the upstream lists that this entry serves, each once (first healthy URL's). */
  listed(): Array<Record<string, unknown>> {
    const seen = new Map<string, Record<string, unknown>>();
    for (const t of [...this.#targets].sort((a, b) => Number(b.healthy) - Number(a.healthy))) {
      for (const m of t.listed) {
        const id = String(m.id);
        if (this.models.has(id) && !seen.has(id)) seen.set(id, m);
      }
    }
    return [...seen.values()];
  }

  /**
   * Sends `request` (its body: `body`) to one of the URLs; retries as the header says. The
   * response streams from the upstream as it comes.
   */
  async fetch(request: Request, body: ArrayBuffer | null): Promise<Response> {
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    for (const h of DROP_REQUEST) headers.delete(h);
    if (this.config.apiKey) headers.set("authorization", `Bearer ${this.config.apiKey}`);
    let last = "no URL tried";
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const target = this.#pick();
      let res: Response;
      try {
        res = await this.#send(target, url.pathname + url.search, request, headers, body);
      } catch (e) {
        if (request.signal.aborted) throw e; // the client left: nothing to retry
        target.healthy = false;
        last = `${target.url}: ${(e as Error).message.split("\n")[0]}`;
        this.options.log(`upstream ${last}; ${attempt + 1 < ATTEMPTS ? "retrying" : "giving up"}`);
        await this.#wait(BACKOFF_MS[attempt], request.signal);
        continue;
      }
      if ((res.status === 429 || res.status === 503) && attempt + 1 < ATTEMPTS) {
        last = `${target.url}: ${res.status}`;
        const after = Number(res.headers.get("retry-after"));
        await res.body?.cancel();
        await this.#wait(
          after > 0 ? Math.min(after * 1000, MAX_RETRY_AFTER_MS) : BACKOFF_MS[attempt],
          request.signal,
        );
        continue;
      }
      return passThrough(res);
    }
    throw new ApiError(
      "upstream_unavailable",
      `The server that serves this model is not answering (${last}); retry shortly`,
      null,
      5,
    );
  }

  /** Round robin over the healthy URLs; over all of them when none is. */
  #pick(): Target {
    const healthy = this.#targets.filter((t) => t.healthy);
    const pool = healthy.length ? healthy : this.#targets;
    return pool[this.#next++ % pool.length];
  }

  async #send(
    target: Target,
    path: string,
    request: Request,
    headers: Headers,
    body: ArrayBuffer | null,
  ): Promise<Response> {
    // The head has a deadline; the body that follows only the client's signal.
    const abort = new AbortController();
    const onClient = () => abort.abort(request.signal.reason);
    request.signal.addEventListener("abort", onClient, { once: true });
    const timer = setTimeout(
      () => abort.abort(new Error(`no response within ${this.options.timeoutMs} ms`)),
      this.options.timeoutMs,
    );
    try {
      const res = await fetch(target.url + path, {
        method: request.method,
        headers,
        body: body ? body.slice(0) : null, // a retry sends the same bytes again
        signal: abort.signal,
        redirect: "manual",
      });
      target.healthy = true;
      return res;
    } catch (e) {
      throw abort.signal.aborted && !request.signal.aborted ? abort.signal.reason : e;
    } finally {
      clearTimeout(timer);
    }
  }

  async #poll(t: Target): Promise<void> {
    const headers: Record<string, string> = this.config.apiKey
      ? { authorization: `Bearer ${this.config.apiKey}` }
      : {};
    const get = (path: string) =>
      fetch(t.url + path, { headers, signal: AbortSignal.timeout(this.options.timeoutMs) });
    try {
      const health = await get("/health");
      await health.body?.cancel();
      // An OpenAI-compatible server without /health still counts as up if its model list answers.
      const models = await get("/v1/models");
      const list = models.ok ? (await models.json())?.data : null;
      if (!models.ok) await models.body?.cancel();
      const was = t.healthy;
      t.healthy = health.ok || models.ok;
      if (Array.isArray(list)) t.listed = list;
      if (was !== t.healthy) this.options.log(`upstream ${t.url}: ${t.healthy ? "up" : "down"}`);
    } catch (e) {
      if (t.healthy) this.options.log(`upstream ${t.url}: down (${(e as Error).message})`);
      t.healthy = false;
    }
  }

  #wait(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(signal.reason);
      }, { once: true });
    });
  }
}

/**
 * The upstream's response for our client: its status and headers (less what fetch undid), its
 * body streamed; a stream that breaks ends with an `upstream_failed` error event.
 */
function passThrough(res: Response): Response {
  const headers = new Headers(res.headers);
  for (const h of DROP_RESPONSE) headers.delete(h);
  if (!res.body) return new Response(null, { status: res.status, headers });
  const sse = headers.get("content-type")?.startsWith("text/event-stream");
  const reader = res.body.getReader();
  let named = true;
  let first = true;
  const body = new ReadableStream<Uint8Array>({
    async pull(out) {
      try {
        const { value, done } = await reader.read();
        if (done) return out.close();
        if (first) named = namesEvents(value);
        first = false;
        out.enqueue(value);
      } catch (e) {
        if (!sse) return out.error(e);
        const failed = new ApiError(
          "upstream_failed",
          "The server that served this stream stopped answering; retry the request",
          null,
          5,
        );
        out.enqueue(sseErrorEvent(failed, named));
        out.close();
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return new Response(body, { status: res.status, headers });
}

/** Every `MM_UPSTREAMS` entry; which one serves a model (the first that lists it). */
export class Upstreams {
  readonly all: Upstream[];

  constructor(configs: UpstreamConfig[], options: UpstreamOptions) {
    this.all = configs.map((c) => new Upstream(c, options));
  }

  start(): void {
    for (const u of this.all) u.start();
  }

  stop(): void {
    for (const u of this.all) u.stop();
  }

  for(model: string): Upstream | undefined {
    return this.all.find((u) => u.models.has(model));
  }
}
