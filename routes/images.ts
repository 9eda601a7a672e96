/**
 * Image generation, OpenAI-shaped: `POST /v1/images/generations` (text to image) and
 * `POST /v1/images/edits` (inpainting with `mask`, img2img with `strength`), plus the diffusion
 * parameters (negative prompt, steps, guidance, seed, scheduler). `stream: true` answers with
 * Server-Sent Events: progress per step, low-resolution previews, then the images. A client
 * that disconnects stops the job between steps.
 */
import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { setMetric } from "hono/timing";
import { ApiError } from "../core/errors.ts";
import { encodePng, type RgbImage } from "../core/image.ts";
import type { Generated, GenerateOptions, Progress } from "../models/diffusion/pipeline.ts";
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
  data: z.array(z.object({ b64_json: z.string(), seed: z.number().int() })),
  size: z.string(),
  scheduler: z.string(),
  steps: z.number().int(),
  backend: z.string(),
  loop: z.enum(["gpu-resident", "host"]).openapi({
    description: "gpu-resident: the latents stayed on the GPU between UNet calls (WebGPU)",
  }),
  timings: z.object({
    text_encoder_ms: z.number(),
    vae_encoder_ms: z.number(),
    unet_ms: z.array(z.number()),
    vae_decoder_ms: z.number(),
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

export function imageRoutes(app: App, { config, registry }: Deps): void {
  const handle = async (c: Context<Env>, body: Body, edit: boolean) => {
    if (body.response_format === "url") {
      throw new ApiError(
        "unsupported",
        'This server does not host files: use response_format "b64_json"',
        "response_format",
      );
    }
    const model = await registry.get("diffusion", body.model);
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
      previewEvery: body.stream && body.partial_images > 0
        ? Math.max(1, Math.floor(steps / (body.partial_images + 1)))
        : 0,
    };
    model.validate(options); // a 400 now, before a stream has started
    const answer = async (g: Generated) => ({
      created: Math.floor(Date.now() / 1000),
      model: model.id,
      data: await Promise.all(g.images.map(async (img, j) => ({
        b64_json: await b64(img),
        seed: g.seeds[j],
      }))),
      size: `${width}x${height}`,
      scheduler: g.scheduler,
      steps: g.steps,
      backend: registry.sessions.backend.name,
      loop: g.loop,
      timings: g.timings,
    });

    if (!body.stream) {
      const g = await model.generate(options, undefined, c.req.raw.signal);
      setMetric(c, "text_encoder", g.timings.text_encoder_ms);
      setMetric(c, "unet", g.timings.unet_ms.reduce((a, b) => a + b, 0));
      setMetric(c, "vae", g.timings.vae_decoder_ms + g.timings.vae_encoder_ms);
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
          const factor = Math.max(1, Math.floor(width / p.preview!.width));
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
        const g = await model.generate(options, progress, stop.signal);
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
    summary: "Generate images from a prompt (diffusion)",
    description:
      "OpenAI-compatible, plus negative_prompt, num_inference_steps, guidance_scale, seed and " +
      "scheduler. With stream: true, Server-Sent Events: image_generation.progress per step, " +
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
