/**
 * `POST /v1/chat/completions`, OpenAI-shaped: messages whose content is a string or parts
 * (`text`, `image_url` with a data URL), greedy or seeded sampling, penalties and logit bias,
 * `stop`, log-probabilities, and `stream: true` → Server-Sent Events of `chat.completion.chunk`s
 * (each content chunk with its tokens' logprobs), with `stream_options.include_usage` a usage
 * chunk, then `data: [DONE]`. A client that disconnects stops the generation. An extension,
 * `return_attention: true`, gives each answer token's attention over the image
 * (`choices[0].attention`, and per chunk for the chunk's tokens).
 *
 * A field that asks for what this server cannot do (tools, JSON output, audio) is a 400 naming
 * it, never silently ignored; `null` for an optional field means "not given".
 */
import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { setMetric } from "hono/timing";
import { ApiError } from "../core/errors.ts";
import { countTokens } from "../core/metrics.ts";
import type {
  ChatMessage,
  ChatOptions,
  ChatPipeline,
  ChatResult,
  ChatToken,
  Part,
} from "../models/chat/pipeline.ts";
import { EXAMPLE_IMAGE } from "./clip.ts";
import {
  type App,
  AttentionMaps,
  decodeImages,
  type Deps,
  type Env,
  route,
  streamedError,
} from "./http.ts";

const MAX_MESSAGES = 64;
const MAX_IMAGES = 8;
export const IMAGE_ONLY_PROMPT = "describe the image.";

/** Characters of one text, checked before anything is tokenized (the models read 128 tokens). */
const MAX_TEXT_CHARS = 32_000;
const TextPart = z.object({ type: z.literal("text"), text: z.string().max(MAX_TEXT_CHARS) });
const ImageUrlPart = z.object({
  type: z.literal("image_url"),
  image_url: z.object({
    url: z.string().min(1).openapi({ description: "A data URL (data:image/png;base64,...)" }),
    detail: z.enum(["auto", "low", "high"]).nullish(),
  }),
});
const Message = z.object({
  role: z.enum(["system", "developer", "user", "assistant"]),
  content: z.union([
    z.string().max(MAX_TEXT_CHARS),
    z.array(z.union([TextPart, ImageUrlPart])).min(1).max(64),
  ]).nullish()
    .openapi({ description: "null or absent only in assistant messages" }),
  name: z.string().nullish(),
});

const Penalty = z.number().min(-2).max(2).nullish();
/** Fields of OpenAI's request that ask for what this server cannot do: a 400 when set. */
const Unsupported = z.unknown().optional().openapi({ description: "Not supported: a 400" });

const ChatRequest = z.object({
  model: z.string().min(1).nullish().openapi({
    description: "Model id; the default chat model when absent",
    example: "vlm-tiny",
  }),
  messages: z.array(Message).min(1).max(MAX_MESSAGES),
  max_tokens: z.number().int().min(1).max(512).nullish(),
  max_completion_tokens: z.number().int().min(1).max(512).nullish(),
  temperature: z.number().min(0).max(2).nullish().openapi({
    description: "0 (the default here, so that answers repeat): greedy",
  }),
  top_p: z.number().gt(0).max(1).nullish().openapi({ description: "Default 1" }),
  top_k: z.number().int().min(0).max(1000).nullish().openapi({ description: "0: no top-k" }),
  frequency_penalty: Penalty.openapi({
    description: "Subtracted from a token's logit once per time the answer already holds it",
  }),
  presence_penalty: Penalty.openapi({
    description: "Subtracted from the logit of every token the answer already holds",
  }),
  logit_bias: z.record(z.string(), z.number().min(-100).max(100)).nullish().openapi({
    description: "Token id → bias added to its logit before sampling (-100 bans the token)",
  }),
  seed: z.number().int().min(0).max(2 ** 32 - 1).nullish(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish(),
  n: z.literal(1).nullish().openapi({ description: "One choice per request" }),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish().openapi({
    description: "include_usage: true adds a last chunk with usage (and our timings)",
  }),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(10).nullish(),
  response_format: z.object({ type: z.enum(["text", "json_object", "json_schema"]) }).nullish()
    .openapi({ description: 'Only {"type": "text"}: the models do not emit constrained JSON' }),
  tools: z.array(z.unknown()).nullish().openapi({ description: "No tool calling: a 400" }),
  tool_choice: z.unknown().optional().openapi({ description: '"none" or absent only' }),
  parallel_tool_calls: z.boolean().nullish(),
  functions: Unsupported,
  function_call: Unsupported,
  audio: Unsupported,
  prediction: Unsupported,
  web_search_options: Unsupported,
  modalities: z.array(z.enum(["text", "audio"])).nullish().openapi({
    description: '["text"] only',
  }),
  user: z.string().nullish(),
  return_attention: z.boolean().nullish().openapi({
    description: "Extension: each answer token's attention over the image (one image; models " +
      "whose decoder exports its attention), in choices[0].attention and in each chunk",
  }),
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
    message: z.object({
      role: z.literal("assistant"),
      content: z.string(),
      refusal: z.null().openapi({ description: "Always null: the models do not refuse" }),
    }),
    logprobs: z.object({ content: z.array(z.unknown()), refusal: z.null() }).nullable(),
    finish_reason: z.enum(["stop", "length"]),
    attention: AttentionMaps.optional().openapi({ description: "With return_attention" }),
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
    if (m.content == null && m.role !== "assistant") {
      throw new ApiError(
        "invalid_request",
        `messages.${i}.content: a ${m.role} message needs content`,
        `messages.${i}.content`,
      );
    }
    if (typeof m.content === "string" || m.content == null) return;
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
    let content: Part[] = typeof m.content === "string" || m.content == null
      ? [{ type: "text", text: m.content ?? "" }]
      : m.content.map((p): Part => p.type === "text" ? p : { type: "image", image: images[k++] });
    // An image sent without a question (or with empty text parts) is a request to describe it.
    if (content.some((p) => p.type === "image")) {
      content = content.filter((p) => p.type === "image" || p.text.trim() !== "");
      if (!content.some((p) => p.type === "text")) {
        content.push({ type: "text", text: IMAGE_ONLY_PROMPT });
      }
    }
    return { role: m.role === "developer" ? "system" : m.role, content };
  });
}

/** What the request asks for that this server cannot do: a 400 naming the field. */
function rejectUnsupported(body: Body): void {
  const no = (param: string, message: string) => {
    throw new ApiError("unsupported", `${param}: ${message}`, param);
  };
  if (body.response_format && body.response_format.type !== "text") {
    no(
      "response_format",
      `"${body.response_format.type}" is not supported: these models cannot be held to JSON; use {"type": "text"}`,
    );
  }
  if (body.tools?.length) no("tools", "no model here calls tools");
  const choice = body.tool_choice;
  if (choice != null && choice !== "none") {
    no("tool_choice", 'no model here calls tools: only "none" (or leave it out)');
  }
  for (const field of ["functions", "function_call"] as const) {
    if (body[field] != null) no(field, "no model here calls functions");
  }
  if (body.modalities?.includes("audio") || body.audio != null) {
    no(body.audio != null ? "audio" : "modalities", "the models answer in text only");
  }
  if (body.prediction != null) no("prediction", "predicted outputs are not supported");
  if (body.web_search_options != null) no("web_search_options", "there is no web search here");
}

/** logit_bias keys are token ids (as strings) of the model's vocabulary. */
function logitBias(body: Body, model: { id: string; hasToken(id: number): boolean }) {
  const bias = new Map<number, number>();
  for (const [key, value] of Object.entries(body.logit_bias ?? {})) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || !model.hasToken(id)) {
      throw new ApiError(
        "invalid_request",
        `logit_bias: "${key}" is not a token id of ${model.id}`,
        `logit_bias.${key}`,
      );
    }
    bias.set(id, value);
  }
  return bias;
}

/** The pipeline's option names, as this route's request fields. */
const FIELDS = { maxTokens: "max_tokens", returnAttention: "return_attention" };

/** The request's decoding options; without a limit, up to 64 tokens or what the context has left. */
function chatOptions(body: Body, model: ChatPipeline, messages: ChatMessage[]): ChatOptions {
  const requested = body.max_completion_tokens ?? body.max_tokens;
  const returnAttention = body.return_attention ?? false;
  const promptLength = model.validate(messages, requested ?? 1, returnAttention).length;
  return {
    maxTokens: requested ?? Math.max(1, Math.min(64, model.maxPositions - promptLength)),
    temperature: body.temperature ?? 0,
    topP: body.top_p ?? 1,
    topK: body.top_k ?? 0,
    seed: body.seed ?? Math.floor(Math.random() * 2 ** 32),
    stop: body.stop == null ? [] : [body.stop].flat(),
    topLogprobs: body.logprobs ? Math.max(body.top_logprobs ?? 0, 0) : 0,
    frequencyPenalty: body.frequency_penalty ?? 0,
    presencePenalty: body.presence_penalty ?? 0,
    logitBias: logitBias(body, model),
    returnAttention,
  };
}

const usageOf = (r: ChatResult) => ({
  prompt_tokens: r.promptTokens,
  completion_tokens: r.completionTokens,
  total_tokens: r.promptTokens + r.completionTokens,
});

const bytes = (text: string) => [...new TextEncoder().encode(text)];

/** OpenAI's logprobs object for `tokens` (null when the request did not ask). */
const logprobsOf = (tokens: ChatToken[], wanted: boolean | null | undefined) =>
  wanted
    ? {
      content: tokens.map((t) => ({
        token: t.token,
        logprob: t.logprob,
        bytes: bytes(t.token),
        top_logprobs: t.top_logprobs.map((a) => ({ ...a, bytes: bytes(a.token) })),
      })),
      refusal: null,
    }
    : null;

/**
 * The answer as chat.completion.chunk events, as OpenAI streams them; a client that leaves
 * stops the decoding between tokens.
 */
function streamChat(
  c: Context<Env>,
  body: Body,
  model: ChatPipeline,
  messages: ChatMessage[],
  options: ChatOptions,
  reply: { id: string; created: number; model: string },
): Response {
  return streamSSE(c, async (stream) => {
    const stop = new AbortController();
    stream.onAbort(() => stop.abort());
    // As OpenAI: with include_usage every chunk has "usage": null but the last, which has
    // no choices and the usage. Our timings ride on the last chunk either way.
    const withUsage = body.stream_options?.include_usage === true;
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      stream.writeSSE({
        data: JSON.stringify({
          ...reply,
          object: "chat.completion.chunk",
          choices,
          ...(withUsage ? { usage: null } : {}),
          ...extra,
        }),
      });
    try {
      await chunk([{
        index: 0,
        delta: { role: "assistant", content: "", refusal: null },
        logprobs: null,
        finish_reason: null,
      }]);
      const r = await model.chat(messages, options, {
        signal: stop.signal,
        progress: ({ text, tokens, attention }) =>
          chunk([{
            index: 0,
            delta: { content: text },
            logprobs: logprobsOf(tokens, body.logprobs),
            finish_reason: null,
            ...(attention ? { attention } : {}),
          }]),
      });
      countTokens("chat", model.id, r.completionTokens);
      const finish = { index: 0, delta: {}, logprobs: null, finish_reason: r.finishReason };
      if (withUsage) {
        await chunk([finish]);
        await chunk([], { usage: usageOf(r), timings: r.timings });
      } else {
        await chunk([finish], { timings: r.timings });
      }
      await stream.writeSSE({ data: "[DONE]" });
    } catch (e) {
      if (stop.signal.aborted) return; // the client left
      const err = streamedError(c, e, FIELDS);
      await stream.writeSSE({ data: JSON.stringify(err.toJSON()) });
    }
  });
}

export function chatRoutes(app: App, { config, registry }: Deps): void {
  route(app, {
    method: "post",
    path: "/v1/chat/completions",
    family: "chat",
    summary: "Chat about images (multimodal LLM), OpenAI-compatible",
    description:
      "Both architectures: a unified embedding decoder (vlm-tiny, SmolVLM layout) and a " +
      "cross-attention decoder (vlm-xattn-tiny). stream: true answers with Server-Sent Events.",
    tags: ["Chat"],
    body: ChatRequest,
    example: {
      messages: [{
        role: "user",
        content: [
          { type: "image_url", image_url: { url: EXAMPLE_IMAGE } },
          { type: "text", text: "what color is the background?" },
        ],
      }],
      max_tokens: 16,
    },
    events: [
      "data: chat.completion.chunk, first with delta.role, then delta.content pieces (each with " +
      "its tokens' logprobs when asked), then one with finish_reason",
      "data: with stream_options.include_usage, a last chunk with choices [] and usage (and timings)",
      "data: [DONE]",
    ],
    response: ChatResponse,
    fields: FIELDS,
  }, async (c, body) => {
    rejectUnsupported(body);
    const model = await registry.get("chat", body.model ?? undefined);
    const last = body.messages.at(-1)!;
    if (last.role === "assistant") {
      throw new ApiError(
        "invalid_request",
        "The last message must be from the user (or system): there is nothing to answer",
        `messages.${body.messages.length - 1}.role`,
      );
    }
    const messages = await toMessages(c, config, body);
    const options = chatOptions(body, model, messages);
    // a 400 now, before a stream has started
    model.validate(messages, options.maxTokens, options.returnAttention);
    const reply = {
      id: `chatcmpl-${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`,
      created: Math.floor(Date.now() / 1000),
      model: model.id,
    };
    if (body.stream) return streamChat(c, body, model, messages, options, reply);
    const r = await model.chat(messages, options, { signal: c.req.raw.signal });
    countTokens("chat", model.id, r.completionTokens);
    setMetric(c, "vision", r.timings.vision_ms);
    setMetric(c, "prefill", r.timings.prefill_ms);
    setMetric(c, "decode", r.timings.decode_ms);
    return c.json({
      ...reply,
      object: "chat.completion" as const,
      choices: [{
        index: 0,
        message: { role: "assistant" as const, content: r.text, refusal: null },
        logprobs: logprobsOf(r.tokens, body.logprobs),
        finish_reason: r.finishReason,
        ...(r.attention ? { attention: r.attention } : {}),
      }],
      usage: usageOf(r),
      timings: r.timings,
    });
  });
}
