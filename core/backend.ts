/**
 * The three execution backends and the choice between them.
 *
 * - `webgpu`: onnxruntime-web's WebGPU execution provider (a hardware adapter, or the software
 *   one when forced, which is how tests cover this path on machines without a GPU);
 * - `cpu`: onnxruntime-node, the native CPU execution provider (7–12× faster than WASM);
 * - `wasm`: onnxruntime-web's WASM execution provider: the portable last resort, on several
 *   threads (SIMD, `MM_THREADS`, else one per core up to 16) where Workers and SharedArrayBuffer
 *   work (core/ort_wasm.ts), else on one, with the reason in `notes` and the log.
 *
 * `auto` picks webgpu on a hardware adapter whose WebGPU path works at start (a one-node graph
 * is run on it), else cpu when the native addon loads, else wasm; each step it skips is logged
 * and kept in `notes`. A software adapter is recognized by what it reports — `isFallbackAdapter`
 * where the runtime sets it, else the renderer's name (llvmpipe, lavapipe, SwiftShader, ...) —
 * because Deno 2.5 reports `isFallbackAdapter: false` for Mesa's llvmpipe.
 */
import type * as ort from "onnxruntime-web";
import type { BackendChoice } from "./config.ts";
import { loadThreadedOrt, type ThreadedOrt } from "./ort_wasm.ts";

export type BackendName = "webgpu" | "cpu" | "wasm";
export type Ort = typeof ort;
export type InferenceSession = ort.InferenceSession;
export type Tensor = ort.Tensor;

/** What a WebGPU adapter says of itself, and our verdict on whether it is a software one. */
export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** As reported: true or false, or null where the runtime does not report it at all. */
  isFallbackAdapter: boolean | null;
  /** Ours: a software rasterizer (from the flag, or from the names above). */
  software: boolean;
  /** Why `software` is true, in words; null when it is false. */
  softwareReason: string | null;
}

/**
 * What a backend can do, so that code asks for a capability instead of matching a backend's
 * name (and a new backend says what it can in one place: `CAPABILITIES`).
 */
export interface Capabilities {
  /** Runs may overlap (ORT-node's CPU provider); else they are queued one at a time. */
  concurrentRuns: boolean;
  /** Outputs can stay in GPU buffers, and our WGSL kernels can share ORT's GPUDevice. */
  gpuBuffers: boolean;
  /** `intraOpNumThreads` sets its thread count (MM_THREADS). */
  threadCount: boolean;
}

export const CAPABILITIES: Record<BackendName, Capabilities> = {
  // A WebGPU device fails on concurrent runs; one ORT-web (WASM) session cannot run twice at once.
  webgpu: { concurrentRuns: false, gpuBuffers: true, threadCount: false },
  cpu: { concurrentRuns: true, gpuBuffers: false, threadCount: true },
  wasm: { concurrentRuns: false, gpuBuffers: false, threadCount: false },
};

export interface Backend {
  name: BackendName;
  can: Capabilities;
  /** The ORT execution provider name sessions are created with. */
  executionProvider: string;
  /** Human description of where it runs, e.g. the GPU adapter. */
  device: string;
  /** Whether the backend runs on a software WebGPU adapter (only ever true when forced). */
  fallbackAdapter: boolean;
  /** The WebGPU adapter `navigator.gpu` offered, used or not; null: none was offered. */
  adapter: AdapterReport | null;
  /** What was asked for (MM_BACKEND). */
  choice: BackendChoice;
  /**
   * How `auto` got here: one line per backend it passed over, and why; and on `wasm`, why it
   * runs on fewer threads than asked. Empty otherwise.
   */
  notes: string[];
  ort: Ort;
}

/** Names that only software renderers report (Mesa, Google, Microsoft), or that say so. */
const SOFTWARE_NAMES =
  /llvmpipe|lavapipe|softpipe|swiftshader|swift shader|basic render driver|software|\bcpu\b/i;

/** The part of a GPUAdapter we read; fakes in tests supply only this. */
export interface AdapterLike {
  info?: Partial<Record<"vendor" | "architecture" | "device" | "description", unknown>> & {
    isFallbackAdapter?: unknown;
  };
  /** Where the older WebGPU spec put it (before `info`). */
  isFallbackAdapter?: unknown;
}

/** Reads an adapter's identity and decides whether it is a software one. */
export function describeAdapter(adapter: AdapterLike): AdapterReport {
  const info = adapter.info ?? {};
  const text = (v: unknown) => (typeof v === "string" ? v : v === undefined ? "" : String(v));
  const names = {
    vendor: text(info.vendor),
    architecture: text(info.architecture),
    device: text(info.device),
    description: text(info.description),
  };
  const flag = typeof info.isFallbackAdapter === "boolean"
    ? info.isFallbackAdapter
    : typeof adapter.isFallbackAdapter === "boolean"
    ? adapter.isFallbackAdapter
    : null;
  let softwareReason: string | null = null;
  if (flag === true) softwareReason = "the adapter reports isFallbackAdapter";
  else {
    for (const [field, value] of Object.entries(names)) {
      const m = value.match(SOFTWARE_NAMES);
      if (m) {
        softwareReason = `its ${field} "${value}" names a software renderer (${m[0]})`;
        break;
      }
    }
  }
  return { ...names, isFallbackAdapter: flag, software: softwareReason !== null, softwareReason };
}

/** "llvmpipe (LLVM 15.0.6, 256 bits)", else vendor/architecture, else a generic name. */
export function adapterName(a: AdapterReport): string {
  return a.description || [a.vendor, a.architecture].filter(Boolean).join(" ") ||
    "WebGPU adapter";
}

async function gpuAdapter(): Promise<GPUAdapter | null> {
  try {
    return (await navigator.gpu?.requestAdapter()) ?? null;
  } catch {
    return null;
  }
}

type Loaded = Pick<Backend, "name" | "executionProvider" | "device" | "ort">;

/**
 * What this runtime's WebGPU lacks that onnxruntime-web's WebGPU EP needs, or null. Deno 2.5's
 * GPUDevice has no `lost` promise: ORT 1.30 calls `device.lost.then(...)` inside its WASM glue,
 * and that TypeError is an unhandled rejection that ends the process.
 */
async function webgpuGap(adapter: GPUAdapter): Promise<string | null> {
  const device = await adapter.requestDevice();
  try {
    return device.lost instanceof Promise
      ? null
      : `this runtime's GPUDevice has no \`lost\` promise, which onnxruntime-web's WebGPU EP needs (Deno ${Deno.version.deno})`;
  } finally {
    device.destroy?.();
  }
}

async function webgpuBackend(raw: AdapterLike, adapter: AdapterReport): Promise<Loaded> {
  if (typeof (raw as GPUAdapter).requestDevice === "function") {
    const gap = await webgpuGap(raw as GPUAdapter);
    if (gap) throw new Error(gap);
  }
  const web = await import("onnxruntime-web") as Ort;
  web.env.logLevel = "error";
  // The npm instance cannot start WASM threads in Deno (core/ort_wasm.ts says why); WebGPU
  // kernels do not need them.
  web.env.wasm.numThreads = 1;
  return { name: "webgpu", executionProvider: "webgpu", device: adapterName(adapter), ort: web };
}

async function cpuBackend(): Promise<Loaded> {
  const native = await import("onnxruntime-node") as unknown as Ort;
  return {
    name: "cpu",
    executionProvider: "cpu",
    device: `native CPU (${navigator.hardwareConcurrency} cores)`,
    ort: native,
  };
}

/**
 * WASM threads asked for: `MM_THREADS` where set above 0 (as for the native CPU backend), else
 * one per core, at most 16; 1 where neither can be read.
 */
export function wasmThreadsFromEnv(): number {
  let set = 0;
  try {
    const v = Deno.env.get("MM_THREADS")?.trim();
    if (v && /^\d+$/.test(v)) set = Number(v);
  } catch {
    // no --allow-env: the default
  }
  if (set > 0) return set;
  return Math.max(1, Math.min(16, navigator.hardwareConcurrency || 1));
}

/**
 * ORT-web's WASM EP on `threads` threads, tried end to end (a session and a run of the probe
 * graph) within `timeoutMs`; where threads do not start (no Workers or SharedArrayBuffer, an
 * error, a hang), the npm instance on one thread, and `note` says why.
 */
export async function wasmBackend(
  threads = wasmThreadsFromEnv(),
  note: (line: string) => void = (line) => console.log(`backend wasm: ${line}`),
  timeoutMs = 15_000,
): Promise<Loaded> {
  if (threads > 1) {
    let started: ThreadedOrt | undefined;
    try {
      const start = async () => {
        started = await loadThreadedOrt(threads);
        started.ort.env.logLevel = "error";
        await probeBackend({ ort: started.ort, executionProvider: "wasm" });
        return started.ort;
      };
      const web = await withTimeout(start(), timeoutMs, `starting ${threads} WASM threads`);
      return {
        name: "wasm",
        executionProvider: "wasm",
        device: `WebAssembly (${threads} threads, SIMD)`,
        ort: web,
      };
    } catch (e) {
      started?.stop();
      note(`${threads} WASM threads did not start, running on 1: ${message(e)}`);
    }
  }
  const web = await import("onnxruntime-web") as Ort;
  web.env.logLevel = "error";
  web.env.wasm.numThreads = 1;
  return { name: "wasm", executionProvider: "wasm", device: "WebAssembly (1 thread)", ort: web };
}

/**
 * A one-node ONNX graph, y = op(inputs) over float tensors of shape `dims`, written out as
 * protobuf bytes (ModelProto, IR 8, opset 17): so a backend can be tried end to end at start
 * without a model file (`probeModel`), and a bench can time one kernel on any backend.
 */
export function oneNodeModel(op: string, inputs: string[], dims: readonly number[]): Uint8Array {
  const varint = (out: number[], n: number) => {
    for (; n > 0x7f; n >>>= 7) out.push((n & 0x7f) | 0x80);
    out.push(n);
  };
  const utf8 = (s: string) => [...new TextEncoder().encode(s)];
  const len = (field: number, body: number[]) => {
    const out = [(field << 3) | 2];
    varint(out, body.length);
    return [...out, ...body];
  };
  const int = (field: number, n: number) => {
    const out = [(field << 3) | 0];
    varint(out, n);
    return out;
  };
  const str = (field: number, s: string) => len(field, utf8(s));
  // ValueInfoProto { name, type: TypeProto { tensor_type { elem_type: FLOAT, shape: dims } } }
  const shape = dims.flatMap((d) => len(1, int(1, d)));
  const value = (
    name: string,
  ) => [...str(1, name), ...len(2, len(1, [...int(1, 1), ...len(2, shape)]))];
  const node = [
    ...inputs.flatMap((x) => str(1, x)),
    ...str(2, "y"),
    ...str(3, "node"),
    ...str(4, op),
  ];
  const graph = [
    ...len(1, node),
    ...str(2, op),
    ...[...new Set(inputs)].flatMap((x) => len(11, value(x))),
    ...len(12, value("y")),
  ];
  return new Uint8Array([
    ...int(1, 8),
    ...str(2, "mm-edge"),
    ...len(7, graph),
    ...len(8, int(2, 17)),
  ]);
}

/** y = x + x over float[4]: the graph every backend runs once at start. */
export function probeModel(): Uint8Array {
  return oneNodeModel("Add", ["x", "x"], [4]);
}

/** Creates a session on the backend's execution provider and runs the probe graph once. */
export async function probeBackend(b: Pick<Backend, "ort" | "executionProvider">): Promise<void> {
  const session = await b.ort.InferenceSession.create(probeModel(), {
    executionProviders: [b.executionProvider],
    logSeverityLevel: 3,
  });
  try {
    const x = new b.ort.Tensor("float32", new Float32Array([1, 2, 3, 4]), [4]);
    const { y } = await session.run({ x });
    const got = Array.from(await y.getData() as Float32Array);
    if (got.join() !== "2,4,6,8") throw new Error(`probe graph computed [${got}], not [2,4,6,8]`);
  } finally {
    await session.release?.();
  }
}

/** The pieces `resolveBackend` uses; tests replace them with fakes. */
export interface BackendDeps {
  requestAdapter: () => Promise<AdapterLike | null>;
  /** Loads ORT's WebGPU EP for the adapter; throws where this runtime's WebGPU cannot run it. */
  webgpu: (raw: AdapterLike, adapter: AdapterReport) => Promise<Loaded>;
  cpu: () => Promise<Loaded>;
  /** Loads the WASM EP on `threads` threads, or on fewer, saying why through `note`. */
  wasm: (threads: number, note: (line: string) => void, timeoutMs: number) => Promise<Loaded>;
  /** Threads for the WASM backend (`wasmThreadsFromEnv()`); 1: no Workers. */
  wasmThreads: number;
  /** Runs a backend end to end once; throws if it does not work. */
  probe: (b: Loaded) => Promise<void>;
  /** Where the lines about skipped backends go (the server's log). */
  log: (line: string) => void;
  /** How long the WebGPU probe (and the start of WASM threads) may take before it is given up. */
  probeTimeoutMs: number;
}

const DEFAULTS: BackendDeps = {
  requestAdapter: gpuAdapter,
  webgpu: webgpuBackend,
  cpu: cpuBackend,
  wasm: wasmBackend,
  get wasmThreads() {
    return wasmThreadsFromEnv();
  },
  probe: probeBackend,
  log: (line) => console.log(line),
  probeTimeoutMs: 15_000,
};

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0];

/**
 * Loads and probes WebGPU, also catching what ORT's WebGPU glue throws outside the promises it
 * returns (an unhandled rejection would otherwise end the process): such an error fails the try.
 */
async function tryWebgpu(d: BackendDeps, raw: AdapterLike, adapter: AdapterReport) {
  let stray: unknown = null;
  const onStray = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    stray ??= e.reason;
  };
  globalThis.addEventListener("unhandledrejection", onStray);
  try {
    const b = await d.webgpu(raw, adapter);
    await withTimeout(d.probe(b), d.probeTimeoutMs, "the WebGPU probe");
    await new Promise((resolve) => setTimeout(resolve, 0)); // let stray rejections surface
    if (stray !== null) throw stray;
    return b;
  } catch (e) {
    await new Promise((resolve) => setTimeout(resolve, 100)); // and those that follow a failure
    throw e;
  } finally {
    globalThis.removeEventListener("unhandledrejection", onStray);
  }
}

/**
 * Resolves a backend choice to a loaded backend. A forced `webgpu` accepts a software adapter
 * (and fails at start, not on the first request, when WebGPU does not work); `auto` never
 * serves on one (a software adapter is ~50× slower than the native CPU backend), and falls back
 * from a WebGPU path that fails at start to the native CPU backend, else WASM, with a log line.
 */
export async function resolveBackend(
  choice: BackendChoice,
  deps: Partial<BackendDeps> = {},
): Promise<Backend> {
  const d = { ...DEFAULTS, ...deps };
  const raw = choice === "webgpu" || choice === "auto" ? await d.requestAdapter() : null;
  const adapter = raw ? describeAdapter(raw) : null;
  const notes: string[] = [];
  const done = (b: Loaded): Backend => ({
    ...b,
    can: CAPABILITIES[b.name],
    fallbackAdapter: b.name === "webgpu" && Boolean(adapter?.software),
    adapter,
    choice,
    notes,
  });
  const skip = (line: string) => {
    notes.push(line);
    d.log(`backend auto: ${line}`);
  };
  const wasm = () =>
    d.wasm(d.wasmThreads, (line) => {
      notes.push(line);
      d.log(`backend wasm: ${line}`);
    }, d.probeTimeoutMs);
  switch (choice) {
    case "webgpu": {
      if (!adapter) {
        throw new Error('Backend "webgpu" is not available: navigator.gpu has no adapter');
      }
      try {
        return done(await tryWebgpu(d, raw!, adapter));
      } catch (e) {
        throw new Error(
          `Backend "webgpu" does not work on ${adapterName(adapter)}: ${message(e)}`,
        );
      }
    }
    case "cpu":
      return done(await d.cpu());
    case "wasm":
      return done(await wasm());
    case "auto": {
      if (!adapter) skip("no WebGPU adapter");
      else if (adapter.software) {
        skip(
          `WebGPU skipped: ${
            adapterName(adapter)
          } is a software adapter (${adapter.softwareReason})`,
        );
      } else {
        try {
          return done(await tryWebgpu(d, raw!, adapter));
        } catch (e) {
          skip(`WebGPU on ${adapterName(adapter)} failed at start: ${message(e)}`);
        }
      }
      try {
        return done(await d.cpu());
      } catch (e) {
        skip(`native CPU backend (onnxruntime-node) did not load: ${message(e)}`);
      }
      return done(await wasm());
    }
  }
}
