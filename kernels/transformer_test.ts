import assert from "node:assert/strict";
import { readBuffer, storageBuffer } from "./gpu.ts";
import { gaussians } from "./random.ts";
import {
  argmaxRef,
  encodeKernel,
  type Kernel,
  type KernelParams,
  linearRef,
  rmsnormRef,
  ropeRef,
  swigluRef,
} from "./transformer.ts";
import { device, needsGpu } from "../tests/gpu.ts";

async function run(
  kernel: Kernel,
  params: KernelParams,
  a: Float32Array<ArrayBuffer> | null,
  b: Float32Array<ArrayBuffer> | null,
  y: Float32Array<ArrayBuffer>,
  invocations: number,
): Promise<Float32Array> {
  const d = device!;
  const bufs = {
    a: a ? storageBuffer(d, a) : null,
    b: b ? storageBuffer(d, b) : null,
    y: storageBuffer(d, y),
  };
  const encoder = d.createCommandEncoder();
  const uniform = encodeKernel(d, encoder, kernel, params, bufs, invocations);
  d.queue.submit([encoder.finish()]);
  const out = new Float32Array(await readBuffer(d, bufs.y, y.byteLength));
  for (const x of [bufs.a, bufs.b, bufs.y, uniform]) x?.destroy();
  return out;
}
const close = (a: Float32Array, b: Float32Array, tol = 1e-4) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) < tol, `${i}: ${a[i]} vs ${b[i]}`);
  }
};
const gpu = needsGpu("transformer kernels");

Deno.test({
  name: "WGSL linear (and accumulate), RMSNorm, SwiGLU equal their references",
  ...gpu,
  fn: async () => {
    const [T, K, N] = [3, 128, 96];
    const x = gaussians(1, 0, T * K), w = gaussians(2, 0, N * K), r = gaussians(3, 0, T * N);
    close(
      await run("linear", { n: [T, K, N, 0], f: [1] }, x, w, new Float32Array(T * N), T * N),
      linearRef(x, w, T, K, N),
    );
    const acc = await run("linear", { n: [T, K, N, 1], f: [0.5] }, x, w, r.slice(), T * N);
    close(acc, linearRef(x, w, T, K, N).map((v, i) => r[i] + 0.5 * v));
    const g = gaussians(4, 0, K);
    close(
      await run("rmsnorm", { n: [T, K], f: [1e-5] }, x, g, new Float32Array(T * K), T),
      rmsnormRef(x, g, K, 1e-5),
    );
    const u = gaussians(5, 0, 200);
    close(
      await run("swiglu", { n: [200] }, x.subarray(0, 200).slice(), u, new Float32Array(200), 200),
      swigluRef(x.subarray(0, 200), u),
    );
  },
});

Deno.test({
  name: "WGSL rotary embedding, cache append, embedding lookup and argmax equal their references",
  ...gpu,
  fn: async () => {
    const [T, H, D, start] = [4, 2, 32, 7];
    const q = gaussians(6, 0, T * H * D);
    const want = q.slice();
    ropeRef(want, H, D, start, 10000);
    close(
      await run("rope", { n: [T, H, D, start], f: [10000] }, null, null, q.slice(), T * H * D / 2),
      want,
      2e-4,
    );
    const [kvH, cap] = [2, 16];
    const rows = gaussians(7, 0, 3 * kvH * D);
    const cache = await run(
      "append",
      { n: [3, kvH, D, 5], f: [0, cap] },
      rows,
      null,
      new Float32Array(kvH * cap * D),
      3 * kvH * D,
    );
    for (let t = 0; t < 3; t++) {
      for (let h = 0; h < kvH; h++) {
        close(
          cache.subarray((h * cap + 5 + t) * D, (h * cap + 6 + t) * D),
          rows.subarray((t * kvH + h) * D, (t * kvH + h + 1) * D),
        );
      }
    }
    const table = gaussians(8, 0, 10 * D);
    const emb = await run(
      "embed",
      { n: [2, D] },
      new Float32Array([3, 9]),
      table,
      new Float32Array(2 * D),
      2 * D,
    );
    close(
      emb,
      new Float32Array([...table.subarray(3 * D, 4 * D), ...table.subarray(9 * D, 10 * D)]),
    );
    const logits = gaussians(9, 0, 1000);
    const [best] = await run("argmax", { n: [1000] }, logits, null, new Float32Array(1), 64);
    assert.equal(best, argmaxRef(logits));
  },
});
