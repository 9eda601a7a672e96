/** Small WebGPU helpers for our kernels: storage buffers, pipelines, dispatches, read-back. */

export const STORAGE = 0x80 | 0x4 | 0x8; // STORAGE | COPY_SRC | COPY_DST

/**
 * The source of a WGSL file of kernels/, read when its module loads: importing it `with { type:
 * "text" }` needs --unstable-raw-imports before Deno 2.8, and Deno Deploy runs 2.5.
 */
export function wgsl(name: string): Promise<string> {
  return Deno.readTextFile(new URL(name, import.meta.url));
}

export function storageBuffer(
  device: GPUDevice,
  data: Float32Array<ArrayBuffer> | Uint32Array<ArrayBuffer> | number,
) {
  const size = typeof data === "number" ? data : data.byteLength;
  const buffer = device.createBuffer({
    size: Math.max(16, Math.ceil(size / 4) * 4),
    usage: STORAGE,
  });
  if (typeof data !== "number") device.queue.writeBuffer(buffer, 0, data);
  return buffer;
}

export function uniformBuffer(device: GPUDevice, bytes: ArrayBuffer): GPUBuffer {
  const buffer = device.createBuffer({
    size: Math.max(16, Math.ceil(bytes.byteLength / 16) * 16),
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(buffer, 0, bytes);
  return buffer;
}

/** Compiles one entry point of a WGSL module (pipelines are cached per device by callers). */
export function computePipeline(device: GPUDevice, code: string, entryPoint: string) {
  return device.createComputePipeline({
    layout: "auto",
    compute: { module: device.createShaderModule({ code }), entryPoint },
  });
}

/**
 * Encodes and submits one dispatch of `pipeline` with `buffers` at bindings 0, 1, ...; null
 * marks a binding the entry point does not use ("auto" layouts leave those out).
 */
export function dispatch(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  buffers: Array<GPUBuffer | null>,
  invocations: number,
  workgroupSize = 64,
): void {
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.flatMap((buffer, binding) =>
      buffer ? [{ binding, resource: { buffer } }] : []
    ),
  });
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  const groups = Math.ceil(invocations / workgroupSize);
  // Large grids fold into a second dimension (65535 groups per dimension at most).
  const x = Math.min(groups, 65535);
  pass.dispatchWorkgroups(x, Math.ceil(groups / x));
  pass.end();
  device.queue.submit([encoder.finish()]);
}

/** Copies a GPU buffer's first `bytes` bytes back to the CPU. */
export async function readBuffer(
  device: GPUDevice,
  buffer: GPUBuffer,
  bytes: number,
): Promise<ArrayBuffer> {
  const staging = device.createBuffer({
    size: Math.ceil(bytes / 4) * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, Math.ceil(bytes / 4) * 4);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return out;
}
