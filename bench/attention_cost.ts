/**
 * What the attention outputs of return_attention cost on the native CPU backend:
 *
 * - dalle-tiny's decoder_model_merged.onnx has an `attentions` output since issue 19; a whole
 *   generation's passes (4 candidates: the 24-token prefill and 63 decode steps) through the
 *   graph without it (the file before the change, `--old`), with it fetched, and with it left
 *   out of the fetches;
 * - sd-tiny's word maps come from a second graph (unet/model_attention.onnx) that runs only when
 *   asked; unet/model.onnx is the file it always was. One UNet call of each.
 *
 * Runs alternate between the variants so that the machine's other work falls on all of them.
 *
 *   git show <commit before>:models/embedded/dalle-tiny/onnx/decoder_model_merged.onnx > /tmp/old.onnx
 *   deno run -A bench/attention_cost.ts --old /tmp/old.onnx [--runs 40]
 */
import { parseArgs } from "node:util";
import { resolveBackend, type Tensor } from "../core/backend.ts";
import { type Feeds, type Session, SessionRegistry } from "../core/sessions.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { old: { type: "string" }, runs: { type: "string", default: "40" } },
});
const runs = Number(values.runs);
const sessions = new SessionRegistry(await resolveBackend("cpu"));
const M = new URL("../models/embedded/", import.meta.url).pathname;
const median = (a: number[]) => a.slice().sort((x, y) => x - y)[a.length >> 1];
const i64 = (v: number[], dims: number[]) =>
  sessions.tensor("int64", BigInt64Array.from(v, BigInt), dims);
const stats = (a: number[]) => `median ${median(a).toFixed(2)} / min ${Math.min(...a).toFixed(2)}`;

/** One generation's decoder passes; `fetchMaps` false asks ORT for every output but the maps. */
async function dalle(s: Session, fetchMaps = true): Promise<number> {
  const n = 4, names = s.outputNames.filter((o) => fetchMaps || o !== "attentions");
  let past: Tensor[] = Array.from(
    { length: 8 },
    () => sessions.tensor("float32", new Float32Array(0), [n, 2, 0, 32]),
  );
  const t0 = performance.now();
  for (let i = 0, P = 0; i < 64; i++) {
    const T = i === 0 ? 24 : 1;
    const feeds: Feeds = {
      input_ids: i64(new Array(n * T).fill(5), [n, T]),
      attention_mask: i64(new Array(n * (P + T)).fill(1), [n, P + T]),
      position_ids: i64(Array.from({ length: n * T }, (_, k) => P + (k % T)), [n, T]),
    };
    past.forEach((t, k) => feeds[`past_key_values.${k >> 1}.${k % 2 ? "value" : "key"}`] = t);
    const out = await sessions.schedule(() => s.inner.run(feeds, names)) as Record<string, Tensor>;
    past = past.map((_, k) => out[`present.${k >> 1}.${k % 2 ? "value" : "key"}`]);
    P += T;
  }
  return performance.now() - t0;
}

/** Milliseconds per UNet call, batch 2 (guidance) at sd-tiny's 16 × 16 latents. */
async function unet(s: Session): Promise<number> {
  const feeds = {
    sample: sessions.tensor("float32", new Float32Array(2 * 4 * 256).fill(0.1), [2, 4, 16, 16]),
    timestep: sessions.tensor("float32", new Float32Array([500, 500]), [2]),
    encoder_hidden_states: sessions.tensor(
      "float32",
      new Float32Array(2 * 32 * 128).fill(0.01),
      [2, 32, 128],
    ),
  };
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) await s.run(feeds);
  return (performance.now() - t0) / 20;
}

if (values.old) {
  const old = await sessions.load(values.old);
  const now = await sessions.load(M + "dalle-tiny/onnx/decoder_model_merged.onnx");
  const [a, b, c]: number[][] = [[], [], []];
  await dalle(old), await dalle(now), await dalle(now, false);
  for (let r = 0; r < runs; r++) {
    a.push(await dalle(old)), b.push(await dalle(now)), c.push(await dalle(now, false));
  }
  console.log(`dalle-tiny, one generation's decoder passes (ms), ${runs} runs interleaved:
  without the attentions output: ${stats(a)}
  with it, fetched:              ${stats(b)} (median x${(median(b) / median(a)).toFixed(3)})
  with it, not fetched:          ${stats(c)} (median x${(median(c) / median(a)).toFixed(3)})`);
}
const plain = await sessions.load(M + "sd-tiny/unet/model.onnx");
const maps = await sessions.load(M + "sd-tiny/unet/model_attention.onnx");
const [a, b]: number[][] = [[], []];
await unet(plain), await unet(maps);
for (let r = 0; r < runs; r++) a.push(await unet(plain)), b.push(await unet(maps));
console.log(`sd-tiny, one UNet call (ms), ${runs} × 20 calls interleaved:
  unet/model.onnx:           ${stats(a)}
  unet/model_attention.onnx: ${stats(b)} (median x${(median(b) / median(a)).toFixed(3)})`);
