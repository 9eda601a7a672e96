/**
 * The three execution backends and the choice between them.
 *
 * - `webgpu`: onnxruntime-web's WebGPU execution provider (a hardware adapter, or the software
 *   one when forced, which is how tests cover this path on machines without a GPU);
 * - `cpu`: onnxruntime-node, the native CPU execution provider (7–12× faster than WASM);
 * - `wasm`: onnxruntime-web's WASM execution provider, one thread: the portable last resort.
 *
 * `auto` picks webgpu on a hardware adapter, else cpu when the native addon loads, else wasm.
 */
import type * as ort from "onnxruntime-web";
import type { BackendChoice } from "./config.ts";

export type BackendName = "webgpu" | "cpu" | "wasm";
export type Ort = typeof ort;
export type InferenceSession = ort.InferenceSession;
export type Tensor = ort.Tensor;

export interface Backend {
  name: BackendName;
  /** The ORT execution provider name sessions are created with. */
  executionProvider: string;
  /** Human description of where it runs, e.g. the GPU adapter. */
  device: string;
  /** Whether the WebGPU adapter is a software (fallback) one. */
  fallbackAdapter: boolean;
  ort: Ort;
}

async function gpuAdapter(): Promise<GPUAdapter | null> {
  try {
    return (await navigator.gpu?.requestAdapter()) ?? null;
  } catch {
    return null;
  }
}

function isFallback(adapter: GPUAdapter): boolean {
  // Deno reports it on `info`; older specs had it on the adapter.
  const a = adapter as GPUAdapter & {
    isFallbackAdapter?: boolean;
    info: { isFallbackAdapter?: boolean };
  };
  return Boolean(a.info?.isFallbackAdapter ?? a.isFallbackAdapter);
}

async function webgpuBackend(adapter: GPUAdapter): Promise<Backend> {
  const web = await import("onnxruntime-web") as Ort;
  web.env.logLevel = "error";
  web.env.wasm.numThreads = 1; // blob workers fail in Deno
  return {
    name: "webgpu",
    executionProvider: "webgpu",
    device: adapter.info.description || adapter.info.vendor || "WebGPU adapter",
    fallbackAdapter: isFallback(adapter),
    ort: web,
  };
}

async function cpuBackend(): Promise<Backend> {
  const native = await import("onnxruntime-node") as unknown as Ort;
  return {
    name: "cpu",
    executionProvider: "cpu",
    device: `native CPU (${navigator.hardwareConcurrency} cores)`,
    fallbackAdapter: false,
    ort: native,
  };
}

async function wasmBackend(): Promise<Backend> {
  const web = await import("onnxruntime-web") as Ort;
  web.env.logLevel = "error";
  web.env.wasm.numThreads = 1;
  return {
    name: "wasm",
    executionProvider: "wasm",
    device: "WebAssembly (1 thread)",
    fallbackAdapter: false,
    ort: web,
  };
}

/**
 * Resolves a backend choice to a loaded backend. A forced `webgpu` accepts a software adapter;
 * `auto` does not (a software adapter is ~50× slower than the native CPU backend).
 */
export async function resolveBackend(choice: BackendChoice): Promise<Backend> {
  switch (choice) {
    case "webgpu": {
      const adapter = await gpuAdapter();
      if (!adapter) {
        throw new Error('Backend "webgpu" is not available: navigator.gpu has no adapter');
      }
      return webgpuBackend(adapter);
    }
    case "cpu":
      return cpuBackend();
    case "wasm":
      return wasmBackend();
    case "auto": {
      const adapter = await gpuAdapter();
      if (adapter && !isFallback(adapter)) return webgpuBackend(adapter);
      try {
        return await cpuBackend();
      } catch {
        return wasmBackend();
      }
    }
  }
}
