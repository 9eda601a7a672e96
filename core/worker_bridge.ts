/**
 * HTTP across a Worker boundary. The thread that accepts connections hands a request to a Worker
 * running a fetch handler (the same Hono app) and streams the response back, so the work behind
 * it — image decoding, tensor loops, onnxruntime-node's `run()`, which holds its thread — never
 * delays `/health` or another model's requests.
 *
 *   main:   const engine = new WorkerEndpoint(url, "engine:clip", onEvent);
 *           const res = await engine.fetch(request, bodyBytes);
 *   worker: serveRequests(app.fetch, { status: () => ... });  emit("status", ...)
 *
 * The client leaving (the request's signal, or the response body cancelled) aborts the worker's
 * request, whose handler sees it as `request.signal`. Besides requests, the main side can `call`
 * a named function in the worker (a metrics snapshot), and the worker can `emit` events (status).
 */

type ToWorker =
  | {
    t: "request";
    id: number;
    method: string;
    url: string;
    headers: [string, string][];
    body: ArrayBuffer | null;
  }
  | { t: "abort"; id: number }
  | { t: "call"; id: number; name: string };

type FromWorker =
  | { t: "head"; id: number; status: number; headers: [string, string][]; body: boolean }
  | { t: "chunk"; id: number; bytes: Uint8Array }
  | { t: "end"; id: number }
  | { t: "fail"; id: number; message: string }
  | { t: "reply"; id: number; value?: unknown; error?: string }
  | { t: "event"; name: string; value: unknown }
  | { t: "serving" };

/** What the worker's scope looks like to this module (a dedicated Worker's `self`). */
interface WorkerScope {
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  postMessage(m: FromWorker, transfer?: Transferable[]): void;
}
const scope = () => globalThis as unknown as WorkerScope;

/** Statuses a Response may not carry a body with. */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/**
 * Worker side: answers forwarded requests with `handler` and named calls with `calls`. Returns
 * `emit`, which sends an event to the main side.
 */
export function serveRequests(
  handler: (request: Request) => Response | Promise<Response>,
  calls: Record<string, () => unknown> = {},
): { emit(name: string, value: unknown): void } {
  const self = scope();
  const post = (m: FromWorker, transfer: Transferable[] = []) => self.postMessage(m, transfer);
  const running = new Map<
    number,
    { abort: AbortController; reader?: ReadableStreamDefaultReader }
  >();

  const answer = async (m: Extract<ToWorker, { t: "request" }>) => {
    const job: { abort: AbortController; reader?: ReadableStreamDefaultReader } = {
      abort: new AbortController(),
    };
    running.set(m.id, job);
    try {
      const res = await handler(
        new Request(m.url, {
          method: m.method,
          headers: m.headers,
          body: m.body,
          signal: job.abort.signal,
        }),
      );
      post({
        t: "head",
        id: m.id,
        status: res.status,
        headers: [...res.headers],
        body: res.body !== null,
      });
      if (res.body) {
        job.reader = res.body.getReader();
        for (;;) {
          const { value, done } = await job.reader.read();
          if (done) break;
          // A copy of its own, so the transfer cannot detach a buffer the stream still uses.
          const bytes = value instanceof Uint8Array ? value.slice() : new Uint8Array(value);
          post({ t: "chunk", id: m.id, bytes }, [bytes.buffer]);
        }
      }
      post({ t: "end", id: m.id });
    } catch (e) {
      post({ t: "fail", id: m.id, message: e instanceof Error ? e.message : String(e) });
    } finally {
      running.delete(m.id);
    }
  };

  self.onmessage = (e) => {
    const m = e.data;
    if (m.t === "request") answer(m);
    else if (m.t === "abort") {
      const job = running.get(m.id);
      job?.abort.abort(new DOMException("The client closed the connection", "AbortError"));
      job?.reader?.cancel().catch(() => {});
    } else if (m.t === "call") {
      const fn = calls[m.name];
      Promise.resolve()
        .then(() => {
          if (!fn) throw new Error(`no call "${m.name}" in this worker`);
          return fn();
        })
        .then(
          (value) => post({ t: "reply", id: m.id, value }),
          (e) => post({ t: "reply", id: m.id, error: String(e) }),
        );
    }
  };
  post({ t: "serving" }); // messages sent before this went nowhere; the main side held them
  return { emit: (name, value) => post({ t: "event", name, value }) };
}

interface Pending {
  head?: { resolve(r: Response): void; reject(e: Error): void };
  body?: ReadableStreamDefaultController<Uint8Array>;
  reply?: { resolve(v: unknown): void; reject(e: Error): void };
  detach?: () => void;
}

/** Main side: one Worker, its requests in flight, and the events it sends. */
export class WorkerEndpoint {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #next = 1;
  #dead: Error | null = null;
  /** Messages held until the worker listens (a worker's module may take seconds to load). */
  #held: Array<[ToWorker, Transferable[]]> | null = [];

  /**
   * Starts the worker module at `url` under `name` (the worker reads `self.name`). `onEvent`
   * gets its events; `onExit` is told once when it dies (an uncaught error in it).
   */
  constructor(
    url: URL,
    readonly name: string,
    onEvent: (name: string, value: unknown) => void,
    onExit: (error: Error) => void = () => {},
  ) {
    this.#worker = new Worker(url, { type: "module", name });
    this.#worker.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.t === "serving") {
        for (const [message, transfer] of this.#held ?? []) {
          this.#worker.postMessage(message, transfer);
        }
        this.#held = null;
        return;
      }
      if (m.t === "event") return onEvent(m.name, m.value);
      const p = this.#pending.get(m.id);
      if (!p) return; // already aborted here
      if (m.t === "head") {
        const body = m.body && !NULL_BODY.has(m.status)
          ? new ReadableStream<Uint8Array>({
            start: (controller) => void (p.body = controller),
            cancel: () => this.#abort(m.id),
          })
          : null;
        p.head?.resolve(new Response(body, { status: m.status, headers: m.headers }));
        p.head = undefined;
      } else if (m.t === "chunk") {
        p.body?.enqueue(m.bytes);
      } else if (m.t === "end") {
        p.body?.close();
        this.#settle(m.id);
      } else if (m.t === "fail") {
        const error = new Error(`${name}: ${m.message}`);
        p.head?.reject(error);
        p.body?.error(error);
        this.#settle(m.id);
      } else if (m.t === "reply") {
        if (m.error === undefined) p.reply?.resolve(m.value);
        else p.reply?.reject(new Error(`${name}: ${m.error}`));
        this.#settle(m.id);
      }
    };
    this.#worker.onerror = (e) => {
      e.preventDefault(); // the worker is lost, not this process
      this.#die(new Error(`${name} stopped: ${e.message}`));
      onExit(this.#dead!);
    };
  }

  get alive(): boolean {
    return this.#dead === null;
  }

  /** Sends `request` (its body already read: `body`) to the worker; resolves with its response. */
  fetch(request: Request, body: ArrayBuffer | null): Promise<Response> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#next++;
    const signal = request.signal;
    return new Promise<Response>((resolve, reject) => {
      const onAbort = () => this.#abort(id);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#pending.set(id, {
        head: { resolve, reject },
        detach: () => signal.removeEventListener("abort", onAbort),
      });
      this.#post({
        t: "request",
        id,
        method: request.method,
        url: request.url,
        headers: [...request.headers],
        body,
      }, body ? [body] : []);
    });
  }

  /** Calls the worker's function `name`; rejects after `timeoutMs` (a worker busy in a run). */
  call<T>(name: string, timeoutMs: number): Promise<T> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#settle(id);
        reject(new Error(`${this.name}: no answer to ${name} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        reply: {
          resolve: (v) => (clearTimeout(timer), resolve(v as T)),
          reject: (e) => (clearTimeout(timer), reject(e)),
        },
      });
      this.#post({ t: "call", id, name });
    });
  }

  terminate(): void {
    this.#die(new Error(`${this.name} was stopped`));
    this.#worker.terminate();
  }

  #abort(id: number) {
    const p = this.#pending.get(id);
    if (!p) return;
    const gone = new DOMException("The client closed the connection", "AbortError");
    p.head?.reject(gone);
    try {
      p.body?.error(gone);
    } catch { /* cancelled by its reader */ }
    this.#settle(id);
    if (!this.#dead) this.#post({ t: "abort", id });
  }

  #post(message: ToWorker, transfer: Transferable[] = []) {
    if (this.#held) this.#held.push([message, transfer]);
    else this.#worker.postMessage(message, transfer);
  }

  #settle(id: number) {
    this.#pending.get(id)?.detach?.();
    this.#pending.delete(id);
  }

  #die(error: Error) {
    if (this.#dead) return;
    this.#dead = error;
    for (const [id, p] of this.#pending) {
      p.head?.reject(error);
      try {
        p.body?.error(error);
      } catch { /* already closed */ }
      p.reply?.reject(error);
      this.#settle(id);
    }
  }
}
