/**
 * Image generation, OpenAI-shaped: `POST /v1/images/generations` (text to image) and
 * `POST /v1/images/edits` (inpainting with `mask`, img2img with `strength`). Two generators sit
 * behind the same request and response: diffusion models (negative prompt, steps, guidance,
 * scheduler) and DALL-E models (temperature, top-k, top-p, CLIP `rerank`). `stream: true` answers
 * with Server-Sent Events: progress per step, previews, then the images. A client that
 * disconnects stops the job between steps.
 */
import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { setMetric } from "hono/timing";
import { ApiError } from "../core/errors.ts";
import { encodePng, type RgbImage } from "../core/image.ts";
import type { DalleOptions } from "../models/dalle/pipeline.ts";
import type { GenerateOptions, Progress } from "../models/diffusion/pipeline.ts";
import { SCHEDULERS } from "../models/diffusion/schedulers.ts";
import { ImageInput } from "./clip.ts";
import { type App, decodeImages, type Deps, type Env, route } from "./http.ts";

const MAX_IMAGES = 4;

const GenerationFields = {
  model: z.string().min(1).optional().openapi({
    description: "Model id; the default image model when absent",
    example: "sd-tiny",
  }),
  prompt: z.string().min(1).max(4000).openapi({
    example: "a large red circle in the center on a white background",
  }),
  negative_prompt: z.string().max(4000).optional(),
  n: z.number().int().min(1).max(MAX_IMAGES).default(1),
  size: z.string().regex(/^(\d+x\d+|auto)$/, 'Use "WIDTHxHEIGHT", e.g. "64x64", or "auto"')
    .optional().openapi({ example: "64x64" }),
  width: z.number().int().positive().optional(),
  height: z.number().int().positive().optional(),
  response_format: z.enum(["b64_json", "url"]).default("b64_json"),
  output_format: z.literal("png").default("png"),
  num_inference_steps: z.number().int().min(1).max(1000).optional().openapi({
    description: "Denoising steps; the model's default when absent",
  }),
  guidance_scale: z.number().min(0).max(50).optional().openapi({
    description: "Classifier-free guidance; ≤ 1 runs the UNet once per step without it",
  }),
  seed: z.number().int().min(0).max(2 ** 32 - 1).optional().openapi({
    description: "Image j uses seed + j; random when absent, and returned",
  }),
  scheduler: z.enum(SCHEDULERS).optional(),
  temperature: z.number().min(0).max(2).optional().openapi({
    description: "DALL-E models: sampling temperature of the image tokens (0: greedy)",
  }),
  top_k: z.number().int().min(0).max(10000).optional().openapi({
    description: "DALL-E models: sample among the k likeliest codes (0: all)",
  }),
  top_p: z.number().gt(0).max(1).optional().openapi({
    description: "DALL-E models: nucleus sampling",
  }),
  rerank: z.number().int().min(1).max(MAX_IMAGES).optional().openapi({
    description:
      "DALL-E models: sample n candidates, return the k that CLIP rates closest to the prompt",
  }),
  stream: z.boolean().default(false),
  partial_images: z.number().int().min(0).max(10).default(0).openapi({
    description: "Streaming: how many low-resolution previews to send during denoising",
  }),
  user: z.string().optional(),
};

const GenerationRequest = z.object(GenerationFields).openapi("ImageGenerationRequest");
const EditRequest = z.object({
  ...GenerationFields,
  image: ImageInput,
  mask: ImageInput.optional().openapi({
    description: "Repaint where the mask is transparent (or, without alpha, white)",
  }),
  strength: z.number().min(0).max(1).optional().openapi({
    description: "How much of the schedule to run from the noised input: 0 keeps it, 1 redraws",
  }),
}).openapi("ImageEditRequest");

const ImagesResponse = z.object({
  created: z.number().int(),
  model: z.string(),
  data: z.array(z.object({
    b64_json: z.string(),
    seed: z.number().int(),
    clip_score: z.number().optional().openapi({
      description: "With rerank: CLIP cosine similarity of the image to the prompt",
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
  mask?: string | Uint8Array;
  strength?: number;
};

const b64 = async (img: RgbImage) => (await encodePng(img)).toBase64();

/** Nearest-neighbour enlargement, so that a 16 × 16 preview is visible in a browser as is. */
function enlarge(rgba: Uint8Array, w: number, h: number, factor: number): RgbImage {
  const W = w * factor, H = h * factor, data = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const s = (Math.floor(y / factor) * w + Math.floor(x / factor)) * 4;
      data.set(rgba.subarray(s, s + 3), (y * W + x) * 3);
    }
  }
  return { width: W, height: H, data };
}

/** What a generator returns, whichever family it is. */
interface Output {
  images: RgbImage[];
  seeds: number[];
  scores?: number[];
  steps: number;
  scheduler: string;
  loop?: "gpu-resident" | "host";
  decoder?: "wgsl-kernels" | "onnxruntime";
  timings: Record<string, number | number[]>;
}

/** A validated request, ready to run with or without progress. */
interface Job {
  model: string;
  steps: number;
  width: number;
  run(progress?: (p: Progress) => Promise<void>, signal?: AbortSignal): Promise<Output>;
}

/** A parameter of the other family, set explicitly, is a 400 rather than silently ignored. */
function rejectFields(
  body: Record<string, unknown>,
  fields: string[],
  model: string,
  kind: string,
) {
  const set = fields.find((f) => body[f] !== undefined);
  if (set) {
    throw new ApiError(
      "invalid_request",
      `${set} does not apply to ${model}, a ${kind} model`,
      set,
    );
  }
}

export function imageRoutes(app: App, { config, registry }: Deps): void {
  const diffusionJob = async (
    c: Context<Env>,
    body: Body,
    edit: boolean,
    previews: number,
  ): Promise<Job> => {
    const model = await registry.get("diffusion", body.model);
    rejectFields(body, ["temperature", "top_k", "top_p", "rerank"], model.id, "diffusion");
    const s = model.settings;
    let width = body.width ?? s.defaultSize, height = body.height ?? s.defaultSize;
    if (body.size && body.size !== "auto") [width, height] = body.size.split("x").map(Number);
    const [image, mask] = edit
      ? await decodeImages(c, config, [
        { value: body.image!, param: "image" },
        ...(body.mask ? [{ value: body.mask, param: "mask" }] : []),
      ])
      : [];
    const steps = body.num_inference_steps ?? s.defaultSteps;
    const options: GenerateOptions = {
      prompt: body.prompt,
      negativePrompt: body.negative_prompt,
      steps,
      guidance: body.guidance_scale ?? s.defaultGuidance,
      seed: body.seed ?? Math.floor(Math.random() * 2 ** 32),
      scheduler: body.scheduler ?? s.defaultScheduler,
      width,
      height,
      n: body.n,
      image,
      mask,
      strength: body.strength,
      previewEvery: previews > 0 ? Math.max(1, Math.floor(steps / (previews + 1))) : 0,
    };
    model.validate(options); // a 400 now, before a stream has started
    return {
      model: model.id,
      steps,
      width,
      run: (progress, signal) => model.generate(options, progress, signal),
    };
  };

  const dalleJob = async (body: Body, edit: boolean, previews: number): Promise<Job> => {
    const model = await registry.get("dalle", body.model);
    const diffusionOnly = ["negative_prompt", "num_inference_steps", "guidance_scale", "scheduler"];
    rejectFields(body, diffusionOnly, model.id, "DALL-E");
    if (edit) {
      throw new ApiError(
        "invalid_request",
        `${model.id} generates from text only; edit with a diffusion model`,
        "model",
      );
    }
    const S = model.settings.size;
    const size = body.size && body.size !== "auto"
      ? body.size
      : `${body.width ?? S}x${body.height ?? S}`;
    if (size !== `${S}x${S}`) {
      throw new ApiError("invalid_request", `${model.id} draws ${S}x${S} images only`, "size");
    }
    const clip = body.rerank ? await registry.get("clip") : null;
    const options: DalleOptions = {
      prompt: body.prompt,
      n: body.n,
      seed: body.seed ?? Math.floor(Math.random() * 2 ** 32),
      temperature: body.temperature ?? model.settings.defaultTemperature,
      topK: body.top_k ?? model.settings.defaultTopK,
      topP: body.top_p ?? 1,
      rerank: clip
        ? {
          k: body.rerank!,
          score: (images) => clip.scoreImages(images, body.prompt),
        }
        : undefined,
    };
    model.validate(options);
    const tokens = model.imageTokens;
    return {
      model: model.id,
      steps: tokens,
      width: S,
      run: async (progress, signal) => {
        const every = previews > 0 ? Math.max(1, Math.floor(tokens / (previews + 1))) : 0;
        const g = await model.generate({ ...options, previewEvery: every }, progress, signal);
        return { ...g, scheduler: "sampling" };
      },
    };
  };

  const handle = async (c: Context<Env>, body: Body, edit: boolean) => {
    if (body.response_format === "url") {
      throw new ApiError(
        "unsupported",
        'This server does not host files: use response_format "b64_json"',
        "response_format",
      );
    }
    const previews = body.stream ? body.partial_images : 0;
    const job = body.model && registry.familyOf(body.model) === "dalle"
      ? await dalleJob(body, edit, previews)
      : await diffusionJob(c, body, edit, previews);
    const answer = async (g: Output) => ({
      created: Math.floor(Date.now() / 1000),
      model: job.model,
      data: await Promise.all(g.images.map(async (img, j) => ({
        b64_json: await b64(img),
        seed: g.seeds[j],
        ...(g.scores ? { clip_score: g.scores[j] } : {}),
      }))),
      size: `${g.images[0].width}x${g.images[0].height}`,
      scheduler: g.scheduler,
      steps: g.steps,
      backend: registry.sessions.backend.name,
      loop: g.loop,
      decoder: g.decoder,
      timings: g.timings,
    });

    if (!body.stream) {
      const g = await job.run(undefined, c.req.raw.signal);
      for (const [name, ms] of Object.entries(g.timings)) {
        if (name === "total_ms") continue;
        setMetric(
          c,
          name.replace(/_ms$/, ""),
          Array.isArray(ms) ? ms.reduce((a, b) => a + b, 0) : ms,
        );
      }
      return c.json(await answer(g));
    }

    return streamSSE(c, async (stream) => {
      const stop = new AbortController();
      stream.onAbort(() => stop.abort());
      let partial = 0;
      const progress = async (p: Progress) => {
        await stream.writeSSE({
          event: "image_generation.progress",
          data: JSON.stringify({
            type: "image_generation.progress",
            step: p.step,
            total: p.total,
            percent: Math.round(100 * p.step / p.total),
          }),
        });
        for (const [j, rgba] of (p.preview?.rgba ?? []).entries()) {
          const factor = Math.max(1, Math.floor(job.width / p.preview!.width));
          await stream.writeSSE({
            event: "image_generation.partial_image",
            data: JSON.stringify({
              type: "image_generation.partial_image",
              partial_image_index: partial,
              image_index: j,
              step: p.step,
              b64_json: await b64(enlarge(rgba, p.preview!.width, p.preview!.height, factor)),
            }),
          });
        }
        if (p.preview) partial++;
      };
      try {
        const g = await job.run(progress, stop.signal);
        await stream.writeSSE({
          event: "image_generation.completed",
          data: JSON.stringify({ type: "image_generation.completed", ...await answer(g) }),
        });
      } catch (e) {
        if (stop.signal.aborted) return; // the client left; nobody to tell
        const err = e instanceof ApiError
          ? e
          : new ApiError("internal_error", `Generation failed (request id ${c.get("requestId")})`);
        if (!(e instanceof ApiError)) console.error(`[${c.get("requestId")}]`, e);
        await stream.writeSSE({ event: "error", data: JSON.stringify(err.toJSON()) });
      }
    });
  };

  route(app, {
    method: "post",
    path: "/v1/images/generations",
    summary: "Generate images from a prompt (diffusion or DALL-E)",
    description:
      "OpenAI-compatible, plus seed; for diffusion models negative_prompt, num_inference_steps, " +
      "guidance_scale and scheduler; for DALL-E models temperature, top_k, top_p and rerank. " +
      "With stream: true, Server-Sent Events: image_generation.progress per step, " +
      "image_generation.partial_image previews, then image_generation.completed.",
    tags: ["Images"],
    body: GenerationRequest,
    response: ImagesResponse,
  }, (c, body) => handle(c, body, false));

  route(app, {
    method: "post",
    path: "/v1/images/edits",
    summary: "Inpaint (image + mask) or transform (image + strength) an image",
    tags: ["Images"],
    body: EditRequest,
    multipart: true,
    response: ImagesResponse,
  }, (c, body) => handle(c, body, true));
}
