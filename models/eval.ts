/**
 * `deno task eval <family>`: prints a family's quality table on the shapes world, measured
 * through the same pipelines and sessions the service uses.
 *
 *   deno task eval clip [--backend cpu] [--count 500]
 *   deno task eval captions [--backend cpu] [--count 300] [--strategy greedy|beam]
 */
import { parseArgs } from "node:util";
import { resolveBackend } from "../core/backend.ts";
import { type BackendChoice, BACKENDS, EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { retrieval, zeroShot } from "./clip/eval.ts";
import { ClipPipeline } from "./clip/pipeline.ts";
import { evaluateCaptions } from "./captioning/eval.ts";
import { CaptionPipeline } from "./captioning/pipeline.ts";
import { scanModels } from "./manifest.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    backend: { type: "string", default: "cpu" },
    count: { type: "string" },
    model: { type: "string" },
    strategy: { type: "string", default: "greedy" },
  },
});
const family = positionals[0];
const usage = `usage: deno task eval clip|captions [--backend ${BACKENDS.join("|")}] [--count N]`;
if (!BACKENDS.includes(values.backend as BackendChoice)) {
  console.error(`--backend must be one of ${BACKENDS.join(", ")}`);
  Deno.exit(2);
}
const entries = await scanModels([
  EMBEDDED_MODELS_DIR,
  ...(Deno.env.get("MM_MODELS_DIR") ? [Deno.env.get("MM_MODELS_DIR")!] : []),
]);
const backend = await resolveBackend(values.backend as BackendChoice);
const sessions = new SessionRegistry(backend);
const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

if (family === "clip") {
  const entry = entries.find((e) => e.manifest.id === (values.model ?? "clip-tiny"));
  if (!entry) {
    console.error(`model "${values.model}" is not installed`);
    Deno.exit(2);
  }
  const clip = await ClipPipeline.load(entry, sessions);
  const count = Number(values.count ?? 500);
  console.log(
    `${entry.manifest.id} on ${backend.name} (${backend.device}); ${count} single-object scenes per split\n`,
  );
  console.log(
    "| split | images | colour | shape | colour and shape | caption→image R@1 (of 100) |",
  );
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const split of ["test", "heldout"] as const) {
    const z = await zeroShot(clip, split, count);
    const r = await retrieval(clip, split, 100);
    console.log(
      `| ${split} | ${z.images} | ${pct(z.colour)} | ${pct(z.shape)} | ${pct(z.both)} | ${
        pct(r)
      } |`,
    );
  }
} else if (family === "captions") {
  const count = Number(values.count ?? 300);
  const strategy = values.strategy === "beam" ? "beam" : "greedy";
  console.log(
    `captioning models on ${backend.name}; ${count} scenes per split, ${strategy} decoding\n`,
  );
  console.log("| Dataset | Model | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | METEOR | exact match |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const split of ["test", "heldout"] as const) {
    for (const entry of entries.filter((e) => e.manifest.family === "captioning")) {
      const model = await CaptionPipeline.load(entry, sessions);
      const s = await evaluateCaptions(model, split, count, { strategy, beamSize: 3 });
      const f = (v: number) => (v * 100).toFixed(1);
      console.log(
        `| shapes ${split} | ${entry.manifest.id} | ${s.bleu.map(f).join(" | ")} | ${
          f(s.meteor)
        } | ${pct(s.exact)} |`,
      );
    }
  }
} else {
  console.error(usage);
  Deno.exit(2);
}
