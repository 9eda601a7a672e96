/**
 * A session whose concurrent runs share one: calls that arrive while a run is under way are
 * gathered (core/batcher.ts) and those whose inputs agree in every dimension but the first are
 * concatenated along it, run once, and each gets its own rows of every output back.
 *
 * That is continuous batching for step decoders whose steps are whole runs: a caption's next
 * step joins whichever other captions are stepping, and leaves when its caption ends; each keeps
 * its own state, options and cancellation, because those live in its caller. Inputs named in
 * `shared` (a scalar flag such as `use_cache_branch`) are not batched: calls merge only where
 * they hold the same value. A call alone runs exactly as it would on the session.
 */
import { Batcher } from "./batcher.ts";
import type { Tensor } from "./backend.ts";
import type { Feeds, Outputs, Session, SessionRegistry } from "./sessions.ts";

/** What a step decoder needs of a session. */
export type Runs = Pick<Session, "run" | "inputNames" | "outputNames">;

type Data = Float32Array | BigInt64Array | Int32Array | Uint8Array;

export interface BatchedSessionOptions {
  /** Calls per merged run. */
  maxBatch: number;
  /** Inputs that are not batched: calls merge where they hold the same value. */
  shared?: string[];
  /** Told the rows and calls of each merged run (metrics, tests). */
  onMerge?: (rows: number, calls: number) => void;
}

export class BatchedSession implements Runs {
  #calls: Batcher<Feeds, Outputs>;
  #shared: Set<string>;

  constructor(
    private sessions: SessionRegistry,
    private session: Session,
    private options: BatchedSessionOptions,
  ) {
    this.#shared = new Set(options.shared);
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
    const groups = Map.groupBy(
      calls.map((feeds, i) => ({ feeds, i })),
      ({ feeds }) => this.#key(feeds),
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

  /** Calls with equal keys concatenate: equal trailing dimensions, equal shared values. */
  #key(feeds: Feeds): string {
    return Object.keys(feeds).sort().map((name) => {
      const t = feeds[name];
      return this.#shared.has(name)
        ? `${name}=${t.dims}:${Array.from(t.data as Data, String)}`
        : `${name}:${t.type}:${t.dims.slice(1)}`;
    }).join("|");
  }

  async #runMerged(calls: Feeds[]): Promise<Outputs[]> {
    const batched = Object.keys(calls[0]).filter((n) => !this.#shared.has(n));
    const rows = calls.map((f) => f[batched[0]].dims[0]);
    const total = rows.reduce((a, b) => a + b, 0);
    const feeds: Feeds = {};
    for (const name of Object.keys(calls[0])) {
      const first = calls[0][name];
      feeds[name] = this.#shared.has(name) ? first : this.sessions.tensor(
        first.type as Parameters<SessionRegistry["tensor"]>[0],
        concat(calls.map((f) => f[name].data as Data)),
        [total, ...first.dims.slice(1)],
      );
    }
    this.options.onMerge?.(total, calls.length);
    const merged = await this.session.run(feeds);
    let at = 0;
    return rows.map((n) => {
      const mine: Outputs = {};
      for (const [name, t] of Object.entries(merged)) mine[name] = this.#rows(t, at, n, total);
      at += n;
      return mine;
    });
  }

  /** Rows [from, from + n) of a batch-first output. */
  #rows(t: Tensor, from: number, n: number, total: number): Tensor {
    const size = (t.data as Data).length / total;
    const data = (t.data as Data).slice(from * size, (from + n) * size);
    return this.sessions.tensor(
      t.type as Parameters<SessionRegistry["tensor"]>[0],
      data,
      [n, ...t.dims.slice(1)],
    );
  }
}

/** Arrays of one type, one after another. */
function concat(parts: Data[]): Data {
  const out = new (parts[0].constructor as new (n: number) => Data)(
    parts.reduce((n, p) => n + p.length, 0),
  );
  let at = 0;
  for (const p of parts) (out as Float32Array).set(p as Float32Array, at), at += p.length;
  return out;
}
