/**
 * Golden fixtures: each exporter runs PyTorch on fixed inputs and writes the inputs and outputs
 * to tests/fixtures/<id>.golden.json (training/export_dalle.py, training/export_vlm.py; their
 * `--golden-only` writes the fixture of a model already shipped). Here the shipped ONNX files run
 * on the same inputs through the service's SessionRegistry, and every output must match.
 *
 * A fixture keeps a large output small: its shape, every `stride`-th value of the flattened
 * tensor and its mean |value| (see training/onnx_export.py golden_values). Decoders are checked
 * on a prefill from an empty cache and on one decode step over the cache the prefill returned,
 * so the KV-cache path is covered too. The chat models' steps run chained, as the service runs
 * them: ORT's own image features go into the decoder.
 */
import assert from "node:assert/strict";
import { Tokenizer } from "@huggingface/tokenizers";
import { type BackendChoice, EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { resolveBackend, type Tensor } from "../core/backend.ts";
import { type Session, SessionRegistry } from "../core/sessions.ts";
import { TEST_BACKEND } from "./profile.ts";
import { maxAbsDiff } from "./tolerance.ts";

interface Golden {
  shape: number[];
  stride: number;
  values: number[];
  mean_abs: number;
}

const sessions = new SessionRegistry(await resolveBackend(TEST_BACKEND as BackendChoice));
const readJson = async (path: string) => JSON.parse(await Deno.readTextFile(path));
const fixture = (id: string) =>
  readJson(new URL(`fixtures/${id}.golden.json`, import.meta.url).pathname);

async function model(id: string) {
  const dir = `${EMBEDDED_MODELS_DIR}${id}/`;
  const manifest = await readJson(`${dir}manifest.json`);
  return {
    dir,
    config: await readJson(`${dir}config.json`),
    load: (role: string): Promise<Session> => sessions.load(dir + manifest.files[role]),
    tokenizer: async () =>
      new Tokenizer(
        await readJson(`${dir}tokenizer.json`),
        await readJson(`${dir}tokenizer_config.json`),
      ),
  };
}

/**
 * An output against its golden: the same shape, the sampled values within `tol` of PyTorch's
 * (the largest difference), and the mean |value| of the whole tensor within `tol` too.
 */
function near(name: string, got: Tensor, want: Golden, tol: number) {
  assert.deepEqual([...got.dims], want.shape, `${name}: shape`);
  const data = got.data as Float32Array;
  const picked = Array.from(want.values, (_, i) => data[i * want.stride]);
  const diff = maxAbsDiff(picked, want.values);
  assert.ok(diff < tol, `${name}: max |ORT − PyTorch| = ${diff} (tolerance ${tol})`);
  let sum = 0;
  for (const v of data) sum += Math.abs(v);
  const meanAbs = sum / data.length;
  assert.ok(
    Math.abs(meanAbs - want.mean_abs) < tol,
    `${name}: mean |value| ${meanAbs} vs ${want.mean_abs} (tolerance ${tol})`,
  );
}

const int64 = (ids: number[], dims: number[]) =>
  sessions.tensor("int64", BigInt64Array.from(ids, BigInt), dims);
const ones = (n: number) => int64(new Array(n).fill(1), [1, n]);
const positions = (from: number, n: number) =>
  int64(Array.from({ length: n }, (_, i) => from + i), [1, n]);

/** The past_key_values feeds: empty ones (a prefill) or a run's presents (a decode step). */
function pastFeeds(
  layers: number,
  kvHeads: number,
  headDim: number,
  from?: Record<string, Tensor>,
) {
  const feeds: Record<string, Tensor> = {};
  for (let i = 0; i < layers; i++) {
    for (const w of ["key", "value"]) {
      feeds[`past_key_values.${i}.${w}`] = from?.[`present.${i}.${w}`] ??
        sessions.tensor("float32", new Float32Array(0), [1, kvHeads, 0, headDim]);
    }
  }
  return feeds;
}

/** A row of logits [1, T, V] at position t. */
const row = (logits: Tensor, t: number): Tensor => {
  const V = logits.dims.at(-1) as number;
  return sessions.tensor("float32", (logits.data as Float32Array).slice(t * V, (t + 1) * V), [V]);
};

/** Attention probabilities [1, layers, heads, T, S] at query position t: [layers, heads, S]. */
const query = (maps: Tensor, t: number): Tensor => {
  const [, L, H, T, S] = maps.dims as number[];
  const data = maps.data as Float32Array, out = new Float32Array(L * H * S);
  for (let lh = 0; lh < L * H; lh++) {
    out.set(data.subarray((lh * T + t) * S, (lh * T + t + 1) * S), lh * S);
  }
  return sessions.tensor("float32", out, [L, H, S]);
};

/**
 * A prefill of T tokens: all logits, the last position's, the last layer's present value, and
 * where the fixture has them, the last position's attention probabilities (the maps'
 * `attentions` or `cross_attentions` output).
 */
function nearPrefill(
  prefill: Record<string, Tensor>,
  golden: Record<string, Golden>,
  T: number,
  layers: number,
) {
  near("logits", prefill.logits, golden.logits, 1e-3);
  near("logits[-1]", row(prefill.logits, T - 1), golden.logits_last, 1e-3);
  const last = `present.${layers - 1}.value`;
  near(last, prefill[last], golden.present_last_value, 1e-4);
  if (golden.attentions_last) {
    const maps = prefill.attentions ?? prefill.cross_attentions;
    assert.ok(maps, "the fixture has attention maps and the decoder no attention output");
    near("attentions[..., -1, :]", query(maps, T - 1), golden.attentions_last, 1e-4);
  }
}

Deno.test("dalle-tiny's ONNX decoder and dVAE decoder reproduce PyTorch's outputs (golden fixture)", async () => {
  const golden = await fixture("dalle-tiny");
  const m = await model("dalle-tiny");
  const t = m.config.text_config;
  const [layers, kvHeads, headDim] = [t.num_hidden_layers, t.num_key_value_heads, t.head_dim];
  const [decoder, vqvae] = await Promise.all([m.load("decoder"), m.load("vqvae_decoder")]);

  // The shipped tokenizer gives the caption the ids the fixture was made with.
  const text = (await m.tokenizer()).encode(golden.caption).ids;
  assert.deepEqual(text, golden.input_ids.slice(0, text.length));

  const ids: number[] = golden.input_ids, T = ids.length;
  const prefill = await decoder.run({
    input_ids: int64(ids, [1, T]),
    attention_mask: ones(T),
    position_ids: positions(0, T),
    ...pastFeeds(layers, kvHeads, headDim),
  });
  nearPrefill(prefill, golden, T, layers);
  const step = await decoder.run({
    input_ids: int64([golden.next_token], [1, 1]),
    attention_mask: ones(T + 1),
    position_ids: positions(T, 1),
    ...pastFeeds(layers, kvHeads, headDim, prefill),
  });
  near("decode step logits", step.logits, golden.step_logits, 1e-3);

  const g = m.config.image_grid;
  const image = await vqvae.run({ image_tokens: int64(golden.image_tokens, [1, g, g]) });
  near("vqvae_decoder sample", image.sample, golden.sample, 1e-4);
});

/** The fixture's image as the chat models' processor gives it: [1, 1, 3, S, S], CLIP-normalized. */
async function pixelValues(dir: string, golden: { image_rgb_base64: string; image_size: number }) {
  const pre = await readJson(`${dir}preprocessor_config.json`);
  const rgb = Uint8Array.from(atob(golden.image_rgb_base64), (c) => c.charCodeAt(0));
  const S = golden.image_size, n = S * S;
  assert.equal(rgb.length, n * 3);
  const px = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      px[c * n + i] = (rgb[i * 3 + c] * pre.rescale_factor - pre.image_mean[c]) / pre.image_std[c];
    }
  }
  return sessions.tensor("float32", px, [1, 1, 3, S, S]);
}

for (const id of ["vlm-tiny", "vlm-xattn-tiny"]) {
  Deno.test(`${id}'s ONNX files reproduce PyTorch's outputs: vision, prefill, a decode step (golden fixture)`, async () => {
    const golden = await fixture(id);
    const m = await model(id);
    const t = m.config.text_config;
    const [layers, kvHeads, headDim] = [t.num_hidden_layers, t.num_key_value_heads, t.head_dim];
    const unified = golden.kind === "unified";
    assert.equal(unified, m.config.model_type === "idefics3");

    // The shipped tokenizer gives the prompt the ids the fixture was made with.
    const ids: number[] = golden.input_ids, T = ids.length;
    assert.deepEqual(
      (await m.tokenizer()).encode(golden.prompt, { add_special_tokens: false }).ids,
      ids,
    );

    const px = await pixelValues(m.dir, golden);
    const vision = await m.load("vision");
    const decoder = await m.load("decoder");
    let prefill: Record<string, Tensor>, step: Record<string, Tensor>;
    if (unified) {
      const S = golden.image_size;
      const features = (await vision.run({
        pixel_values: px,
        pixel_attention_mask: sessions.tensor("bool", new Uint8Array(S * S).fill(1), [1, 1, S, S]),
      })).image_features;
      near("image_features", features, golden.image_features, 1e-4);
      const embed = await m.load("embed");
      const embeds = (await embed.run({ input_ids: int64(ids, [1, T]) })).inputs_embeds;
      near("inputs_embeds", embeds, golden.inputs_embeds, 1e-6);
      // The image features take the places of the <image> tokens, in order.
      const H = embeds.dims[2] as number;
      const merged = (embeds.data as Float32Array).slice();
      const f = features.data as Float32Array;
      let k = 0;
      ids.forEach((id, i) => {
        if (id === golden.image_token_id) merged.set(f.subarray(k++ * H, k * H), i * H);
      });
      assert.equal(k, features.dims[1]);
      prefill = await decoder.run({
        inputs_embeds: sessions.tensor("float32", merged, [1, T, H]),
        attention_mask: ones(T),
        position_ids: positions(0, T),
        ...pastFeeds(layers, kvHeads, headDim),
      });
      const next =
        (await embed.run({ input_ids: int64([golden.next_token], [1, 1]) })).inputs_embeds;
      step = await decoder.run({
        inputs_embeds: next,
        attention_mask: ones(T + 1),
        position_ids: positions(T, 1),
        ...pastFeeds(layers, kvHeads, headDim, prefill),
      });
    } else {
      const cross = (await vision.run({ pixel_values: px })).cross_attention_states;
      near("cross_attention_states", cross, golden.cross_attention_states, 1e-4);
      prefill = await decoder.run({
        input_ids: int64(ids, [1, T]),
        attention_mask: ones(T),
        position_ids: positions(0, T),
        cross_attention_states: cross,
        ...pastFeeds(layers, kvHeads, headDim),
      });
      step = await decoder.run({
        input_ids: int64([golden.next_token], [1, 1]),
        attention_mask: ones(T + 1),
        position_ids: positions(T, 1),
        cross_attention_states: cross,
        ...pastFeeds(layers, kvHeads, headDim, prefill),
      });
    }
    nearPrefill(prefill, golden, T, layers);
    near("decode step logits", step.logits, golden.step_logits, 1e-3);
  });
}
