/** How a pipeline's OptionError reaches a client: the route's field names, the right code. */
import assert from "node:assert/strict";
import { ApiError } from "../core/errors.ts";
import { OptionError } from "../models/pipeline.ts";
import { OpenAPIHono, z } from "@hono/zod-openapi";
import { checkResponses, type Env, requestError, route } from "./http.ts";

Deno.test("requestError: an OptionError becomes a 400 naming the route's field, in its message too", () => {
  const e = new OptionError("steps", (f) => `${f("steps")} must be at most 100 for sd-tiny`);
  const api = requestError(e, { steps: "num_inference_steps" });
  assert.ok(api instanceof ApiError);
  assert.equal(api.status, 400);
  assert.equal(api.code, "invalid_request");
  assert.equal(api.param, "num_inference_steps");
  assert.equal(api.message, "num_inference_steps must be at most 100 for sd-tiny");
  // Unmapped names are the field's own; "unsupported" keeps its code.
  const unsupported = requestError(
    new OptionError("rerank", (f) => `${f("rerank")}: no CLIP`, "unsupported"),
  ) as ApiError;
  assert.deepEqual([unsupported.code, unsupported.param, unsupported.status], [
    "unsupported",
    "rerank",
    400,
  ]);
  // Anything else passes through untouched.
  const other = new Error("boom");
  assert.equal(requestError(other), other);
});

Deno.test("checkResponses: a JSON 200 that does not match the route's response schema is a 500", async () => {
  const app = new OpenAPIHono<Env>();
  app.use(checkResponses());
  const response = z.object({ count: z.number() });
  route(app, {
    method: "get",
    path: "/good",
    summary: "",
    tags: [],
    response,
  }, (c) => c.json({ count: 1 }));
  route(app, {
    method: "get",
    path: "/bad",
    summary: "",
    tags: [],
    response,
  }, (c) => c.json({ count: "one" }));
  app.onError((e, c) => c.json({ error: String(e) }, 500));
  assert.equal((await app.request("/good")).status, 200);
  const bad = await app.request("/bad");
  assert.equal(bad.status, 500);
  assert.match((await bad.json()).error, /"count"/);
});
