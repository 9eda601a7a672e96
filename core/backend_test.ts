/**
 * The backend choice: software adapters recognized from what fake adapters report (as Deno 2.5,
 * 2.9, Chrome and older runtimes report them), `auto`'s fallbacks when WebGPU fails at start
 * (a throwing loader, a failing or hanging probe, a stray rejection from ORT's glue), the
 * real choice and probe on this machine, and the WASM backend's threads: they start, compute
 * what one thread computes, and where they do not start in time it runs on one, saying why.
 */
import assert from "node:assert/strict";
import {
  type AdapterLike,
  type Backend,
  type BackendDeps,
  describeAdapter,
  probeBackend,
  resolveBackend,
  wasmBackend,
  wasmThreadsFromEnv,
} from "./backend.ts";

const info = (i: Record<string, unknown>): AdapterLike => ({ info: i });

/** What real adapters report (vendor, architecture, device, description, isFallbackAdapter). */
const SOFTWARE: [string, AdapterLike][] = [
  [
    "Deno 2.9 on Mesa llvmpipe (flag set)",
    info({
      vendor: "65541",
      architecture: "",
      device: "0",
      description: "llvmpipe (LLVM 15.0.6, 256 bits)",
      isFallbackAdapter: true,
    }),
  ],
  [
    "Deno 2.5 on Mesa llvmpipe (flag false)",
    info({
      vendor: "65541",
      architecture: "",
      device: "0",
      description: "llvmpipe (LLVM 15.0.6, 256 bits)",
      isFallbackAdapter: false,
    }),
  ],
  ["lavapipe by name", info({ vendor: "mesa", description: "Vulkan lavapipe" })],
  ["Chrome's SwiftShader", info({ vendor: "google", architecture: "swiftshader" })],
  ["SwiftShader by description", info({ description: "SwiftShader Device (Subzero)" })],
  ["Windows WARP", info({ vendor: "microsoft", description: "Microsoft Basic Render Driver" })],
  ["a software rasterizer", info({ description: "Software Rasterizer" })],
  ["a CPU device type", info({ vendor: "x", architecture: "cpu" })],
  ["no info, the old flag on the adapter", { isFallbackAdapter: true }],
];

const HARDWARE: [string, AdapterLike][] = [
  [
    "NVIDIA",
    info({
      vendor: "nvidia",
      architecture: "ampere",
      description: "NVIDIA GeForce RTX 3080",
      isFallbackAdapter: false,
    }),
  ],
  ["Apple", info({ vendor: "apple", architecture: "metal-3", description: "" })],
  ["AMD on Mesa's RADV", info({ vendor: "4098", description: "AMD Radeon RX 6800 (RADV NAVI21)" })],
  ["Intel", info({ vendor: "intel", architecture: "gen-12lp", description: "Intel(R) UHD 770" })],
  ["nothing reported (Deno 2.5 style, no flag)", info({})],
];

Deno.test("describeAdapter: software adapters by the flag or by name, on every runtime", () => {
  for (const [what, adapter] of SOFTWARE) {
    const a = describeAdapter(adapter);
    assert.equal(a.software, true, what);
    assert.ok(a.softwareReason, what);
  }
  for (const [what, adapter] of HARDWARE) {
    const a = describeAdapter(adapter);
    assert.equal(a.software, false, `${what}: ${a.softwareReason}`);
    assert.equal(a.softwareReason, null);
  }
  // The flag as reported: true/false, or null where the runtime says nothing.
  assert.equal(describeAdapter(SOFTWARE[1][1]).isFallbackAdapter, false);
  assert.match(describeAdapter(SOFTWARE[1][1]).softwareReason!, /description.*llvmpipe/);
  assert.equal(describeAdapter(info({ vendor: "nvidia" })).isFallbackAdapter, null);
  assert.equal(describeAdapter({}).isFallbackAdapter, null);
});

/** Fake loaders that record what was tried; `fail` names those that throw. */
function fakes(adapter: AdapterLike | null, fail: Partial<Record<string, unknown>> = {}) {
  const tried: string[] = [];
  const logged: string[] = [];
  const loader = (name: "webgpu" | "cpu" | "wasm") => () => {
    tried.push(name);
    if (name in fail && fail[name] !== "probe") return Promise.reject(fail[name]);
    return Promise.resolve({
      name,
      executionProvider: name,
      device: `fake ${name}`,
      ort: {} as Backend["ort"],
    });
  };
  const deps: Partial<BackendDeps> = {
    requestAdapter: () => Promise.resolve(adapter),
    webgpu: loader("webgpu"),
    cpu: loader("cpu"),
    wasm: loader("wasm"),
    probe: (b) => {
      tried.push(`probe ${b.name}`);
      return fail[b.name] === "probe"
        ? Promise.reject(new Error("OrtRun failed"))
        : Promise.resolve();
    },
    log: (line) => logged.push(line),
  };
  return { deps, tried, logged };
}

const GPU = HARDWARE[0][1];
const LLVMPIPE_2_5 = SOFTWARE[1][1];

Deno.test("auto: a hardware adapter whose probe passes serves WebGPU", async () => {
  const { deps, tried, logged } = fakes(GPU);
  const b = await resolveBackend("auto", deps);
  assert.equal(b.name, "webgpu");
  assert.equal(b.fallbackAdapter, false);
  assert.equal(b.adapter?.description, "NVIDIA GeForce RTX 3080");
  assert.deepEqual(tried, ["webgpu", "probe webgpu"]);
  assert.deepEqual([b.notes, logged], [[], []]);
});

Deno.test("auto: a software adapter that does not say so (Deno 2.5) is never used", async () => {
  const { deps, tried, logged } = fakes(LLVMPIPE_2_5);
  const b = await resolveBackend("auto", deps);
  assert.equal(b.name, "cpu");
  assert.deepEqual(tried, ["cpu"], "WebGPU is not even loaded");
  assert.equal(b.adapter?.software, true);
  assert.equal(b.adapter?.isFallbackAdapter, false);
  assert.match(b.notes[0], /llvmpipe .* is a software adapter/);
  assert.deepEqual(logged, [`backend auto: ${b.notes[0]}`]);
});

Deno.test("auto: WebGPU failing at start falls back to the native CPU backend, with a log line", async () => {
  for (
    const [what, fail, pattern] of [
      ["the probe run fails", { webgpu: "probe" }, /failed at start: OrtRun failed/],
      [
        "the loader throws (no GPUDevice.lost)",
        { webgpu: new Error("no `lost` promise") },
        /failed at start: no `lost` promise/,
      ],
    ] as const
  ) {
    const { deps, logged } = fakes(GPU, fail);
    const b = await resolveBackend("auto", deps);
    assert.equal(b.name, "cpu", what);
    assert.match(b.notes[0], pattern, what);
    assert.match(logged[0], /^backend auto: WebGPU on NVIDIA GeForce RTX 3080 failed at start/);
  }
});

Deno.test("auto: then WASM when the native addon does not load either", async () => {
  const { deps, tried } = fakes(GPU, { webgpu: "probe", cpu: new Error("dlopen failed") });
  const b = await resolveBackend("auto", deps);
  assert.equal(b.name, "wasm");
  assert.deepEqual(tried, ["webgpu", "probe webgpu", "cpu", "wasm"]);
  assert.equal(b.notes.length, 2);
  assert.match(b.notes[1], /native CPU backend \(onnxruntime-node\) did not load: dlopen failed/);
});

Deno.test("auto: no adapter at all goes to the CPU backend and says so", async () => {
  const { deps } = fakes(null);
  const b = await resolveBackend("auto", deps);
  assert.equal(b.name, "cpu");
  assert.equal(b.adapter, null);
  assert.deepEqual(b.notes, ["no WebGPU adapter"]);
});

Deno.test("auto: a probe that hangs is given up on; a stray rejection from ORT's glue fails the try, not the process", async () => {
  const hang = fakes(GPU);
  const hung = await resolveBackend("auto", {
    ...hang.deps,
    probe: () => new Promise(() => {}),
    probeTimeoutMs: 50,
  });
  assert.equal(hung.name, "cpu");
  assert.match(hung.notes[0], /the WebGPU probe took longer than 0.05 s/);

  const stray = fakes(GPU);
  const b = await resolveBackend("auto", {
    ...stray.deps,
    probe: () => {
      // What ORT 1.30 does on Deno 2.5: `device.lost.then` throws inside a promise it drops.
      Promise.reject(new TypeError("Cannot read properties of undefined (reading 'then')"));
      return Promise.resolve();
    },
  });
  assert.equal(b.name, "cpu");
  assert.match(b.notes[0], /failed at start: Cannot read properties of undefined/);
});

Deno.test("forced webgpu: a software adapter is allowed; a failing probe fails at start", async () => {
  const ok = await resolveBackend("webgpu", fakes(LLVMPIPE_2_5).deps);
  assert.equal(ok.name, "webgpu");
  assert.equal(ok.fallbackAdapter, true);
  await assert.rejects(
    resolveBackend("webgpu", fakes(LLVMPIPE_2_5, { webgpu: "probe" }).deps),
    /Backend "webgpu" does not work on llvmpipe \(LLVM 15.0.6, 256 bits\): OrtRun failed/,
  );
  await assert.rejects(resolveBackend("webgpu", fakes(null).deps), /navigator.gpu has no adapter/);
  assert.equal((await resolveBackend("cpu", fakes(GPU).deps)).adapter, null, "not asked for");
});

Deno.test("the probe graph runs on the native CPU backend (y = x + x)", async () => {
  const b = await resolveBackend("cpu");
  await probeBackend(b);
  await assert.rejects(
    probeBackend({ ...b, executionProvider: "no-such-ep" }),
    /no-such-ep|backend|provider/i,
  );
});

Deno.test({
  name: "resolveBackend('auto') on this machine: never a software adapter",
  sanitizeResources: false,
  fn: async () => {
    const adapter = await navigator.gpu?.requestAdapter().catch(() => null);
    const software = !adapter || describeAdapter(adapter).software;
    const b = await resolveBackend("auto", { log: () => {} });
    if (software) assert.notEqual(b.name, "webgpu");
    else assert.equal(b.name, "webgpu");
    console.log(`  auto chose ${b.name} (${b.device}); ${b.notes.join("; ") || "no notes"}`);
  },
});

Deno.test("wasm: the thread count and why it is lower go to the backend's notes and the log", async () => {
  const { deps, logged } = fakes(null);
  let asked = 0;
  const b = await resolveBackend("wasm", {
    ...deps,
    wasmThreads: 3,
    wasm: (threads, note) => {
      asked = threads;
      note("3 WASM threads did not start, running on 1: no Worker");
      return Promise.resolve({
        name: "wasm",
        executionProvider: "wasm",
        device: "fake",
        ort: {} as Backend["ort"],
      });
    },
  });
  assert.equal(asked, 3);
  assert.deepEqual(b.notes, ["3 WASM threads did not start, running on 1: no Worker"]);
  assert.deepEqual(logged, [`backend wasm: ${b.notes[0]}`]);
  assert.ok(wasmThreadsFromEnv() >= 1);
});

const CLIP_VISION = new URL("../models/embedded/clip-tiny/onnx/vision_model.onnx", import.meta.url);

/** The clip-tiny image tower's embeddings of a fixed batch of 4 on a backend. */
async function embed(b: Pick<Backend, "ort">): Promise<Float32Array> {
  const session = await b.ort.InferenceSession.create(await Deno.readFile(CLIP_VISION), {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  const n = 4 * 3 * 64 * 64;
  const x = new b.ort.Tensor("float32", Float32Array.from({ length: n }, (_, i) => (i % 97) / 97), [
    4,
    3,
    64,
    64,
  ]);
  const out = await session.run({ [session.inputNames[0]]: x });
  return await out.image_embeds.getData() as Float32Array;
}

Deno.test({
  name: "wasm: 2 threads start (helper thread, blob-URL bundle) and compute what 1 thread does",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const notes: string[] = [];
    const threaded = await wasmBackend(2, (line) => notes.push(line));
    assert.deepEqual(notes, []);
    assert.equal(threaded.device, "WebAssembly (2 threads, SIMD)");
    const one = await wasmBackend(1);
    assert.equal(one.device, "WebAssembly (1 thread)");
    assert.notEqual(threaded.ort, one.ort, "its own ORT instance, not the npm one");
    const [a, b] = [await embed(threaded), await embed(one)];
    assert.equal(a.length, b.length);
    const worst = a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
    assert.ok(worst < 1e-4, `threads changed the embeddings by ${worst}`);
  },
});

Deno.test({
  name: "wasm: threads that do not start in time fall back to 1 thread, with the reason",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const notes: string[] = [];
    const b = await wasmBackend(2, (line) => notes.push(line), 1);
    assert.equal(b.device, "WebAssembly (1 thread)");
    assert.match(
      notes[0],
      /^2 WASM threads did not start, running on 1: starting 2 WASM threads took longer than 0.001 s/,
    );
    await probeBackend(b);
  },
});
