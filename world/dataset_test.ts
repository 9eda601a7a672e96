import assert from "node:assert/strict";
import { writeDataset } from "./dataset.ts";
import { canonicalCaption, renderScene, sampleScenes } from "./world.ts";

Deno.test("writeDataset() writes images and metadata the trainers read, reproducibly", async () => {
  const out = await Deno.makeTempDir();
  try {
    const counts = { train: 4, val: 1, test: 2, heldout: 3 };
    await writeDataset({ out, seed: 9, counts });
    const world = JSON.parse(await Deno.readTextFile(`${out}/world.json`));
    assert.deepEqual(world.counts, counts);
    assert.ok(world.vocabulary.includes("triangle"));
    for (const [split, n] of Object.entries(counts)) {
      const images = await Deno.readFile(`${out}/${split}/images.u8`);
      assert.equal(images.length, n * 64 * 64 * 3);
      const meta = (await Deno.readTextFile(`${out}/${split}/meta.jsonl`)).trim().split("\n").map((
        l,
      ) => JSON.parse(l));
      assert.equal(meta.length, n);
      const scenes = sampleScenes({ split: split as "train", count: n, seed: 9 });
      assert.deepEqual(meta.map((m) => m.scene), scenes);
      assert.equal(meta[0].caption, canonicalCaption(scenes[0]));
      assert.deepEqual(images.subarray(0, 64 * 64 * 3), renderScene(scenes[0], 9 * 1_000_003));
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
