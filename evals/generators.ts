/**
 * Generation quality on the shapes world: prompts are world captions (single-object and
 * two-object test scenes, and held-out compositions); each generated image is read by the pixel
 * judge (world/judge.ts) and scored attribute by attribute.
 */
import { judge, type Verdict } from "../world/judge.ts";
import { canonicalCaption, sampleScenes, type Scene, type Split } from "../world/world.ts";

export interface PromptSet {
  name: string;
  prompts: string[];
  /** The scenes the prompts describe. */
  scenes: Scene[];
}

/** The three prompt sets of the README's table, `count` prompts each. */
export function promptSets(count: number, seed = 0): PromptSet[] {
  const set = (name: string, split: Split, objects?: number) => {
    const scenes = sampleScenes({ split, count, seed, objects });
    return { name, scenes, prompts: scenes.map(canonicalCaption) };
  };
  return [
    set("single object", "test", 1),
    set("two objects", "test", 2),
    set("held-out pairs", "heldout", 1),
  ];
}

export interface ImageScores {
  images: number;
  background: number;
  count: number;
  colour: number;
  shape: number;
  size: number;
  layout: number;
  all: number;
  secondsPerImage: number;
}

/** Generates one image per prompt with `generate` and averages the judge's verdicts. */
export async function scoreGenerator(
  prompts: string[],
  generate: (prompt: string, seed: number) => Promise<Uint8Array>,
): Promise<ImageScores> {
  const verdicts: Verdict[] = [];
  const t0 = performance.now();
  for (const [i, prompt] of prompts.entries()) {
    verdicts.push(judge(prompt, await generate(prompt, i)));
  }
  const seconds = (performance.now() - t0) / 1000;
  const mean = (f: (v: Verdict) => number | boolean | null) => {
    const vs = verdicts.map(f).filter((v) => v !== null).map(Number);
    return vs.length ? vs.reduce((a, b) => a + b, 0) / vs.length : NaN;
  };
  return {
    images: prompts.length,
    background: mean((v) => v.background),
    count: mean((v) => v.count),
    colour: mean((v) => v.colour),
    shape: mean((v) => v.shape),
    size: mean((v) => v.size),
    layout: mean((v) => v.layout),
    all: mean((v) => v.all),
    secondsPerImage: seconds / prompts.length,
  };
}
