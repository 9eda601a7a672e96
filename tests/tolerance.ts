/** How far apart two arrays of numbers are, for tests that compare backends, kernels and libraries. */
import assert from "node:assert/strict";

type Numbers = ArrayLike<number>;

/** The largest |a[i] − b[i]|; the lengths must match. */
export function maxAbsDiff(a: Numbers, b: Numbers): number {
  assert.equal(a.length, b.length, "lengths differ");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** The mean |a[i] − b[i]|; the lengths must match. */
export function meanAbsDiff(a: Numbers, b: Numbers): number {
  assert.equal(a.length, b.length, "lengths differ");
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}
