/**
 * What the scripts that run the real server as a child process share (bench/load.ts,
 * bench/smoke.ts, tests/drain_test.ts): the permissions of `deno task serve`, a free loopback
 * port, and `--env NAME=VALUE` flags.
 */

/** `deno task serve`'s permissions, so whoever starts the server also proves they suffice. */
export const SERVE_ARGS = [
  "run",
  "--allow-net",
  "--allow-read",
  "--allow-env",
  "--allow-ffi",
  "--allow-sys",
  "main.ts",
];

/** A port nothing listens on now, on 127.0.0.1. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** `["A=1", "B=x=y"]` → `{ A: "1", B: "x=y" }`. */
export function envPairs(flags: string[]): Record<string, string> {
  return Object.fromEntries(flags.map((kv) => {
    const i = kv.indexOf("=");
    if (i < 1) throw new Error(`--env wants NAME=VALUE, got "${kv}"`);
    return [kv.slice(0, i), kv.slice(i + 1)];
  }));
}
