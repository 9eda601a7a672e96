/**
 * On the HTTP thread in front of engine workers: requests that need a pipeline (every `/v1/*`
 * route but the model list) are answered by the worker that serves their family. The body is
 * read as bytes first — before admission parses it for its `model` — so the worker gets it
 * exactly as sent; then, once admitted, the request goes to the worker instead of the route.
 */
import type { MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import type { EnginePool } from "../models/remote.ts";
import { familyOfRoute } from "./admission.ts";
import type { Env } from "./http.ts";

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
    const body = c.req.method === "GET" || c.req.method === "HEAD"
      ? null
      : (await c.req.arrayBuffer()).slice(0); // a copy: the transfer detaches it
    const headers = new Headers(c.req.raw.headers);
    headers.set("x-request-id", c.get("requestId"));
    const request = new Request(c.req.raw.url, {
      method: c.req.method,
      headers,
      signal: c.req.raw.signal,
    });
    c.res = await pool.endpointFor(familyOfRoute(c.req.path)).fetch(request, body);
  };
}
