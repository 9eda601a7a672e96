import assert from "node:assert/strict";
import { resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { scanModels } from "../models/manifest.ts";
import { judge } from "../world/judge.ts";
import { canonicalCaption, CANVAS, renderScene, sampleScenes } from "../world/world.ts";
import { autoencoderRoundTrip } from "./roundtrip.ts";

const entries = await scanModels([EMBEDDED_MODELS_DIR]);
const entry = (id: string) => entries.find((e) => e.manifest.id === id)!;
const scenes = sampleScenes({ split: "test", count: 8, seed: 3, objects: 1 });

for (const id of ["sd-tiny", "dalle-tiny"]) {
  Deno.test(`${id}'s autoencoder round trip keeps what the judge reads of a scene's colour and count`, async () => {
    const trip = await autoencoderRoundTrip(
      entry(id),
      new SessionRegistry(await resolveBackend("cpu")),
    );
    assert.ok(trip);
    for (const scene of scenes) {
      const back = await trip({ width: CANVAS, height: CANVAS, data: renderScene(scene) });
      assert.equal(back.data.length, CANVAS * CANVAS * 3);
      const v = judge(canonicalCaption(scene), back.data);
      assert.ok(v.count && v.colour, `${canonicalCaption(scene)}: ${JSON.stringify(v)}`);
    }
  });
}

Deno.test("a generator that ships no encoder has no round trip", async () => {
  const dalle = entry("dalle-tiny");
  const { vqvae_encoder: _, ...files } = dalle.manifest.files;
  const trip = await autoencoderRoundTrip(
    { ...dalle, manifest: { ...dalle.manifest, files } },
    new SessionRegistry(await resolveBackend("cpu")),
  );
  assert.equal(trip, null);
});
