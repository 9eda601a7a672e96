import assert from "node:assert/strict";
import { resolveBackend } from "../../core/backend.ts";
import { OptionError } from "../pipeline.ts";
import { SessionRegistry } from "../../core/sessions.ts";
import { scanModels } from "../manifest.ts";
import { DiffusionPipeline } from "./pipeline.ts";

const FIXTURE = new URL("../../tests/fixtures/sd-inpaint-tiny", import.meta.url).pathname;

Deno.test("a dedicated inpainting UNet (2C + 1 input channels) gets the mask and masked latents", async () => {
  const [entry] = await scanModels([FIXTURE]);
  const sessions = new SessionRegistry(await resolveBackend("cpu"));
  const sd = await DiffusionPipeline.load(entry, { sessions });
  const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(200) };
  const mask = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(255) };
  const base = {
    prompt: "a red circle",
    steps: 2,
    guidance: 2,
    seed: 1,
    scheduler: "euler" as const,
    width: 64,
    height: 64,
    n: 1,
  };
  const out = await sd.generate({ ...base, image, mask });
  assert.equal(out.images[0].data.length, 64 * 64 * 3);
  assert.equal(out.loop, "host");
  const unet = await sessions.load(entry.dir + entry.manifest.files.unet);
  assert.equal(unet.inputDims("sample")?.[1], 9);
  await assert.rejects(sd.generate(base), (e) => e instanceof OptionError && e.option === "image");
  // Its export has no UNet graph with word maps: not explainable, and asking is an OptionError.
  assert.equal(sd.capabilities.explainable, false);
  assert.throws(
    () => sd.plan({ prompt: "a red circle", n: 1, returnAttention: true }),
    (e) => e instanceof OptionError && e.option === "returnAttention" && e.kind === "unsupported",
  );
});

Deno.test("sd-tiny's ONNX files reproduce PyTorch's outputs at export (golden fixture)", async () => {
  const golden = JSON.parse(
    await Deno.readTextFile(new URL("../../tests/fixtures/sd-tiny.golden.json", import.meta.url)),
  );
  const entry = (await scanModels([new URL("../embedded", import.meta.url).pathname])).find((e) =>
    e.manifest.id === "sd-tiny"
  )!;
  const sessions = new SessionRegistry(await resolveBackend("cpu"));
  const load = (role: string) => sessions.load(entry.dir + entry.manifest.files[role]);
  const [text, unet, vae] = await Promise.all([
    load("text_encoder"),
    load("unet"),
    load("vae_decoder"),
  ]);
  const ids = golden.input_ids as number[];
  const hidden = (await text.run({
    input_ids: sessions.tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]),
  })).last_hidden_state;
  const near = (a: ArrayLike<number>, b: number[], tol: number) =>
    b.forEach((v, i) => assert.ok(Math.abs(a[i] - v) < tol, `${i}: ${a[i]} vs ${v}`));
  near(hidden.data as Float32Array, golden.hidden_first, 1e-4);
  const C = 4, n = golden.latents.length / C, side = Math.sqrt(n);
  const latents = sessions.tensor("float32", Float32Array.from(golden.latents), [1, C, side, side]);
  const out = await unet.run({
    sample: latents,
    timestep: sessions.tensor("float32", new Float32Array([golden.timestep]), [1]),
    encoder_hidden_states: hidden,
  });
  near(out.out_sample.data as Float32Array, golden.out_sample, 1e-3);
  // The graph with the word maps: the same noise prediction, and PyTorch's maps.
  const withMaps = await (await load("unet_attention")).run({
    sample: latents,
    timestep: sessions.tensor("float32", new Float32Array([golden.timestep]), [1]),
    encoder_hidden_states: hidden,
  });
  near(withMaps.out_sample.data as Float32Array, golden.out_sample, 1e-3);
  const maps = golden.attention_maps;
  assert.deepEqual(withMaps.attention_maps.dims, maps.shape);
  const got = withMaps.attention_maps.data as Float32Array;
  near(Array.from(maps.values, (_, i) => got[i * maps.stride]), maps.values, 1e-5);
  const scale = JSON.parse(await Deno.readTextFile(entry.dir + "vae_decoder/config.json"))
    .scaling_factor;
  const decoded = await vae.run({
    latent_sample: sessions.tensor(
      "float32",
      Float32Array.from(golden.latents, (v: number) => v / scale),
      [1, C, side, side],
    ),
  });
  near(decoded.sample.data as Float32Array, golden.decoded, 1e-3);
});
