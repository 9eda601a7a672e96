/**
 * onnxruntime-web's WASM execution provider on several threads, in Deno.
 *
 * Imported from npm, ORT-web 1.30 cannot start its threads here. `importWasmModule`
 * (lib/wasm/wasm-utils-import.ts) uses its embedded emscripten module only when the script's
 * origin equals `location.origin`; a `file:` URL's origin is the opaque "null" and Deno has no
 * `location` (a fake `location.origin = "null"` does not help: `getScriptSrc` then throws in
 * `new URL(path, "null")`). Otherwise it "preloads" the separate `.mjs` into a `blob:` URL and
 * imports that, which Deno refuses to code under node_modules (ERR_UNSUPPORTED_ESM_URL_SCHEME).
 *
 * So we import ORT's self-contained WASM bundle (`dist/ort.wasm.bundle.min.mjs`, which has no
 * imports) from a `blob:` URL ourselves, which Deno allows to our code, with a short prologue
 * that gives it a module-scoped `location` whose origin is that blob URL's (the same-origin check
 * passes, the embedded module is used, nothing is preloaded) and a module-scoped `Worker` that we
 * set. The `.wasm` goes in as bytes (`env.wasm.wasmBinary`). Each emscripten pthread is a module
 * Worker on the same `blob:` URL: it runs the bundle, which starts itself as a pthread (its
 * `self.name` is "em-pthread").
 *
 * Those Workers are started by a helper thread (a node:worker_threads Worker) and their messages
 * relayed over a MessagePort, for two reasons. sharp's WebAssembly build (the portable profile)
 * sets `globalThis.Worker` to node:worker_threads' Worker when it loads, which ORT's web glue
 * cannot drive; the helper's realm still has the web Worker. And a web Worker keeps a Deno
 * process alive until it is terminated (ORT never terminates its pthreads), while the helper and
 * the ports can be unref'd: a CLI ends when its work is done. The relay carries emscripten's
 * control messages only; the threads share the work through the shared memory.
 *
 * Needs `--allow-read` (the bundle and the .wasm), nothing else.
 */
import type * as ort from "onnxruntime-web";

type Ort = typeof ort;

/** Why ORT-web's WASM threads cannot start in this runtime, or null. */
export function threadGap(): string | null {
  if (typeof SharedArrayBuffer === "undefined") return "this runtime has no SharedArrayBuffer";
  if (typeof MessageChannel === "undefined") return "this runtime has no MessageChannel";
  return null;
}

/**
 * Prepended to ORT's bundle: module-scoped `location` and `Worker`, which its free references to
 * those globals see (`location.origin` once at load; `new Worker(...)` for the pthreads). In a
 * pthread the prologue runs again, and keeps that realm's own Worker (pthreads start none).
 */
const PROLOGUE = "let Worker = globalThis.Worker;\n" +
  "const location = { origin: new URL(import.meta.url).origin };\n" +
  "export function __mmEdgeUseWorker(w) { Worker = w; }\n";

/** Marks the relay's own messages on a pthread's port (emscripten's have other keys). */
const RELAY = "__mmEdgeRelay";

/**
 * The helper thread's code: for each request, a web Worker whose messages go both ways over the
 * port it was given; `terminate` ends it; its errors are sent back (not thrown here).
 */
const HELPER = `
import { parentPort } from "node:worker_threads";
parentPort.on("message", ({ url, options, port }) => {
  let w;
  try {
    w = new Worker(url, options);
  } catch (e) {
    port.postMessage({ ${RELAY}: "error", message: String(e?.message ?? e) });
    return;
  }
  w.onmessage = (e) => port.postMessage(e.data);
  w.onerror = (e) => {
    e.preventDefault();
    port.postMessage({ ${RELAY}: "error", message: String(e.message), filename: e.filename, lineno: e.lineno });
  };
  port.onmessage = (e) => {
    if (e.data?.${RELAY} === "terminate") {
      w.terminate();
      port.close();
    } else w.postMessage(e.data);
  };
});
`;

interface Helper {
  postMessage(message: unknown, transfer: Transferable[]): void;
  unref(): void;
  on(event: "error", listener: (e: unknown) => void): void;
}

let helper: Promise<Helper> | undefined;

function startHelper(): Promise<Helper> {
  helper ??= import("node:worker_threads").then(({ Worker: NodeWorker }) => {
    const w = new NodeWorker(
      new URL(`data:text/javascript,${encodeURIComponent(HELPER)}`),
      { name: "mm-edge ort-wasm threads" },
    ) as unknown as Helper;
    w.on("error", (e) => console.error(`ort-wasm thread helper failed: ${e}`));
    w.unref();
    return w;
  });
  return helper;
}

/**
 * What ORT's glue takes for a Worker: a web Worker started by the helper thread, as far as the
 * glue uses one (postMessage, onmessage, onerror, terminate). Its port holds the process open
 * until the thread's first message (emscripten's "loaded"), so a start in progress is awaited.
 */
function relayedWorker(started: Helper, live: Set<{ terminate(): void }>) {
  return class RelayedWorker {
    onmessage: ((e: MessageEvent) => void) | null = null;
    onerror: ((e: unknown) => void) | null = null;
    #port: MessagePort;

    constructor(url: string | URL, options?: WorkerOptions) {
      const { port1, port2 } = new MessageChannel();
      this.#port = port1;
      live.add(this);
      let first = true;
      port1.onmessage = (e) => {
        if (first) {
          first = false;
          (port1 as MessagePort & { unref?(): void }).unref?.();
        }
        const relay = (e.data as Record<string, unknown> | null)?.[RELAY];
        if (relay === "error") {
          try {
            this.onerror?.(e.data);
          } catch (err) {
            // emscripten rethrows a pthread's error; the start's timeout reports it.
            console.error(`ort-wasm pthread: ${err}`);
          }
        } else this.onmessage?.(e);
      };
      started.postMessage({
        url: String(url),
        options: { type: options?.type ?? "module", name: options?.name },
        port: port2,
      }, [port2]);
    }

    postMessage(message: unknown, transfer?: Transferable[]) {
      this.#port.postMessage(message, transfer ?? []);
    }

    terminate() {
      live.delete(this);
      this.#port.postMessage({ [RELAY]: "terminate" });
      this.#port.close();
    }
  };
}

export interface ThreadedOrt {
  ort: Ort;
  /** Ends the instance's threads: for a start given up on (ORT itself never ends them). */
  stop(): void;
}

/**
 * A fresh instance of onnxruntime-web (WASM EP only) that starts `threads` threads with its first
 * session. Throws where `threadGap()` names what is missing, or the bundle cannot be read. The
 * instance is its own: the npm import (the WebGPU backend's) is not touched.
 */
export async function loadThreadedOrt(threads: number): Promise<ThreadedOrt> {
  const gap = threadGap();
  if (gap) throw new Error(gap);
  const bundle = new URL("ort.wasm.bundle.min.mjs", import.meta.resolve("onnxruntime-web"));
  if (bundle.protocol !== "file:") throw new Error(`onnxruntime-web is not on disk (${bundle})`);
  const [source, wasm, started] = await Promise.all([
    Deno.readTextFile(bundle),
    Deno.readFile(new URL("ort-wasm-simd-threaded.wasm", bundle)),
    startHelper(),
  ]);
  // Not revoked: pthreads are started from this URL, also after the first session.
  const url = URL.createObjectURL(new Blob([PROLOGUE, source], { type: "text/javascript" }));
  const mod = await import(url) as Ort & { __mmEdgeUseWorker(w: unknown): void };
  const live = new Set<{ terminate(): void }>();
  mod.__mmEdgeUseWorker(relayedWorker(started, live));
  mod.env.wasm.numThreads = threads;
  mod.env.wasm.wasmBinary = wasm;
  mod.env.wasm.proxy = false;
  return { ort: mod, stop: () => [...live].forEach((w) => w.terminate()) };
}
