/**
 * A Llama-style decoder (with optional gated cross-attention layers: vlm-xattn-tiny's
 * architecture; DALL-E's transformer uses it too) on our own WGSL kernels, for the WebGPU backend: weights from `model.safetensors` uploaded once, the KV cache and the image's
 * keys/values in GPU buffers, every decoder step encoded into one command buffer, and for greedy
 * decoding only the argmax token id read back. The ORT export of the same decoder serves the
 * other backends; a test checks both give the same greedy tokens.
 */
import { encodeAttention } from "./attention.ts";
import { readBuffer, storageBuffer } from "./gpu.ts";
import { encodeKernel, type Kernel, type KernelParams } from "./transformer.ts";

export interface DecoderConfig {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number;
  ropeTheta: number;
  eps: number;
  crossLayers: number[];
  capacity: number;
}

/** The decoder's shape from a Hugging Face `text_config` (Llama names). */
// deno-lint-ignore no-explicit-any
export function decoderConfig(text: Record<string, any>): DecoderConfig {
  return {
    hidden: text.hidden_size,
    layers: text.num_hidden_layers,
    heads: text.num_attention_heads,
    kvHeads: text.num_key_value_heads ?? text.num_attention_heads,
    headDim: text.head_dim ?? text.hidden_size / text.num_attention_heads,
    intermediate: text.intermediate_size,
    vocab: text.vocab_size,
    ropeTheta: text.rope_theta ?? 10000,
    eps: text.rms_norm_eps ?? 1e-5,
    crossLayers: text.cross_attention_layers ?? [],
    capacity: text.max_position_embeddings ?? 2048,
  };
}

/** The decoder's weights on the GPU, uploaded once and shared by every conversation. */
export class GpuWeights {
  readonly buffers = new Map<string, GPUBuffer>();
  /** tanh of each cross-attention gate, applied as a residual scale. */
  readonly gates = new Map<string, number>();

  constructor(readonly device: GPUDevice, weights: Map<string, Float32Array>) {
    for (const [name, data] of weights) {
      if (name.endsWith("_gate")) this.gates.set(name, Math.tanh(data[0]));
      else this.buffers.set(name, storageBuffer(device, data as Float32Array<ArrayBuffer>));
    }
  }
}

/** One conversation: its KV cache, the image's keys/values and scratch buffers. */
export class GpuDecoder {
  #w: Map<string, GPUBuffer>;
  #gates: Map<string, number>;
  #kCache: GPUBuffer[] = [];
  #vCache: GPUBuffer[] = [];
  #imageK = new Map<number, GPUBuffer>();
  #imageV = new Map<number, GPUBuffer>();
  #imageTokens = 0;
  #s: Record<string, GPUBuffer> = {};
  #uniforms: GPUBuffer[] = [];
  #length = 0;

  readonly device: GPUDevice;

  constructor(weights: GpuWeights, readonly c: DecoderConfig) {
    const device = this.device = weights.device;
    this.#w = weights.buffers;
    this.#gates = weights.gates;
    const { hidden: H, heads, kvHeads, headDim: D, intermediate: I, vocab: V, capacity } = c;
    const T = capacity;
    const f = (n: number) => storageBuffer(device, n * 4);
    this.#s = {
      ids: f(T),
      x: f(T * H),
      h: f(T * H),
      q: f(T * heads * D),
      k: f(T * kvHeads * D),
      v: f(T * kvHeads * D),
      att: f(T * heads * D),
      gate: f(T * I),
      up: f(T * I),
      mlp: f(T * I),
      last: f(H),
      logits: f(V),
      token: f(1),
    };
    for (let i = 0; i < c.layers; i++) {
      this.#kCache.push(f(kvHeads * capacity * D));
      this.#vCache.push(f(kvHeads * capacity * D));
    }
  }

  #weight(name: string): GPUBuffer {
    const b = this.#w.get(name);
    if (!b) throw new Error(`model.safetensors has no ${name}`);
    return b;
  }

  #run(
    e: GPUCommandEncoder,
    kernel: Kernel,
    p: KernelParams,
    a: GPUBuffer | null,
    b: GPUBuffer | null,
    y: GPUBuffer,
    n: number,
  ) {
    this.#uniforms.push(encodeKernel(this.device, e, kernel, p, { a, b, y }, n));
  }

  /** y = x Wᵀ, or with `residual` set, y += residual · x Wᵀ (residuals, gated residuals). */
  #linear(
    e: GPUCommandEncoder,
    x: GPUBuffer,
    w: string,
    y: GPUBuffer,
    T: number,
    K: number,
    N: number,
    residual?: number,
  ) {
    const accumulate = residual !== undefined;
    this.#run(
      e,
      "linear",
      { n: [T, K, N, accumulate ? 1 : 0], f: [accumulate ? residual : 1] },
      x,
      this.#weight(w),
      y,
      T * N,
    );
  }

  /** A new conversation: the image's keys and values for every cross-attention layer. */
  reset(image: Float32Array<ArrayBuffer>, imageTokens: number): void {
    const { hidden: H, kvHeads, headDim: D } = this.c;
    for (const b of [...this.#imageK.values(), ...this.#imageV.values()]) b.destroy();
    this.#imageK.clear(), this.#imageV.clear();
    this.#length = 0;
    this.#imageTokens = imageTokens;
    const states = storageBuffer(this.device, image);
    const tmp = storageBuffer(this.device, imageTokens * kvHeads * D * 4);
    for (const i of this.c.crossLayers) {
      for (const [which, map] of [["k", this.#imageK], ["v", this.#imageV]] as const) {
        const e = this.device.createCommandEncoder();
        this.#linear(e, states, `cross.${i}.${which}.weight`, tmp, imageTokens, H, kvHeads * D);
        const out = storageBuffer(this.device, kvHeads * imageTokens * D * 4);
        // [S, kvHeads, D] → [kvHeads, S, D], the attention kernel's cache layout
        this.#run(
          e,
          "append",
          { n: [imageTokens, kvHeads, D, 0], f: [0, imageTokens] },
          tmp,
          null,
          out,
          imageTokens * kvHeads * D,
        );
        this.device.queue.submit([e.finish()]);
        map.set(i, out);
      }
    }
    this.device.queue.onSubmittedWorkDone().then(() => (states.destroy(), tmp.destroy()));
    this.#free();
  }

  get length(): number {
    return this.#length;
  }

  /**
   * Feeds `tokens` after the cached ones; returns the next greedy token id, and the last
   * position's logits only when asked (sampling, log-probabilities).
   */
  async step(
    tokens: number[],
    readLogits = false,
  ): Promise<{ token: number; logits?: Float32Array }> {
    const c = this.c, T = tokens.length, past = this.#length, H = c.hidden, s = this.#s;
    if (past + T > c.capacity) throw new RangeError("the conversation outgrew the KV cache");
    this.device.queue.writeBuffer(s.ids, 0, Float32Array.from(tokens));
    const e = this.device.createCommandEncoder();
    this.#run(e, "embed", { n: [T, H] }, s.ids, this.#weight("embed.weight"), s.x, T * H);
    for (let i = 0; i < c.layers; i++) {
      this.#norm(e, s.x, `layers.${i}.ln1.weight`, s.h, T);
      this.#selfAttention(e, i, T, past);
      this.#norm(e, s.x, `layers.${i}.ln2.weight`, s.h, T);
      this.#mlp(e, `layers.${i}.mlp`, T, 1);
      if (c.crossLayers.includes(i)) this.#crossBlock(e, i, T);
    }
    // Only the last position's logits are needed.
    e.copyBufferToBuffer(s.x, (T - 1) * H * 4, s.h, 0, H * 4);
    this.#norm(e, s.h, "norm.weight", s.last, 1);
    this.#linear(e, s.last, "lm_head.weight", s.logits, 1, H, c.vocab);
    this.#run(e, "argmax", { n: [c.vocab] }, s.logits, null, s.token, 64);
    this.device.queue.submit([e.finish()]);
    this.#length += T;
    const [token] = new Float32Array(await readBuffer(this.device, s.token, 4));
    const logits = readLogits
      ? new Float32Array(await readBuffer(this.device, s.logits, c.vocab * 4))
      : undefined;
    this.#free();
    return { token, logits };
  }

  /** RMSNorm of `rows` rows of `input` with the named weight, into `out`. */
  #norm(e: GPUCommandEncoder, input: GPUBuffer, weight: string, out: GPUBuffer, rows: number) {
    const H = this.c.hidden;
    this.#run(
      e,
      "rmsnorm",
      { n: [rows, H], f: [this.c.eps] },
      input,
      this.#weight(weight),
      out,
      rows,
    );
  }

  /** SwiGLU MLP of the normed `h` into the residual `x`, scaled by `gate`. */
  #mlp(e: GPUCommandEncoder, prefix: string, T: number, gate: number) {
    const { hidden: H, intermediate: I } = this.c, s = this.#s;
    this.#linear(e, s.h, `${prefix}.gate.weight`, s.gate, T, H, I);
    this.#linear(e, s.h, `${prefix}.up.weight`, s.up, T, H, I);
    this.#run(e, "swiglu", { n: [T * I] }, s.gate, s.up, s.mlp, T * I);
    this.#linear(e, s.mlp, `${prefix}.down.weight`, s.x, T, I, H, gate);
  }

  /** Layer i's causal self-attention: q/k/v, RoPE, the KV cache appended, attention, o. */
  #selfAttention(e: GPUCommandEncoder, i: number, T: number, past: number) {
    const { hidden: H, heads, kvHeads, headDim: D, capacity } = this.c, s = this.#s;
    const l = `layers.${i}.attn`;
    this.#linear(e, s.h, `${l}.q.weight`, s.q, T, H, heads * D);
    this.#linear(e, s.h, `${l}.k.weight`, s.k, T, H, kvHeads * D);
    this.#linear(e, s.h, `${l}.v.weight`, s.v, T, H, kvHeads * D);
    for (const [buffer, n] of [[s.q, heads], [s.k, kvHeads]] as const) {
      const params = {
        n: [T, n, D, past] as [number, number, number, number],
        f: [this.c.ropeTheta] as [number],
      };
      this.#run(e, "rope", params, null, null, buffer, T * n * D / 2);
    }
    for (const [src, cache] of [[s.k, this.#kCache[i]], [s.v, this.#vCache[i]]]) {
      const n: [number, number, number, number] = [T, kvHeads, D, past];
      this.#run(e, "append", { n, f: [0, capacity] }, src, null, cache, T * kvHeads * D);
    }
    this.#uniforms.push(encodeAttention(this.device, e, {
      queries: T,
      heads,
      kvHeads,
      headDim: D,
      past,
      keys: past + T,
      capacity,
      causal: true,
    }, { q: s.q, kCache: this.#kCache[i], vCache: this.#vCache[i], out: s.att }));
    this.#linear(e, s.att, `${l}.o.weight`, s.x, T, heads * D, H, 1);
  }

  /** After layer i: gated cross-attention to the image, then a gated MLP (Flamingo's block). */
  #crossBlock(e: GPUCommandEncoder, i: number, T: number) {
    const { hidden: H, heads, kvHeads, headDim: D } = this.c, s = this.#s;
    const x = `cross.${i}`;
    this.#norm(e, s.x, `${x}.ln1.weight`, s.h, T);
    this.#linear(e, s.h, `${x}.q.weight`, s.q, T, H, heads * D);
    this.#uniforms.push(encodeAttention(this.device, e, {
      queries: T,
      heads,
      kvHeads,
      headDim: D,
      past: 0,
      keys: this.#imageTokens,
      capacity: this.#imageTokens,
      causal: false,
    }, { q: s.q, kCache: this.#imageK.get(i)!, vCache: this.#imageV.get(i)!, out: s.att }));
    const gate = this.#gates.get(`${x}.attn_gate`)!;
    this.#linear(e, s.att, `${x}.o.weight`, s.x, T, heads * D, H, gate);
    this.#norm(e, s.x, `${x}.ln2.weight`, s.h, T);
    this.#mlp(e, `${x}.mlp`, T, this.#gates.get(`${x}.mlp_gate`)!);
  }

  #free() {
    const old = this.#uniforms.splice(0);
    this.device.queue.onSubmittedWorkDone().then(() => old.forEach((b) => b.destroy()));
  }

  /** Frees this conversation's buffers (not the shared weights). */
  destroy(): void {
    for (
      const b of [
        ...this.#kCache,
        ...this.#vCache,
        ...this.#imageK.values(),
        ...this.#imageV.values(),
        ...Object.values(this.#s),
      ]
    ) b.destroy();
  }
}
