/**
 * `POST /v1/chat/completions`, OpenAI-shaped: messages whose content is a string or parts
 * (`text`, `image_url` with a data URL), greedy or seeded sampling, `stop`, log-probabilities,
 * and `stream: true` → Server-Sent Events of `chat.completion.chunk`s, a usage chunk, then
 * `data: [DONE]`. A client that disconnects stops the generation.
 */
import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { setMetric } from "hono/timing";
import { ApiError } from "../core/errors.ts";
import type { ChatMessage, ChatOptions, ChatResult, Part } from "../models/chat/pipeline.ts";
import { type App, decodeImages, type Deps, route } from "./http.ts";

const MAX_MESSAGES = 64;
const MAX_IMAGES = 8;
export const IMAGE_ONLY_PROMPT = "describe the image.";

const TextPart = z.object({ type: z.literal("text"), text: z.string() });
const ImageUrlPart = z.object({
  type: z.literal("image_url"),
  image_url: z.object({
    url: z.string().min(1).openapi({ description: "A data URL (data:image/png;base64,...)" }),
    detail: z.enum(["auto", "low", "high"]).optional(),
  }),
});
const Message = z.object({
  role: z.enum(["system", "developer", "user", "assistant"]),
  content: z.union([z.string(), z.array(z.union([TextPart, ImageUrlPart])).min(1)]),
  name: z.string().optional(),
});

const ChatRequest = z.object({
  model: z.string().min(1).optional().openapi({
    description: "Model id; the default chat model when absent",
    example: "vlm-tiny",
  }),
  messages: z.array(Message).min(1).max(MAX_MESSAGES),
  max_tokens: z.number().int().min(1).max(512).optional(),
  max_completion_tokens: z.number().int().min(1).max(512).optional(),
  temperature: z.number().min(0).max(2).default(0).openapi({
    description: "0: greedy (the default here, so that answers repeat)",
  }),
  top_p: z.number().gt(0).max(1).default(1),
  top_k: z.number().int().min(0).max(1000).default(0).openapi({ description: "0: no top-k" }),
  seed: z.number().int().min(0).max(2 ** 32 - 1).optional(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).optional(),
  n: z.literal(1).default(1).openapi({ description: "One choice per request" }),
  stream: z.boolean().default(false),
  stream_options: z.object({ include_usage: z.boolean().optional() }).optional(),
  logprobs: z.boolean().default(false),
  top_logprobs: z.number().int().min(0).max(10).optional(),
  user: z.string().optional(),
}).openapi("ChatCompletionRequest");

const Usage = z.object({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
});
const ChatResponse = z.object({
  id: z.string(),
  object: z.literal("chat.completion"),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(z.object({
    index: z.number().int(),
    message: z.object({ role: z.literal("assistant"), content: z.string() }),
    logprobs: z.object({ content: z.array(z.unknown()) }).nullable(),
    finish_reason: z.enum(["stop", "length"]),
  })),
  usage: Usage,
  timings: z.object({
    vision_ms: z.number(),
    prefill_ms: z.number(),
    decode_ms: z.number(),
    tokens_per_second: z.number(),
  }),
}).openapi("ChatCompletion");

type Body = z.infer<typeof ChatRequest>;

/** OpenAI messages → pipeline messages, images decoded (errors name the part). */
async function toMessages(c: Context, config: Deps["config"], body: Body): Promise<ChatMessage[]> {
  const inputs: Array<{ value: string; param: string }> = [];
  body.messages.forEach((m, i) => {
    if (typeof m.content === "string") return;
    m.content.forEach((p, j) => {
      if (p.type === "image_url") {
        if (m.role !== "user") {
          throw new ApiError(
            "invalid_request",
            "Only user messages may hold images",
            `messages.${i}`,
          );
        }
        inputs.push({ value: p.image_url.url, param: `messages.${i}.content.${j}.image_url.url` });
      }
    });
  });
  if (inputs.length > MAX_IMAGES) {
    throw new ApiError(
      "invalid_request",
      `At most ${MAX_IMAGES} images per conversation`,
      "messages",
    );
  }
  const images = await decodeImages(c, config, inputs);
  let k = 0;
  return body.messages.map((m): ChatMessage => {
    const content: Part[] = typeof m.content === "string"
      ? [{ type: "text", text: m.content }]
      : m.content.map((p): Part => p.type === "text" ? p : { type: "image", image: images[k++] });
    // An image sent without a question is a request to describe it.
    if (!content.some((p) => p.type === "text")) {
      content.push({ type: "text", text: IMAGE_ONLY_PROMPT });
    }
    return { role: m.role === "developer" ? "system" : m.role, content };
  });
}

export function chatRoutes(app: App, { config, registry }: Deps): void {
  route(app, {
    method: "post",
    path: "/v1/chat/completions",
    summary: "Chat about images (multimodal LLM), OpenAI-compatible",
    description:
      "Both architectures: a unified embedding decoder (vlm-tiny, SmolVLM layout) and a " +
      "cross-attention decoder (vlm-xattn-tiny). stream: true answers with Server-Sent Events.",
    tags: ["Chat"],
    body: ChatRequest,
    response: ChatResponse,
  }, async (c, body) => {
    const model = await registry.get("chat", body.model);
    const last = body.messages.at(-1)!;
    if (last.role === "assistant") {
      throw new ApiError(
        "invalid_request",
        "The last message must be from the user (or system): there is nothing to answer",
        `messages.${body.messages.length - 1}.role`,
      );
    }
    const messages = await toMessages(c, config, body);
    const id = `chatcmpl-${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`;
    const created = Math.floor(Date.now() / 1000);
    const requested = body.max_completion_tokens ?? body.max_tokens;
    // Without a limit, answer up to 64 tokens or what the context has left.
    const promptLength = model.validate(messages, requested ?? 1).length;
    const options: ChatOptions = {
      maxTokens: requested ?? Math.max(1, Math.min(64, model.maxPositions - promptLength)),
      temperature: body.temperature,
      topP: body.top_p,
      topK: body.top_k,
      seed: body.seed ?? Math.floor(Math.random() * 2 ** 32),
      stop: body.stop === undefined ? [] : [body.stop].flat(),
      topLogprobs: body.logprobs ? Math.max(body.top_logprobs ?? 0, 0) : 0,
    };
    const usage = (r: ChatResult) => ({
      prompt_tokens: r.promptTokens,
      completion_tokens: r.completionTokens,
      total_tokens: r.promptTokens + r.completionTokens,
    });
    const logprobs = (r: ChatResult) =>
      body.logprobs
        ? {
          content: r.tokens.map((t) => ({
            token: t.token,
            logprob: t.logprob,
            bytes: [...new TextEncoder().encode(t.token)],
            top_logprobs: t.top_logprobs.map((a) => ({
              ...a,
              bytes: [...new TextEncoder().encode(a.token)],
            })),
          })),
        }
        : null;

    model.validate(messages, options.maxTokens); // a 400 now, before a stream has started

    if (!body.stream) {
      const r = await model.chat(messages, { ...options, signal: c.req.raw.signal });
      setMetric(c, "vision", r.timings.vision_ms);
      setMetric(c, "prefill", r.timings.prefill_ms);
      setMetric(c, "decode", r.timings.decode_ms);
      return c.json({
        id,
        object: "chat.completion",
        created,
        model: model.id,
        choices: [{
          index: 0,
          message: { role: "assistant", content: r.text },
          logprobs: logprobs(r),
          finish_reason: r.finishReason,
        }],
        usage: usage(r),
        timings: r.timings,
      });
    }

    return streamSSE(c, async (stream) => {
      const stop = new AbortController();
      stream.onAbort(() => stop.abort());
      const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
        stream.writeSSE({
          data: JSON.stringify({
            id,
            object: "chat.completion.chunk",
            created,
            model: model.id,
            choices,
            ...extra,
          }),
        });
      try {
        await chunk([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]);
        const r = await model.chat(messages, {
          ...options,
          signal: stop.signal,
          onText: (delta) =>
            chunk([{ index: 0, delta: { content: delta }, logprobs: null, finish_reason: null }]),
        });
        await chunk([{
          index: 0,
          delta: {},
          logprobs: logprobs(r),
          finish_reason: r.finishReason,
        }]);
        await chunk([], { usage: usage(r), timings: r.timings });
        await stream.writeSSE({ data: "[DONE]" });
      } catch (e) {
        if (stop.signal.aborted) return; // the client left
        const err = e instanceof ApiError
          ? e
          : new ApiError("internal_error", `Generation failed (request id ${c.get("requestId")})`);
        if (!(e instanceof ApiError)) console.error(`[${c.get("requestId")}]`, e);
        await stream.writeSSE({ data: JSON.stringify(err.toJSON()) });
      }
    });
  });
}
