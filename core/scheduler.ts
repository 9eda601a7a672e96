/**
 * Admission control: per model, at most `concurrency` jobs run and at most `maxQueue` wait.
 * A job that finds the queue full is refused at once (429, with a retry hint); one that waited
 * past `queueTimeoutMs` gives up (503); one whose client went away leaves the queue. Each model
 * has its own queue, so a short job of one model never waits behind long jobs of another.
 *
 *   const release = await scheduler.admit("sd-tiny", request.signal);
 *   try { ... } finally { release(); }
 */
import { ApiError } from "./errors.ts";

export interface SchedulerOptions {
  /** Jobs of one model that run at once. */
  concurrency: number;
  /** Jobs of one model that may wait; past it, 429. */
  maxQueue: number;
  /** How long a job may wait for its turn; past it, 503. */
  queueTimeoutMs: number;
}

interface Lane {
  running: number;
  /** Each waiting job's start. */
  waiting: Array<() => void>;
}

export class Scheduler {
  #lanes = new Map<string, Lane>();
  /** `waited` hears how long each admitted job waited (for the queue-wait metric). */
  constructor(
    readonly options: SchedulerOptions,
    private hooks: { waited?: (key: string, seconds: number) => void } = {},
  ) {}

  /**
   * Waits for a slot of `key`; resolves to the function that gives it back (call it once).
   * `concurrency` overrides the lane's width (a batched model takes a batch's worth at once).
   */
  admit(
    key: string,
    signal?: AbortSignal,
    concurrency = this.options.concurrency,
  ): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const lane = this.#lane(key);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      lane.running--;
      lane.waiting.shift()?.();
      if (lane.running === 0 && lane.waiting.length === 0) this.#lanes.delete(key);
    };
    if (lane.running < concurrency) {
      lane.running++;
      this.hooks.waited?.(key, 0);
      return Promise.resolve(release);
    }
    const queued = performance.now();
    if (lane.waiting.length >= this.options.maxQueue) {
      return Promise.reject(
        new ApiError(
          "queue_full",
          `${key} is busy: ${lane.running} running and ${lane.waiting.length} waiting; ` +
            "retry shortly",
          "model",
          1,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const leave = (e: unknown) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        const i = lane.waiting.indexOf(waiter);
        if (i >= 0) lane.waiting.splice(i, 1);
        reject(e);
      };
      const waiter = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        lane.running++;
        this.hooks.waited?.(key, (performance.now() - queued) / 1000);
        resolve(release);
      };
      const onAbort = () => leave(signal!.reason);
      const timer = setTimeout(() =>
        leave(
          new ApiError(
            "queue_timeout",
            `Waited ${this.options.queueTimeoutMs / 1000} s for ${key} without a turn; retry later`,
            "model",
            Math.ceil(this.options.queueTimeoutMs / 1000),
          ),
        ), this.options.queueTimeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      lane.waiting.push(waiter);
    });
  }

  /** Running and waiting jobs per model (for /metrics and tests). */
  depth(): Record<string, { running: number; waiting: number }> {
    return Object.fromEntries(
      [...this.#lanes].map(([k, l]) => [k, { running: l.running, waiting: l.waiting.length }]),
    );
  }

  #lane(key: string): Lane {
    let lane = this.#lanes.get(key);
    if (!lane) this.#lanes.set(key, lane = { running: 0, waiting: [] });
    return lane;
  }
}
