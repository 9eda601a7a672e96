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
    const c = this.c, T = tokens.length, past = this.#length;
    if (past + T > c.capacity) throw new RangeError("the conversation outgrew the KV cache");
    const { hidden: H, heads, kvHeads, headDim: D, intermediate: I } = c;
    const s = this.#s;
    this.device.queue.writeBuffer(s.ids, 0, Float32Array.from(tokens));
    const e = this.device.createCommandEncoder();
    this.#run(e, "embed", { n: [T, H] }, s.ids, this.#weight("embed.weight"), s.x, T * H);
    const mlp = (prefix: string, gate: number) => {
      this.#linear(e, s.h, `${prefix}.gate.weight`, s.gate, T, H, I);
      this.#linear(e, s.h, `${prefix}.up.weight`, s.up, T, H, I);
      this.#run(e, "swiglu", { n: [T * I] }, s.gate, s.up, s.mlp, T * I);
      this.#linear(e, s.mlp, `${prefix}.down.weight`, s.x, T, I, H, gate);
    };
    for (let i = 0; i < c.layers; i++) {
      const l = `layers.${i}`;
      this.#run(
        e,
        "rmsnorm",
        { n: [T, H], f: [c.eps] },
        s.x,
        this.#weight(`${l}.ln1.weight`),
        s.h,
        T,
      );
      this.#linear(e, s.h, `${l}.attn.q.weight`, s.q, T, H, heads * D);
      this.#linear(e, s.h, `${l}.attn.k.weight`, s.k, T, H, kvHeads * D);
      this.#linear(e, s.h, `${l}.attn.v.weight`, s.v, T, H, kvHeads * D);
      this.#run(
        e,
        "rope",
        { n: [T, heads, D, past], f: [c.ropeTheta] },
        null,
        null,
        s.q,
        T * heads * D / 2,
      );
      this.#run(
        e,
        "rope",
        { n: [T, kvHeads, D, past], f: [c.ropeTheta] },
        null,
        null,
        s.k,
        T * kvHeads * D / 2,
      );
      this.#run(
        e,
        "append",
        { n: [T, kvHeads, D, past], f: [0, c.capacity] },
        s.k,
        null,
        this.#kCache[i],
        T * kvHeads * D,
      );
      this.#run(
        e,
        "append",
        { n: [T, kvHeads, D, past], f: [0, c.capacity] },
        s.v,
        null,
        this.#vCache[i],
        T * kvHeads * D,
      );
      this.#uniforms.push(encodeAttention(this.device, e, {
        queries: T,
        heads,
        kvHeads,
        headDim: D,
        past,
        keys: past + T,
        capacity: c.capacity,
        causal: true,
      }, { q: s.q, kCache: this.#kCache[i], vCache: this.#vCache[i], out: s.att }));
      this.#linear(e, s.att, `${l}.attn.o.weight`, s.x, T, heads * D, H, 1);
      this.#run(
        e,
        "rmsnorm",
        { n: [T, H], f: [c.eps] },
        s.x,
        this.#weight(`${l}.ln2.weight`),
        s.h,
        T,
      );
      mlp(`${l}.mlp`, 1);
      if (c.crossLayers.includes(i)) {
        const x = `cross.${i}`;
        this.#run(
          e,
          "rmsnorm",
          { n: [T, H], f: [c.eps] },
          s.x,
          this.#weight(`${x}.ln1.weight`),
          s.h,
          T,
        );
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
        this.#linear(
          e,
          s.att,
          `${x}.o.weight`,
          s.x,
          T,
          heads * D,
          H,
          this.#gates.get(`${x}.attn_gate`)!,
        );
        this.#run(
          e,
          "rmsnorm",
          { n: [T, H], f: [c.eps] },
          s.x,
          this.#weight(`${x}.ln2.weight`),
          s.h,
          T,
        );
        mlp(`${x}.mlp`, this.#gates.get(`${x}.mlp_gate`)!);
      }
    }
    // Only the last position's logits are needed.
    e.copyBufferToBuffer(s.x, (T - 1) * H * 4, s.h, 0, H * 4);
    this.#run(e, "rmsnorm", { n: [1, H], f: [c.eps] }, s.h, this.#weight("norm.weight"), s.last, 1);
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
