/**
 * Who may call the API: browsers from which origins (MM_CORS_ORIGINS), and with which keys
 * (MM_API_KEYS). Both run before any body is read or any work is done.
 *
 * - A request with an `Origin` that is neither the server's own (same host as its `Host`) nor in
 *   the allowlist is a 403 `origin_not_allowed` — form and multipart posts included, which a
 *   browser sends cross-site with no preflight. So is an unsafe request without `Origin` that a
 *   browser marks cross-site (`Sec-Fetch-Site`). Requests with neither header (curl, the SDKs,
 *   servers) pass untouched.
 * - While the server listens on loopback (the default), "same origin" holds only for loopback
 *   host names (`localhost`, `127.0.0.1`, `[::1]`): a page on a rebound DNS name (`evil.test`
 *   resolving to 127.0.0.1) is a foreign origin, not ours.
 * - Allowed origins get CORS headers and answered preflights (hono's `cors`).
 * - With keys set, `/v1/*` and `/metrics` need `Authorization: Bearer <key>`, compared in
 *   constant time (hono's `bearerAuth`); else a 401 `invalid_api_key` in the error envelope.
 */
import type { MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { cors } from "hono/cors";
import type { Config } from "./config.ts";
import { ApiError } from "./errors.ts";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** 127.0.0.0/8, ::1 and the names that resolve to them without DNS. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" ||
    /^127(\.\d{1,3}){3}$/.test(h);
}

/** The host name of a `Host` header value (`[::1]:8000` → `[::1]`, `a.b:80` → `a.b`). */
const hostname = (host: string) =>
  host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.split(":")[0];

export function originGuard(config: Config): MiddlewareHandler {
  const any = config.corsOrigins.includes("*");
  const allowed = new Set(config.corsOrigins);
  const loopbackOnly = isLoopback(config.host);
  const refused = (what: string) =>
    new ApiError(
      "origin_not_allowed",
      `${what} may not call this server; its operator can allow an origin with MM_CORS_ORIGINS`,
    );
  return (c, next) => {
    const origin = c.req.header("origin");
    if (origin === undefined) {
      const site = c.req.header("sec-fetch-site");
      if ((site === "cross-site" || site === "same-site") && !SAFE_METHODS.has(c.req.method)) {
        throw refused("A page of another site");
      }
      return next();
    }
    if (any || allowed.has(origin)) return next();
    const host = c.req.header("host") ?? new URL(c.req.url).host;
    let sameOrigin = false;
    try {
      sameOrigin = new URL(origin).host === host.toLowerCase();
    } catch { /* "null" or garbage: foreign */ }
    if (sameOrigin && (!loopbackOnly || isLoopback(hostname(host)))) return next();
    throw refused(`The origin ${JSON.stringify(origin.slice(0, 200))}`);
  };
}

/** CORS for the allowlisted origins (none by default: then this does nothing). */
export function corsFor(config: Config): MiddlewareHandler {
  if (config.corsOrigins.length === 0) return (_c, next) => next();
  const any = config.corsOrigins.includes("*");
  const allowed = new Set(config.corsOrigins);
  return cors({
    origin: (o) => any ? "*" : allowed.has(o) ? o : null,
    allowMethods: ["GET", "HEAD", "POST", "OPTIONS"],
    // allowHeaders left empty: a preflight's requested headers are echoed (the SDKs send their
    // own x-stainless-* headers as well as authorization and content-type).
    exposeHeaders: ["x-request-id", "server-timing", "retry-after"],
    maxAge: 600,
  });
}

/** `Authorization: Bearer <key>` for the routes it guards; nothing when no keys are set. */
export function apiKeyAuth(config: Config): MiddlewareHandler {
  if (config.apiKeys.length === 0) return (_c, next) => next();
  const unauthorized = (message: string) => () =>
    new Response(JSON.stringify(new ApiError("invalid_api_key", message).toJSON()), {
      status: 401,
      headers: { "content-type": "application/json" },
    });
  return bearerAuth({
    token: config.apiKeys,
    noAuthenticationHeader: {
      message: unauthorized("Missing API key: send Authorization: Bearer <key>"),
    },
    // A malformed header is a 401 as well (bearerAuth's default is a 400), as OpenAI answers.
    invalidAuthenticationHeader: {
      message: unauthorized("Malformed Authorization header: send Authorization: Bearer <key>"),
    },
    invalidToken: { message: unauthorized("Invalid API key") },
  });
}
