/**
 * The WebGPU adapter and device that tests compare against, found once per test file. Where
 * there is none (CI machines have no GPU; Mesa's llvmpipe counts as an adapter), the tests that
 * need one are skipped with a printed reason, never silently.
 *
 *   const gpu = needsGpu("attention kernels");       // Deno.test({ ...gpu, ... })
 *   ... device!  (inside those tests)
 */
export const adapter: GPUAdapter | null = await navigator.gpu?.requestAdapter().catch(() => null) ??
  null;
export const device: GPUDevice | null = adapter
  ? await adapter.requestDevice().catch(() => null)
  : null;

/** `{ ignore }` for the tests of `what` that need a WebGPU device; says once why they skip. */
export function needsGpu(what: string): { ignore: boolean } {
  if (!device) console.log(`${what}: no WebGPU adapter here; its GPU tests are skipped`);
  return { ignore: !device };
}
