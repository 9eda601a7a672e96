/**
 * Dynamic batching across requests: concurrent calls to one model share one forward pass.
 *
 * There is no waiting window: a call that finds the model idle runs at once (a lone request pays
 * nothing), and the calls that arrive while a batch runs are gathered into the next one, up to
 * `maxBatch` items; after a batch, the callers it answered get one turn of the event loop to join
 * the next (a step decoder's next step). The busier the model, the larger its batches. A call whose signal aborts
 * before its batch starts leaves it; a batch that fails fails the calls in it.
 *
 *   const images = new Batcher((pixels) => vision(pixels), { maxBatch: 32 });
 *   const [embedding] = await images.submit([pixels], request.signal);
 */

export interface BatcherOptions {
  /** Items per forward pass (a single call with more runs alone, whole). */
  maxBatch: number;
  /** Told each batch's size and the number of calls in it (for metrics and tests). */
  onBatch?: (items: number, calls: number) => void;
}

interface Call<I, O> {
  items: I[];
  resolve(out: O[]): void;
  reject(e: unknown): void;
  signal?: AbortSignal;
}

export class Batcher<I, O> {
  #queue: Call<I, O>[] = [];
  #running = false;

  constructor(
    private run: (items: I[]) => Promise<O[]>,
    private options: BatcherOptions,
  ) {}

  /** `items`' outputs, in order, computed in a batch with whatever else is waiting. */
  submit(items: I[], signal?: AbortSignal): Promise<O[]> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (!items.length) return Promise.resolve([]);
    return new Promise<O[]>((resolve, reject) => {
      this.#queue.push({ items, resolve, reject, signal });
      if (!this.#running) this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#queue.length) {
        const answered = await this.#runNext();
        // Callers just answered may submit again at once (a decoder's next step): one turn of
        // the event loop lets them join the next batch, instead of each stream running alone
        // between the others' batches — also when none is waiting yet, or the first to come
        // back would find the model idle and run alone, and the streams would stay split.
        if ((this.#queue.length || answered > 1) && this.options.maxBatch > 1) {
          await new Promise((r) => setTimeout(r, 0));
        }
      }
    } finally {
      this.#running = false;
    }
  }

  /** Takes calls in arrival order while they fit in one batch, runs them as one; how many. */
  async #runNext(): Promise<number> {
    const calls: Call<I, O>[] = [];
    let size = 0;
    while (this.#queue.length) {
      const next = this.#queue[0];
      if (next.signal?.aborted) {
        this.#queue.shift()!.reject(next.signal.reason);
        continue;
      }
      if (calls.length && size + next.items.length > this.options.maxBatch) break;
      calls.push(this.#queue.shift()!);
      size += next.items.length;
    }
    if (!calls.length) return 0;
    this.options.onBatch?.(size, calls.length);
    try {
      const out = await this.run(calls.flatMap((c) => c.items));
      let at = 0;
      for (const c of calls) c.resolve(out.slice(at, at += c.items.length));
    } catch (e) {
      for (const c of calls) c.reject(e);
    }
    return calls.length;
  }
}
