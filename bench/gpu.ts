/**
 * `deno task bench:gpu`: every WebGPU comparison in one call, for a machine with a GPU — our WGSL
 * decoders (DALL-E's sampler, the cross-attention chat decoder) and GPU-resident denoising loop
 * against ONNX Runtime's WebGPU provider and against the native CPU backend, CLIP embeddings on
 * each backend, and CLIP ViT-B/32 at real size on the GPU — written to one Markdown report headed
 * by the adapter it ran on. Each part is its own bench (run as a child, so one that fails leaves
 * the others' tables); `--quick` runs one short round of each, to check the script itself.
 *
 *   deno task bench:gpu [--quick] [--out bench-gpu.md]
 */
import { parseArgs } from "node:util";
import { resolveBackend } from "../core/backend.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    out: { type: "string", default: "bench-gpu.md" },
  },
});
const rounds = (n: number) => String(values.quick ? 1 : n);
const PARTS: Array<{ title: string; args: string[] }> = [
  {
    title: "CLIP embeddings (clip-tiny), every backend",
    args: ["embeddings.ts", "--webgpu", "--rounds", rounds(7), "--batch", "1,32"],
  },
  {
    title: "CLIP ViT-B/32 at real size (random weights), cpu and webgpu",
    args: ["embeddings.ts", "--real-size", "--backends", "cpu", "--webgpu", "--rounds", rounds(3)],
  },
  {
    title: "Diffusion (sd-tiny): GPU-resident loop, host loop, cpu, wasm",
    args: ["diffusion.ts", "--webgpu", "--rounds", rounds(3)],
  },
  {
    title: "DALL-E (dalle-tiny): our WGSL sampler, ORT's WebGPU provider, cpu, wasm",
    args: ["dalle.ts", "--webgpu", "--rounds", rounds(3)],
  },
  {
    title: "Chat (vlm-tiny, vlm-xattn-tiny): our WGSL decoder, ORT's WebGPU provider, cpu, wasm",
    args: ["chat.ts", "--webgpu", "--rounds", rounds(3)],
  },
];

const gpu = await resolveBackend("webgpu");
const adapter = gpu.adapter;
const heading = [
  `# mm-edge on WebGPU: ${gpu.device}`,
  "",
  `${
    new Date().toISOString()
  }, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPU cores; ` +
  `adapter: vendor ${adapter?.vendor || "?"}, architecture ${adapter?.architecture || "?"}, ` +
  `${adapter?.description || "no description"}${values.quick ? " (--quick: one round each)" : ""}`,
  "",
];
if (adapter?.software) {
  heading.push(
    `**A software adapter** (${adapter.softwareReason}): its numbers say nothing of a GPU.`,
    "",
  );
}
await Deno.writeTextFile(values.out, heading.join("\n"));
console.log(heading.join("\n"));

let failed = 0;
for (const [i, part] of PARTS.entries()) {
  console.log(`[${i + 1}/${PARTS.length}] ${part.title} ...`);
  const t0 = performance.now();
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(part.args[0], import.meta.url).pathname, ...part.args.slice(1)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const seconds = ((performance.now() - t0) / 1000).toFixed(0);
  const text = new TextDecoder().decode(run.stdout).trim();
  const section = [
    `## ${part.title}`,
    "",
    `\`deno run -A bench/${part.args.join(" ")}\`, ${seconds} s`,
    "",
  ];
  if (run.success) section.push(text);
  else {
    failed++;
    const err = new TextDecoder().decode(run.stderr).trim().split("\n").slice(-15).join("\n");
    section.push(`**Failed** (exit ${run.code}):`, "", "```", err, "```");
  }
  await Deno.writeTextFile(values.out, `\n${section.join("\n")}\n`, { append: true });
  console.log(`  ${run.success ? "done" : "FAILED"} in ${seconds} s`);
}
console.log(
  `\nreport: ${values.out}${failed ? ` (${failed} of ${PARTS.length} parts failed)` : ""}`,
);
Deno.exit(failed ? 1 : 0);
