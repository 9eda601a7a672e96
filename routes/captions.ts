/**
 * `POST /v1/captions`: image → captions, with greedy, beam or sampled decoding, per-token
 * log-probabilities, and for attention models each word's attention map and overlay.
 */
import { z } from "@hono/zod-openapi";
import { endTime, startTime } from "hono/timing";
import { ApiError } from "../core/errors.ts";
import { EXAMPLE_IMAGE, ImageInput } from "./clip.ts";
import { type App, AttentionMaps, decodeImages, type Deps, route } from "./http.ts";

const CaptionRequest = z.object({
  model: z.string().min(1).optional().openapi({
    description: "Model id; the default captioning model when absent",
    example: "sat-soft-tiny",
  }),
  image: ImageInput,
  strategy: z.enum(["greedy", "beam", "sample"]).default("greedy"),
  beam_size: z.number().int().min(1).max(16).default(3),
  temperature: z.number().min(0).max(5).default(1),
  top_k: z.number().int().min(0).max(1000).default(0).openapi({
    description: "0: no top-k filter",
  }),
  top_p: z.number().gt(0).max(1).default(1),
  seed: z.number().int().min(0).max(2 ** 32 - 1).optional().openapi({
    description: "For sampling; random when absent, and returned",
  }),
  max_tokens: z.number().int().min(1).max(256).default(32),
  n: z.number().int().min(1).max(16).default(1),
  top_logprobs: z.number().int().min(0).max(10).default(0).openapi({
    description: "Most probable alternatives per token",
  }),
  return_attention: z.boolean().default(false).openapi({
    description: "Per word: attention weights over the image grid and a PNG overlay",
  }),
}).openapi("CaptionRequest");

const Token = z.object({
  token: z.string(),
  logprob: z.number(),
  top_logprobs: z.array(z.object({ token: z.string(), logprob: z.number() })).optional(),
});
const FinishReason = z.enum(["stop", "length"]).openapi({
  description: "stop: the caption ended by itself; length: it was cut at max_tokens",
});
const CaptionResponse = z.object({
  model: z.string(),
  seed: z.number().int().optional(),
  captions: z.array(z.object({
    text: z.string(),
    logprob: z.number(),
    finish_reason: FinishReason,
    tokens: z.array(Token),
    attention: AttentionMaps.optional(),
  })),
  alternatives: z.array(
    z.object({ text: z.string(), logprob: z.number(), finish_reason: FinishReason }),
  ).optional().openapi({
    description: "Beam search: the other finished beams, best first, beyond the n returned",
  }),
}).openapi("CaptionResponse");

export function captionRoutes(app: App, { config, registry }: Deps): void {
  route(app, {
    method: "post",
    path: "/v1/captions",
    family: "captioning",
    summary: "Caption an image (Show and Tell, Show Attend and Tell, ViT + GPT-2)",
    tags: ["Captioning"],
    body: CaptionRequest,
    multipart: true,
    example: { image: EXAMPLE_IMAGE, strategy: "beam", beam_size: 3, return_attention: true },
    response: CaptionResponse,
    fields: { returnAttention: "return_attention" },
  }, async (c, body) => {
    const model = await registry.get("captioning", body.model);
    if (body.strategy === "greedy" && body.n > 1) {
      throw new ApiError(
        "invalid_request",
        "Greedy decoding gives one caption; use strategy beam or sample for n > 1",
        "n",
      );
    }
    if (body.strategy === "beam" && body.n > body.beam_size) {
      throw new ApiError(
        "invalid_request",
        `n (${body.n}) cannot exceed beam_size (${body.beam_size})`,
        "n",
      );
    }
    const [image] = await decodeImages(c, config, [{ value: body.image, param: "image" }]);
    const seed = body.seed ?? Math.floor(Math.random() * 2 ** 32);
    startTime(c, "generate");
    const { captions, alternatives } = await model.caption(image, {
      strategy: body.strategy,
      beamSize: body.beam_size,
      temperature: body.temperature,
      topK: body.top_k,
      topP: body.top_p,
      seed,
      maxTokens: body.max_tokens,
      n: body.n,
      topLogprobs: body.top_logprobs,
      returnAttention: body.return_attention,
    }, { signal: c.req.raw.signal });
    endTime(c, "generate");
    return c.json({
      model: model.id,
      ...(body.strategy === "sample" ? { seed } : {}),
      captions,
      ...(body.strategy === "beam" ? { alternatives } : {}),
    });
  });
}
