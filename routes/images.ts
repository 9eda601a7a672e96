/**
 * Image generation, OpenAI-shaped: `POST /v1/images/generations` (text to image) and
 * `POST /v1/images/edits` (inpainting with `mask`, img2img with `strength`). Two generators sit
 * behind the same request and response: diffusion models (negative prompt, steps or `quality`,
 * guidance, scheduler) and DALL-E models (temperature, top-k, top-p); both offer CLIP `rerank`
 * (best k of n). `stream: true` answers with Server-Sent Events named as OpenAI's
 * (`image_generation.*` for generations, `image_edit.*` for edits): our `progress` per step,
 * exactly `partial_images` previews, then one `completed` event per image. A client that
 * disconnects stops the job between steps. `return_attention` adds each image's prompt-word maps
 * (`data[i].attention`, and in its `completed` event) from the generators that declare
 * `explainable`; from the others it is a 400.
 *
 * What cannot be honoured is a 400 naming the field (a transparent background, `style`,
 * moderation, other output formats); `null` for an optional field means "not given".
 */
import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { setMetric } from "hono/timing";
import { ApiError } from "../core/errors.ts";
import { countDiffusionSteps, countTokens } from "../core/metrics.ts";
import { encodePng, type RgbImage } from "../core/image.ts";
import type {
  ImageGenerator,
  ImageJob,
  ImageOutput,
  ImageProgress,
  ImageRequest,
} from "../models/images.ts";
import { SCHEDULERS } from "../models/diffusion/schedulers.ts";
import { familiesOf } from "../models/families.ts";
import { EXAMPLE_IMAGE, ImageInput } from "./clip.ts";
import {
  type App,
  AttentionMaps,
  decodeImages,
  type Deps,
  type Env,
  route,
  streamedError,
} from "./http.ts";

const MAX_IMAGES = 4;

const QUALITIES = ["low", "medium", "high", "auto", "standard", "hd"] as const;
type Quality = typeof QUALITIES[number];

const GenerationFields = {
  model: z.string().min(1).nullish().openapi({
    description: "Model id; the default image model when absent",
    example: "sd-tiny",
  }),
  prompt: z.string().min(1).max(4000).openapi({
    example: "a large red circle in the center on a white background",
  }),
  negative_prompt: z.string().max(4000).nullish(),
  n: z.number().int().min(1).max(MAX_IMAGES).nullish().openapi({ description: "Default 1" }),
  size: z.string().regex(/^(\d+x\d+|auto)$/, 'Use "WIDTHxHEIGHT", e.g. "64x64", or "auto"')
    .nullish().openapi({ example: "64x64" }),
  width: z.number().int().positive().nullish(),
  height: z.number().int().positive().nullish(),
  response_format: z.enum(["b64_json", "url"]).nullish().openapi({
    description: 'Only "b64_json" (the default): this server hosts no files',
  }),
  output_format: z.literal("png").nullish().openapi({ description: "PNG only" }),
  output_compression: z.number().int().min(0).max(100).nullish().openapi({
    description: "Not supported (it applies to JPEG and WebP; this server writes PNG): a 400",
  }),
  quality: z.enum(QUALITIES).nullish().openapi({
    description: "Diffusion: low, medium (= standard = auto, the model's default steps) or " +
      "high (= hd) choose the denoising steps: half, the default and twice the default. " +
      "DALL-E models sample a fixed number of tokens: auto or standard only",
  }),
  background: z.enum(["transparent", "opaque", "auto"]).nullish().openapi({
    description: "opaque or auto: the generators draw opaque images; transparent is a 400",
  }),
  style: z.enum(["vivid", "natural"]).nullish().openapi({
    description: "Not supported (no model here has styles): a 400",
  }),
  moderation: z.enum(["low", "auto"]).nullish().openapi({
    description: 'This server has no content moderation: "low" is accepted and does nothing; ' +
      '"auto" (filtering) cannot be honoured and is a 400',
  }),
  num_inference_steps: z.number().int().min(1).max(1000).nullish().openapi({
    description: "Denoising steps; the model's default when absent",
  }),
  guidance_scale: z.number().min(0).max(50).nullish().openapi({
    description: "Classifier-free guidance; ≤ 1 runs the UNet once per step without it",
  }),
  seed: z.number().int().min(0).max(2 ** 32 - 1).nullish().openapi({
    description: "Image j uses seed + j; random when absent, and returned",
  }),
  scheduler: z.enum(SCHEDULERS).nullish(),
  temperature: z.number().min(0).max(2).nullish().openapi({
    description: "DALL-E models: sampling temperature of the image tokens (0: greedy)",
  }),
  top_k: z.number().int().min(0).max(10000).nullish().openapi({
    description: "DALL-E models: sample among the k likeliest codes (0: all)",
  }),
  top_p: z.number().gt(0).max(1).nullish().openapi({
    description: "DALL-E models: nucleus sampling",
  }),
  rerank: z.number().int().min(1).max(MAX_IMAGES).nullish().openapi({
    description: "Both generators: make n candidates, return the k that CLIP rates closest " +
      "to the prompt, best first, each with its clip_score",
  }),
  stream: z.boolean().nullish(),
  partial_images: z.number().int().min(0).max(10).nullish().openapi({
    description: "Streaming: exactly this many previews of the predicted image (default 0); " +
      "at most one per step",
  }),
  return_attention: z.boolean().nullish().openapi({
    description: "Per prompt word, where in each image it acted, in data[i].attention: " +
      "diffusion: the UNet's cross-attention to the word summed over heads, blocks and steps " +
      "(DAAM), on the latent grid; DALL-E: each image token's attention to the word, on the " +
      "token grid. A 400 for models without attention outputs",
  }),
  user: z.string().nullish(),
};

const GenerationRequest = z.object(GenerationFields).openapi("ImageGenerationRequest");
const EditRequest = z.object({
  ...GenerationFields,
  image: ImageInput,
  mask: ImageInput.nullish().openapi({
    description: "Repaint where the mask is transparent (or, without alpha, white)",
  }),
  strength: z.number().min(0).max(1).nullish().openapi({
    description: "How much of the schedule to run from the noised input: 0 keeps it, 1 redraws",
  }),
  input_fidelity: z.enum(["high", "low"]).nullish().openapi({
    description: "Not supported: a 400 (use strength)",
  }),
}).openapi("ImageEditRequest");

const ImagesUsage = z.object({
  input_tokens: z.number().int(),
  output_tokens: z.number().int(),
  total_tokens: z.number().int(),
  input_tokens_details: z.object({ text_tokens: z.number().int(), image_tokens: z.number().int() }),
}).openapi("ImagesUsage", {
  description: "Prompt tokens in; DALL-E: the image tokens sampled out (diffusion has none: 0)",
});

const ImagesResponse = z.object({
  created: z.number().int(),
  model: z.string(),
  background: z.literal("opaque"),
  output_format: z.literal("png"),
  quality: z.enum(["low", "medium", "high"]).optional().openapi({
    description: "Diffusion: the quality level the steps ran at, when they match one",
  }),
  usage: ImagesUsage,
  data: z.array(z.object({
    b64_json: z.string(),
    seed: z.number().int(),
    clip_score: z.number().optional().openapi({
      description: "With rerank: CLIP cosine similarity of the image to the prompt",
    }),
    attention: AttentionMaps.optional().openapi({
      description: "With return_attention: one map per prompt word (no BOS, EOS or padding)",
    }),
  })),
  size: z.string(),
  scheduler: z.string().openapi({ description: 'Diffusion: the scheduler; DALL-E: "sampling"' }),
  steps: z.number().int().openapi({
    description: "Diffusion: denoising steps; DALL-E: image tokens per image",
  }),
  backend: z.string(),
  loop: z.enum(["gpu-resident", "host"]).optional().openapi({
    description: "Diffusion: gpu-resident when the latents stayed on the GPU between UNet calls",
  }),
  decoder: z.enum(["wgsl-kernels", "onnxruntime"]).optional().openapi({
    description: "DALL-E: what ran the transformer (our WGSL kernels on WebGPU, else ORT)",
  }),
  timings: z.object({
    text_encoder_ms: z.number().optional(),
    vae_encoder_ms: z.number().optional(),
    unet_ms: z.array(z.number()).optional(),
    vae_decoder_ms: z.number().optional(),
    transformer_ms: z.number().optional(),
    vqvae_decoder_ms: z.number().optional(),
    rerank_ms: z.number().optional(),
    total_ms: z.number(),
  }),
}).openapi("ImagesResponse");

type Body = z.infer<typeof GenerationRequest> & {
  image?: string | Uint8Array;
  mask?: string | Uint8Array | null;
  strength?: number | null;
  input_fidelity?: string | null;
};

/** The pipelines' option names, as this route's request fields. */
const FIELDS = {
  negativePrompt: "negative_prompt",
  steps: "num_inference_steps",
  guidance: "guidance_scale",
  previews: "partial_images",
  topK: "top_k",
  topP: "top_p",
  width: "size",
  height: "size",
  returnAttention: "return_attention",
};

/** The families this route serves: every image generator (models/families.ts). */
const GENERATORS = familiesOf("images") as Array<"diffusion" | "dalle">;

/** OpenAI's quality names as the generators' levels; auto is the model's default. */
const LEVELS: Record<Quality, ImageRequest["quality"]> = {
  low: "low",
  medium: "medium",
  standard: "medium",
  high: "high",
  hd: "high",
  auto: undefined,
};

const b64 = async (img: RgbImage) => (await encodePng(img)).toBase64();

/** What the request asks for that no generator here can do: a 400 naming the field. */
function rejectUnsupported(body: Body): void {
  const no = (param: string, message: string) => {
    throw new ApiError("unsupported", `${param}: ${message}`, param);
  };
  if (body.response_format === "url") {
    no("response_format", 'this server does not host files: use "b64_json"');
  }
  if (body.background === "transparent") {
    no("background", 'the generators draw opaque images: use "opaque" or "auto"');
  }
  if (body.style != null) no("style", "no model here has styles");
  if (body.moderation === "auto") {
    no(
      "moderation",
      'this server has no content moderation, so it cannot filter as "auto" asks; ' +
        'send "low" or leave it out',
    );
  }
  if (body.output_compression != null) {
    no("output_compression", "it applies to JPEG and WebP; this server writes PNG");
  }
  if (body.input_fidelity != null) no("input_fidelity", "not supported; use strength");
}

/** The request in the generators' words (`images`: the edit's decoded image and mask). */
function imageRequest(body: Body, [image, mask]: RgbImage[]): ImageRequest {
  const [width, height] = body.size && body.size !== "auto"
    ? body.size.split("x").map(Number)
    : [body.width ?? undefined, body.height ?? undefined];
  return {
    prompt: body.prompt,
    n: body.n ?? 1,
    seed: body.seed ?? undefined,
    width,
    height,
    quality: LEVELS[body.quality ?? "auto"],
    previews: body.stream ? body.partial_images ?? 0 : 0,
    rerank: body.rerank ?? undefined,
    negativePrompt: body.negative_prompt ?? undefined,
    steps: body.num_inference_steps ?? undefined,
    guidance: body.guidance_scale ?? undefined,
    scheduler: body.scheduler ?? undefined,
    image,
    mask,
    strength: body.strength ?? undefined,
    temperature: body.temperature ?? undefined,
    topK: body.top_k ?? undefined,
    topP: body.top_p ?? undefined,
    returnAttention: body.return_attention ?? undefined,
  };
}

/** The finished job as OpenAI's ImagesResponse, plus our fields (seeds, scores, timings). */
async function imagesResponse(job: ImageJob, g: ImageOutput, backend: string) {
  const output = g.outputTokens * g.images.length;
  return {
    created: Math.floor(Date.now() / 1000),
    model: job.model,
    background: "opaque" as const,
    output_format: "png" as const,
    ...(job.quality ? { quality: job.quality } : {}),
    usage: {
      input_tokens: g.promptTokens,
      output_tokens: output,
      total_tokens: g.promptTokens + output,
      input_tokens_details: { text_tokens: g.promptTokens, image_tokens: 0 },
    },
    data: await Promise.all(g.images.map(async (img, j) => ({
      b64_json: await b64(img),
      seed: g.seeds[j],
      ...(g.scores ? { clip_score: g.scores[j] } : {}),
      ...(g.attention ? { attention: g.attention[j] } : {}),
    }))),
    size: `${g.images[0].width}x${g.images[0].height}`,
    scheduler: g.scheduler,
    steps: g.steps,
    backend,
    loop: g.loop,
    decoder: g.decoder,
    timings: g.timings,
  };
}

/** For /metrics: the work done, over all `n` candidates (rerank returns the best k of them). */
function countWork(job: ImageJob, g: ImageOutput, n: number): void {
  if (g.outputTokens > 0) countTokens(job.family, job.model, g.outputTokens * n);
  else countDiffusionSteps(job.model, g.steps * n);
}

/**
 * The job as Server-Sent Events named as OpenAI's (`prefix`.progress / partial_image /
 * completed); a client that leaves stops it between steps.
 */
function streamImages(
  c: Context<Env>,
  job: ImageJob,
  prefix: "image_generation" | "image_edit",
  finish: (g: ImageOutput) => ReturnType<typeof imagesResponse>,
): Response {
  // The fields OpenAI's partial and completed events share.
  const described = () => ({
    created_at: Math.floor(Date.now() / 1000),
    size: `${job.width}x${job.height}`,
    quality: job.quality ?? "auto",
    background: "opaque",
    output_format: "png",
  });
  return streamSSE(c, async (stream) => {
    const stop = new AbortController();
    stream.onAbort(() => stop.abort());
    const send = (kind: string, fields: Record<string, unknown>) =>
      stream.writeSSE({
        event: `${prefix}.${kind}`,
        data: JSON.stringify({ type: `${prefix}.${kind}`, ...fields }),
      });
    let partial = 0;
    const progress = async (p: ImageProgress) => {
      await send("progress", {
        step: p.step,
        total: p.total,
        percent: Math.round(100 * p.step / p.total),
      });
      for (const [j, image] of (p.preview ?? []).entries()) {
        await send("partial_image", {
          b64_json: await b64(image),
          ...described(),
          partial_image_index: partial,
          image_index: j,
          step: p.step,
        });
      }
      if (p.preview) partial++;
    };
    try {
      const whole = await finish(await job.run({ progress, signal: stop.signal }));
      // One completed event per image, as OpenAI's carry one image each; the last also
      // carries the whole response (data, timings, …) for clients that want it in one piece.
      for (const [j, d] of whole.data.entries()) {
        const last = j === whole.data.length - 1;
        await send("completed", {
          ...(last ? whole : {}),
          ...described(),
          b64_json: d.b64_json,
          usage: whole.usage,
          image_index: j,
          seed: d.seed,
          ...(d.clip_score === undefined ? {} : { clip_score: d.clip_score }),
          ...(d.attention ? { attention: d.attention } : {}),
        });
      }
    } catch (e) {
      if (stop.signal.aborted) return; // the client left; nobody to tell
      const err = streamedError(c, e, FIELDS);
      await stream.writeSSE({ event: "error", data: JSON.stringify(err.toJSON()) });
    }
  });
}

export function imageRoutes(app: App, { config, registry }: Deps): void {
  /** The job a request asks for: its model's generator plans it (a 400 before any work). */
  const plan = async (c: Context<Env>, body: Body, edit: boolean): Promise<ImageJob> => {
    rejectUnsupported(body);
    // The model's family if it draws images; else diffusion's (whose lookup names the mismatch).
    const family = GENERATORS.find((f) => body.model && registry.familyOf(body.model) === f) ??
      "diffusion";
    const generator: ImageGenerator = await registry.get(family, body.model ?? undefined);
    const images = edit
      ? await decodeImages(c, config, [
        { value: body.image!, param: "image" },
        ...(body.mask ? [{ value: body.mask, param: "mask" }] : []),
      ])
      : [];
    return generator.plan(imageRequest(body, images));
  };

  const handle = async (c: Context<Env>, body: Body, edit: boolean) => {
    const job = await plan(c, body, edit);
    const finish = (g: ImageOutput) => {
      countWork(job, g, body.n ?? 1);
      return imagesResponse(job, g, registry.backend?.name ?? "unknown");
    };
    if (body.stream) return streamImages(c, job, edit ? "image_edit" : "image_generation", finish);
    const g = await job.run({ signal: c.req.raw.signal });
    for (const [name, ms] of Object.entries(g.timings)) {
      if (name === "total_ms") continue;
      const total = Array.isArray(ms) ? ms.reduce((a, b) => a + b, 0) : ms;
      setMetric(c, name.replace(/_ms$/, ""), total);
    }
    return c.json(await finish(g));
  };

  route(app, {
    method: "post",
    path: "/v1/images/generations",
    family: "diffusion",
    summary: "Generate images from a prompt (diffusion or DALL-E)",
    description:
      "OpenAI-compatible, plus seed and rerank (best k of n by CLIP); for diffusion models " +
      "negative_prompt, num_inference_steps (or quality), guidance_scale and scheduler; for " +
      "DALL-E models temperature, top_k and top_p. With stream: true, Server-Sent Events: " +
      "image_generation.progress per step (ours), exactly partial_images " +
      "image_generation.partial_image previews, then one image_generation.completed per image " +
      "(the last also holds the whole response).",
    tags: ["Images"],
    body: GenerationRequest,
    example: {
      prompt: "a large red circle in the center on a white background",
      n: 2,
      seed: 42,
      quality: "low",
    },
    events: [
      "image_generation.progress: { step, total, percent } every step (ours)",
      "image_generation.partial_image: exactly partial_images previews of the predicted image " +
      "(b64_json, partial_image_index, image_index, …)",
      "image_generation.completed: one per image (b64_json, usage, seed, with return_attention " +
      "its attention, …); the last also holds the whole response",
      "error: { error } if the job fails after the stream started",
    ],
    response: ImagesResponse,
    fields: FIELDS,
  }, (c, body) => handle(c, body, false));

  route(app, {
    method: "post",
    path: "/v1/images/edits",
    family: "diffusion",
    summary: "Inpaint (image + mask) or transform (image + strength) an image",
    description: "The generation fields, plus image, mask and strength. With stream: true, the " +
      "same events as generations, named image_edit.progress, image_edit.partial_image and " +
      "image_edit.completed.",
    tags: ["Images"],
    body: EditRequest,
    multipart: true,
    example: {
      prompt: "a large blue square in the center on a white background",
      image: EXAMPLE_IMAGE,
      strength: 0.6,
      quality: "low",
    },
    events: [
      "image_edit.progress: { step, total, percent } every step (ours)",
      "image_edit.partial_image: exactly partial_images previews of the predicted image",
      "image_edit.completed: one per image; the last also holds the whole response",
      "error: { error } if the job fails after the stream started",
    ],
    response: ImagesResponse,
    fields: FIELDS,
  }, (c, body) => handle(c, body, true));
}
