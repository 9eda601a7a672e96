/** Small vector helpers shared by pipelines. */

/** A copy of `v` scaled to unit L2 norm (a zero vector stays zero). */
export function l2normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s);
  return n > 0 ? v.map((x) => x / n) : v.slice();
}

export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Numerically stable softmax. */
export function softmax(xs: number[]): number[] {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

/** Splits a [B, ...] tensor's data into B rows. */
export function rowsOf(t: { dims: readonly number[]; data: unknown }): Float32Array[] {
  const b = t.dims[0], data = t.data as Float32Array, w = b ? data.length / b : 0;
  return Array.from({ length: b }, (_, i) => data.slice(i * w, (i + 1) * w));
}

/** Concatenates equal-length rows into one [B, ...] buffer. */
export function stack(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.length * (rows[0]?.length ?? 0));
  rows.forEach((r, i) => out.set(r, i * r.length));
  return out;
}
