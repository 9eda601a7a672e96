/**
 * Captions per second by model, backend and decoding (greedy vs beam 3), in one run; models that
 * ship int8 files (training/quantize.py) get a second row on them, as `MM_DTYPE=q8` serves them.
 *
 *   deno run -A bench/captions.ts [--seconds 3] [--webgpu]
 */
import { parseArgs } from "node:util";
import { type BackendName, resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { type CaptionOptions, CaptionPipeline, GREEDY } from "../models/captioning/pipeline.ts";
import { type ModelEntry, scanModels, withQuantized } from "../models/manifest.ts";
import { renderScene, sampleScenes } from "../world/world.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "3" },
    webgpu: { type: "boolean", default: false },
  },
});
const seconds = Number(values.seconds);
const images = sampleScenes({ split: "test", count: 16, seed: 4 }).map((s, i) => ({
  width: 64,
  height: 64,
  data: renderScene(s, i),
}));
const entries: ModelEntry[] = [];
for (const e of await scanModels([EMBEDDED_MODELS_DIR])) {
  if (e.manifest.family !== "captioning") continue;
  const q8 = await withQuantized(e);
  entries.push(e, ...(q8 === e ? [] : [q8]));
}

async function rate(model: CaptionPipeline, o: CaptionOptions): Promise<number> {
  await model.caption(images[0], o);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    await model.caption(images[n++ % images.length], o);
  }
  return n / ((performance.now() - t0) / 1000);
}

const backends: BackendName[] = ["cpu", "wasm", ...(values.webgpu ? ["webgpu" as const] : [])];
console.log(`\ncaptions per second (one image a call), ${seconds} s per cell\n`);
console.log(
  `| model | ${
    backends.map((b) => `${b} greedy | ${b} beam 3`).join(" | ")
  } | beam 3 ÷ greedy (cpu) |`,
);
console.log(`| --- | ${backends.map(() => "--- | ---").join(" | ")} | --- |`);
for (const entry of entries) {
  const cells: number[] = [];
  for (const b of backends) {
    const model = await CaptionPipeline.load(entry, {
      sessions: new SessionRegistry(await resolveBackend(b)),
    });
    cells.push(await rate(model, GREEDY), await rate(model, { ...GREEDY, strategy: "beam" }));
  }
  console.log(
    `| ${entry.manifest.id}${entry.manifest.settings.dtype === "q8" ? " q8" : ""} | ${
      cells.map((c) => c.toFixed(1)).join(" | ")
    } | ${(cells[1] / cells[0]).toFixed(2)} |`,
  );
}
