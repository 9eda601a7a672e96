/**
 * clip-tiny's quality on the shapes world, measured through the service's own pipeline:
 * zero-shot colour–shape classification (24-way, "a photo of a {}") on single-object scenes,
 * and caption → image retrieval among a batch of scenes.
 */
import {
  COLOURS,
  renderScene,
  sampleScenes,
  type Scene,
  SHAPES,
  type Split,
} from "../world/world.ts";
import { canonicalCaption } from "../world/world.ts";
import { dot } from "../core/tensor.ts";
import type { ClipPipeline } from "../models/clip/pipeline.ts";

export interface ZeroShotScores {
  split: Split;
  images: number;
  colour: number;
  shape: number;
  both: number;
}

const image = (s: Scene, seed: number) => ({ width: 64, height: 64, data: renderScene(s, seed) });

/** 24-way zero-shot accuracy on `count` single-object scenes of a split. */
export async function zeroShot(
  clip: ClipPipeline,
  split: Split,
  count: number,
  seed = 0,
): Promise<ZeroShotScores> {
  const pairs = Object.keys(COLOURS).flatMap((c) => SHAPES.map((s) => [c, s] as const));
  const { embeds: labels } = await clip.embedTexts(
    pairs.map(([c, s]) => `a photo of ${c === "orange" ? "an" : "a"} ${c} ${s}`),
  );
  const scenes = sampleScenes({ split, count, seed, objects: 1 });
  let colour = 0, shape = 0, both = 0;
  for (let i = 0; i < scenes.length; i += 64) {
    const batch = scenes.slice(i, i + 64);
    const { embeds } = await clip.embedImages(batch.map((s, k) => image(s, seed * 7919 + i + k)));
    embeds.forEach((e, k) => {
      const scores = labels.map((l) => dot(e, l));
      const [c, s] = pairs[scores.indexOf(Math.max(...scores))];
      const o = batch[k].objects[0];
      colour += Number(c === o.colour);
      shape += Number(s === o.shape);
      both += Number(c === o.colour && s === o.shape);
    });
  }
  return {
    split,
    images: scenes.length,
    colour: colour / count,
    shape: shape / count,
    both: both / count,
  };
}

/** Caption → image retrieval: the fraction of captions whose own image ranks first among `pool` scenes. */
export async function retrieval(
  clip: ClipPipeline,
  split: Split,
  pool: number,
  seed = 0,
): Promise<number> {
  const scenes = sampleScenes({ split, count: pool, seed });
  const { embeds: images } = await clip.embedImages(
    scenes.map((s, k) => image(s, seed * 104729 + k)),
  );
  const { embeds: texts } = await clip.embedTexts(scenes.map(canonicalCaption));
  let hits = 0;
  texts.forEach((t, i) => {
    const scores = images.map((im) => dot(im, t));
    hits += Number(scores.indexOf(Math.max(...scores)) === i);
  });
  return hits / pool;
}
