/**
 * A pixel-reading judge for generated images (../shared/WORLD.md, "Prompts"): it parses a prompt
 * into the scene it asks for, reads a 64 × 64 image into a scene (background from the border,
 * objects as connected regions that differ from it, each region's colour, size, shape and grid
 * position), and scores one against the other attribute by attribute.
 *
 * Shapes are told apart by the corners of their bounding box they fill (square: four, triangle:
 * the two of its base), where they are widest (a triangle at its base), and how much of the box
 * they fill (circle ≈ π/4, diamond ≈ ½).
 */
import {
  type Background,
  BACKGROUNDS,
  CANVAS,
  type Colour,
  COLOURS,
  type Position,
  POSITIONS,
  type Shape,
  SHAPES,
  type Size,
} from "./world.ts";

export interface ObjectSpec {
  colour: Colour;
  shape: Shape;
  size?: Size;
}

export interface PromptSpec {
  background?: Background;
  /** In the prompt's order, which the relation refers to. */
  objects: ObjectSpec[];
  /** One object: its stated grid cell. */
  position?: Position;
  /** Two objects: how the first stands to the second. Three: listed left to right. */
  relation?: "left of" | "right of" | "above" | "below" | "left to right";
}

const COLOUR_NAMES = Object.keys(COLOURS) as Colour[];
const OBJECT = new RegExp(
  `\\b(?:a|an) (?:(small|large) )?(${COLOUR_NAMES.join("|")}) (${SHAPES.join("|")})\\b`,
  "g",
);

/** Reads the scene a prompt (a world caption or paraphrase) asks for. */
export function parsePrompt(prompt: string): PromptSpec {
  const text = prompt.toLowerCase().replace(/\.$/, "").trim();
  const objects = [...text.matchAll(OBJECT)].map((m): ObjectSpec => ({
    colour: m[2] as Colour,
    shape: m[3] as Shape,
    ...(m[1] ? { size: m[1] as Size } : {}),
  }));
  const bg = text.match(/on an? (black|white|gray) background/);
  const spec: PromptSpec = { objects, ...(bg ? { background: bg[1] as Background } : {}) };
  const pos = text.match(
    /in the (top left|top right|bottom left|bottom right|top|bottom|left|right|center)\b/,
  );
  if (objects.length === 1 && pos) spec.position = pos[1] as Position;
  if (objects.length === 2) {
    if (text.includes("to the left of")) spec.relation = "left of";
    else if (text.includes("to the right of")) spec.relation = "right of";
    else if (/\babove\b/.test(text)) spec.relation = "above";
    else if (/\bbelow\b/.test(text)) spec.relation = "below";
  }
  if (objects.length === 3 && !text.startsWith("there are")) spec.relation = "left to right";
  return spec;
}

export interface Detected {
  colour: Colour;
  shape: Shape;
  size: Size;
  position: Position;
  /** Bounding-box centre. */
  cx: number;
  cy: number;
  /** Bounding box, inclusive pixel coordinates [x0, y0, x1, y1]. */
  box: [number, number, number, number];
  area: number;
}

export interface Reading {
  background: Background;
  objects: Detected[];
}

function nearest<K extends string>(
  table: Record<K, readonly number[]>,
  rgb: readonly number[],
): K {
  let best = "" as K, bestD = Infinity;
  for (const [k, v] of Object.entries(table) as [K, readonly number[]][]) {
    const d = (v[0] - rgb[0]) ** 2 + (v[1] - rgb[1]) ** 2 + (v[2] - rgb[2]) ** 2;
    if (d < bestD) (bestD = d, best = k);
  }
  return best;
}

const MIN_AREA = 12;

/** Reads a 64 × 64 RGB image into background and objects. */
export function readImage(rgb: Uint8Array, size = CANVAS): Reading {
  const at = (i: number) => [rgb[i * 3], rgb[i * 3 + 1], rgb[i * 3 + 2]];
  // Background: the median border pixel, snapped to the palette.
  const border: number[][] = [];
  for (let k = 0; k < size; k++) {
    border.push(at(k), at((size - 1) * size + k), at(k * size), at(k * size + size - 1));
  }
  const median = [0, 1, 2].map((c) =>
    border.map((p) => p[c]).sort((a, b) => a - b)[border.length >> 1]
  );
  const background = nearest(BACKGROUNDS, median);
  const bg = BACKGROUNDS[background];
  // Foreground: far from the background colour (object colours are all > 100 away from each).
  const fg = new Uint8Array(size * size);
  for (let i = 0; i < size * size; i++) {
    const [r, g, b] = at(i);
    fg[i] = Math.abs(r - bg[0]) + Math.abs(g - bg[1]) + Math.abs(b - bg[2]) > 90 ? 1 : 0;
  }
  const label = new Int32Array(size * size).fill(-1);
  const objects: Detected[] = [];
  for (let start = 0; start < size * size; start++) {
    if (!fg[start] || label[start] >= 0) continue;
    const stack = [start], pixels: number[] = [];
    label[start] = objects.length;
    while (stack.length) {
      const i = stack.pop()!;
      pixels.push(i);
      const x = i % size, y = Math.floor(i / size);
      for (const [nx, ny] of [[x + 1, y], [x - 1, y], [x, y + 1], [x, y - 1]]) {
        const j = ny * size + nx;
        if (nx >= 0 && ny >= 0 && nx < size && ny < size && fg[j] && label[j] < 0) {
          label[j] = objects.length;
          stack.push(j);
        }
      }
    }
    if (pixels.length < MIN_AREA) continue;
    objects.push(describeRegion(pixels, size, at));
  }
  return { background, objects: objects.sort((a, b) => b.area - a.area) };
}

function describeRegion(pixels: number[], size: number, at: (i: number) => number[]): Detected {
  const xs = pixels.map((i) => i % size), ys = pixels.map((i) => Math.floor(i / size));
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const w = x1 - x0 + 1, h = y1 - y0 + 1;
  const mean = [0, 1, 2].map((c) => pixels.reduce((s, i) => s + at(i)[c], 0) / pixels.length);
  const fill = pixels.length / (w * h);
  // Which corners of the bounding box the region fills: a square all four, a triangle the two
  // of its base, a circle or a diamond none.
  const inRegion = new Set(pixels);
  const corner = (x: number, y: number) => inRegion.has(y * size + x) ? 1 : 0;
  const topCorners = corner(x0, y0) + corner(x1, y0);
  const bottomCorners = corner(x0, y1) + corner(x1, y1);
  // Width of the region a quarter and three quarters of the way down.
  const rowWidth = (y: number) => ys.filter((v) => v === y).length;
  const top = rowWidth(y0 + Math.round((h - 1) * 0.25));
  const bottom = rowWidth(y0 + Math.round((h - 1) * 0.75));
  const shape: Shape = topCorners + bottomCorners >= 3 || fill > 0.92
    ? "square"
    : bottomCorners === 2 || top < 0.65 * bottom
    ? "triangle"
    : fill > 0.64
    ? "circle"
    : "diamond";
  const cx = x0 + w / 2, cy = y0 + h / 2;
  const cell = (v: number) => Math.min(2, Math.floor(v / (size / 3)));
  return {
    colour: nearest(COLOURS, mean),
    shape,
    size: Math.max(w, h) <= 16 ? "small" : "large",
    position: POSITIONS[cell(cy) * 3 + cell(cx)],
    cx,
    cy,
    box: [x0, y0, x1, y1],
    area: pixels.length,
  };
}

export interface Verdict {
  background: boolean | null;
  count: boolean;
  /** Fractions over the prompt's objects (matched one to one with what was read). */
  colour: number;
  shape: number;
  size: number | null;
  /** Position (one object), relation (two) or left-to-right order (three); null if unstated. */
  layout: boolean | null;
  /** Everything the prompt states is in the image, and nothing more. */
  all: boolean;
}

function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  return permutations(n - 1).flatMap((p) =>
    Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)])
  );
}

/** Scores an image against a prompt. */
export function judge(prompt: string | PromptSpec, rgb: Uint8Array, size = CANVAS): Verdict {
  const spec = typeof prompt === "string" ? parsePrompt(prompt) : prompt;
  const read = readImage(rgb, size);
  const want = spec.objects;
  // Match each wanted object to a distinct detected one, best agreement first.
  const k = Math.min(want.length, read.objects.length);
  let match: Detected[] = [], best = -1;
  const pool = read.objects.slice(0, Math.max(k, Math.min(read.objects.length, 4)));
  for (const perm of permutations(pool.length)) {
    const chosen = perm.slice(0, k).map((i) => pool[i]);
    const score = chosen.reduce(
      (s, d, i) =>
        s + (d.colour === want[i].colour ? 2 : 0) + (d.shape === want[i].shape ? 2 : 0) +
        (d.size === want[i].size ? 1 : 0),
      0,
    );
    if (score > best) (best = score, match = chosen);
  }
  const frac = (f: (d: Detected, w: ObjectSpec) => boolean) =>
    want.length ? match.filter((d, i) => f(d, want[i])).length / want.length : 1;
  const sized = want.filter((w) => w.size).length;
  let layout: boolean | null = null;
  if (spec.position && match.length === 1) layout = match[0].position === spec.position;
  else if (spec.position) layout = false;
  if (spec.relation) {
    if (match.length < want.length) layout = false;
    else {
      const [a, b] = match;
      layout = spec.relation === "left of"
        ? a.cx < b.cx
        : spec.relation === "right of"
        ? a.cx > b.cx
        : spec.relation === "above"
        ? a.cy < b.cy
        : spec.relation === "below"
        ? a.cy > b.cy
        : match.every((d, i) => i === 0 || match[i - 1].cx <= d.cx);
    }
  }
  const verdict: Verdict = {
    background: spec.background ? read.background === spec.background : null,
    count: read.objects.length === want.length,
    colour: frac((d, w) => d.colour === w.colour),
    shape: frac((d, w) => d.shape === w.shape),
    size: sized
      ? match.filter((d, i) => want[i].size && d.size === want[i].size).length / sized
      : null,
    layout,
    all: false,
  };
  verdict.all = verdict.background !== false && verdict.count && verdict.colour === 1 &&
    verdict.shape === 1 && verdict.size !== 0 && (verdict.size ?? 1) === 1 &&
    verdict.layout !== false;
  return verdict;
}
