/**
 * The real-size models the benchmarks build at first use: public architectures with random
 * weights in data/real-size (not committed), made by training/make_tiny_random.py and quantized
 * by training/quantize.py (Debian's python3).
 */
import { type Backend, oneNodeModel, resolveBackend } from "../core/backend.ts";
import { SessionRegistry } from "../core/sessions.ts";

export const REAL_SIZE = new URL("../data/real-size/", import.meta.url).pathname;

/**
 * Makes a model unless `folder` (under REAL_SIZE) has its manifest: make_tiny_random.py with
 * `flag`, then q8 files for the `quantize` graphs (under its onnx/).
 */
export async function ensureRealSize(
  what: string,
  folder: string,
  flag: string,
  quantize: string[],
): Promise<string> {
  const dir = `${REAL_SIZE}${folder}/`;
  if (await Deno.stat(`${dir}manifest.json`).then(() => true, () => false)) return dir;
  console.log(`making ${what} (random weights) in data/real-size ...`);
  await training("make_tiny_random.py", flag, REAL_SIZE);
  if (quantize.length) {
    await training("quantize.py", ...quantize.map((g) => `${dir}onnx/${g}.onnx`));
  }
  return dir;
}

async function training(...args: string[]): Promise<void> {
  const run = await new Deno.Command("/usr/bin/python3", {
    args,
    cwd: new URL("../training/", import.meta.url).pathname,
  }).output();
  if (!run.success) throw new Error(new TextDecoder().decode(run.stderr));
}

/**
 * The machine's GEMM peak through one of our backends' runtimes: an n² MatMul (a one-node graph
 * built here), the backend's threads, best of 10 after a warm-up. GFLOP/s = 2n³ / time.
 */
export async function measureGemmPeak(
  backend?: Backend,
  n = 2048,
): Promise<{ best: number; peak: number }> {
  const sessions = new SessionRegistry(backend ?? await resolveBackend("cpu"));
  const graph = await Deno.makeTempFile({ suffix: ".onnx" });
  await Deno.writeFile(graph, oneNodeModel("MatMul", ["a", "b"], [n, n]));
  const session = await sessions.load(graph);
  await Deno.remove(graph);
  const a = new Float32Array(n * n).map(() => Math.random());
  const feeds = {
    a: sessions.tensor("float32", a, [n, n]),
    b: sessions.tensor("float32", a, [n, n]),
  };
  await session.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < 10; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  const best = Math.min(...times);
  return { best, peak: 2 * n ** 3 / (best / 1000) / 1e9 };
}
