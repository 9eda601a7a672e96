/**
 * Attention over a KV cache: the TypeScript reference and the WGSL kernel (kernels/attention.wgsl),
 * fused scaled-dot-product attention with an online softmax, causal masking and grouped-query
 * heads, for prefill (T new positions) and single-token decode (T = 1).
 */
import { computePipeline, readBuffer, storageBuffer, uniformBuffer, wgsl } from "./gpu.ts";

const source = await wgsl("attention.wgsl");

export interface AttentionShape {
  queries: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Keys before the new positions. */
  past: number;
  /** Keys visible in all. */
  keys: number;
  /** Cache length per key/value head. */
  capacity: number;
  causal: boolean;
}

/** q [T, heads, D], caches [kvHeads, capacity, D] → out [T, heads, D]. */
export function attentionReference(
  s: AttentionShape,
  q: Float32Array,
  kCache: Float32Array,
  vCache: Float32Array,
): Float32Array {
  const D = s.headDim, out = new Float32Array(s.queries * s.heads * D);
  const scale = 1 / Math.sqrt(D);
  for (let t = 0; t < s.queries; t++) {
    for (let h = 0; h < s.heads; h++) {
      const kvh = Math.floor(h / (s.heads / s.kvHeads));
      const last = s.causal ? Math.min(s.keys, s.past + t + 1) : s.keys;
      const scores = new Float64Array(last);
      for (let j = 0; j < last; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) {
          dot += q[(t * s.heads + h) * D + d] * kCache[(kvh * s.capacity + j) * D + d];
        }
        scores[j] = dot * scale;
      }
      const max = Math.max(...scores);
      let z = 0;
      for (let j = 0; j < last; j++) z += scores[j] = Math.exp(scores[j] - max);
      for (let d = 0; d < D; d++) {
        let v = 0;
        for (let j = 0; j < last; j++) v += scores[j] * vCache[(kvh * s.capacity + j) * D + d];
        out[(t * s.heads + h) * D + d] = v / z;
      }
    }
  }
  return out;
}

const compiled = new WeakMap<GPUDevice, GPUComputePipeline>();

/** Encodes the attention kernel into `encoder` (so that a decoder step is one submission). */
export function encodeAttention(
  device: GPUDevice,
  encoder: GPUCommandEncoder,
  s: AttentionShape,
  buffers: { q: GPUBuffer; kCache: GPUBuffer; vCache: GPUBuffer; out: GPUBuffer },
): GPUBuffer {
  if (s.headDim > 64) throw new RangeError("attention kernel: head size above 64");
  let pipeline = compiled.get(device);
  if (!pipeline) compiled.set(device, pipeline = computePipeline(device, source, "main"));
  const bytes = new ArrayBuffer(48);
  new Uint32Array(bytes).set([
    s.queries,
    s.heads,
    s.kvHeads,
    s.headDim,
    s.past,
    s.keys,
    s.capacity,
    s.causal ? 1 : 0,
  ]);
  new Float32Array(bytes)[8] = 1 / Math.sqrt(s.headDim);
  const params = uniformBuffer(device, bytes);
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [params, buffers.q, buffers.kCache, buffers.vCache, buffers.out].map((
        buffer,
        binding,
      ) => ({ binding, resource: { buffer } })),
    }),
  );
  pass.dispatchWorkgroups(s.queries, s.heads);
  pass.end();
  return params; // the caller frees it after submission
}

/** One attention call on the GPU, read back (for tests and benchmarks). */
export async function attentionGpu(
  device: GPUDevice,
  s: AttentionShape,
  q: Float32Array<ArrayBuffer>,
  kCache: Float32Array<ArrayBuffer>,
  vCache: Float32Array<ArrayBuffer>,
): Promise<Float32Array> {
  const b = {
    q: storageBuffer(device, q),
    kCache: storageBuffer(device, kCache),
    vCache: storageBuffer(device, vCache),
    out: storageBuffer(device, q.length * 4),
  };
  const encoder = device.createCommandEncoder();
  const params = encodeAttention(device, encoder, s, b);
  device.queue.submit([encoder.finish()]);
  const out = new Float32Array(await readBuffer(device, b.out, q.length * 4));
  for (const x of [...Object.values(b), params]) x.destroy();
  return out;
}
