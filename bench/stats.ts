/** The median of a benchmark's rounds: machines here are shared, so one slow round must not count. */
export const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[xs.length >> 1];
