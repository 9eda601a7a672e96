/**
 * Admission middleware: every inference route takes a slot of its model's lane in the scheduler
 * before any work, and gives it back when the response is complete — for a stream, when its last
 * byte is sent or the client leaves. One place for every family: a route is an inference route
 * when its spec names the family it serves (routes/http.ts).
 */
import type { MiddlewareHandler } from "hono";
import { noteModel } from "../core/lifecycle.ts";
import type { Scheduler } from "../core/scheduler.ts";
import type { Models } from "../models/registry.ts";
import { laneWidth } from "../models/families.ts";
import { familyOfRoute, readBody } from "./http.ts";

/** `maxBatch`: a batching family's lane admits that many requests at once (they share passes). */
export function admission(
  scheduler: Scheduler,
  registry: Models,
  maxBatch = 1,
): MiddlewareHandler {
  return async (c, next) => {
    const family = c.req.method === "POST" ? familyOfRoute(c.req.path) : undefined;
    if (!family) return next();
    // The body is parsed once here and cached by the request; the route reads the same object.
    const body = await readBody(c);
    const named = (body as { model?: unknown })?.model;
    const model = typeof named === "string" ? named : registry.defaultId(family) ?? family;
    noteModel(model); // the request's model label, for its metrics and its log line
    const width = laneWidth(family, scheduler.options.concurrency, maxBatch);
    const release = await scheduler.admit(model, c.req.raw.signal, width);
    try {
      await next();
    } catch (e) {
      release();
      throw e;
    }
    const stream = c.res.body;
    if (!stream || !c.res.headers.get("content-type")?.startsWith("text/event-stream")) {
      release();
      return;
    }
    const reader = stream.getReader();
    c.res = new Response(
      new ReadableStream({
        async pull(out) {
          try {
            const { value, done } = await reader.read();
            if (done) release(), out.close();
            else out.enqueue(value);
          } catch (e) {
            release(), out.error(e);
          }
        },
        cancel(reason) {
          release();
          return reader.cancel(reason);
        },
      }),
      c.res,
    );
  };
}
