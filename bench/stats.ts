/** The median of a benchmark's rounds: machines here are shared, so one slow round must not count. */
export const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[xs.length >> 1];

/** The q-quantile (0..1) of `xs`, by linear interpolation between order statistics. */
export function quantile(xs: number[], q: number): number {
  const s = xs.toSorted((a, b) => a - b);
  const at = (s.length - 1) * q, lo = Math.floor(at), hi = Math.ceil(at);
  return s[lo] + (s[hi] - s[lo]) * (at - lo);
}

/** `median [p25–p75]` of `xs`, to `digits` decimals: the spread beside the centre. */
export function spread(xs: number[], digits = 2): string {
  const f = (v: number) => v.toFixed(digits);
  return `${f(quantile(xs, 0.5))} [${f(quantile(xs, 0.25))}–${f(quantile(xs, 0.75))}]`;
}
