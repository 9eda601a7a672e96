/**
 * `deno task world [--out data/world] [--train N] [--val N] [--test N] [--heldout N] [--seed S]`
 *
 * Writes the dataset that the trainers in training/ read (see dataset.ts for the format).
 */
import { parseArgs } from "node:util";
import { writeDataset } from "./dataset.ts";
import type { Split } from "./world.ts";

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

const counts = {} as Record<Split, number>;
for (const split of ["train", "val", "test", "heldout"] as const) {
  const n = Number(values[split]);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${split} must be a whole number, got "${values[split]}"`);
    Deno.exit(2);
  }
  counts[split] = n;
}
await writeDataset({ out: values.out!, seed: Number(values.seed), counts, progress: true });
console.log(`wrote ${values.out}`);
