/**
 * CLIP endpoints: `POST /v1/embeddings` (OpenAI shape, texts and images), `POST /v1/clip/classify`
 * (zero-shot classification, optional patch maps) and `POST /v1/clip/similarity`.
 */
import { z } from "@hono/zod-openapi";
import { endTime, startTime } from "hono/timing";
import { ApiError } from "../core/errors.ts";
import type { RgbImage } from "../core/image.ts";
import { DEFAULT_TEMPLATE } from "../models/clip/pipeline.ts";
import { type App, decodeImages, type Deps, route } from "./http.ts";
import type { Context } from "hono";

const MAX_TEXTS = 256;
const MAX_IMAGES = 32;
/**
 * Characters per text, checked by the schema before anything is tokenized (a 19 MB text was
 * tokenized before its length was refused). CLIP reads 77 tokens at most, so this is generous.
 */
const MAX_TEXT_CHARS = 2000;
const Text = z.string().max(MAX_TEXT_CHARS);

export const ImageInput = z.union([
  z.string().min(1),
  z.instanceof(Uint8Array).openapi({ type: "string", format: "binary" }),
]).openapi({
  type: "string",
  description:
    "A data URL (data:image/png;base64,...) or bare base64; a file in multipart uploads. " +
    "PNG, JPEG, WebP or GIF (first frame).",
});

/** For the examples on /docs: a 16 × 16 PNG of a red circle on black, from world/world.ts. */
export const EXAMPLE_IMAGE =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAQBAMAAADt3eJSAAAAIVBMVEUBAAAAAAACAAAJAgLKJSXfKSkIAQF6FhZ7FxfzLCzaKChv6AmIAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAQklEQVQImWMQhAIGZIYAI4QhoCjECGEIG4IZAmIl7omMggyCQhJTIxsVBRkEGU2iljoLIDPgUnDFcO0IA+FWoNkOAEDQDyUb2CjDAAAAAElFTkSuQmCC";

const ImagePart = z.object({
  type: z.literal("image_url"),
  image_url: z.object({ url: z.string().min(1) }),
}).openapi("ImageUrlPart");

const ModelField = z.string().min(1).optional().openapi({
  description: "Model id; the default CLIP model when absent",
  example: "clip-tiny",
});

const EmbeddingsRequest = z.object({
  model: ModelField,
  input: z.union([
    Text,
    ImagePart,
    z.array(z.union([Text, ImagePart])).min(1).max(MAX_TEXTS),
  ]),
  encoding_format: z.enum(["float", "base64"]).default("float"),
  dimensions: z.number().int().min(1).optional().openapi({
    description: "Must equal the model's embedding size when given: CLIP embeddings cannot be " +
      "shortened (they were not trained to be), so another size is a 400, not a silent ignore",
  }),
  user: z.string().optional(),
}).openapi("EmbeddingsRequest");

const EmbeddingsResponse = z.object({
  object: z.literal("list"),
  data: z.array(z.object({
    object: z.literal("embedding"),
    index: z.number().int(),
    embedding: z.union([z.array(z.number()), z.string()]),
  })),
  model: z.string(),
  usage: z.object({ prompt_tokens: z.number().int(), total_tokens: z.number().int() }),
}).openapi("EmbeddingsResponse");

const Templates = z.union([Text.min(1), z.array(Text.min(1)).min(1).max(32)]);

const ClassifyRequest = z.object({
  model: ModelField,
  image: ImageInput,
  candidate_labels: z.union([z.string().max(MAX_TEXTS * 64), z.array(Text.trim()).max(MAX_TEXTS)])
    .transform((v) => (Array.isArray(v) ? v : v.split(",").map((s) => s.trim())).filter(Boolean))
    .pipe(z.array(z.string()).min(1, "needs at least one non-empty label").max(MAX_TEXTS))
    .openapi({ description: "Labels to choose from (a list, or one comma-separated string)" }),
  hypothesis_template: Templates.optional().openapi({
    description:
      `Prompt template(s) with "{}" for the label; several are averaged. Default "${DEFAULT_TEMPLATE}"`,
  }),
  return_patch_maps: z.boolean().default(false).openapi({
    description:
      "Add, per label, the cosine similarity of each image patch to the label (where the match is)",
  }),
}).openapi("ClassifyRequest");

const PatchMap = z.object({
  rows: z.number().int(),
  cols: z.number().int(),
  values: z.array(z.number()),
});
const ClassifyResponse = z.object({
  model: z.string(),
  results: z.array(
    z.object({ label: z.string(), score: z.number(), patch_map: PatchMap.optional() }),
  ),
}).openapi("ClassifyResponse");

/** A list, or one value (a single multipart field) taken as a list of one. */
const oneOrMany = <T extends z.ZodType>(item: T, max: number) =>
  z.union([item, z.array(item).min(1).max(max)]).transform((v) =>
    (Array.isArray(v) ? v : [v]) as z.infer<T>[]
  );

const SimilarityRequest = z.object({
  model: ModelField,
  images: oneOrMany(ImageInput, MAX_IMAGES),
  texts: oneOrMany(Text.min(1), MAX_TEXTS),
}).openapi("SimilarityRequest");

const SimilarityResponse = z.object({
  model: z.string(),
  cosine: z.array(z.array(z.number())).openapi({
    description: "[images][texts] cosine similarity",
  }),
  probabilities: z.array(z.array(z.number())).openapi({
    description: "[images][texts] softmax over texts per image",
  }),
}).openapi("SimilarityResponse");

export function clipRoutes(app: App, { config, registry }: Deps): void {
  const decode = (c: Context, inputs: Array<{ value: string | Uint8Array; param: string }>) =>
    decodeImages(c, config, inputs);

  route(app, {
    method: "post",
    path: "/v1/embeddings",
    family: "clip",
    summary: "Embed texts and images in CLIP's joint space (L2-normalized)",
    tags: ["CLIP"],
    body: EmbeddingsRequest,
    example: {
      model: "clip-tiny",
      input: ["a photo of a red circle", { type: "image_url", image_url: { url: EXAMPLE_IMAGE } }],
    },
    response: EmbeddingsResponse,
    fields: { texts: "input" },
  }, async (c, body) => {
    const clip = await registry.get("clip", body.model);
    const inputs = Array.isArray(body.input) ? body.input : [body.input];
    const texts: Array<{ i: number; text: string }> = [];
    const images: Array<{ i: number; value: string; param: string }> = [];
    inputs.forEach((x, i) => {
      if (typeof x === "string") texts.push({ i, text: x });
      else images.push({ i, value: x.image_url.url, param: `input.${i}.image_url.url` });
    });
    if (images.length > MAX_IMAGES) {
      throw new ApiError("invalid_request", `At most ${MAX_IMAGES} images per request`, "input");
    }
    const decoded: RgbImage[] = images.length ? await decode(c, images) : [];
    startTime(c, "infer");
    const signal = c.req.raw.signal;
    const [t, im] = await Promise.all([
      texts.length ? clip.embedTexts(texts.map((x) => x.text), { signal }) : null,
      decoded.length ? clip.embedImages(decoded, { signal }) : null,
    ]);
    endTime(c, "infer");
    const vectors: Float32Array[] = new Array(inputs.length);
    texts.forEach((x, k) => (vectors[x.i] = t!.embeds[k]));
    images.forEach((x, k) => (vectors[x.i] = im!.embeds[k]));
    if (body.dimensions !== undefined && body.dimensions !== vectors[0].length) {
      throw new ApiError(
        "unsupported",
        `${clip.id} embeds in ${vectors[0].length} dimensions and cannot return ${body.dimensions}`,
        "dimensions",
      );
    }
    const tokens = t?.tokens ?? 0;
    return c.json({
      object: "list" as const,
      data: vectors.map((v, index) => ({
        object: "embedding" as const,
        index,
        embedding: body.encoding_format === "base64"
          ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength).toBase64()
          : Array.from(v),
      })),
      model: clip.id,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  });

  route(app, {
    method: "post",
    path: "/v1/clip/classify",
    family: "clip",
    summary: "Zero-shot image classification over candidate labels",
    tags: ["CLIP"],
    body: ClassifyRequest,
    multipart: true,
    example: {
      image: EXAMPLE_IMAGE,
      candidate_labels: ["red circle", "blue square", "green triangle"],
    },
    response: ClassifyResponse,
    fields: { labels: "candidate_labels" },
  }, async (c, body) => {
    const clip = await registry.get("clip", body.model);
    const [image] = await decode(c, [{ value: body.image, param: "image" }]);
    const t = body.hypothesis_template ?? DEFAULT_TEMPLATE;
    startTime(c, "infer");
    const results = await clip.classify(image, {
      labels: body.candidate_labels,
      templates: Array.isArray(t) ? t : [t],
      patchMaps: body.return_patch_maps,
    }, { signal: c.req.raw.signal });
    endTime(c, "infer");
    return c.json({ model: clip.id, results });
  });

  route(app, {
    method: "post",
    path: "/v1/clip/similarity",
    family: "clip",
    summary: "Cosine similarity and per-image softmax between images and texts",
    tags: ["CLIP"],
    body: SimilarityRequest,
    multipart: true,
    example: { images: [EXAMPLE_IMAGE], texts: ["a red circle", "a blue square"] },
    response: SimilarityResponse,
  }, async (c, body) => {
    const clip = await registry.get("clip", body.model);
    const images = await decode(
      c,
      body.images.map((value, i) => ({ value, param: `images.${i}` })),
    );
    startTime(c, "infer");
    const result = await clip.similarity(images, body.texts, { signal: c.req.raw.signal });
    endTime(c, "infer");
    return c.json({ model: clip.id, ...result });
  });
}
