/**
 * Counter-based Gaussian noise, the TypeScript twin of kernels/random.wgsl: the value at
 * (seed, stream, index) depends on nothing else, so CPU and GPU paths draw the same noise.
 */
import { wgsl } from "./gpu.ts";

const source = await wgsl("random.wgsl");

export const RANDOM_WGSL: string = source;

function mix32(v: number): number {
  let z = v >>> 0;
  z = (z ^ (z >>> 16)) >>> 0;
  z = Math.imul(z, 0x7feb352d) >>> 0;
  z = (z ^ (z >>> 15)) >>> 0;
  z = Math.imul(z, 0x846ca68b) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

export function gaussian(seed: number, stream: number, index: number): number {
  const key = mix32((seed ^ mix32((stream + 0x9e3779b9) >>> 0)) >>> 0);
  const h1 = mix32((key ^ mix32(Math.imul(2, index) >>> 0)) >>> 0);
  const h2 = mix32((key ^ mix32((Math.imul(2, index) + 1) >>> 0)) >>> 0);
  const u1 = Math.fround((Math.fround(h1 >>> 8) + 0.5) / 16777216);
  const u2 = Math.fround((h2 >>> 8) / 16777216);
  return Math.fround(Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2));
}

/** `count` Gaussian values of one stream. */
export function gaussians(seed: number, stream: number, count: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = gaussian(seed, stream, i);
  return out;
}
