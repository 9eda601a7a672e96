/**
 * The shapes world of ../shared/WORLD.md, version 1: a deterministic scene sampler, a renderer,
 * canonical captions, reference sets and question/answer pairs.
 *
 * Everything is a pure function of a seed, so a split is reproducible anywhere:
 *   const scenes = sampleScenes({ split: "test", count: 100, seed: 1 });
 *   const rgb = renderScene(scenes[0], seed); // Uint8Array [64 * 64 * 3]
 */

import { rng } from "../core/random.ts";

export const CANVAS = 64;
export const SHAPES = ["circle", "square", "triangle", "diamond"] as const;
export const COLOURS = {
  red: [220, 40, 40],
  green: [40, 170, 60],
  blue: [40, 80, 220],
  yellow: [235, 205, 40],
  purple: [145, 60, 200],
  orange: [245, 135, 30],
} as const;
export const BACKGROUNDS = {
  black: [0, 0, 0],
  white: [255, 255, 255],
  gray: [128, 128, 128],
} as const;
export const POSITIONS = [
  "top left",
  "top",
  "top right",
  "left",
  "center",
  "right",
  "bottom left",
  "bottom",
  "bottom right",
] as const;
/** Colour–shape pairs that training data never contains. */
export const HELD_OUT: ReadonlyArray<readonly [Colour, Shape]> = [
  ["purple", "triangle"],
  ["orange", "circle"],
];

export type Shape = typeof SHAPES[number];
export type Colour = keyof typeof COLOURS;
export type Background = keyof typeof BACKGROUNDS;
export type Position = typeof POSITIONS[number];
export type Size = "small" | "large";

export interface WorldObject {
  shape: Shape;
  colour: Colour;
  size: Size;
  /** Bounding box: top-left corner and side, whole pixels. */
  x: number;
  y: number;
  side: number;
}

export interface Scene {
  background: Background;
  objects: WorldObject[];
}

export type Split = "train" | "val" | "test" | "heldout";
export interface QA {
  question: string;
  answer: string;
  type: string;
}

// ---------------------------------------------------------------- random numbers

export { rng };

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: () => number, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

/** Seeds of the splits never collide: each split has its own stream. */
const SPLIT_SALT: Record<Split, number> = {
  train: 0x1000_0000,
  val: 0x2000_0000,
  test: 0x3000_0000,
  heldout: 0x4000_0000,
};

export const isHeldOut = (o: Pick<WorldObject, "colour" | "shape">) =>
  HELD_OUT.some(([c, s]) => o.colour === c && o.shape === s);

// ---------------------------------------------------------------- scenes

function separated(a: WorldObject, b: WorldObject): boolean {
  const gapX = Math.max(a.x - (b.x + b.side), b.x - (a.x + a.side));
  const gapY = Math.max(a.y - (b.y + b.side), b.y - (a.y + a.side));
  return gapX >= 2 || gapY >= 2;
}

function sampleObject(r: () => number, forceHeldOut: boolean): WorldObject {
  const size: Size = r() < 0.5 ? "small" : "large";
  const side = size === "small" ? int(r, 10, 13) : int(r, 20, 26);
  const [colour, shape] = forceHeldOut
    ? pick(r, HELD_OUT)
    : [pick(r, Object.keys(COLOURS) as Colour[]), pick(r, SHAPES)];
  return { shape, colour, size, side, x: int(r, 0, CANVAS - side), y: int(r, 0, CANVAS - side) };
}

/** One scene from a seeded stream; `heldOut` forces one held-out object, else none appear. */
export function sampleScene(r: () => number, heldOut: boolean, count?: number): Scene {
  for (;;) {
    const n = count ?? int(r, 1, 3);
    const background = pick(r, Object.keys(BACKGROUNDS) as Background[]);
    const objects: WorldObject[] = [];
    const forced = heldOut ? int(r, 0, n - 1) : -1;
    for (let tries = 0; objects.length < n && tries < 200; tries++) {
      const o = sampleObject(r, objects.length === forced);
      if (!heldOut && isHeldOut(o)) continue;
      if (objects.some((p) => p.colour === o.colour && p.shape === o.shape)) continue;
      if (objects.some((p) => !separated(p, o))) continue;
      objects.push(o);
    }
    if (objects.length === n) return { background, objects };
  }
}

export interface SampleOptions {
  split: Split;
  count: number;
  seed?: number;
  /** Fix the number of objects per scene (1–3); random when absent. */
  objects?: number;
}

/** `count` scenes of a split; the held-out split has a held-out pair in every scene. */
export function sampleScenes({ split, count, seed = 0, objects }: SampleOptions): Scene[] {
  const r = rng(SPLIT_SALT[split] ^ Math.imul(seed, 0x27d4eb2d));
  return Array.from({ length: count }, () => sampleScene(r, split === "heldout", objects));
}

// ---------------------------------------------------------------- geometry and rendering

export const centre = (o: WorldObject) => [o.x + o.side / 2, o.y + o.side / 2] as const;

export function positionOf(o: WorldObject): Position {
  const [cx, cy] = centre(o);
  const cell = (v: number) => Math.min(2, Math.floor(v / (CANVAS / 3)));
  return POSITIONS[cell(cy) * 3 + cell(cx)];
}

/** Whether point (px, py) lies inside the filled shape. */
export function inside(o: WorldObject, px: number, py: number): boolean {
  const [cx, cy] = centre(o);
  const h = o.side / 2;
  switch (o.shape) {
    case "square":
      return px >= o.x && px <= o.x + o.side && py >= o.y && py <= o.y + o.side;
    case "circle":
      return (px - cx) ** 2 + (py - cy) ** 2 <= h * h;
    case "diamond":
      return Math.abs(px - cx) + Math.abs(py - cy) <= h;
    case "triangle": {
      // Apex up at (cx, y), base from (x, y + side) to (x + side, y + side).
      if (py < o.y || py > o.y + o.side) return false;
      const halfWidth = ((py - o.y) / o.side) * h;
      return Math.abs(px - cx) <= halfWidth;
    }
  }
}

/**
 * Renders a scene to RGB bytes [64 * 64 * 3]: 4 × 4 supersampling for anti-aliased edges and,
 * when `noiseSeed` is given, uniform per-pixel noise of at most ±`noise` per channel.
 */
export function renderScene(scene: Scene, noiseSeed?: number, noise = 8): Uint8Array {
  const out = new Uint8Array(CANVAS * CANVAS * 3);
  const bg = BACKGROUNDS[scene.background];
  const r = noiseSeed === undefined ? null : rng(noiseSeed);
  const S = 4;
  for (let y = 0; y < CANVAS; y++) {
    for (let x = 0; x < CANVAS; x++) {
      const acc = [0, 0, 0];
      for (let sy = 0; sy < S; sy++) {
        for (let sx = 0; sx < S; sx++) {
          const px = x + (sx + 0.5) / S, py = y + (sy + 0.5) / S;
          const hit = scene.objects.find((o) => inside(o, px, py));
          const c = hit ? COLOURS[hit.colour] : bg;
          acc[0] += c[0], acc[1] += c[1], acc[2] += c[2];
        }
      }
      for (let ch = 0; ch < 3; ch++) {
        const jitter = r ? Math.round((r() * 2 - 1) * noise) : 0;
        out[(y * CANVAS + x) * 3 + ch] = Math.max(
          0,
          Math.min(255, Math.round(acc[ch] / (S * S)) + jitter),
        );
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- language

const article = (next: string) => (next === "orange" ? "an" : "a");

export function objectPhrase(o: Pick<WorldObject, "colour" | "shape" | "size">, withSize = true) {
  const words = withSize ? [o.size, o.colour, o.shape] : [o.colour, o.shape];
  return `${article(words[0])} ${words.join(" ")}`;
}

/** Objects in caption order, and the relation used for two objects. */
export function captionOrder(scene: Scene): { objects: WorldObject[]; relation?: string } {
  const os = scene.objects;
  const byX = (a: WorldObject, b: WorldObject) =>
    centre(a)[0] - centre(b)[0] || centre(a)[1] - centre(b)[1];
  if (os.length === 2) {
    const [a, b] = os;
    if (Math.abs(centre(a)[0] - centre(b)[0]) >= 8) {
      return { objects: [...os].sort(byX), relation: "to the left of" };
    }
    return { objects: [...os].sort((p, q) => centre(p)[1] - centre(q)[1]), relation: "above" };
  }
  return { objects: os.length === 3 ? [...os].sort(byX) : os };
}

interface Variant {
  withSize?: boolean;
  withBackground?: boolean;
  mirrored?: boolean;
}

function describe(
  scene: Scene,
  { withSize = true, withBackground = true, mirrored = false }: Variant,
) {
  const { objects, relation } = captionOrder(scene);
  const p = (o: WorldObject) => objectPhrase(o, withSize);
  let body: string;
  if (objects.length === 1) body = `${p(objects[0])} in the ${positionOf(objects[0])}`;
  else if (objects.length === 2) {
    body = mirrored
      ? `${p(objects[1])} ${relation === "above" ? "below" : "to the right of"} ${p(objects[0])}`
      : `${p(objects[0])} ${relation} ${p(objects[1])}`;
  } else body = `${p(objects[0])} , ${p(objects[1])} and ${p(objects[2])}`;
  return withBackground
    ? `${body} on ${article(scene.background)} ${scene.background} background`
    : body;
}

/** The one canonical caption of a scene (training target, first BLEU reference). */
export const canonicalCaption = (scene: Scene) => describe(scene, {});

/** The canonical caption followed by one paraphrase per applicable template. */
export function referenceSet(scene: Scene): string[] {
  const refs = [
    canonicalCaption(scene),
    describe(scene, { withSize: false }),
    describe(scene, { withBackground: false }),
  ];
  const { objects } = captionOrder(scene);
  if (objects.length === 2) refs.push(describe(scene, { mirrored: true }));
  const p = (o: WorldObject) => objectPhrase(o);
  if (objects.length === 1) refs.push(`there is ${p(objects[0])} in the ${positionOf(objects[0])}`);
  if (objects.length === 2) {
    refs.push(`there are two shapes : ${p(objects[0])} and ${p(objects[1])}`);
  }
  if (objects.length === 3) {
    refs.push(`there are three shapes : ${p(objects[0])} , ${p(objects[1])} and ${p(objects[2])}`);
  }
  return refs;
}

const NUMBERS = ["zero", "one", "two", "three"];

/**
 * The question/answer pairs of a scene. `allowHeldOut: false` (training) never names a held-out
 * pair, not even in a "no" question.
 */
export function questions(scene: Scene, r: () => number, allowHeldOut = true): QA[] {
  const qa: QA[] = [];
  const os = scene.objects;
  for (const shape of SHAPES) {
    const having = os.filter((o) => o.shape === shape);
    if (having.length === 1) {
      qa.push({ type: "color", question: `what color is the ${shape}?`, answer: having[0].colour });
    }
  }
  for (const colour of Object.keys(COLOURS) as Colour[]) {
    const having = os.filter((o) => o.colour === colour);
    if (having.length === 1) {
      qa.push({
        type: "shape",
        question: `what shape is the ${colour} object?`,
        answer: having[0].shape,
      });
    }
  }
  qa.push({ type: "count", question: "how many shapes are there?", answer: NUMBERS[os.length] });
  for (const o of os) {
    qa.push({
      type: "position",
      question: `where is the ${o.colour} ${o.shape}?`,
      answer: `in the ${positionOf(o)}`,
    });
  }
  // One "yes" and one "no" (colour or shape swapped) existence question.
  const yes = pick(r, os);
  const ask = (c: Colour, s: Shape) => `is there ${article(c)} ${c} ${s}?`;
  qa.push({ type: "exists", question: ask(yes.colour, yes.shape), answer: "yes" });
  for (let tries = 0; tries < 50; tries++) {
    const swapColour = r() < 0.5;
    const c = swapColour ? pick(r, Object.keys(COLOURS) as Colour[]) : yes.colour;
    const s = swapColour ? yes.shape : pick(r, SHAPES);
    if (os.some((o) => o.colour === c && o.shape === s)) continue;
    if (!allowHeldOut && isHeldOut({ colour: c, shape: s })) continue;
    qa.push({ type: "exists", question: ask(c, s), answer: "no" });
    break;
  }
  qa.push({
    type: "background",
    question: "what color is the background?",
    answer: scene.background,
  });
  qa.push({ type: "describe", question: "describe the image.", answer: canonicalCaption(scene) });
  return qa;
}

/** Every word a caption, paraphrase, question or answer of the world can use. */
export const VOCABULARY: readonly string[] = [
  ...SHAPES,
  ...Object.keys(COLOURS),
  ...Object.keys(BACKGROUNDS),
  "small",
  "large",
  "top",
  "bottom",
  "center",
  "a",
  "an",
  "the",
  "in",
  "on",
  "of",
  "to",
  "and",
  "is",
  "are",
  "there",
  "left",
  "right",
  "above",
  "below",
  "next",
  "background",
  "shapes",
  "two",
  "three",
  "one",
  "with",
  ",",
  ":",
  // questions and answers
  "what",
  "color",
  "shape",
  "object",
  "how",
  "many",
  "where",
  "yes",
  "no",
  "describe",
  "image",
  "?",
  ".",
  // the CLIP paper's prompt template, "a photo of a {label}"
  "photo",
];
