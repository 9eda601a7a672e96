/**
 * Requests answered elsewhere than by this thread's routes: by an upstream server when their
 * model is one of MM_UPSTREAMS, else, in front of engine workers, by the worker that serves
 * their family (every `/v1/*` route but the model list). The body is read as bytes first —
 * before admission parses it for its `model` — so it is sent on exactly as it came; then, once
 * admitted, the request goes there instead of to the route.
 */
import type { Context, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import type { Upstreams } from "../core/upstream.ts";
import type { Models } from "../models/registry.ts";
import type { EnginePool } from "../models/remote.ts";
import { type Env, familyOfRoute, readBody } from "./http.ts";

/** Paths the HTTP thread answers itself (from the workers' statuses). */
const local = (path: string) => path === "/v1/models" || path.startsWith("/v1/models/");

/** Before admission: keeps the raw body, so parsing it later does not re-encode it. */
export function keepRawBody(): MiddlewareHandler {
  return async (c, next) => {
    if (!local(c.req.path) && c.req.method !== "GET" && c.req.method !== "HEAD") {
      await c.req.arrayBuffer();
    }
    await next();
  };
}

/** After admission: the worker's response, headers and streamed body as they are. */
export function forwardToEngines(pool: EnginePool): MiddlewareHandler<Env> {
  return async (c, next) => {
    // Unknown paths and methods fall through to the app's own 404 and 405.
    const routed = matchedRoutes(c).some((r) => r.method !== "ALL");
    if (local(c.req.path) || !routed) return next();
    const { request, body } = await outgoing(c);
    c.res = await pool.endpointFor(familyOfRoute(c.req.path)).fetch(request, body);
  };
}

/** After admission: a request whose model an upstream serves goes there. */
export function forwardToUpstreams(upstreams: Upstreams, models: Models): MiddlewareHandler<Env> {
  return async (c, next) => {
    const family = c.req.method === "POST" ? familyOfRoute(c.req.path) : undefined;
    if (!family) return next();
    const named = (await readBody(c) as { model?: unknown })?.model;
    const model = typeof named === "string" ? named : models.defaultId(family);
    const upstream = model === undefined ? undefined : upstreams.for(model);
    if (!upstream) return next();
    const { request, body } = await outgoing(c);
    c.res = await upstream.fetch(request, body);
  };
}

/** The request as it is sent on: its own bytes and headers, our request id, the client's signal. */
async function outgoing(c: Context<Env>): Promise<{ request: Request; body: ArrayBuffer | null }> {
  const body = c.req.method === "GET" || c.req.method === "HEAD"
    ? null
    : (await c.req.arrayBuffer()).slice(0); // a copy: a transfer detaches it
  const headers = new Headers(c.req.raw.headers);
  headers.set("x-request-id", c.get("requestId"));
  const request = new Request(c.req.raw.url, {
    method: c.req.method,
    headers,
    signal: c.req.raw.signal,
  });
  return { request, body };
}
