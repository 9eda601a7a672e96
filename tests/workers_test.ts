/**
 * Engine workers on the real server (`MM_WORKERS` unset: one worker per group of families).
 * While a long generation holds the generators' worker, the HTTP thread and the other workers
 * answer: /health, the model list, /metrics, and a CLIP embedding all return while the
 * generation still has steps to go (an ordering, not a timing: the generation is hundreds of
 * steps of four images, each far longer than a health check). Afterwards /metrics carries the steps the
 * worker counted.
 */
import assert from "node:assert/strict";
import sharp from "sharp";
import { renderScene, type Scene } from "../world/world.ts";
import { bounded, readEvents } from "./child.ts";

const STEPS = 100; // sd-tiny's most
const N = 4;

Deno.test({
  name: "engine workers: health, models, metrics and another family answer during a generation",
  sanitizeResources: false,
  fn: async () => {
    await bounded({ MM_LOG: "0" }, async ({ out, url }) => {
      await out.waitFor(/^engine workers: engine:clip, .*engine:diffusion,dalle/);
      const res = await fetch(`${url}/v1/images/generations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "sd-tiny",
          prompt: "a large red circle in the center on a white background",
          num_inference_steps: STEPS,
          n: N,
          size: "128x128", // sd-tiny's largest
          guidance_scale: 1,
          seed: 1,
          stream: true,
        }),
      });
      assert.equal(res.status, 200);
      const events = readEvents(res.body!);
      await events.first; // the generation is running in its worker

      const health = await fetch(`${url}/health`);
      assert.equal(health.status, 200);
      assert.deepEqual((await health.json()).models, ["sd-tiny"]); // loaded on first use
      const embedding = await fetch(`${url}/v1/embeddings`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ input: "a red circle" }),
      });
      assert.equal(embedding.status, 200, await embedding.clone().text());
      assert.equal((await embedding.json()).data[0].embedding.length > 0, true);
      const list: Array<{ id: string; loaded: boolean }> =
        (await (await fetch(`${url}/v1/models`)).json()).data;
      assert.deepEqual(list.filter((m) => m.loaded).map((m) => m.id).sort(), [
        "clip-tiny",
        "sd-tiny",
      ]);
      assert.equal((await fetch(`${url}/metrics`)).status, 200);
      const answeredAt = events.seen.length; // events received so far (the reader keeps going)

      const all = await events.all;
      const progress = (e: { event?: string }) => e.event === "image_generation.progress";
      assert.equal(all.at(-1)?.event, "image_generation.completed");
      // Steps were still to come when every other request had been answered.
      const toGo = all.slice(answeredAt).filter(progress).length;
      console.log(
        `steps to go when the others had answered: ${toGo} of ${all.filter(progress).length}`,
      );
      assert.ok(toGo > 0, `${toGo} of ${all.filter(progress).length} steps to go`);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      assert.match(
        metrics,
        new RegExp(`^mm_diffusion_steps_total\\{model="sd-tiny"\\} ${STEPS * N}$`, "m"),
      );
      assert.match(metrics, /^mm_model_loaded\{model="clip-tiny",family="clip"\} 1$/m);
    });
  },
});

Deno.test({
  name: "lazy start: /health is 200 before any model loads; MM_PRELOAD warms the ones it names",
  sanitizeResources: false,
  fn: async () => {
    await bounded({ MM_LOG: "0" }, async ({ url }) => {
      const health = await (await fetch(`${url}/health`)).json();
      assert.deepEqual(health.models, []);
      const list = (await (await fetch(`${url}/v1/models`)).json()).data;
      assert.ok(list.length >= 9, "the list is there before the workers report");
      assert.ok(list.every((m: { loaded: boolean }) => !m.loaded));
      const r = await fetch(`${url}/v1/captions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ image: await sceneDataUrl() }),
      });
      assert.equal(r.status, 200, await r.clone().text());
      assert.match((await r.json()).captions[0].text, /\w/);
    });
    await bounded({ MM_LOG: "0", MM_PRELOAD: "clip-tiny,vlm-tiny" }, async ({ url }) => {
      const health = await (await fetch(`${url}/health`)).json();
      assert.deepEqual(health.models.sort(), ["clip-tiny", "vlm-tiny"]);
      assert.equal(health.backend, "cpu");
    });
  },
});

/** A rendered scene (a red circle on black) as a PNG data URL. */
async function sceneDataUrl(): Promise<string> {
  const scene: Scene = {
    background: "black",
    objects: [{ shape: "circle", colour: "red", size: "large", side: 24, x: 20, y: 20 }],
  };
  const raw = { width: 64, height: 64, channels: 3 } as const;
  const png = await sharp(renderScene(scene), { raw }).png().toBuffer();
  return `data:image/png;base64,${png.toString("base64")}`;
}
