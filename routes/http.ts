/**
 * HTTP plumbing shared by the routes: one call declares an endpoint's zod schemas, which are at
 * once its validation, its TypeScript types and its OpenAPI entry; JSON and multipart bodies
 * both parse into the same schema (uploaded files arrive as bytes).
 */
import { type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { endTime, startTime } from "hono/timing";
import { ApiError } from "../core/errors.ts";
import { decodeImage, imageBytesFromString, type RgbImage } from "../core/image.ts";
import type { Config } from "../core/config.ts";
import type { Family } from "../models/manifest.ts";
import { OptionError } from "../models/pipeline.ts";
import type { Models } from "../models/registry.ts";

export interface Env {
  Variables: { requestId: string };
}
export type App = OpenAPIHono<Env>;

/** What every route module receives. */
export interface Deps {
  config: Config;
  registry: Models;
}

export const ErrorBody = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
}).openapi("Error");

/** Where a model looked, one map per word (models/pipeline.ts's AttentionMaps). */
export const AttentionMaps = z.object({
  rows: z.number().int(),
  cols: z.number().int(),
  words: z.array(z.object({
    token: z.string(),
    weights: z.array(z.number()).openapi({ description: "rows × cols, row-major, sum 1" }),
    overlay_png: z.string().openapi({ description: "The map over the image, base64 PNG" }),
  })),
}).openapi("AttentionMaps");

const errorResponses = {
  400: { description: "Invalid request", content: { "application/json": { schema: ErrorBody } } },
  404: { description: "Unknown model", content: { "application/json": { schema: ErrorBody } } },
  413: {
    description: "Body or image too large",
    content: { "application/json": { schema: ErrorBody } },
  },
  503: {
    description: "Models still loading",
    content: { "application/json": { schema: ErrorBody } },
  },
};

/** Turns the first zod issue into a 400 that names the field. */
export function validationError(error: z.ZodError): ApiError {
  const issue = error.issues[0];
  const param = issue.path.map(String).join(".") || null;
  return new ApiError(
    "invalid_request",
    param ? `${param}: ${issue.message}` : issue.message,
    param,
  );
}

/**
 * A pipeline's `OptionError` as the 400 a client reads: the option named by its request field
 * (`fields` maps the pipeline's option names to the route's; unmapped names are the same).
 * Other errors pass through.
 */
export function requestError(e: unknown, fields: Record<string, string> = {}): unknown {
  if (!(e instanceof OptionError)) return e;
  const field = (option: string) => fields[option] ?? option;
  return new ApiError(
    e.kind === "unsupported" ? "unsupported" : "invalid_request",
    e.describe(field),
    field(e.option),
  );
}

/**
 * An error after a stream has started, as the envelope to send in it: request errors as they
 * are, anything else a 500 that names the request id (and is logged, with its stack, here only).
 */
export function streamedError(
  c: Context<Env>,
  e: unknown,
  fields?: Record<string, string>,
): ApiError {
  const known = requestError(e, fields);
  if (known instanceof ApiError) return known;
  console.error(`[${c.get("requestId")}]`, e);
  return new ApiError("internal_error", `Generation failed (request id ${c.get("requestId")})`);
}

/** Reads a JSON or multipart body; multipart files become Uint8Array, repeated fields arrays. */
export function readBody(c: Context): Promise<unknown> {
  // Parsed once per request: the admission middleware reads `model` before the route runs.
  let body = parsedBodies.get(c.req.raw);
  if (!body) parsedBodies.set(c.req.raw, body = parseBody(c));
  return body;
}
const parsedBodies = new WeakMap<Request, Promise<unknown>>();

async function parseBody(c: Context): Promise<unknown> {
  const type = c.req.header("content-type") ?? "";
  if (
    type.startsWith("multipart/form-data") || type.startsWith("application/x-www-form-urlencoded")
  ) {
    let form: FormData;
    try {
      form = await c.req.formData();
    } catch {
      throw new ApiError("invalid_request", "Body is not valid multipart form data");
    }
    const out: Record<string, unknown> = {};
    const repeated = new Set<string>();
    for (const [rawKey, value] of form.entries()) {
      const key = rawKey.replace(/\[\]$/, "");
      const v = typeof value === "string"
        ? parseFormValue(value)
        : new Uint8Array(await value.arrayBuffer());
      // Repeated fields collect into a list, appended in place (linear in the field count).
      const prev = out[key];
      if (prev === undefined) out[key] = rawKey.endsWith("[]") ? [v] : v;
      else if (repeated.has(key)) (prev as unknown[]).push(v);
      else out[key] = [...(Array.isArray(prev) ? prev : [prev]), v];
      if (Array.isArray(out[key])) repeated.add(key);
    }
    return out;
  }
  if (!type.includes("json")) {
    throw new ApiError(
      "invalid_request",
      `Content-Type must be application/json or multipart/form-data, got "${type || "none"}"`,
    );
  }
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw new ApiError("invalid_request", "Body is not valid JSON");
  }
  return withoutNulls(body);
}

/**
 * JSON nested deeper than this is a 400 before it is walked: no request needs more than a few
 * levels (a chat image URL is 6 down), and 10,000 levels overflowed the stack (a 500).
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Drops object fields whose value is null, at any depth: OpenAI clients send `"field": null` for
 * "not given", so null must mean the default, not a 400. Nulls inside arrays stay (and fail).
 */
export function withoutNulls(v: unknown, depth = 0): unknown {
  if (typeof v !== "object" || v === null) return v;
  if (depth >= MAX_JSON_DEPTH) {
    throw new ApiError("invalid_request", `Body is nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  if (Array.isArray(v)) return v.map((x) => x === null ? x : withoutNulls(x, depth + 1));
  const entries = Object.entries(v).filter(([, x]) => x !== null);
  return Object.fromEntries(entries.map(([k, x]) => [k, withoutNulls(x, depth + 1)]));
}

/** Form fields are strings; numbers, booleans and JSON arrays are parsed so one schema fits both. */
function parseFormValue(v: string): unknown {
  const t = v.trim();
  if (t === "true" || t === "false") return t === "true";
  if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t);
  if (t.startsWith("[") || t.startsWith("{")) {
    try {
      return JSON.parse(t);
    } catch { /* a plain string after all */ }
  }
  return v;
}

interface RouteSpec<B extends z.ZodType, R extends z.ZodType> {
  method: "get" | "post";
  path: string;
  summary: string;
  tags: string[];
  description?: string;
  body?: B;
  /** GET endpoints: the query string parsed with this schema is passed as the body. */
  query?: B;
  /** Also accept multipart/form-data with the same fields. */
  multipart?: boolean;
  /** A request body that works as it is (shown on /docs as a curl line). */
  example?: Record<string, unknown>;
  /** With `stream: true`: the server-sent events, one line per event type. */
  events?: string[];
  response: R;
  /**
   * An inference route: the family whose default model a request without `model` gets. Admission
   * gives it a slot in its model's lane, and in front of engine workers it goes to that family's.
   */
  family?: Family;
  /** The pipeline's option names that differ from this route's fields (for their errors). */
  fields?: Record<string, string>;
}

/** Inference paths and their families, as the routes declared them. */
const inference = new Map<string, Family>();

/** Each route's response schema, by "METHOD /path", for `checkResponses`. */
const responses = new Map<string, z.ZodType>();

/**
 * MM_CHECK_RESPONSES=1 (the test tasks set it): every JSON 200 a route sends is checked against
 * the response schema it declares, and a mismatch is a 500 naming the field, so that the OpenAPI
 * document cannot drift from what is served.
 */
export function checkResponses(): MiddlewareHandler<Env> {
  return async (c, next) => {
    await next();
    const schema = responses.get(`${c.req.method} ${c.req.path}`);
    const json = c.res.headers.get("content-type")?.startsWith("application/json");
    if (!schema || c.res.status !== 200 || !json) return;
    const parsed = schema.safeParse(await c.res.clone().json());
    if (parsed.success) return;
    const issue = parsed.error.issues[0];
    throw new Error(
      `${c.req.method} ${c.req.path}: the response does not match its schema at ` +
        `"${issue.path.join(".")}": ${issue.message}`,
    );
  };
}

/** Whether MM_CHECK_RESPONSES asks for `checkResponses` (false without env access). */
export function responsesChecked(): boolean {
  try {
    return Deno.env.get("MM_CHECK_RESPONSES") === "1";
  } catch {
    return false;
  }
}

/** The family an inference path serves (undefined: not an inference route). */
export function familyOfRoute(path: string): Family | undefined {
  return inference.get(path);
}

/** Declares an endpoint: OpenAPI entry, body validation, and the handler with typed input. */
export function route<B extends z.ZodType, R extends z.ZodType>(
  app: App,
  spec: RouteSpec<B, R>,
  handler: (c: Context<Env>, body: z.infer<B>) => Promise<Response> | Response,
): void {
  if (spec.family) inference.set(spec.path, spec.family);
  responses.set(`${spec.method.toUpperCase()} ${spec.path}`, spec.response);
  const content: Record<string, { schema: z.ZodType; example?: unknown }> = {};
  if (spec.body) {
    content["application/json"] = { schema: spec.body, example: spec.example };
    if (spec.multipart) content["multipart/form-data"] = { schema: spec.body };
  }
  const stream = spec.events && { "text/event-stream": { schema: { type: "string" as const } } };
  app.openAPIRegistry.registerPath({
    method: spec.method,
    path: spec.path,
    summary: spec.summary,
    description: spec.description,
    tags: spec.tags,
    ...(spec.body ? { request: { body: { content, required: true } } } : {}),
    ...(spec.query ? { request: { query: spec.query as unknown as z.ZodObject } } : {}),
    responses: {
      200: {
        description: stream
          ? `OK: JSON, or with stream: true server-sent events:\n${spec.events!.join("\n")}`
          : "OK",
        content: { "application/json": { schema: spec.response }, ...stream },
      },
      ...errorResponses,
    },
  });
  app.on(spec.method.toUpperCase(), spec.path, async (c) => {
    const schema = spec.body ?? spec.query;
    const parsed = schema?.safeParse(spec.body ? await readBody(c) : c.req.query());
    if (parsed && !parsed.success) throw validationError(parsed.error);
    try {
      return await handler(c, parsed?.data as z.infer<B>);
    } catch (e) {
      throw requestError(e, spec.fields);
    }
  });
}

/**
 * Decodes request images (data URL, base64 or uploaded bytes) under the configured pixel limit,
 * timed as `decode` in Server-Timing; errors name each image's field.
 */
export async function decodeImages(
  c: Context,
  config: Config,
  inputs: Array<{ value: string | Uint8Array; param: string }>,
): Promise<RgbImage[]> {
  startTime(c, "decode");
  const images = await Promise.all(inputs.map(({ value, param }) => {
    const bytes = typeof value === "string" ? imageBytesFromString(value, param) : value;
    return decodeImage(
      bytes,
      { maxPixels: config.maxImagePixels, signal: c.req.raw.signal },
      param,
    );
  }));
  endTime(c, "decode");
  return images;
}
