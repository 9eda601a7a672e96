/**
 * The pointing game (Zhang et al., 2016) for attention maps: on rendered scenes, whose objects'
 * boxes are known, the share of colour and shape words whose map's peak falls on the object the
 * word names. A word is scored only when its phrase ("a [size] <colour> <shape>") names an object
 * of the scene: a wrong caption has nothing to point at. Attention often lands on an object just
 * before or after its word is emitted, so each word is also scored with the map of the step
 * before (offset −1) and after (+1). Any explainable pipeline plays: a captioner's caption, or a
 * chat model's answer to "describe the image." (the world's describe answer is its caption).
 */
import {
  CANVAS,
  COLOURS,
  renderScene,
  sampleScenes,
  type Scene,
  SHAPES,
  type Split,
} from "../world/world.ts";
import type { RgbImage } from "../core/image.ts";
import { type CaptionPipeline, GREEDY } from "../models/captioning/pipeline.ts";
import { type ChatPipeline, GREEDY as CHAT_GREEDY } from "../models/chat/pipeline.ts";
import type { AttentionMaps } from "../models/pipeline.ts";

/** A model's words about an image, each with its map. */
export type Explain = (image: RgbImage) => Promise<AttentionMaps>;

export const captionMaps = (model: CaptionPipeline): Explain => async (image) =>
  (await model.caption(image, { ...GREEDY, returnAttention: true })).captions[0].attention!;

export const chatMaps = (model: ChatPipeline): Explain => async (image) =>
  (await model.chat(
    [{
      role: "user",
      content: [{ type: "image", image }, { type: "text", text: "describe the image." }],
    }],
    { ...CHAT_GREEDY, maxTokens: 40, returnAttention: true },
  )).attention!;

export interface PointingScores {
  split: Split;
  /** Colour and shape words scored (their phrase named an object of the scene). */
  words: number;
  /** Hits / words, for the map served with the word and for those of the steps before and after. */
  byOffset: Record<"-1" | "0" | "+1", number>;
  /** The served map's hits among the colour words alone and among the shape words alone. */
  byKind: Record<"colour" | "shape", number>;
  /** What a peak on a random cell would score: the mean share of cells the named box touches. */
  chance: number;
}

const OFFSETS = [-1, 0, 1] as const;
const isColour = (w: string) => w in COLOURS;
const isShape = (w: string) => (SHAPES as readonly string[]).includes(w);

/** Each colour or shape word's index and the object its phrase names (undefined: none). */
export function namedObjects(words: string[], scene: Scene): Array<{ at: number; object: number }> {
  const out: Array<{ at: number; object: number }> = [];
  for (let i = 0; i < words.length; i++) {
    if (words[i] !== "a" && words[i] !== "an") continue;
    // a [size] colour shape
    let j = i + 1;
    if (words[j] === "small" || words[j] === "large") j++;
    const [colour, shape] = [words[j], words[j + 1]];
    if (!isColour(colour) || !isShape(shape)) continue;
    const object = scene.objects.findIndex((o) => o.colour === colour && o.shape === shape);
    if (object < 0) continue;
    out.push({ at: j, object }, { at: j + 1, object });
  }
  return out;
}

/** Whether grid cell `cell` (row-major) overlaps the object's bounding box. */
function touches(cell: number, rows: number, cols: number, o: Scene["objects"][number]): boolean {
  const r = Math.floor(cell / cols), c = cell % cols;
  const cw = CANVAS / cols, ch = CANVAS / rows;
  const [x0, y0, x1, y1] = [c * cw, r * ch, (c + 1) * cw, (r + 1) * ch];
  return x0 < o.x + o.side && o.x < x1 && y0 < o.y + o.side && o.y < y1;
}

/** Whether the grid cell of `weights`' peak overlaps the object's bounding box. */
export function pointsAt(
  weights: ArrayLike<number>,
  rows: number,
  cols: number,
  o: Scene["objects"][number],
): boolean {
  let best = 0;
  for (let i = 1; i < weights.length; i++) if (weights[i] > weights[best]) best = i;
  return touches(best, rows, cols, o);
}

/** The share of the grid's cells that overlap the object's box: a random peak's hit rate. */
export function chanceOf(rows: number, cols: number, o: Scene["objects"][number]): number {
  let n = 0;
  for (let cell = 0; cell < rows * cols; cell++) if (touches(cell, rows, cols, o)) n++;
  return n / (rows * cols);
}

export async function pointing(
  explain: Explain,
  split: Split,
  count: number,
  seed = 0,
): Promise<PointingScores> {
  const scenes = sampleScenes({ split, count, seed });
  let words = 0, chance = 0;
  const hits = { "-1": 0, "0": 0, "+1": 0 };
  const kinds = { colour: { words: 0, hits: 0 }, shape: { words: 0, hits: 0 } };
  for (const [i, scene] of scenes.entries()) {
    const image = { width: CANVAS, height: CANVAS, data: renderScene(scene, seed * 7919 + i) };
    const maps = await explain(image);
    const tokens = maps.words.map((w) => w.token.trim().replace(/^Ġ/, "").toLowerCase());
    for (const { at, object } of namedObjects(tokens, scene)) {
      words++;
      chance += chanceOf(maps.rows, maps.cols, scene.objects[object]);
      const kind = kinds[isColour(tokens[at]) ? "colour" : "shape"];
      kind.words++;
      for (const d of OFFSETS) {
        const map = maps.words[at + d];
        if (map && pointsAt(map.weights, maps.rows, maps.cols, scene.objects[object])) {
          hits[d === 0 ? "0" : d < 0 ? "-1" : "+1"]++;
          if (d === 0) kind.hits++;
        }
      }
    }
  }
  const share = (n: number) => words ? n / words : 0;
  return {
    split,
    words,
    byOffset: { "-1": share(hits["-1"]), "0": share(hits["0"]), "+1": share(hits["+1"]) },
    byKind: {
      colour: kinds.colour.hits / (kinds.colour.words || 1),
      shape: kinds.shape.hits / (kinds.shape.words || 1),
    },
    chance: share(chance),
  };
}
