/**
 * `deno task eval <family>`: prints a family's quality table on the shapes world, measured
 * through the same pipelines and sessions the service uses. Families: clip.
 *
 *   deno task eval clip [--backend cpu] [--count 500]
 */
import { parseArgs } from "node:util";
import { resolveBackend } from "../core/backend.ts";
import { type BackendChoice, BACKENDS, EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { retrieval, zeroShot } from "./clip/eval.ts";
import { ClipPipeline } from "./clip/pipeline.ts";
import { scanModels } from "./manifest.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    backend: { type: "string", default: "cpu" },
    count: { type: "string", default: "500" },
    model: { type: "string", default: "clip-tiny" },
  },
});
const family = positionals[0];
if (family !== "clip") {
  console.error(`usage: deno task eval clip [--backend ${BACKENDS.join("|")}] [--count N]`);
  Deno.exit(2);
}
if (!BACKENDS.includes(values.backend as BackendChoice)) {
  console.error(`--backend must be one of ${BACKENDS.join(", ")}`);
  Deno.exit(2);
}

const entry = (await scanModels([
  EMBEDDED_MODELS_DIR,
  ...(Deno.env.get("MM_MODELS_DIR") ? [Deno.env.get("MM_MODELS_DIR")!] : []),
]))
  .find((e) => e.manifest.id === values.model);
if (!entry) {
  console.error(`model "${values.model}" is not installed`);
  Deno.exit(2);
}
const backend = await resolveBackend(values.backend as BackendChoice);
const clip = await ClipPipeline.load(entry, new SessionRegistry(backend));
const count = Number(values.count);
const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

console.log(
  `${values.model} on ${backend.name} (${backend.device}); ${count} single-object scenes per split\n`,
);
console.log("| split | images | colour | shape | colour and shape | caption→image R@1 (of 100) |");
console.log("| --- | --- | --- | --- | --- | --- |");
for (const split of ["test", "heldout"] as const) {
  const z = await zeroShot(clip, split, count);
  const r = await retrieval(clip, split, 100);
  console.log(
    `| ${split} | ${z.images} | ${pct(z.colour)} | ${pct(z.shape)} | ${pct(z.both)} | ${pct(r)} |`,
  );
}
