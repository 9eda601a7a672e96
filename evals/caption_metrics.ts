/**
 * Caption metrics against several references: corpus BLEU (Papineni et al. 2002) and METEOR
 * (Banerjee & Lavie 2005) with exact and stem matching and the fragmentation penalty.
 */

export const words = (s: string) =>
  s.toLowerCase().replace(/\s*\.\s*$/, "").split(/\s+/).filter(Boolean);

function ngrams(ws: string[], n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + n <= ws.length; i++) {
    const k = ws.slice(i, i + n).join(" ");
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

/**
 * Corpus-level BLEU-1..maxN: clipped n-gram precisions summed over the corpus, geometric mean
 * with uniform weights, and the brevity penalty from the reference length closest to each
 * candidate (the shorter one on ties).
 */
export function corpusBleu(candidates: string[], references: string[][], maxN = 4): number[] {
  const match = new Array(maxN).fill(0), total = new Array(maxN).fill(0);
  let c = 0, r = 0;
  candidates.forEach((cand, i) => {
    const cw = words(cand);
    const refs = references[i].map(words);
    c += cw.length;
    r += refs.map((w) =>
      w.length
    ).sort((a, b) => Math.abs(a - cw.length) - Math.abs(b - cw.length) || a - b)[0];
    for (let n = 1; n <= maxN; n++) {
      const maxRef = new Map<string, number>();
      for (const rw of refs) {
        for (const [g, k] of ngrams(rw, n)) {
          maxRef.set(g, Math.max(maxRef.get(g) ?? 0, k));
        }
      }
      for (const [g, k] of ngrams(cw, n)) {
        match[n - 1] += Math.min(k, maxRef.get(g) ?? 0);
      }
      total[n - 1] += Math.max(0, cw.length - n + 1);
    }
  });
  const bp = c === 0 ? 0 : c > r ? 1 : Math.exp(1 - r / c);
  const scores: number[] = [];
  let logSum = 0;
  for (let n = 1; n <= maxN; n++) {
    const p = total[n - 1] ? match[n - 1] / total[n - 1] : 0;
    logSum += p > 0 ? Math.log(p) : -Infinity;
    scores.push(bp * Math.exp(logSum / n));
  }
  return scores;
}

/**
 * A light suffix stemmer for METEOR's stem stage (the world's words only inflect by plural
 * -s/-es and -ing/-ed): "shapes" → "shape", "circles" → "circle". Porter's full algorithm is not
 * needed for this vocabulary.
 */
export function stem(w: string): string {
  if (w.length > 4 && w.endsWith("ing")) return w.slice(0, -3);
  if (w.length > 3 && w.endsWith("ed")) return w.slice(0, -2);
  if (w.length > 3 && w.endsWith("es") && /(s|x|z|ch|sh)es$/.test(w)) return w.slice(0, -2);
  if (w.length > 2 && w.endsWith("s") && !w.endsWith("ss")) return w.slice(0, -1);
  return w;
}

/** METEOR of one candidate against one reference: alignment, F-mean (recall-weighted), penalty. */
export function meteorSentence(candidate: string, reference: string): number {
  const c = words(candidate), r = words(reference);
  const align = new Array<number>(c.length).fill(-1); // candidate index → reference index
  const used = new Set<number>();
  for (const key of [(w: string) => w, stem]) {
    for (let i = 0; i < c.length; i++) {
      if (align[i] >= 0) continue;
      // Among equal words, take the one whose relative position is closest: fewer crossings.
      let best = -1;
      for (let j = 0; j < r.length; j++) {
        if (used.has(j) || key(r[j]) !== key(c[i])) continue;
        const d = (j: number) => Math.abs(j / r.length - i / c.length);
        if (best < 0 || d(j) < d(best)) best = j;
      }
      if (best >= 0) align[i] = best, used.add(best);
    }
  }
  const m = used.size;
  if (m === 0) return 0;
  let chunks = 0;
  for (let i = 0; i < c.length; i++) {
    if (align[i] < 0) continue;
    if (i === 0 || align[i - 1] < 0 || align[i - 1] !== align[i] - 1) chunks++;
  }
  const p = m / c.length, rec = m / r.length;
  const fmean = (10 * p * rec) / (rec + 9 * p);
  return fmean * (1 - 0.5 * (chunks / m) ** 3);
}

/** Corpus METEOR: each candidate scored against its best reference, averaged. */
export function corpusMeteor(candidates: string[], references: string[][]): number {
  if (candidates.length === 0) return 0;
  const s = candidates.map((cand, i) =>
    Math.max(...references[i].map((ref) => meteorSentence(cand, ref)))
  );
  return s.reduce((a, b) => a + b, 0) / s.length;
}
