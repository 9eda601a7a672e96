/**
 * A session whose concurrent runs share one: calls that arrive while a run is under way are
 * gathered (core/batcher.ts) and those whose inputs agree in every dimension but the first are
 * concatenated along it, run once, and each gets its own rows of every output back.
 *
 * That is continuous batching for step decoders: a caption's or a conversation's next step joins
 * whichever others are stepping, and leaves when it ends; each keeps its own state, options and
 * cancellation, because those live in its caller. A call alone runs exactly as it would on the
 * session, and so does any call whose tensors are in GPU buffers.
 *
 * - `shared` inputs (a scalar flag such as `use_cache_branch`) are not batched: calls merge only
 *   where they hold the same value.
 * - `cache`: decoders with a KV cache (`past_key_values.*` in, `present.*` out, `attention_mask`)
 *   whose positions come from `position_ids` merge calls whose caches differ in length: each
 *   cache is left-padded (axis 2) to the longest, its mask rows get zeros there, so every row
 *   computes what it would alone; each `present.*`, and each output named in `cache.lastAxis`
 *   (self-attention probabilities, whose last axis is the sequence), is cut back to the call's
 *   own length. Without position_ids, calls merge only at equal lengths.
 */
import { Batcher } from "./batcher.ts";
import type { Tensor } from "./backend.ts";
import type { Feeds, Outputs, Session, SessionRegistry } from "./sessions.ts";

/** What a step decoder needs of a session. */
export type Runs = Pick<Session, "run" | "inputNames" | "outputNames">;

type Data = Float32Array | BigInt64Array | Int32Array | Uint8Array;
type DataType = Parameters<SessionRegistry["tensor"]>[0];

export interface BatchedSessionOptions {
  /** Calls per merged run. */
  maxBatch: number;
  /** Inputs that are not batched: calls merge where they hold the same value. */
  shared?: string[];
  /** Merge calls whose KV caches differ in length (see above). */
  cache?: { lastAxis?: string[] };
  /** Told the rows and calls of each merged run (metrics, tests). */
  onMerge?: (rows: number, calls: number) => void;
}

const PAST = "past_key_values.", PRESENT = "present.", MASK = "attention_mask";

export class BatchedSession implements Runs {
  #calls: Batcher<Feeds, Outputs>;
  #shared: Set<string>;
  #lastAxis: Set<string>;
  /** Caches of different lengths merge (the session reads position_ids). */
  #pads: boolean;
  /** The last merged run's outputs and the calls' cuts of them (see #keptCache). */
  #kept?: { merged: Outputs; calls: Outputs[] };

  constructor(
    private sessions: SessionRegistry,
    private session: Session,
    private options: BatchedSessionOptions,
  ) {
    this.#shared = new Set(options.shared);
    this.#lastAxis = new Set(options.cache?.lastAxis);
    this.#pads = !!options.cache && session.inputNames.includes("position_ids");
    this.#calls = new Batcher((calls) => this.#runAll(calls), { maxBatch: options.maxBatch });
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }
  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** The session's outputs for `feeds`, computed with whatever other calls can join. */
  async run(feeds: Feeds, signal?: AbortSignal): Promise<Outputs> {
    return (await this.#calls.submit([feeds], signal))[0];
  }

  /** Calls that can be concatenated run together; the others in their own groups. */
  async #runAll(calls: Feeds[]): Promise<Outputs[]> {
    if (calls.length === 1) { // a lone call: no keys, and no merged caches to keep for it
      this.#kept = undefined;
      return [await this.session.run(calls[0])];
    }
    const groups = Map.groupBy(
      calls.map((feeds, i) => ({ feeds, i })),
      ({ feeds, i }) => this.#key(feeds) ?? `alone ${i}`,
    );
    const out: Outputs[] = new Array(calls.length);
    for (const group of groups.values()) {
      const results = group.length === 1
        ? [await this.session.run(group[0].feeds)]
        : await this.#runMerged(group.map(({ feeds }) => feeds));
      group.forEach(({ i }, k) => out[i] = results[k]);
    }
    return out;
  }

  /**
   * Calls with equal keys concatenate: equal dimensions but the first (and the cache length,
   * where caches pad), equal shared values. Null: the call runs alone (GPU buffers).
   */
  #key(feeds: Feeds): string | null {
    const parts: string[] = [];
    for (const name of Object.keys(feeds).sort()) {
      const t = feeds[name];
      if (t.location && t.location !== "cpu") return null;
      let dims = t.dims.slice(1);
      if (this.#pads && name.startsWith(PAST)) dims = [dims[0], dims[2]];
      if (this.#pads && name === MASK) dims = [];
      parts.push(
        this.#shared.has(name)
          ? `${name}=${t.dims}:${Array.from(t.data as Data, String)}`
          : `${name}:${t.type}:${dims}`,
      );
    }
    return parts.join("|");
  }

  async #runMerged(calls: Feeds[]): Promise<Outputs[]> {
    const batched = Object.keys(calls[0]).filter((n) => !this.#shared.has(n));
    const rows = calls.map((f) => f[batched[0]].dims[0]);
    const total = rows.reduce((a, b) => a + b, 0);
    const past = batched.find((n) => n.startsWith(PAST));
    // Each call's cache length, and the zeros it is padded with on the left.
    const lengths = calls.map((f) => past && this.#pads ? f[past].dims[2] : 0);
    const longest = Math.max(...lengths);
    const pads = lengths.map((n) => longest - n);
    const feeds: Feeds = {};
    for (const name of Object.keys(calls[0])) {
      const first = calls[0][name];
      if (this.#shared.has(name)) {
        feeds[name] = first;
        continue;
      }
      const kept = this.#keptCache(name, calls);
      if (kept) {
        feeds[name] = kept;
        continue;
      }
      const axis = this.#sequenceAxis(name, first);
      const dims = [total, ...first.dims.slice(1)];
      if (axis > 0) dims[axis] += longest - lengths[0];
      const data = new (first.data.constructor as new (n: number) => Data)(
        dims.reduce((a, b) => a * b, 1),
      );
      let row = 0;
      calls.forEach((f, k) => {
        const t = f[name];
        copy(
          data,
          dims,
          { row, start: pads[k] },
          t.data as Data,
          t.dims,
          { row: 0, start: 0 },
          axis,
        );
        row += rows[k];
      });
      feeds[name] = this.sessions.tensor(first.type as DataType, data, dims);
    }
    this.options.onMerge?.(total, calls.length);
    this.#kept = undefined;
    const merged = await this.session.run(feeds);
    let at = 0;
    const mine = rows.map((n, k) => {
      const own: Outputs = {};
      for (const [name, t] of Object.entries(merged)) {
        const axis = this.#sequenceAxis(name, t);
        own[name] = this.#cut(t, at, n, axis, pads[k]);
      }
      at += n;
      return own;
    });
    if (this.#pads) this.#kept = { merged, calls: mine };
    return mine;
  }

  /**
   * The last merged run's `present.*` for input `name` when these calls are exactly the rows it
   * was cut into, in order: then that tensor is already their padded batch (every cache one
   * longer, the pads the same) and the copy is skipped — the steady state of streams stepping
   * together. A caller that reorders or rebuilds its cache (beam search) hands back new tensors,
   * which are copied as usual.
   */
  #keptCache(name: string, calls: Feeds[]): Tensor | undefined {
    const kept = this.#kept;
    if (!kept || !name.startsWith(PAST) || kept.calls.length !== calls.length) return undefined;
    const present = PRESENT + name.slice(PAST.length);
    const same = calls.every((f, k) => f[name] === kept.calls[k][present]);
    return same ? kept.merged[present] : undefined;
  }

  /**
   * Where caches pad, the sequence axis of a tensor that has one: axis 2 of a past or present
   * [B, heads, S, D], the last of the mask and of the maps in `cache.lastAxis`; else -1.
   */
  #sequenceAxis(name: string, t: Tensor): number {
    if (!this.#pads) return -1;
    if (name.startsWith(PAST) || name.startsWith(PRESENT)) return 2;
    return name === MASK || this.#lastAxis.has(name) ? t.dims.length - 1 : -1;
  }

  /**
   * Rows [from, from + n) of a batch-first output, and along `axis` (if any) from `start` on,
   * copied out when first read: streams stepping together hand their caches back unread
   * (#keptCache), so in the steady state no cache is copied at all (sixteen SmolVLM-256M caches
   * of 150 positions are 111 MB a step).
   */
  #cut(t: Tensor, from: number, n: number, axis: number, start: number): Tensor {
    const dims = [n, ...t.dims.slice(1)];
    if (axis > 0) dims[axis] -= start;
    return this.sessions.deferredTensor(t.type as DataType, dims, () => {
      const src = t.data as Data;
      const out = new (src.constructor as new (n: number) => Data)(dims.reduce((a, b) => a * b, 1));
      copy(out, dims, { row: 0, start: 0 }, src, t.dims, { row: from, start }, axis);
      return out;
    });
  }
}

/** Blocks of a tensor around `axis`: how many come before it (per row) and their size after it. */
function blocks(dims: readonly number[], axis: number) {
  const size = (from: number, to: number) => dims.slice(from, to).reduce((a, b) => a * b, 1);
  return axis > 0
    ? { outer: size(1, axis), length: dims[axis], inner: size(axis + 1, dims.length) }
    : { outer: 1, length: 1, inner: size(1, dims.length) };
}

/**
 * Copies rows of `src` into `dst` (as many as the shorter has from its `row` on), each along
 * `axis` from its `start` on, as far as the shorter of the two reaches: padding a call's rows into
 * a batch, or cutting them back out. With no axis (-1), whole rows.
 */
function copy(
  dst: Data,
  dstDims: readonly number[],
  to: { row: number; start: number },
  src: Data,
  srcDims: readonly number[],
  from: { row: number; start: number },
  axis: number,
) {
  const d = blocks(dstDims, axis), s = blocks(srcDims, axis);
  const [dStart, sStart] = axis > 0 ? [to.start, from.start] : [0, 0];
  const chunk = Math.min(d.length - dStart, s.length - sStart) * d.inner;
  const rows = Math.min(dstDims[0] - to.row, srcDims[0] - from.row);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < d.outer; o++) {
      const at = (((from.row + r) * s.outer + o) * s.length + sStart) * s.inner;
      (dst as Float32Array).set(
        (src as Float32Array).subarray(at, at + chunk),
        (((to.row + r) * d.outer + o) * d.length + dStart) * d.inner,
      );
    }
  }
}
