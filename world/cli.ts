/**
 * `deno task world [--out data/world] [--train N] [--val N] [--test N] [--heldout N] [--seed S]`
 *
 * Writes a dataset that the trainers in training/ read: per split, `images.u8` (raw RGB bytes,
 * [N, 64, 64, 3]) and `meta.jsonl` (scene, caption, references, questions), plus `world.json`.
 */
import { parseArgs } from "node:util";
import { ProgressBar } from "../core/progress.ts";
import {
  canonicalCaption,
  CANVAS,
  questions,
  referenceSet,
  renderScene,
  rng,
  sampleScenes,
  type Split,
  VOCABULARY,
} from "./world.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "data/world" },
    train: { type: "string", default: "20000" },
    val: { type: "string", default: "1000" },
    test: { type: "string", default: "1000" },
    heldout: { type: "string", default: "1000" },
    seed: { type: "string", default: "0" },
  },
});

const seed = Number(values.seed);
const counts: Record<Split, number> = {
  train: Number(values.train),
  val: Number(values.val),
  test: Number(values.test),
  heldout: Number(values.heldout),
};
for (const [split, n] of Object.entries(counts)) {
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`--${split} must be a whole number, got "${n}"`);
  }
}

for (const split of Object.keys(counts) as Split[]) {
  const dir = `${values.out}/${split}`;
  await Deno.mkdir(dir, { recursive: true });
  const scenes = sampleScenes({ split, count: counts[split], seed });
  const images = new Uint8Array(scenes.length * CANVAS * CANVAS * 3);
  const lines: string[] = [];
  const bar = new ProgressBar(split.padEnd(7), scenes.length);
  const qaRandom = rng(seed ^ 0x5151);
  scenes.forEach((scene, i) => {
    images.set(renderScene(scene, seed * 1_000_003 + i), i * CANVAS * CANVAS * 3);
    lines.push(JSON.stringify({
      scene,
      caption: canonicalCaption(scene),
      references: referenceSet(scene),
      qa: questions(scene, qaRandom, split !== "train" && split !== "val"),
    }));
    bar.update(i + 1);
  });
  await Deno.writeFile(`${dir}/images.u8`, images);
  await Deno.writeTextFile(`${dir}/meta.jsonl`, lines.join("\n") + "\n");
}
await Deno.writeTextFile(
  `${values.out}/world.json`,
  JSON.stringify({ version: 1, seed, size: CANVAS, counts, vocabulary: VOCABULARY }, null, 2) +
    "\n",
);
console.log(`wrote ${values.out}`);
