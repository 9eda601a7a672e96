/**
 * The session registry: loads ONNX bytes from model folders, caches one session per file,
 * serializes runs where the backend cannot overlap them, and hands our own WGSL kernels the
 * GPUDevice that ORT's WebGPU provider created.
 */
import type * as ort from "onnxruntime-web";
import type { Backend, InferenceSession, Tensor } from "./backend.ts";
import { ApiError } from "./errors.ts";

export type Feeds = Record<string, Tensor>;
export type Outputs = Record<string, Tensor>;
type DataType = "float32" | "int64" | "int32" | "bool" | "uint8";
type TypedData = Float32Array | BigInt64Array | Int32Array | Uint8Array;

/** A loaded ONNX model; `run` goes through the registry's queue. */
export class Session {
  constructor(
    readonly path: string,
    readonly inner: InferenceSession,
    private registry: SessionRegistry,
  ) {}
  get inputNames(): readonly string[] {
    return this.inner.inputNames;
  }
  get outputNames(): readonly string[] {
    return this.inner.outputNames;
  }
  /** An input's declared dimensions (numbers, or names for dynamic ones), if the model says. */
  inputDims(name: string): ReadonlyArray<number | string> | undefined {
    const meta = this.inner.inputMetadata?.find((m) => m.name === name);
    return meta?.isTensor ? meta.shape : undefined;
  }
  /** The element type an input declares ("float32", "int64", ...), if the model says. */
  inputType(name: string): string | undefined {
    const meta = this.inner.inputMetadata?.find((m) => m.name === name);
    return meta?.isTensor ? meta.type : undefined;
  }
  /** Runs the model; `signal` aborts before the run starts (ORT cannot stop one midway). */
  run(feeds: Feeds, signal?: AbortSignal): Promise<Outputs> {
    return this.registry.schedule(async () => {
      signal?.throwIfAborted();
      return await this.inner.run(feeds) as Outputs;
    });
  }
}

export class SessionRegistry {
  #sessions = new Map<string, Promise<Session>>();
  #queue: Promise<unknown> = Promise.resolve();
  readonly #serial: boolean;

  constructor(readonly backend: Backend, readonly threads = 0) {
    this.#serial = !backend.can.concurrentRuns;
  }

  /**
   * The session for an .onnx file, created once; later calls share it. With `gpuOutputs` (on
   * WebGPU) its outputs stay in GPU buffers, for loops that feed them to our kernels.
   */
  load(path: string, { gpuOutputs = false } = {}): Promise<Session> {
    const gpu = gpuOutputs && this.backend.can.gpuBuffers;
    const key = gpu ? `${path}#gpu` : path;
    let s = this.#sessions.get(key);
    if (!s) {
      s = this.#create(path, gpu);
      this.#sessions.set(key, s);
      s.catch(() => this.#sessions.delete(key));
    }
    return s;
  }

  async #create(path: string, gpuOutputs: boolean): Promise<Session> {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      throw new ApiError(
        "internal_error",
        `Cannot load model file "${path}": ${(e as Error).message}`,
      );
    }
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: [this.backend.executionProvider],
      graphOptimizationLevel: "all",
      logSeverityLevel: 3, // errors only: node-placement warnings are expected on WebGPU
      ...(gpuOutputs ? { preferredOutputLocation: "gpu-buffer" as const } : {}),
      ...(this.backend.can.threadCount && this.threads > 0
        ? { intraOpNumThreads: this.threads }
        : {}),
    };
    // A graph past protobuf's 2 GB keeps its weights beside it (ONNX external data, in the file
    // Optimum names <graph>_data): the native addon reads it from the graph's folder itself, the
    // web builds are handed its bytes.
    const external = `${path}_data`;
    const hasExternal = await Deno.stat(external).then(() => true, () => false);
    if (hasExternal && this.backend.name !== "cpu") {
      options.externalData = [{
        path: external.slice(external.lastIndexOf("/") + 1),
        data: await Deno.readFile(external),
      }];
    }
    const native = hasExternal && this.backend.name === "cpu";
    // Session creation compiles GPU programs: keep it off other runs' device time too.
    const inner = await this.schedule(() =>
      native
        ? this.backend.ort.InferenceSession.create(path, options)
        : this.backend.ort.InferenceSession.create(bytes, options)
    );
    return new Session(path, inner, this);
  }

  /** Runs `task` after every task scheduled before it, where the backend needs that. */
  schedule<T>(task: () => Promise<T>): Promise<T> {
    if (!this.#serial) return task();
    const next = this.#queue.then(task, task);
    this.#queue = next.catch(() => {});
    return next;
  }

  tensor(type: DataType, data: TypedData, dims: readonly number[]): Tensor {
    return new this.backend.ort.Tensor(type, data as Float32Array, dims);
  }

  /**
   * A CPU tensor whose data `make` builds on its first read: an output a caller may hand back
   * unread (a decoder's cache cut from a merged run, core/batched_session.ts) costs nothing until
   * something reads it — ORT reads `data` when it is fed.
   */
  deferredTensor(type: DataType, dims: readonly number[], make: () => TypedData): Tensor {
    this.#Deferred ??= deferredTensorClass(this.backend.ort.Tensor);
    return new this.#Deferred(type, dims, make);
  }
  #Deferred?: ReturnType<typeof deferredTensorClass>;

  /** ORT's own GPUDevice, once a WebGPU session exists; null on other backends. */
  async gpuDevice(): Promise<GPUDevice | null> {
    if (!this.backend.can.gpuBuffers || this.#sessions.size === 0) return null;
    return await this.backend.ort.env.webgpu.device as GPUDevice;
  }

  get loadedPaths(): string[] {
    return [...this.#sessions.keys()];
  }
}

/** A subclass of the backend's Tensor with `data` built on first read (see deferredTensor). */
function deferredTensorClass(Base: typeof ort.Tensor) {
  const Cpu = Base as unknown as new (t: DataType, d: TypedData, dims: readonly number[]) => Tensor;
  const empty = {
    float32: Float32Array,
    int64: BigInt64Array,
    int32: Int32Array,
    uint8: Uint8Array,
    bool: Uint8Array,
  };
  return class Deferred extends Cpu {
    #make?: () => TypedData;
    #data?: TypedData;
    constructor(type: DataType, dims: readonly number[], make: () => TypedData) {
      // Built empty, then given its real shape: the base checks data against dims when built.
      super(type, new empty[type](0), [0]);
      Object.assign(this, { dims, size: dims.reduce((a, b) => a * b, 1) });
      this.#make = make;
    }
    override get data(): Tensor["data"] {
      if (this.#make) (this.#data = this.#make(), this.#make = undefined);
      return this.#data as Tensor["data"];
    }
  };
}
