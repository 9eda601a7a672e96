/**
 * Smoke test of the real server under a given Deno, as Deno Deploy runs it: `deno run -A main.ts`
 * with `DENO_DEPLOY=true` and no unstable flags, from a cold start (models load on first use):
 * the time to the first 200 from /health, then one request per model family (each line's time
 * is that family's first answer, its model's loading included), the RSS after them (at most
 * `--max-rss-mb`, Deploy's default 768 MB), then SIGTERM.
 *
 *   deno run -A bench/smoke.ts                        # the server runs on this same deno
 *   npx -y deno@2.5.7 run -A bench/smoke.ts           # ... on Deno 2.5.7 (Deploy's line)
 *   deno run -A bench/smoke.ts --deno /path/to/deno   # ... on another binary
 *   deno run -A bench/smoke.ts --portable             # the portable profile: no native code
 *
 * The server listens on a free loopback port: Deno's `DENO_SERVE_ADDRESS` (which takes precedence
 * over the address the code asks for) keeps it off other interfaces though Deploy mode binds
 * 0.0.0.0. Extra environment for the server: `--env NAME=VALUE` (repeatable), e.g.
 * `--env MM_BACKEND=wasm`. Exits 0 when every check passed; the last line says how many did.
 */
import { parseArgs } from "node:util";
import { envPairs, freePort } from "./child_server.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    deno: { type: "string" },
    env: { type: "string", multiple: true, default: [] },
    "startup-timeout": { type: "string", default: "120" },
    "max-rss-mb": { type: "string", default: "768" },
    portable: { type: "boolean", default: false },
  },
});
const maxRssMb = Number(values["max-rss-mb"]);
const deno = values.deno ?? Deno.execPath();
const root = new URL("../", import.meta.url).pathname;
const startupMs = Number(values["startup-timeout"]) * 1000;
const extraEnv = envPairs(values.env);

const version = new TextDecoder().decode(
  (await new Deno.Command(deno, { args: ["--version"], stdout: "piped" }).output()).stdout,
).split("\n")[0];
const port = freePort();
const base = `http://127.0.0.1:${port}`;
console.log(`smoke: ${version} (${deno}), server on ${base}`);

const t0 = performance.now();
const secs = () => ((performance.now() - t0) / 1000).toFixed(2);
// --portable: `deno task serve:portable`'s permissions (no native code) and backend.
const args = values.portable
  ? ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-sys=cpus", "main.ts"]
  : ["run", "-A", "main.ts"];
const child = new Deno.Command(deno, {
  args,
  cwd: root,
  env: {
    DENO_DEPLOY: "true",
    DENO_SERVE_ADDRESS: `tcp:127.0.0.1:${port}`,
    PORT: String(port),
    MM_LOG: "0",
    NO_COLOR: "1",
    ...(values.portable ? { MM_BACKEND: "wasm" } : {}),
    ...extraEnv,
  },
  stdout: "piped",
  stderr: "piped",
}).spawn();

// The server's output, shown as it comes (request log lines aside).
let exited: Deno.CommandStatus | null = null;
const pump = async (stream: ReadableStream<Uint8Array>) => {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    const lines = (rest + decoder.decode(chunk, { stream: true })).split("\n");
    rest = lines.pop()!;
    for (const line of lines) if (!line.startsWith("{")) console.log(`  server | ${line}`);
  }
  if (rest) console.log(`  server | ${rest}`);
};
const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
const status = child.status.then((s) => exited = s);

let passed = 0;
const failures: string[] = [];
async function check(name: string, fn: () => Promise<string>) {
  const t = performance.now();
  try {
    const what = await fn();
    passed++;
    const took = ((performance.now() - t) / 1000).toFixed(2);
    console.log(`  ok   ${name} (${took} s; ${secs()} s from spawn) ${what}`);
  } catch (e) {
    failures.push(name);
    console.log(`  FAIL ${name}: ${(e as Error).message}`);
  }
}

async function call(path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(base + path, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(180_000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

async function waitHealthy(): Promise<Record<string, unknown>> {
  const until = performance.now() + startupMs;
  let last = "no answer";
  while (performance.now() < until) {
    if (exited) throw new Error(`the server exited (code ${exited.code}) before it was healthy`);
    try {
      const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      if (res.status === 200) return JSON.parse(text);
      last = `${res.status}`;
    } catch (e) {
      last = (e as Error).message.split("\n")[0];
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`not healthy after ${startupMs / 1000} s (last: ${last})`);
}

// deno-lint-ignore no-explicit-any
let health: any = null;
await check("GET /health (startup)", async () => {
  health = await waitHealthy();
  const r = health.runtime;
  if (!r) throw new Error("no runtime report in /health");
  if (!version.includes(r.deno)) throw new Error(`runtime.deno ${r.deno}, not ${version}`);
  if (!r.deploy) throw new Error("runtime.deploy is null under DENO_DEPLOY=true");
  if (r.adapter?.software && r.backend.name === "webgpu" && r.backend.requested === "auto") {
    throw new Error(`auto chose WebGPU on a software adapter (${r.adapter.description})`);
  }
  const gpu = r.adapter
    ? `${r.adapter.description || r.adapter.vendor}${r.adapter.software ? " (software)" : ""}`
    : "none";
  return `deno ${r.deno}, backend ${r.backend.name} ` +
    `(${r.backend.device}), adapter ${gpu}, ${health.models.length} models loaded, ` +
    `${r.rss_mb} MB RSS`;
});

if (health) {
  const installed = ((await call("/v1/models")).data as { id: string; installed: boolean }[])
    .filter((m) => m.installed).map((m) => m.id);
  const has = (id: string) => installed.includes(id);

  await check("POST /v1/embeddings", async () => {
    const b = await call("/v1/embeddings", { input: ["a red circle", "a blue square"] });
    const data = b.data as { embedding: number[] }[];
    if (data.length !== 2 || !(data[0].embedding.length > 0)) throw new Error("no embeddings");
    return `${data.length} × ${data[0].embedding.length}`;
  });
  // After the first CLIP answer, so that its time is a cold start's.
  const scene = await call("/v1/world/scene?seed=7&objects=1").catch(() => null);
  const image = `data:image/png;base64,${scene?.b64_json ?? ""}`;
  await check("POST /v1/clip/classify", async () => {
    const b = await call("/v1/clip/classify", {
      image,
      candidate_labels: ["red circle", "blue square", "green triangle"],
    });
    const [top] = b.results as { label: string; score: number }[];
    return `"${top.label}" ${top.score.toFixed(2)} (scene: "${scene?.caption}")`;
  });
  await check("POST /v1/captions", async () => {
    const b = await call("/v1/captions", { image, max_tokens: 12 });
    return `${b.model}: "${(b.captions as { text: string }[])[0].text}"`;
  });
  for (const model of ["sd-tiny", "dalle-tiny"].filter(has)) {
    await check(`POST /v1/images/generations (${model})`, async () => {
      const b = await call("/v1/images/generations", {
        model,
        prompt: "a red circle",
        n: 1,
        ...(model === "sd-tiny" ? { num_inference_steps: 2 } : {}),
      });
      const [img] = b.data as { b64_json: string }[];
      if (!img?.b64_json) throw new Error("no image");
      return `${b.size}, ${img.b64_json.length} base64 chars`;
    });
  }
  await check("POST /v1/chat/completions", async () => {
    const b = await call("/v1/chat/completions", {
      messages: [{
        role: "user",
        content: [
          { type: "image_url", image_url: { url: image } },
          { type: "text", text: "what shape is it?" },
        ],
      }],
      max_tokens: 8,
    });
    const [c] = b.choices as { message: { content: string } }[];
    return `${b.model}: "${c.message.content}"`;
  });
  await check(`GET /health (after one request of every family, RSS ≤ ${maxRssMb} MB)`, async () => {
    const h = await call("/health");
    const rss = (h.runtime as { rss_mb: number }).rss_mb;
    const what = `${rss} MB RSS, ${
      (h.models as string[]).length
    } models loaded, backend ${h.backend}`;
    if (rss > maxRssMb) throw new Error(what);
    return what;
  });
}

// SIGTERM: the server drains and exits 0 (MM_DRAIN_S: 4 s under Deploy).
await check("SIGTERM: exits 0", async () => {
  if (!exited) child.kill("SIGTERM");
  const s = await Promise.race([
    status,
    new Promise<null>((r) => setTimeout(() => r(null), 20_000)),
  ]);
  if (!s) {
    child.kill("SIGKILL");
    throw new Error("still running 20 s after SIGTERM (killed)");
  }
  if (s.code !== 0) throw new Error(`exit code ${s.code}`);
  return "";
});
await status;
await pumps;

const total = passed + failures.length;
console.log(
  failures.length === 0
    ? `smoke ok: ${version}: ${passed}/${total} checks passed in ${secs()} s`
    : `smoke FAILED: ${version}: ${failures.length}/${total} failed (${failures.join("; ")})`,
);
Deno.exit(failures.length === 0 ? 0 : 1);
