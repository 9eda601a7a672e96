/**
 * Diffusion at real size: SD-Turbo's architecture (SD 2.1's 866 M-parameter UNet, its VAE decoder
 * and a 1024-wide text encoder; random weights in the public ONNX layout, the UNet's weights as
 * external data; made by `training/make_tiny_random.py --real-size-sd-turbo data/real-size` at the
 * first run) through our diffusion pipeline at 512²: seconds for the text encoder, per UNet step
 * and for the VAE decode, as SD-Turbo is used (1 step, no guidance: the UNet on a batch of 1) and
 * with classifier-free guidance (batch 2). Rounds alternate the two; medians with their
 * 25th–75th percentiles. Then the GFLOP/s of the UNet and the VAE decoder (their GFLOP counted
 * at export, bench.json) against the machine's GEMM peak measured in the same run.
 * transformers.js has no diffusion pipeline to compare with.
 *
 *   deno run -A bench/diffusion_real_size.ts [--rounds 3] [--backends cpu]
 */
import { parseArgs } from "node:util";
import { type BackendName, resolveBackend } from "../core/backend.ts";
import { SessionRegistry } from "../core/sessions.ts";
import {
  DiffusionPipeline,
  type GenerateOptions,
  type Timings,
} from "../models/diffusion/pipeline.ts";
import { scanModels } from "../models/manifest.ts";
import { ensureRealSize, measureGemmPeak, REAL_SIZE } from "./real_size.ts";
import { median, spread } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    backends: { type: "string", default: "cpu" },
  },
});
const ROUNDS = Number(values.rounds);
const DIR = await ensureRealSize("SD-Turbo", "sd-turbo", "--real-size-sd-turbo", []);
const [entry] = await scanModels([REAL_SIZE]).then((es) => es.filter((e) => e.dir === DIR));

const base: GenerateOptions = {
  prompt: "a small blue square to the left of a large red circle on a white background",
  steps: 1,
  guidance: 0,
  seed: 1,
  scheduler: "euler",
  width: 512,
  height: 512,
  n: 1,
};
const modes = [
  { name: "1 step, no guidance (UNet batch 1)", options: base },
  { name: "2 steps, guidance 4 (UNet batch 2)", options: { ...base, steps: 2, guidance: 4 } },
];

interface Variant {
  name: string;
  model: DiffusionPipeline;
  options: GenerateOptions;
  runs: Timings[];
}
const variants: Variant[] = [];
for (const b of values.backends.split(",") as BackendName[]) {
  const t0 = performance.now();
  const model = await DiffusionPipeline.load(entry, {
    sessions: new SessionRegistry(await resolveBackend(b)),
  });
  console.log(`${b}: sessions created in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await model.generate(base); // warm-up, not measured
  for (const m of modes) {
    variants.push({ name: `${b}, ${m.name}`, model, options: m.options, runs: [] });
  }
}
for (let r = 0; r < ROUNDS; r++) {
  for (const v of variants) v.runs.push((await v.model.generate(v.options)).timings);
}

const s = (ms: number[]) => spread(ms.map((m) => m / 1000));
console.log(`\nSD-Turbo's architecture, 512 × 512, ${ROUNDS} rounds (seconds)\n`);
console.log("| runner | text encoder | UNet step | VAE decode | image |");
console.log("| --- | --- | --- | --- | --- |");
for (const v of variants) {
  console.log(
    `| ${v.name} | ${s(v.runs.map((t) => t.text_encoder_ms))} | ${
      s(v.runs.flatMap((t) => t.unet_ms))
    } | ${s(v.runs.map((t) => t.vae_decoder_ms))} | ${s(v.runs.map((t) => t.total_ms))} |`,
  );
}

const { best, peak } = await measureGemmPeak();
const flops = JSON.parse(await Deno.readTextFile(`${DIR}bench.json`));
console.log(
  `\nGEMM peak: a 2048² MatMul on the cpu backend, best of 10: ${best.toFixed(1)} ms = ${
    peak.toFixed(0)
  } GFLOP/s. At 512², batch 1: the UNet ${
    flops.unet_gflop.toFixed(0)
  } GFLOP a step, the VAE decoder ${flops.vae_decoder_gflop.toFixed(0)} GFLOP.\n`,
);
console.log("| runner | UNet GFLOP/s | % of GEMM peak | VAE decoder GFLOP/s | % of GEMM peak |");
console.log("| --- | --- | --- | --- | --- |");
for (const v of variants) {
  const batch = v.options.guidance > 1 ? 2 : 1;
  const unet = batch * flops.unet_gflop / (median(v.runs.flatMap((t) => t.unet_ms)) / 1000);
  const vae = flops.vae_decoder_gflop / (median(v.runs.map((t) => t.vae_decoder_ms)) / 1000);
  const pct = (g: number) => `${(100 * g / peak).toFixed(0)}%`;
  console.log(
    `| ${v.name} | ${unet.toFixed(0)} | ${pct(unet)} | ${vae.toFixed(0)} | ${pct(vae)} |`,
  );
}
