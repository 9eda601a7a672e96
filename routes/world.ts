/**
 * Samples of the synthetic shapes world the embedded models were trained on: a rendered scene
 * with its captions and question/answer pairs, so that a user (and the playground's "random
 * scene" button) can try every model without pictures of their own.
 */
import { z } from "@hono/zod-openapi";
import { encodePng } from "../core/image.ts";
import {
  canonicalCaption,
  CANVAS,
  questions,
  referenceSet,
  renderScene,
  rng,
  sampleScenes,
} from "../world/world.ts";
import { type App, route } from "./http.ts";

const SceneQuery = z.object({
  seed: z.coerce.number().int().min(0).max(2 ** 32 - 1).optional().openapi({
    description: "Same seed and split, same scene; random when absent (and returned)",
  }),
  split: z.enum(["train", "val", "test", "heldout"]).default("test").openapi({
    description: "heldout: every scene shows a colour–shape pair the models never saw",
  }),
  objects: z.coerce.number().int().min(1).max(3).optional().openapi({
    description: "Number of objects; 1–3 at random when absent",
  }),
}).openapi("SceneQuery");

const SceneResponse = z.object({
  object: z.literal("world.scene"),
  seed: z.number().int(),
  split: z.string(),
  width: z.number().int(),
  height: z.number().int(),
  caption: z.string(),
  references: z.array(z.string()),
  questions: z.array(z.object({ question: z.string(), answer: z.string(), type: z.string() })),
  b64_json: z.string().openapi({ description: "The scene as a PNG, base64" }),
}).openapi("Scene");

export function worldRoutes(app: App): void {
  route(app, {
    method: "get",
    path: "/v1/world/scene",
    summary: "A random scene of the shapes world (PNG, captions, questions and answers)",
    tags: ["World"],
    query: SceneQuery,
    response: SceneResponse,
  }, async (c, q) => {
    const seed = q.seed ?? Math.floor(Math.random() * 2 ** 31);
    const [scene] = sampleScenes({ split: q.split, count: 1, seed, objects: q.objects });
    const png = await encodePng({ width: CANVAS, height: CANVAS, data: renderScene(scene, seed) });
    return c.json({
      object: "world.scene" as const,
      seed,
      split: q.split,
      width: CANVAS,
      height: CANVAS,
      caption: canonicalCaption(scene),
      references: referenceSet(scene),
      questions: questions(scene, rng(seed)),
      b64_json: png.toBase64(),
    });
  });
}
