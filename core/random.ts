/**
 * A small counter-based PRNG (SplitMix32 mixing) that gives the same stream on every platform,
 * for seeded sampling and for the world generator.
 *
 *   const r = rng(42); r(); // a float in [0, 1)
 */
export function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}
