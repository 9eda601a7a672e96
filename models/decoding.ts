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
}

export function logSoftmax(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let z = 0;
  for (const v of logits) z += Math.exp(v - max);
  const lz = max + Math.log(z);
  return logits.map((v) => v - lz);
}

function topK(lp: Float32Array, k: number): Array<[number, number]> {
  const idx = Array.from(lp.keys()).sort((a, b) => lp[b] - lp[a]).slice(0, k);
  return idx.map((i) => [i, lp[i]]);
}

/** Samples from log-probabilities with temperature, top-k and nucleus (top-p) filtering. */
export function sampleToken(
  lp: Float32Array,
  o: Pick<DecodeOptions, "temperature" | "topK" | "topP">,
  r: () => number,
): number {
  if (o.temperature <= 0) return topK(lp, 1)[0][0];
  let cands = Array.from(lp.keys()).sort((a, b) => lp[b] - lp[a]);
  if (o.topK > 0) cands = cands.slice(0, o.topK);
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
    () => ({ ids: [], logprobs: [], top: [], attention: [], logprob: 0 }),
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
        done[i] = true;
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

/** Beam search; returns every finished beam, best first (by mean log-probability per token). */
async function beamSearch<S>(d: StepDecoder<S>, o: DecodeOptions): Promise<Hypothesis[]> {
  const k = Math.max(o.beamSize, o.n);
  let state: S = await d.start(1);
  let beams: Hypothesis[] = [{ ids: [], logprobs: [], top: [], attention: [], logprob: 0 }];
  const finished: Hypothesis[] = [];
  for (let t = 0; t < o.maxTokens && beams.length > 0; t++) {
    o.signal?.throwIfAborted();
    const out = await d.step(state, beams.map((b) => b.ids.at(-1) ?? o.bos));
    const cands: Array<{ from: number; id: number; score: number }> = [];
    out.logprobs.forEach((lp, b) => {
      for (const [id, l] of topK(lp, k)) cands.push({ from: b, id, score: beams[b].logprob + l });
    });
    cands.sort((a, b) => b.score - a.score);
    const next: Hypothesis[] = [], rows: number[] = [];
    for (const c of cands) {
      const parent = beams[c.from], lp = out.logprobs[c.from];
      const child: Hypothesis = {
        ids: parent.ids,
        logprobs: parent.logprobs,
        top: parent.top,
        attention: parent.attention,
        logprob: c.score,
      };
      if (c.id === o.eos) {
        finished.push(child);
      } else if (next.length < k) {
        child.ids = [...parent.ids, c.id];
        child.logprobs = [...parent.logprobs, lp[c.id]];
        child.top = o.topLogprobs > 0 ? [...parent.top, topK(lp, o.topLogprobs)] : parent.top;
        child.attention = out.attention
          ? [...parent.attention, out.attention[c.from]]
          : parent.attention;
        next.push(child);
        rows.push(c.from);
      }
    }
    // Like HF's early stopping: done once k beams have finished.
    beams = finished.length >= k ? [] : next;
    state = d.select(out.state, rows);
  }
  finished.push(...beams); // unfinished at max length
  return finished.sort((a, b) => mean(b) - mean(a));
}

const mean = (h: Hypothesis) => h.logprob / (h.ids.length + 1);

export function decode<S>(d: StepDecoder<S>, o: DecodeOptions): Promise<Hypothesis[]> {
  return o.strategy === "beam" ? beamSearch(d, o) : decodeBatch(d, o);
}
