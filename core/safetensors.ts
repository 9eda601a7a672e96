/** safetensors files: a JSON header of names, dtypes and offsets, then the raw tensors. */

/** Reads a safetensors file (F32 tensors) into named arrays. */
export async function readSafetensors(path: string): Promise<Map<string, Float32Array>> {
  const bytes = await Deno.readFile(path);
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const base = 8 + headerLength, out = new Map<string, Float32Array>();
  for (
    const [name, t] of Object.entries(header) as [
      string,
      { dtype: string; data_offsets: number[] },
    ][]
  ) {
    if (name === "__metadata__") continue;
    if (t.dtype !== "F32") throw new Error(`${path}: ${name} is ${t.dtype}; only F32 is read`);
    const [a, b] = t.data_offsets;
    out.set(name, new Float32Array(bytes.slice(base + a, base + b).buffer));
  }
  return out;
}
