/**
 * `deno task load`: the real server as a subprocess on a free loopback port, loaded route by
 * route at concurrency 1, 8, 32 and 64 (a bounded number of requests, and seconds, per cell),
 * then overloaded with more long generations than its queue holds while /health and one
 * embedding are probed every 200 ms. Prints per route: throughput (and, for chat, the generated
 * tokens per second over all clients), p50/p99 latency, errors and 429s, the server's RSS (VmRSS) before and after; for the overload: how many were refused 429
 * and the probes' latencies. Then SIGTERM, and the exit code. Measures; asserts nothing.
 *
 *   deno task load [--levels 1,8,32,64] [--scale 1] [--cell-seconds 20]
 *                  [--overload 96] [--overload-steps 50] [--env NAME=VALUE ...]
 *                  [--only TEXT]
 *
 * `--scale` multiplies every cell's request count; `--overload 0` skips the overload run;
 * `--only clip-tiny` loads the routes whose name contains it.
 */
import { parseArgs } from "node:util";
import sharp from "sharp";
import { renderScene } from "../world/world.ts";
import { envPairs, freePort, SERVE_ARGS } from "./child_server.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    levels: { type: "string", default: "1,8,32,64" },
    scale: { type: "string", default: "1" },
    "cell-seconds": { type: "string", default: "20" },
    overload: { type: "string", default: "96" },
    "overload-steps": { type: "string", default: "50" },
    "overload-seconds": { type: "string", default: "300" },
    env: { type: "string", multiple: true, default: [] },
    only: { type: "string", default: "" },
    "startup-timeout": { type: "string", default: "120" },
  },
});
const levels = values.levels.split(",").map(Number).filter((n) => n >= 1);
const scale = Number(values.scale);
const cellMs = Number(values["cell-seconds"]) * 1000;
const extraEnv = envPairs(values.env);

const port = freePort();
const base = `http://127.0.0.1:${port}`;
const root = new URL("../", import.meta.url).pathname;

// ---------------------------------------------------------------------------------------------
// The server.

const child = new Deno.Command(Deno.execPath(), {
  args: SERVE_ARGS,
  cwd: root,
  env: {
    HOST: "127.0.0.1",
    PORT: String(port),
    MM_LOG: "0",
    MM_PRELOAD: "all", // warm before the first cell: it measures serving, not loading
    NO_COLOR: "1",
    ...extraEnv,
  },
  stdout: "piped",
  stderr: "piped",
}).spawn();
const serverLines: string[] = [];
const pump = async (stream: ReadableStream<Uint8Array>) => {
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    for (const line of decoder.decode(chunk, { stream: true }).split("\n")) {
      if (line.trim()) serverLines.push(line);
    }
  }
};
const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
let exited = null as Deno.CommandStatus | null;
const status = child.status.then((s) => exited = s);

/**
 * The server's resident memory (VmRSS of /proc/<pid>/status), in MB. Read through `cat`: Deno
 * lets only -A read another process's /proc files.
 */
async function serverRss(): Promise<number> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${child.pid}/status`],
    stdout: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  const kb = Number(text.match(/^VmRSS:\s+(\d+) kB/m)?.[1] ?? NaN);
  return kb / 1024;
}

// Whatever fails below, the server does not outlive this script.
globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  console.error("load:", e.reason);
  if (!exited) child.kill("SIGKILL");
  Deno.exit(1);
});

const t0 = performance.now();
const startupMs = Number(values["startup-timeout"]) * 1000;
for (;;) {
  if (exited) throw new Error(`the server exited (${exited.code}):\n${serverLines.join("\n")}`);
  if (performance.now() - t0 > startupMs) {
    throw new Error(`no 200 from /health within ${startupMs / 1000} s:\n${serverLines.join("\n")}`);
  }
  const ok = await fetch(`${base}/health`).then(async (r) => {
    await r.body?.cancel();
    return r.ok;
  }, () => false);
  if (ok) break;
  await new Promise((r) => setTimeout(r, 250));
}
const health = await (await fetch(`${base}/health`)).json();
console.log(
  `load: server on ${base} (pid ${child.pid}), ready in ${
    ((performance.now() - t0) / 1000).toFixed(1)
  } s; backend ${health.backend} (${health.execution_provider}); ${navigator.hardwareConcurrency} cores here`,
);

// ---------------------------------------------------------------------------------------------
// Requests.

const scene = renderScene({
  background: "white",
  objects: [{ shape: "circle", colour: "red", size: "large", side: 24, x: 20, y: 20 }],
});
const png = `data:image/png;base64,${
  new Uint8Array(
    await sharp(scene, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer(),
  ).toBase64()
}`;

interface Scenario {
  name: string;
  path: string;
  body: Record<string, unknown>;
  /** Requests per cell before --scale (at least 2 × the concurrency are sent). */
  requests: number;
}
/** A chat request to vlm-tiny about the scene. */
const askVlm = (text: string) => ({
  model: "vlm-tiny",
  messages: [{
    role: "user",
    content: [{ type: "image_url", image_url: { url: png } }, { type: "text", text }],
  }],
});

const scenarios: Scenario[] = [
  {
    name: "embeddings, text (clip-tiny)",
    path: "/v1/embeddings",
    body: { model: "clip-tiny", input: "a red circle on a white background" },
    requests: 400,
  },
  {
    name: "embeddings, image (clip-tiny)",
    path: "/v1/embeddings",
    body: { model: "clip-tiny", input: { type: "image_url", image_url: { url: png } } },
    requests: 300,
  },
  {
    name: "classify (clip-tiny, 4 labels)",
    path: "/v1/clip/classify",
    body: {
      model: "clip-tiny",
      image: png,
      candidate_labels: ["red circle", "blue square", "green triangle", "yellow circle"],
    },
    requests: 300,
  },
  {
    name: "captions (sat-soft-tiny, greedy)",
    path: "/v1/captions",
    body: { model: "sat-soft-tiny", image: png },
    requests: 200,
  },
  {
    name: "chat, non-stream (vlm-tiny, 16 tokens)",
    path: "/v1/chat/completions",
    body: { ...askVlm("what is in the image?"), max_tokens: 16 },
    requests: 200,
  },
  {
    name: "chat, streamed (vlm-tiny, describe, 24 tokens)",
    path: "/v1/chat/completions",
    body: {
      ...askVlm("describe the image."),
      max_tokens: 24,
      stream: true,
      stream_options: { include_usage: true },
    },
    requests: 200,
  },
  {
    name: "image generation (sd-tiny, 64², 5 steps)",
    path: "/v1/images/generations",
    body: { model: "sd-tiny", prompt: "a red circle", num_inference_steps: 5, seed: 1 },
    requests: 100,
  },
];

interface Result {
  status: number;
  ms: number;
  error?: string;
  /** Generated tokens, where the answer reports its usage. */
  tokens?: number;
}

async function send(path: string, body: unknown): Promise<Result> {
  const t = performance.now();
  try {
    const res = await fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    const error = res.ok ? undefined : text.slice(0, 200);
    // A JSON body's usage, or a stream's usage chunk.
    const tokens = Number(text.match(/"completion_tokens":(\d+)/)?.[1] ?? NaN);
    return { status: res.status, ms: performance.now() - t, error, tokens };
  } catch (e) {
    return { status: 0, ms: performance.now() - t, error: String(e).slice(0, 200) };
  }
}

async function get(path: string): Promise<Result> {
  const t = performance.now();
  try {
    const res = await fetch(`${base}${path}`);
    await res.body?.cancel();
    return { status: res.status, ms: performance.now() - t };
  } catch (e) {
    return { status: 0, ms: performance.now() - t, error: String(e).slice(0, 200) };
  }
}

const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return NaN;
  const s = xs.toSorted((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const f0 = (x: number) => Number.isFinite(x) ? x.toFixed(0) : "–";
const f1 = (x: number) => Number.isFinite(x) ? x.toFixed(1) : "–";

interface Cell {
  concurrency: number;
  sent: number;
  ok: number;
  refused: number;
  errors: number;
  seconds: number;
  p50: number;
  p99: number;
  /** Generated tokens of the 200s (NaN where the route reports none). */
  tokens: number;
  firstError?: string;
}

/** `count` requests through `concurrency` workers; no new one after `cellMs`. */
async function cell(s: Scenario, concurrency: number): Promise<Cell> {
  const count = Math.max(2 * concurrency, Math.round(s.requests * scale));
  const results: Result[] = [];
  let next = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count && performance.now() - start < cellMs) {
      next++;
      results.push(await send(s.path, s.body));
    }
  }));
  const seconds = (performance.now() - start) / 1000;
  const ok = results.filter((r) => r.status === 200);
  const bad = results.filter((r) => r.status !== 200 && r.status !== 429);
  return {
    concurrency,
    sent: results.length,
    ok: ok.length,
    refused: results.filter((r) => r.status === 429).length,
    errors: bad.length,
    seconds,
    p50: quantile(ok.map((r) => r.ms), 0.5),
    p99: quantile(ok.map((r) => r.ms), 0.99),
    tokens: ok.reduce((n, r) => n + (r.tokens ?? NaN), 0),
    firstError: bad[0] && `${bad[0].status} ${bad[0].error}`,
  };
}

console.log(
  `\nPer route: concurrency ${levels.join("/")}, ${
    scale === 1 ? "" : `requests × ${scale}, `
  }at most ${cellMs / 1000} s of new requests per cell; latency of the 200s; ` +
    "throughput = 200s per second; RSS = the server's VmRSS.",
);
for (const s of scenarios.filter((s) => s.name.includes(values.only))) {
  const warm = await send(s.path, s.body); // first-call costs out of the table
  if (warm.status !== 200) console.log(`  warm-up of ${s.name}: ${warm.status} ${warm.error}`);
  const before = await serverRss();
  const cells: Cell[] = [];
  for (const c of levels) cells.push(await cell(s, c));
  const after = await serverRss();
  console.log(
    `\n${s.name}: POST ${s.path}; server RSS ${f0(before)} MB before, ${f0(after)} MB after\n`,
  );
  console.log(
    "| concurrency | requests | 200 | 429 | errors | req/s | tokens/s | p50 ms | p99 ms |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const x of cells) {
    console.log(
      `| ${x.concurrency} | ${x.sent} | ${x.ok} | ${x.refused} | ${x.errors} | ${
        f1(x.ok / x.seconds)
      } | ${f1(x.tokens / x.seconds)} | ${f0(x.p50)} | ${f0(x.p99)} |`,
    );
  }
  for (const x of cells.filter((x) => x.firstError)) {
    console.log(`  (concurrency ${x.concurrency}, first error: ${x.firstError})`);
  }
}

// ---------------------------------------------------------------------------------------------
// Overload: more long generations at once than one model's lane runs and queues.

const overload = Number(values.overload);
if (overload > 0) {
  const steps = Number(values["overload-steps"]);
  const limitMs = Number(values["overload-seconds"]) * 1000;
  const before = await serverRss();
  console.log(
    `\nOverload: ${overload} concurrent ${steps}-step sd-tiny generations (the server's lane: ` +
      `MM_MAX_CONCURRENT ${extraEnv.MM_MAX_CONCURRENT ?? "4 (default)"} + ` +
      `MM_MAX_QUEUE ${extraEnv.MM_MAX_QUEUE ?? "32 (default)"}), ` +
      "probing GET /health and one text embedding every 200 ms",
  );
  const start = performance.now();
  let running = true;
  const probe = async (fn: () => Promise<Result>) => {
    const out: Result[] = [];
    while (running && performance.now() - start < limitMs) {
      const t = performance.now();
      out.push(await fn());
      await new Promise((r) => setTimeout(r, Math.max(0, 200 - (performance.now() - t))));
    }
    return out;
  };
  const probes = Promise.all([
    probe(() => get("/health")),
    probe(() => send("/v1/embeddings", { model: "clip-tiny", input: "a red circle" })),
  ]);
  const gens = await Promise.all(
    Array.from({ length: overload }, (_, i) =>
      send("/v1/images/generations", {
        model: "sd-tiny",
        prompt: "a red circle",
        num_inference_steps: steps,
        seed: i,
      })),
  );
  running = false;
  const [healthProbes, embedProbes] = await probes;
  const seconds = (performance.now() - start) / 1000;
  const after = await serverRss();
  const by = (rs: Result[]) => {
    const m = new Map<number, number>();
    for (const r of rs) m.set(r.status, (m.get(r.status) ?? 0) + 1);
    return [...m].sort(([a], [b]) => a - b).map(([s, n]) => `${n} × ${s || "no answer"}`).join(
      ", ",
    );
  };
  const ok = gens.filter((r) => r.status === 200);
  const refused = gens.filter((r) => r.status === 429);
  console.log(`\ngenerations: ${by(gens)} in ${f1(seconds)} s`);
  console.log(
    `  200s: p50 ${f0(quantile(ok.map((r) => r.ms), 0.5))} ms, max ${
      f0(Math.max(...ok.map((r) => r.ms)))
    } ms; 429s answered in p50 ${f0(quantile(refused.map((r) => r.ms), 0.5))} ms, max ${
      f0(Math.max(...refused.map((r) => r.ms)))
    } ms`,
  );
  const other = gens.find((r) => r.status !== 200 && r.status !== 429);
  if (other) console.log(`  first other answer: ${other.status} ${other.error}`);
  console.log("\n| probe during the overload | probes | statuses | p50 ms | p95 ms | max ms |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (
    const [name, rs] of [["GET /health", healthProbes], [
      "POST /v1/embeddings (text)",
      embedProbes,
    ]] as const
  ) {
    const ms = rs.map((r) => r.ms);
    console.log(
      `| ${name} | ${rs.length} | ${by(rs)} | ${f0(quantile(ms, 0.5))} | ${
        f0(quantile(ms, 0.95))
      } | ${f0(Math.max(...ms))} |`,
    );
  }
  console.log(`server RSS ${f0(before)} MB before the overload, ${f0(after)} MB after`);
}

// ---------------------------------------------------------------------------------------------
// Stop.

const stopAt = performance.now();
child.kill("SIGTERM");
let timer: ReturnType<typeof setTimeout> | undefined;
const ended = await Promise.race([
  status,
  new Promise<null>((r) => timer = setTimeout(() => r(null), 60_000)),
]);
clearTimeout(timer);
if (!ended) {
  child.kill("SIGKILL");
  await status;
}
await pumps;
console.log(
  `\nSIGTERM: the server exited with code ${
    ended ? ended.code : `none within 60 s (killed)`
  } after ${((performance.now() - stopAt) / 1000).toFixed(1)} s`,
);
const lastLines = serverLines.filter((l) => !l.startsWith("{")).slice(-3);
for (const l of lastLines) console.log(`  server | ${l}`);
