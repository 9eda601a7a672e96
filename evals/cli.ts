/**
 * `deno task eval <family>`: prints a family's quality table on the shapes world, measured
 * through the same pipelines and sessions the service uses; `--dtype q8` evaluates the int8 files
 * of the models that ship them (training/quantize.py), as `MM_DTYPE=q8` serves them.
 *
 *   deno task eval clip [--backend cpu] [--count 500]
 *   deno task eval captions [--backend cpu] [--count 300] [--strategy greedy|beam]
 *   deno task eval images [--backend cpu] [--count 100] [--steps 20] [--candidates 4]
 *                         [--temperature 1] [--top-k 32] [--grid docs/generators.png]
 *   deno task eval chat [--backend cpu] [--count 100] [--model vlm-tiny]
 *   deno task eval pointing [--backend cpu] [--count 200] [--model id[,id…]] [--seed 0]   (attention maps: the
 *                           pointing game, for every explainable captioner, chat model and
 *                           image generator; the generators' boxes from the pixel judge)
 */
import { parseArgs } from "node:util";
import { resolveBackend } from "../core/backend.ts";
import { type BackendChoice, BACKENDS, EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { retrieval, zeroShot } from "./clip.ts";
import { ClipPipeline } from "../models/clip/pipeline.ts";
import { evaluateCaptions } from "./captioning.ts";
import { captionMaps, chatMaps, type Explain, pointing } from "./pointing.ts";
import { printGeneratorPointing } from "./pointing_generators.ts";
import { CaptionPipeline } from "../models/captioning/pipeline.ts";
import { evaluateQa, QUESTION_TYPES } from "./chat.ts";
import { ChatPipeline } from "../models/chat/pipeline.ts";
import { type ImageScores, promptSets, scoreGenerator } from "./generators.ts";
import { autoencoderRoundTrip, type RoundTrip } from "./roundtrip.ts";
import { CANVAS, renderScene } from "../world/world.ts";
import { DiffusionPipeline } from "../models/diffusion/pipeline.ts";
import { DallePipeline } from "../models/dalle/pipeline.ts";
import { encodePng, type RgbImage } from "../core/image.ts";
import { scanModels, withQuantized } from "../models/manifest.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    backend: { type: "string", default: "cpu" },
    count: { type: "string" },
    model: { type: "string" },
    strategy: { type: "string", default: "greedy" },
    steps: { type: "string" },
    guidance: { type: "string" },
    candidates: { type: "string" },
    temperature: { type: "string" },
    "top-k": { type: "string" },
    grid: { type: "string" },
    dtype: { type: "string", default: "fp32" },
    seed: { type: "string", default: "0" },
  },
});
const family = positionals[0];
const usage = `usage: deno task eval clip|captions|images|chat|pointing [--backend ${
  BACKENDS.join("|")
}] [--count N]`;
if (!BACKENDS.includes(values.backend as BackendChoice)) {
  console.error(`--backend must be one of ${BACKENDS.join(", ")}`);
  Deno.exit(2);
}
if (values.dtype !== "fp32" && values.dtype !== "q8") {
  console.error("--dtype must be fp32 or q8");
  Deno.exit(2);
}
const scanned = await scanModels([
  EMBEDDED_MODELS_DIR,
  ...(Deno.env.get("MM_MODELS_DIR") ? [Deno.env.get("MM_MODELS_DIR")!] : []),
]);
// --dtype q8: the models' int8 files where they ship them (as MM_DTYPE=q8 serves them).
const entries = values.dtype === "q8" ? await Promise.all(scanned.map(withQuantized)) : scanned;
/** The models --model names (all when it is not given). */
const chosen = (id: string) => !values.model || values.model.split(",").includes(id); // one id or several
const backend = await resolveBackend(values.backend as BackendChoice);
const sessions = new SessionRegistry(backend);
const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

if (family === "clip") {
  const entry = entries.find((e) => e.manifest.id === (values.model ?? "clip-tiny"));
  if (!entry) {
    console.error(`model "${values.model}" is not installed`);
    Deno.exit(2);
  }
  const clip = await ClipPipeline.load(entry, { sessions });
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
    for (
      const entry of entries.filter((e) =>
        e.manifest.family === "captioning" && chosen(e.manifest.id)
      )
    ) {
      const model = await CaptionPipeline.load(entry, { sessions });
      const s = await evaluateCaptions(model, split, count, { strategy, beamSize: 3 });
      const f = (v: number) => (v * 100).toFixed(1);
      console.log(
        `| shapes ${split} | ${entry.manifest.id} | ${s.bleu.map(f).join(" | ")} | ${
          f(s.meteor)
        } | ${pct(s.exact)} |`,
      );
    }
  }
} else if (family === "pointing") {
  const count = Number(values.count ?? 200);
  const seed = Number(values.seed); // another seed: other scenes, to choose settings on
  console.log(
    `attention maps on ${backend.name}: colour and shape words whose map's peak cell overlaps ` +
      `the object they name; ${count} scenes per split, greedy captions and chat answers to ` +
      `"describe the image."\n`,
  );
  console.log(
    "| model | split | words scored | served map | colour words | shape words | step before | step after | random cell |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const entry of entries.filter((e) => chosen(e.manifest.id))) {
    let explain: Explain | null = null;
    if (entry.manifest.family === "captioning") {
      const model = await CaptionPipeline.load(entry, { sessions });
      if (model.capabilities.explainable) explain = captionMaps(model);
    } else if (entry.manifest.family === "chat") {
      const model = await ChatPipeline.load(entry, { sessions });
      if (model.capabilities.explainable) explain = chatMaps(model);
    }
    if (!explain) continue;
    for (const split of ["test", "heldout"] as const) {
      const s = await pointing(explain, split, count, seed);
      console.log(
        `| ${entry.manifest.id} | ${split} | ${s.words} | ${pct(s.byOffset["0"])} | ${
          pct(s.byKind.colour)
        } | ${pct(s.byKind.shape)} | ${pct(s.byOffset["-1"])} | ${pct(s.byOffset["+1"])} | ${
          pct(s.chance)
        } |`,
      );
    }
  }
  await printGeneratorPointing(entries.filter((e) => chosen(e.manifest.id)), sessions, count, seed);
} else if (family === "images") {
  // Both generator families on the same prompts, each with and without CLIP reranking (the best
  // of `candidates` samples by clip-tiny's similarity to the prompt, as DALL-E did).
  const count = Number(values.count ?? 100);
  const candidates = Number(values.candidates ?? 4);
  const clipEntry = entries.find((e) => e.manifest.family === "clip");
  const clip = clipEntry ? await ClipPipeline.load(clipEntry, { sessions }) : null;
  const generators: Array<
    {
      name: string;
      generate: (p: string, seed: number, n: number) => Promise<RgbImage[]>;
      roundTrip: RoundTrip | null;
    }
  > = [];
  for (const entry of entries.filter((e) => chosen(e.manifest.id))) {
    if (entry.manifest.family === "diffusion") {
      const model = await DiffusionPipeline.load(entry, { sessions });
      const s = model.settings;
      const steps = Number(values.steps ?? s.defaultSteps);
      const guidance = Number(values.guidance ?? s.defaultGuidance);
      generators.push({
        name: `${entry.manifest.id} (diffusion, ${steps} steps, guidance ${guidance})`,
        roundTrip: await autoencoderRoundTrip(entry, sessions),
        generate: async (prompt, seed, n) =>
          (await model.generate({
            prompt,
            steps,
            guidance,
            seed,
            scheduler: s.defaultScheduler,
            width: 64,
            height: 64,
            n,
          })).images,
      });
    } else if (entry.manifest.family === "dalle") {
      const model = await DallePipeline.load(entry, { sessions });
      const s = model.settings;
      const temperature = Number(values.temperature ?? s.defaultTemperature);
      const topK = Number(values["top-k"] ?? s.defaultTopK);
      generators.push({
        name: `${entry.manifest.id} (DALL-E, temperature ${temperature}, top-k ${topK})`,
        roundTrip: await autoencoderRoundTrip(entry, sessions),
        generate: async (prompt, seed, n) =>
          (await model.generate({ prompt, n, seed, temperature, topK, topP: 1 })).images,
      });
    }
  }
  type Generator = typeof generators[number];
  /**
   * One image of `g` for `prompt`: its sample for `seed`, or with `rerank` the best of
   * `candidates` samples (seeds seed · candidates onwards) by the CLIP model's score.
   */
  const draw = async (g: Generator, prompt: string, seed: number, rerank: boolean) => {
    if (!rerank) return (await g.generate(prompt, seed, 1))[0];
    const images = await g.generate(prompt, seed * candidates, candidates);
    const scores = await clip!.scoreImages(images, prompt);
    return images[scores.indexOf(Math.max(...scores))];
  };
  const variants = clip ? [false, true] : [false];
  if (values.grid) {
    // Example images for the README: one row per prompt, one column per generator (plain and
    // reranked), each image drawn at 2× with a 4-pixel gutter.
    const prompts = promptSets(2, 7).flatMap((set) => set.prompts);
    const columns = generators.flatMap((g) =>
      variants.map((rerank) => ({
        name: rerank ? `${g.name}, best of ${candidates} by CLIP` : g.name,
        draw: (p: string) => draw(g, p, 0, rerank),
      }))
    );
    const cell = 128, gap = 4;
    const W = columns.length * (cell + gap) + gap, H = prompts.length * (cell + gap) + gap;
    const data = new Uint8Array(W * H * 3).fill(255);
    for (const [r, prompt] of prompts.entries()) {
      for (const [c, column] of columns.entries()) {
        const img = await column.draw(prompt);
        for (let y = 0; y < cell; y++) {
          for (let x = 0; x < cell; x++) {
            const from = (Math.floor(y / 2) * img.width + Math.floor(x / 2)) * 3;
            const to = ((gap + r * (cell + gap) + y) * W + gap + c * (cell + gap) + x) * 3;
            data.set(img.data.subarray(from, from + 3), to);
          }
        }
      }
    }
    await Deno.writeFile(values.grid, await encodePng({ width: W, height: H, data }));
    console.log(`wrote ${values.grid}; columns: ${columns.map((c) => c.name).join(" | ")}`);
    for (const [r, p] of prompts.entries()) console.log(`row ${r + 1}: ${p}`);
    Deno.exit(0);
  }
  console.log(
    `image generators on ${backend.name}; ${count} prompts per set, one image each; ` +
      `rerank: best of ${candidates} by ${clipEntry?.manifest.id ?? "(no CLIP model)"}\n`,
  );
  console.log(
    "| generator | CLIP rerank | prompts | background | count | colour | shape | size | layout | all correct | s/image |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  const row = (name: string, rerank: string, set: string, r: ImageScores) =>
    console.log(
      `| ${name} | ${rerank} | ${set} | ${
        [r.background, r.count, r.colour, r.shape, r.size, r.layout, r.all].map(pct).join(" | ")
      } | ${r.secondsPerImage.toFixed(2)} |`,
    );
  for (const g of generators) {
    // First the ceiling: each prompt's own scene through the generator's autoencoder and back.
    for (const set of g.roundTrip ? promptSets(count) : []) {
      const r = await scoreGenerator(set.prompts, async (_, i) => {
        const scene = { width: CANVAS, height: CANVAS, data: renderScene(set.scenes[i]) };
        return (await g.roundTrip!(scene)).data;
      });
      row(`${g.name}: its autoencoder's round trip of the scene (the ceiling)`, "—", set.name, r);
    }
    for (const rerank of variants) {
      for (const set of promptSets(count)) {
        const r = await scoreGenerator(
          set.prompts,
          async (prompt, seed) => (await draw(g, prompt, seed, rerank)).data,
        );
        row(g.name, rerank ? `best of ${candidates}` : "no", set.name, r);
      }
    }
  }
} else if (family === "chat") {
  const count = Number(values.count ?? 100);
  console.log(
    `chat models on ${backend.name}; every question of ${count} scenes per split, greedy\n`,
  );
  console.log(`| model | split | ${QUESTION_TYPES.join(" | ")} | all |`);
  console.log(`| --- | --- | ${QUESTION_TYPES.map(() => "---").join(" | ")} | --- |`);
  for (
    const entry of entries.filter((e) => e.manifest.family === "chat" && chosen(e.manifest.id))
  ) {
    const model = await ChatPipeline.load(entry, { sessions });
    for (const split of ["test", "heldout"] as const) {
      const s = await evaluateQa(model, split, count);
      const cell = (t: string) => {
        const v = s.byType[t];
        return v ? pct(v.correct / v.asked) : "—";
      };
      console.log(
        `| ${entry.manifest.id} | ${split} | ${QUESTION_TYPES.map(cell).join(" | ")} | ${
          pct(s.overall)
        } |`,
      );
    }
  }
} else {
  console.error(usage);
  Deno.exit(2);
}
