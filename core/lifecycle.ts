/**
 * The server's life: requests in flight, the drain on SIGTERM/SIGINT, and the one middleware
 * that sees every request from first byte in to last byte out (in-flight count, metrics, the
 * request log line, and the cut of what is still running when the drain time is up).
 *
 * Drain, as `main.ts` runs it: `draining` turns true (every new request, `/health` included, is
 * a 503 `shutting_down` with Retry-After, so a load balancer moves on; `/metrics` still answers);
 * requests in flight get up to `MM_DRAIN_S` to finish; then the rest are cut — a stream gets a
 * last error event (`shutting_down`, in the envelope) and ends, a plain request is answered 503 —
 * and the process exits 0.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Context, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { ApiError } from "./errors.ts";
import type { Metrics } from "./metrics.ts";

/** How long a client should wait before retrying a refused request (another instance, or us). */
const RETRY_AFTER_S = 5;

export class Lifecycle {
  #inFlight = 0;
  #idle: Array<() => void> = [];
  #draining = false;
  #cut = new AbortController();

  get draining(): boolean {
    return this.#draining;
  }
  get inFlight(): number {
    return this.#inFlight;
  }
  /** Aborted when the drain time is up: what still runs must end now. */
  get cut(): AbortSignal {
    return this.#cut.signal;
  }

  /** A request began; returns the function that marks it finished (idempotent). */
  begin(): () => void {
    this.#inFlight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.#inFlight === 0) this.#idle.splice(0).forEach((f) => f());
    };
  }

  /** Resolves once nothing is in flight. */
  idle(): Promise<void> {
    return this.#inFlight === 0
      ? Promise.resolve()
      : new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Refuses new requests, waits up to `seconds` for those in flight, then cuts the rest and
   * waits up to `graceMs` for their last bytes. Says whether everything finished on its own.
   */
  async drain(seconds: number, graceMs = 2000): Promise<{ finished: boolean; cut: number }> {
    this.#draining = true;
    if (await this.#idleWithin(seconds * 1000)) return { finished: true, cut: 0 };
    const cut = this.#inFlight;
    this.#cut.abort(
      new ApiError(
        "shutting_down",
        "The server is shutting down and stopped this request; retry it",
        null,
        RETRY_AFTER_S,
      ),
    );
    await this.#idleWithin(graceMs);
    return { finished: false, cut };
  }

  async #idleWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
    const ok = await Promise.race([this.idle().then(() => true as const), timeout]);
    clearTimeout(timer);
    return ok;
  }
}

/** What a request learns while it runs (its model), for the metrics and the log line. */
interface RequestNotes {
  model?: string;
}
const notes = new AsyncLocalStorage<RequestNotes>();

/**
 * Notes the model the current request resolved (the first one: an image request that reranks
 * with CLIP is labelled with its generator). Outside a request it does nothing.
 */
export function noteModel(id: string): void {
  const n = notes.getStore();
  if (n && n.model === undefined) n.model = id;
}

/** One request's log line: JSON, on stdout. */
export interface RequestLog {
  time: string;
  request_id: string;
  method: string;
  route: string;
  path: string;
  model?: string;
  status: number;
  ms: number;
  /** "cut": ended by the drain; "client_closed": the client left before the end of a stream. */
  outcome?: "cut" | "client_closed";
}

/** The route pattern that answered (`/v1/models/:model{.+}`), or "unmatched" — never a raw path. */
export function routeOf(c: Context): string {
  const handlers = matchedRoutes(c).filter((r) => r.method !== "ALL");
  return handlers.at(-1)?.path ?? "unmatched";
}

/**
 * The outermost middleware after the request id: counts the request in flight until its last
 * byte (a stream's end, or its cut), refuses new work while draining, and on the way out records
 * metrics and calls `log` with the request's line.
 */
export function lifecycleMiddleware(
  lifecycle: Lifecycle,
  metrics: Metrics,
  log?: (line: RequestLog) => void,
): MiddlewareHandler<{ Variables: { requestId: string } }> {
  return async (c, next) => {
    const t0 = performance.now();
    const route = routeOf(c);
    const note: RequestNotes = {};
    const endLifecycle = lifecycle.begin();
    const endGauge = metrics.started(route);
    let ended = false;
    const end = (status: number, outcome?: RequestLog["outcome"]) => {
      if (ended) return;
      ended = true;
      endLifecycle();
      endGauge();
      const ms = performance.now() - t0;
      const model = note.model ?? "";
      metrics.observe({ route, method: c.req.method, model, status, seconds: ms / 1000 });
      log?.({
        time: new Date().toISOString(),
        request_id: c.get("requestId"),
        method: c.req.method,
        route,
        path: c.req.path,
        ...(note.model ? { model: note.model } : {}),
        status,
        ms: Math.round(ms * 10) / 10,
        ...(outcome ? { outcome } : {}),
      });
    };

    if (lifecycle.draining && c.req.path !== "/metrics") {
      const e = new ApiError(
        "shutting_down",
        "The server is shutting down; retry on another instance",
        null,
        RETRY_AFTER_S,
      );
      c.header("retry-after", String(RETRY_AFTER_S));
      c.res = c.json(e.toJSON(), 503);
      end(503);
      return;
    }

    // A plain request still running when the drain time is up is answered 503 at once; the
    // handler's late result goes nowhere (the process is about to exit).
    const cut = lifecycle.cut;
    let onCut = () => {};
    const wasCut = new Promise<true>((resolve) => {
      onCut = () => resolve(true);
      cut.addEventListener("abort", onCut, { once: true });
    });
    const handled = notes.run(note, () => next()).then(() => false as const);
    handled.catch(() => {}); // compose answers errors through onError; never unhandled here
    const cutFirst = await Promise.race([handled, wasCut]);
    cut.removeEventListener("abort", onCut);
    if (cutFirst) {
      const e = cut.reason as ApiError;
      c.res = undefined;
      c.res = new Response(JSON.stringify(e.toJSON()), {
        status: 503,
        headers: { "content-type": "application/json", "retry-after": String(RETRY_AFTER_S) },
      });
      end(503, "cut");
      return;
    }

    const res = c.res;
    if (!res.body || !res.headers.get("content-type")?.startsWith("text/event-stream")) {
      end(res.status);
      return;
    }
    c.res = new Response(
      guardStream(res.body, cut, (outcome) => end(res.status, outcome)),
      res,
    );
  };
}

const encoder = new TextEncoder();

/**
 * A stream's last event carrying `e` in the envelope, in the stream's own style: `event: error`
 * when its events are named (the image streams), a bare `data:` line when not (chat, as OpenAI's).
 */
export function sseErrorEvent(e: ApiError, named: boolean): Uint8Array {
  const data = `data: ${JSON.stringify(e.toJSON())}\n\n`;
  return encoder.encode(named ? `event: error\n${data}` : data);
}

/** Whether a stream whose first bytes are `first` names its events. */
export function namesEvents(first: Uint8Array): boolean {
  return new TextDecoder().decode(first.subarray(0, 6)) === "event:";
}

/**
 * Passes a Server-Sent Events body through; tells `onEnd` when it ends. When `cut` fires it sends
 * one last error event in the stream's own style (`event: error` if its events are named, else a
 * bare `data:` line as OpenAI's chat streams have), closes, and cancels the source, whose job then
 * stops between steps as it does for a client that leaves.
 */
export function guardStream(
  source: ReadableStream<Uint8Array>,
  cut: AbortSignal,
  onEnd: (outcome?: "cut" | "client_closed") => void,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let ended = false;
  let named = true;
  let first = true;
  let out: ReadableStreamDefaultController<Uint8Array>;
  const finish = (outcome?: "cut" | "client_closed") => {
    if (ended) return false;
    ended = true;
    cut.removeEventListener("abort", onCut);
    onEnd(outcome);
    return true;
  };
  const onCut = () => {
    if (ended) return;
    const e = cut.reason instanceof ApiError
      ? cut.reason
      : new ApiError("shutting_down", "The server is shutting down");
    out.enqueue(sseErrorEvent(e, named));
    out.close();
    finish("cut");
    reader.cancel(e).catch(() => {});
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      out = controller;
      if (cut.aborted) onCut();
      else cut.addEventListener("abort", onCut, { once: true });
    },
    async pull(controller) {
      try {
        const { value, done } = await reader.read();
        if (ended) return;
        if (done) {
          controller.close();
          finish();
          return;
        }
        if (first) {
          first = false;
          named = namesEvents(value);
        }
        controller.enqueue(value);
      } catch (e) {
        if (finish()) controller.error(e);
      }
    },
    cancel(reason) {
      finish("client_closed");
      return reader.cancel(reason);
    },
  });
}
