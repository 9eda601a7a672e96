/**
 * The decoder-step kernels around attention (kernels/transformer.wgsl) and their TypeScript
 * references: linear layers (PyTorch's [out, in] weights, optional accumulate for residuals),
 * RMSNorm, rotary embeddings, SwiGLU, KV-cache append, embedding lookup, and argmax (so that a
 * greedy decoder reads back one number per token).
 */
import { computePipeline, uniformBuffer, wgsl } from "./gpu.ts";

const source = await wgsl("transformer.wgsl");

export type Kernel = "linear" | "rmsnorm" | "rope" | "swiglu" | "append" | "embed" | "argmax";

export interface KernelParams {
  n: [number, number?, number?, number?];
  f?: [number, number?];
}

// ------------------------------------------------------------------ references

export function linearRef(x: Float32Array, w: Float32Array, T: number, K: number, N: number) {
  const y = new Float32Array(T * N);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[t * K + k] * w[n * K + k];
      y[t * N + n] = s;
    }
  }
  return y;
}

export function rmsnormRef(x: Float32Array, w: Float32Array, width: number, eps: number) {
  const y = new Float32Array(x.length);
  for (let r = 0; r < x.length / width; r++) {
    let ss = 0;
    for (let k = 0; k < width; k++) ss += x[r * width + k] ** 2;
    const inv = 1 / Math.sqrt(ss / width + eps);
    for (let k = 0; k < width; k++) y[r * width + k] = x[r * width + k] * inv * w[k];
  }
  return y;
}

/** In place on [T, heads, D], positions start + t. */
export function ropeRef(x: Float32Array, heads: number, D: number, start: number, theta: number) {
  const half = D / 2, T = x.length / (heads * D);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < heads; h++) {
      const row = (t * heads + h) * D;
      for (let j = 0; j < half; j++) {
        const angle = (start + t) * theta ** (-(2 * j) / D);
        const [c, s] = [Math.cos(angle), Math.sin(angle)];
        const [x1, x2] = [x[row + j], x[row + j + half]];
        x[row + j] = x1 * c - x2 * s;
        x[row + j + half] = x2 * c + x1 * s;
      }
    }
  }
}

export const swigluRef = (g: Float32Array, u: Float32Array) =>
  g.map((v, i) => v / (1 + Math.exp(-v)) * u[i]);

export function argmaxRef(x: Float32Array): number {
  let k = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[k]) k = i;
  return k;
}

// ------------------------------------------------------------------ WebGPU

const compiled = new WeakMap<GPUDevice, Map<Kernel, GPUComputePipeline>>();

function pipeline(device: GPUDevice, kernel: Kernel): GPUComputePipeline {
  let m = compiled.get(device);
  if (!m) compiled.set(device, m = new Map());
  let p = m.get(kernel);
  if (!p) m.set(kernel, p = computePipeline(device, source, kernel));
  return p;
}

/**
 * Encodes one kernel into `encoder` with inputs `a`, `b` and output `y` (null where the entry
 * point does not use a binding) over `invocations` threads; returns the parameter buffer, to be
 * freed after submission.
 */
export function encodeKernel(
  device: GPUDevice,
  encoder: GPUCommandEncoder,
  kernel: Kernel,
  params: KernelParams,
  buffers: { a: GPUBuffer | null; b: GPUBuffer | null; y: GPUBuffer },
  invocations: number,
): GPUBuffer {
  const bytes = new ArrayBuffer(32);
  new Uint32Array(bytes).set(params.n.map((v) => v ?? 0));
  new Float32Array(bytes).set((params.f ?? []).map((v) => v ?? 0), 4);
  const uniform = uniformBuffer(device, bytes);
  const p = pipeline(device, kernel);
  const entries = [uniform, buffers.a, buffers.b, buffers.y].flatMap((buffer, binding) =>
    buffer ? [{ binding, resource: { buffer } }] : []
  );
  const pass = encoder.beginComputePass();
  pass.setPipeline(p);
  pass.setBindGroup(0, device.createBindGroup({ layout: p.getBindGroupLayout(0), entries }));
  if (kernel === "argmax") pass.dispatchWorkgroups(1);
  else {
    const groups = Math.ceil(invocations / 64), x = Math.min(groups, 65535);
    pass.dispatchWorkgroups(x, Math.ceil(groups / x));
  }
  pass.end();
  return uniform;
}
