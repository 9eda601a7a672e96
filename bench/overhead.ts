/**
 * What a CLIP embedding request costs besides the model: the app in-process (no sockets), one
 * request at a time, total time against the route's own Server-Timing stages (`decode` for the
 * image, `infer` for the towers). The rest is HTTP handling, validation and JSON.
 *
 *   deno run -A bench/overhead.ts [--requests 300] [--real-size] [--gap-ms 15]
 *   (--real-size: CLIP ViT-B/32 at its public size in data/real-size, made at first use;
 *   --gap-ms: idle time before each request, as between a real client's calls — the same code
 *   runs slower on a core that was idle or busy in ORT just before than back to back)
 */
import { parseArgs } from "node:util";
import sharp from "sharp";
import { loadConfig } from "../core/config.ts";
import { createApp } from "../main.ts";
import { renderScene } from "../world/world.ts";
import { quantile } from "./stats.ts";
import { ensureRealSize, REAL_SIZE } from "./real_size.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    requests: { type: "string", default: "300" },
    "real-size": { type: "boolean", default: false },
    "gap-ms": { type: "string", default: "0" },
  },
});
if (values["real-size"]) {
  await ensureRealSize("CLIP ViT-B/32", "clip-vit-base-patch32", "--real-size", [
    "vision_model",
    "text_model",
  ]);
}
const model = values["real-size"] ? "clip-vit-base-patch32-random" : "clip-tiny";
const { app, registry } = await createApp(loadConfig({
  MM_BACKEND: "cpu",
  MM_LOG: "0",
  ...(values["real-size"] ? { MM_MODELS_DIR: REAL_SIZE } : {}),
}));
await registry.get("clip", model);

const scene = renderScene({
  background: "white",
  objects: [{ shape: "circle", colour: "red", size: "large", side: 24, x: 20, y: 20 }],
});
const png = new Uint8Array(
  await sharp(scene, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer(),
).toBase64();
const bodies = {
  text: { model, input: "a large red circle in the center on a white background" },
  image: {
    model,
    input: { type: "image_url", image_url: { url: `data:image/png;base64,${png}` } },
  },
};

/** Server-Timing durations by name. */
const stages = (header: string | null) =>
  Object.fromEntries(
    (header ?? "").split(",").map((p) => {
      const [name, ...rest] = p.trim().split(";");
      const dur = rest.find((r) => r.startsWith("dur="));
      return [name, dur ? Number(dur.slice(4)) : 0];
    }),
  );

const gap = Number(values["gap-ms"]);
console.log(
  `${model}: ${values.requests} requests of each kind, one at a time, in-process, ${gap} ms apart\n`,
);
console.log(
  "| input | total ms (median) | model ms (infer) | decode ms | rest ms | rest ÷ model |",
);
console.log("| --- | --- | --- | --- | --- | --- |");
for (const [kind, body] of Object.entries(bodies)) {
  const rows: Array<{ total: number; infer: number; decode: number }> = [];
  const n = Number(values.requests);
  for (let i = 0; i < n + 20; i++) {
    if (gap > 0) await new Promise((r) => setTimeout(r, gap));
    const t0 = performance.now();
    const res = await app.request("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    await res.arrayBuffer();
    const total = performance.now() - t0;
    const s = stages(res.headers.get("server-timing"));
    if (i >= 20) rows.push({ total, infer: s.infer ?? 0, decode: s.decode ?? 0 }); // 20 warm-up
  }
  const med = (f: (r: (typeof rows)[number]) => number) => quantile(rows.map(f), 0.5);
  const rest = med((r) => r.total - r.infer - r.decode), infer = med((r) => r.infer);
  console.log(
    `| ${kind} | ${med((r) => r.total).toFixed(2)} | ${infer.toFixed(2)} | ${
      med((r) => r.decode).toFixed(2)
    } | ${rest.toFixed(2)} | ${(100 * rest / infer).toFixed(1)}% |`,
  );
}
Deno.exit(0);
