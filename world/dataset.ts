/**
 * Writes a world dataset for the trainers: per split, `images.u8` (raw RGB bytes, [N, 64, 64, 3])
 * and `meta.jsonl` (scene, caption, references, questions), plus `world.json` (counts, vocabulary).
 */
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

export interface DatasetOptions {
  out: string;
  seed: number;
  counts: Record<Split, number>;
  /** Show a progress bar per split on stderr. */
  progress?: boolean;
}

export async function writeDataset(
  { out, seed, counts, progress = false }: DatasetOptions,
): Promise<void> {
  for (const split of Object.keys(counts) as Split[]) {
    const dir = `${out}/${split}`;
    await Deno.mkdir(dir, { recursive: true });
    const scenes = sampleScenes({ split, count: counts[split], seed });
    const images = new Uint8Array(scenes.length * CANVAS * CANVAS * 3);
    const lines: string[] = [];
    const bar = progress ? new ProgressBar(split.padEnd(7), scenes.length) : null;
    const qaRandom = rng(seed ^ 0x5151);
    scenes.forEach((scene, i) => {
      images.set(renderScene(scene, seed * 1_000_003 + i), i * CANVAS * CANVAS * 3);
      lines.push(JSON.stringify({
        scene,
        caption: canonicalCaption(scene),
        references: referenceSet(scene),
        // Training and validation questions never name a held-out pair.
        qa: questions(scene, qaRandom, split === "test" || split === "heldout"),
      }));
      bar?.update(i + 1);
    });
    await Deno.writeFile(`${dir}/images.u8`, images);
    await Deno.writeTextFile(`${dir}/meta.jsonl`, lines.join("\n") + "\n");
  }
  await Deno.writeTextFile(
    `${out}/world.json`,
    JSON.stringify({ version: 1, seed, size: CANVAS, counts, vocabulary: VOCABULARY }, null, 2) +
      "\n",
  );
}
