/**
 * The real-size models the benchmarks build at first use: public architectures with random
 * weights in data/real-size (not committed), made by training/make_tiny_random.py and quantized
 * by training/quantize.py (Debian's python3).
 */
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
  await training("quantize.py", ...quantize.map((g) => `${dir}onnx/${g}.onnx`));
  return dir;
}

async function training(...args: string[]): Promise<void> {
  const run = await new Deno.Command("/usr/bin/python3", {
    args,
    cwd: new URL("../training/", import.meta.url).pathname,
  }).output();
  if (!run.success) throw new Error(new TextDecoder().decode(run.stderr));
}
