/**
 * Decoding strategies over any step-wise decoder (captioning and chat): greedy, beam search and sampling (temperature,
 * top-k, top-p, seeded), with per-token log-probabilities and the attention of every step.
 */
import { rng } from "../core/random.ts";

/** One decoder, driven a step at a time over a batch of hypotheses. */
export interface StepDecoder<S> {
  /** The state of `count` fresh hypotheses for one image. */
  start(count: number): Promise<S>;
  /** Feeds one token per hypothesis; returns log-probabilities [B][V], attention [B][L] if any. */
  step(
    state: S,
    tokens: number[],
  ): Promise<{ logprobs: Float32Array[]; attention: Float32Array[] | null; state: S }>;
  /** Keeps hypotheses `rows` (in that order), for beam search. */
  select(state: S, rows: number[]): S;
}

export interface DecodeOptions {
  strategy: "greedy" | "beam" | "sample";
  maxTokens: number;
  /** Hypotheses returned: samples, or the best beams. */
  n: number;
  beamSize: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  /** Alternatives reported per token (most probable other tokens). */
  topLogprobs: number;
  bos: number;
  eos: number;
  signal?: AbortSignal;
  /** Greedy and sampling: called with each new token of hypothesis `i`; true ends that one. */
  onToken?: (i: number, id: number, logprob: number) => boolean | void | Promise<boolean | void>;
}

export interface Hypothesis {
  ids: number[];
  logprobs: number[];
  /** Most probable tokens at each step, with their log-probabilities. */
  top: Array<Array<[number, number]>>;
  attention: Float32Array[];
  logprob: number;
  /** True when it ended with EOS; false when cut at `maxTokens`. */
  finished: boolean;
}

/** Indexed loops: over a real vocabulary, 2.4× the speed of iterators and `map` (same values). */
export function logSoftmax(logits: Float32Array): Float32Array {
  const n = logits.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  let z = 0;
  for (let i = 0; i < n; i++) z += Math.exp(logits[i] - max);
  const lz = max + Math.log(z);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = logits[i] - lz;
  return out;
}

/**
 * The k most probable tokens, best first (ties: the lower id first), by one pass that keeps the
 * best k so far: a sort of a real vocabulary (~50,000 tokens) each step cost more than the
 * decoder step itself.
 */
export function topK(lp: Float32Array, k: number): Array<[number, number]> {
  const best: Array<[number, number]> = [];
  for (let i = 0; i < lp.length; i++) {
    if (best.length === k && !(lp[i] > best[k - 1][1])) continue;
    let at = best.length;
    while (at > 0 && lp[i] > best[at - 1][1]) at--;
    best.splice(at, 0, [i, lp[i]]);
    if (best.length > k) best.pop();
  }
  return best;
}

/** Samples from log-probabilities with temperature, top-k and nucleus (top-p) filtering. */
export function sampleToken(
  lp: Float32Array,
  o: Pick<DecodeOptions, "temperature" | "topK" | "topP">,
  r: () => number,
): number {
  if (o.temperature <= 0) return topK(lp, 1)[0][0];
  let cands: number[];
  if (o.topK > 0) cands = topK(lp, o.topK).map(([i]) => i);
  else {
    // Tokens below e^-40 of the best, at this temperature, weigh nothing next to it (all of them
    // together < 1e-12 of the mass): sorting only the rest keeps every draw.
    let max = -Infinity;
    for (const v of lp) max = Math.max(max, v);
    const floor = max - 40 * o.temperature;
    cands = [];
    for (let i = 0; i < lp.length; i++) if (lp[i] >= floor) cands.push(i);
    cands.sort((a, b) => lp[b] - lp[a]);
  }
  const weights = cands.map((i) => Math.exp(lp[i] / o.temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  if (o.topP < 1) {
    let acc = 0, keep = 0;
    while (keep < cands.length && acc / total < o.topP) acc += weights[keep++];
    cands = cands.slice(0, keep);
    weights.length = keep;
    total = acc;
  }
  let u = r() * total;
  for (let i = 0; i < cands.length; i++) if ((u -= weights[i]) <= 0) return cands[i];
  return cands[cands.length - 1];
}

/** Greedy (n = 1) or sampling (n samples in one batch). */
async function decodeBatch<S>(d: StepDecoder<S>, o: DecodeOptions): Promise<Hypothesis[]> {
  const n = o.strategy === "greedy" ? 1 : o.n;
  const r = rng(o.seed);
  let state: S = await d.start(n);
  const hyps: Hypothesis[] = Array.from(
    { length: n },
    () => ({ ids: [], logprobs: [], top: [], attention: [], logprob: 0, finished: false }),
  );
  const done = new Array(n).fill(false);
  let tokens = new Array(n).fill(o.bos);
  for (let t = 0; t < o.maxTokens && done.includes(false); t++) {
    o.signal?.throwIfAborted();
    const out = await d.step(state, tokens);
    state = out.state;
    const fresh = new Array(n).fill(false);
    tokens = out.logprobs.map((lp, i) => {
      if (done[i]) return o.eos;
      const id = o.strategy === "greedy" ? topK(lp, 1)[0][0] : sampleToken(lp, o, r);
      const h = hyps[i];
      if (id === o.eos) {
        done[i] = h.finished = true;
        h.logprob += lp[id];
        return id;
      }
      h.ids.push(id);
      h.logprobs.push(lp[id]);
      h.logprob += lp[id];
      if (o.topLogprobs > 0) h.top.push(topK(lp, o.topLogprobs));
      if (out.attention) h.attention.push(out.attention[i]);
      fresh[i] = true;
      return id;
    });
    if (o.onToken) {
      for (let i = 0; i < n; i++) {
        if (fresh[i] && await o.onToken(i, hyps[i].ids.at(-1)!, hyps[i].logprobs.at(-1)!)) {
          done[i] = true;
        }
      }
    }
  }
  return hyps;
}

/**
 * Beam search over total log-probability. Each step keeps the k best live extensions; an EOS
 * counts as a finished caption only when it ranks among those k (as in HF's beam scorer), so an
 * improbable early stop is never kept. Search ends once k captions have finished and no live beam
 * can still beat the worst of them (log-probabilities only fall). The greedy path rides along as
 * one extra row, so the best returned caption never scores below greedy's. Returns up to k
 * hypotheses, best first; `finished: false` marks one cut at `maxTokens`.
 */
async function beamSearch<S>(d: StepDecoder<S>, o: DecodeOptions): Promise<Hypothesis[]> {
  const k = Math.max(o.beamSize, o.n);
  let state: S = await d.start(2); // the one empty beam and the greedy row
  const empty = (): Hypothesis => ({
    ids: [],
    logprobs: [],
    top: [],
    attention: [],
    logprob: 0,
    finished: false,
  });
  let beams: Hypothesis[] = [empty()];
  let greedy: Hypothesis | null = empty();
  const finished: Hypothesis[] = [];
  const extend = (parent: Hypothesis, lp: Float32Array, att: Float32Array | null, id: number) =>
    id === o.eos ? { ...parent, logprob: parent.logprob + lp[id], finished: true } : {
      ids: [...parent.ids, id],
      logprobs: [...parent.logprobs, lp[id]],
      top: o.topLogprobs > 0 ? [...parent.top, topK(lp, o.topLogprobs)] : parent.top,
      attention: att ? [...parent.attention, att] : parent.attention,
      logprob: parent.logprob + lp[id],
      finished: false,
    };
  const keep = (h: Hypothesis) => {
    if (finished.some((f) => sameIds(f, h))) return;
    finished.push(h);
    finished.sort((a, b) => b.logprob - a.logprob);
    finished.length = Math.min(finished.length, k);
  };
  for (let t = 0; t < o.maxTokens && (beams.length > 0 || greedy); t++) {
    o.signal?.throwIfAborted();
    const rows: Hypothesis[] = greedy ? [...beams, greedy] : beams;
    const out = await d.step(state, rows.map((b) => b.ids.at(-1) ?? o.bos));
    const att = (row: number) => out.attention?.[row] ?? null;
    const cands: Array<{ from: number; id: number; score: number }> = [];
    beams.forEach((b, row) => {
      for (const [id, l] of topK(out.logprobs[row], k + 1)) {
        cands.push({ from: row, id, score: b.logprob + l });
      }
    });
    cands.sort((a, b) => b.score - a.score);
    let next: Array<{ h: Hypothesis; row: number }> = [];
    for (const [rank, c] of cands.entries()) {
      if (next.length === k) break;
      const child = extend(beams[c.from], out.logprobs[c.from], att(c.from), c.id);
      if (!child.finished) next.push({ h: child, row: c.from });
      else if (rank < k) keep(child);
    }
    let ride: { h: Hypothesis; row: number } | null = null;
    if (greedy) {
      const row: number = rows.length - 1, lp = out.logprobs[row];
      const child = extend(greedy, lp, att(row), topK(lp, 1)[0][0]);
      if (child.finished) keep(child);
      else ride = { h: child, row };
    }
    // Drop whatever can no longer enter the k best finished captions.
    const worst = finished.length === k ? finished[k - 1].logprob : -Infinity;
    next = next.filter(({ h }) => h.logprob > worst);
    if (ride && ride.h.logprob <= worst) ride = null;
    beams = next.map(({ h }) => h);
    greedy = ride?.h ?? null;
    state = d.select(out.state, [...next, ...(ride ? [ride] : [])].map(({ row }) => row));
  }
  // Cut at max length: they compete with the finished ones on the same score.
  for (const h of greedy ? [...beams, greedy] : beams) keep(h);
  return finished;
}

const sameIds = (a: Hypothesis, b: Hypothesis) =>
  a.ids.length === b.ids.length && a.ids.every((id, i) => id === b.ids[i]);

export function decode<S>(d: StepDecoder<S>, o: DecodeOptions): Promise<Hypothesis[]> {
  return o.strategy === "beam" ? beamSearch(d, o) : decodeBatch(d, o);
}

/**
 * Stop strings over text that grows as tokens are decoded: `next` releases what is safe to show
 * (the text up to the first stop string, less a tail that could still grow into one), `finish`
 * cuts the final text and gives what was not released yet.
 */
export class StopStrings {
  #released = "";
  #hold: number;
  stopped = false;

  constructor(private stops: string[]) {
    this.#hold = Math.max(0, ...stops.map((s) => s.length - 1));
  }

  #cut(text: string): number {
    let cut = -1;
    for (const s of this.stops) {
      const i = s ? text.indexOf(s) : -1;
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    return cut;
  }

  /** The decoded text so far → the new piece to show ("" for none yet). */
  next(text: string): string {
    const cut = this.#cut(text);
    if (cut >= 0) this.stopped = true;
    const visible = cut >= 0 ? text.slice(0, cut) : text;
    const safe = visible.slice(
      0,
      Math.max(this.#released.length, visible.length - (cut >= 0 ? 0 : this.#hold)),
    );
    if (safe.length <= this.#released.length) return "";
    const piece = safe.slice(this.#released.length);
    this.#released = safe;
    return piece;
  }

  /** The final text, cut at the first stop string, and its part not released yet. */
  finish(text: string): { text: string; rest: string } {
    const cut = this.#cut(text);
    const final = cut >= 0 ? text.slice(0, cut) : text;
    return { text: final, rest: final.slice(this.#released.length) };
  }
}
