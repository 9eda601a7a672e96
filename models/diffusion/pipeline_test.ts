import assert from "node:assert/strict";
import { resolveBackend } from "../../core/backend.ts";
import { ApiError } from "../../core/errors.ts";
import { SessionRegistry } from "../../core/sessions.ts";
import { scanModels } from "../manifest.ts";
import { DiffusionPipeline } from "./pipeline.ts";

const FIXTURE = new URL("../../tests/fixtures/sd-inpaint-tiny", import.meta.url).pathname;

Deno.test("a dedicated inpainting UNet (2C + 1 input channels) gets the mask and masked latents", async () => {
  const [entry] = await scanModels([FIXTURE]);
  const sessions = new SessionRegistry(await resolveBackend("cpu"));
  const sd = await DiffusionPipeline.load(entry, sessions);
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
  await assert.rejects(sd.generate(base), (e) => e instanceof ApiError && e.param === "image");
});
