/**
 * The pointing game for the image generators' word maps (`returnAttention`): the prompts are
 * world captions, but where each object lands is the generator's choice, so the boxes come from
 * the pixel judge (world/judge.ts) reading the generated image. Each colour and shape word of
 * the prompt's "a [size] <colour> <shape>" phrases is scored when the judge found that object —
 * an object of the same colour and shape, else of the same colour (a circle asked for and drawn
 * as a diamond still has a place) — by whether its map's peak cell overlaps the object's box.
 * A word whose object was not drawn has nothing to point at and is not scored.
 */
import type { RgbImage } from "../core/image.ts";
import type { SessionRegistry } from "../core/sessions.ts";
import { DallePipeline } from "../models/dalle/pipeline.ts";
import { DiffusionPipeline } from "../models/diffusion/pipeline.ts";
import type { ImageGenerator } from "../models/images.ts";
import type { ModelEntry } from "../models/manifest.ts";
import type { AttentionMaps } from "../models/pipeline.ts";
import { type Detected, readImage } from "../world/judge.ts";
import { canonicalCaption, COLOURS, sampleScenes, SHAPES, type Split } from "../world/world.ts";

export interface GeneratorPointing {
  split: Split;
  /** Images generated (one per prompt). */
  images: number;
  /** Colour and shape words scored (the judge found their object in the image). */
  words: number;
  /** Of those, the share whose object matched colour and shape (the rest: colour only). */
  exact: number;
  /** Hits / words. */
  hits: number;
  /** Hits among the colour words alone, and among the shape words alone (half the words each). */
  colourHits: number;
  shapeHits: number;
  /** What a peak on a random cell would score: the mean share of cells the box touches. */
  chance: number;
}

/** One image and its prompt-word maps for a prompt and seed. */
export type DrawWithMaps = (
  prompt: string,
  seed: number,
) => Promise<{ image: RgbImage; maps: AttentionMaps }>;

/** A generator's draw: its defaults, one image, with maps. */
export const generatorMaps = (g: ImageGenerator): DrawWithMaps => async (prompt, seed) => {
  const out = await g.plan({ prompt, n: 1, seed, returnAttention: true }).run();
  return { image: out.images[0], maps: out.attention![0] };
};

const isColour = (w: string) => w in COLOURS;
const isShape = (w: string) => (SHAPES as readonly string[]).includes(w);

/** The "a [size] colour shape" phrases of a prompt's words: where their colour word is. */
export function promptObjects(
  words: string[],
): Array<{ at: number; colour: string; shape: string }> {
  const out = [];
  for (let i = 0; i < words.length; i++) {
    if (words[i] !== "a" && words[i] !== "an") continue;
    let j = i + 1;
    if (words[j] === "small" || words[j] === "large") j++;
    if (isColour(words[j]) && isShape(words[j + 1])) {
      out.push({ at: j, colour: words[j], shape: words[j + 1] });
    }
  }
  return out;
}

/** The drawn object a phrase names: same colour and shape (the largest), else same colour. */
export function findObject(
  found: Detected[],
  colour: string,
  shape: string,
): { object: Detected; exact: boolean } | null {
  const exact = found.find((d) => d.colour === colour && d.shape === shape);
  if (exact) return { object: exact, exact: true };
  const near = found.find((d) => d.colour === colour);
  return near ? { object: near, exact: false } : null;
}

/** Whether grid cell `cell` of a rows × cols map over a size × size image overlaps `box`. */
function touches(cell: number, rows: number, cols: number, box: Detected["box"], size: number) {
  const r = Math.floor(cell / cols), c = cell % cols;
  const cw = size / cols, ch = size / rows;
  const [x0, y0, x1, y1] = box; // inclusive pixels: the box spans [x0, x1 + 1)
  return c * cw < x1 + 1 && x0 < (c + 1) * cw && r * ch < y1 + 1 && y0 < (r + 1) * ch;
}

/** Whether the peak cell of `weights` overlaps `box`. */
export function peakIn(
  weights: ArrayLike<number>,
  rows: number,
  cols: number,
  box: Detected["box"],
  size: number,
): boolean {
  let best = 0;
  for (let i = 1; i < weights.length; i++) if (weights[i] > weights[best]) best = i;
  return touches(best, rows, cols, box, size);
}

/** The pointing score of `draw`'s maps on `count` canonical captions of `split`'s scenes. */
export async function generatorPointing(
  draw: DrawWithMaps,
  split: Split,
  count: number,
  seed = 0,
): Promise<GeneratorPointing> {
  const prompts = sampleScenes({ split, count, seed }).map(canonicalCaption);
  let words = 0, exact = 0, chance = 0;
  const hits = { colour: 0, shape: 0 };
  for (const [i, prompt] of prompts.entries()) {
    const { image, maps } = await draw(prompt, seed * count + i);
    const found = readImage(image.data, image.width).objects;
    const tokens = maps.words.map((w) => w.token.toLowerCase());
    for (const phrase of promptObjects(tokens)) {
      const hit = findObject(found, phrase.colour, phrase.shape);
      if (!hit) continue;
      const { box } = hit.object;
      let cells = 0;
      for (let c = 0; c < maps.rows * maps.cols; c++) {
        if (touches(c, maps.rows, maps.cols, box, image.width)) cells++;
      }
      for (const [kind, at] of [["colour", phrase.at], ["shape", phrase.at + 1]] as const) {
        words++;
        if (hit.exact) exact++;
        chance += cells / (maps.rows * maps.cols);
        if (peakIn(maps.words[at].weights, maps.rows, maps.cols, box, image.width)) hits[kind]++;
      }
    }
  }
  const share = (n: number) => words ? n / words : 0;
  return {
    split,
    images: prompts.length,
    words,
    exact: share(exact),
    hits: share(hits.colour + hits.shape),
    colourHits: 2 * share(hits.colour),
    shapeHits: 2 * share(hits.shape),
    chance: share(chance),
  };
}

/**
 * `deno task eval pointing`'s table for the generators: every explainable diffusion and DALL-E
 * model among `entries`, `count` prompts per split, printed as Markdown rows.
 */
export async function printGeneratorPointing(
  entries: ModelEntry[],
  sessions: SessionRegistry,
  count: number,
  seed = 0,
): Promise<void> {
  const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
  const generators = entries.filter((e) => ["diffusion", "dalle"].includes(e.manifest.family));
  if (!generators.length) return;
  console.log(
    `\nimage generators' word maps: colour and shape words of the prompt whose map's peak cell ` +
      `overlaps the object the pixel judge found for them (same colour and shape, else colour); ` +
      `${count} canonical captions per split, one image each, the models' default settings\n`,
  );
  console.log(
    "| model | split | images | words scored | colour and shape matched | hits | colour words | shape words | random cell |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const entry of generators) {
    const g: ImageGenerator = entry.manifest.family === "diffusion"
      ? await DiffusionPipeline.load(entry, { sessions })
      : await DallePipeline.load(entry, { sessions });
    if (!g.capabilities.explainable) continue;
    for (const split of ["test", "heldout"] as const) {
      const s = await generatorPointing(generatorMaps(g), split, count, seed);
      console.log(
        `| ${entry.manifest.id} | ${split} | ${s.images} | ${s.words} | ${pct(s.exact)} | ${
          pct(s.hits)
        } | ${pct(s.colourHits)} | ${pct(s.shapeHits)} | ${pct(s.chance)} |`,
      );
    }
  }
}
