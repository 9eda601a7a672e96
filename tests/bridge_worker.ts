/** A worker for tests/worker_bridge_test.ts: a few handlers that exercise the bridge. */
/// <reference lib="deno.worker" />
import { serveRequests } from "../core/worker_bridge.ts";

let emit: (name: string, value: unknown) => void = () => {};
const handler = async (request: Request): Promise<Response> => {
  const url = new URL(request.url);
  if (url.pathname === "/echo") {
    const body = new Uint8Array(await request.arrayBuffer());
    return new Response(body, {
      status: 201,
      headers: { "x-method": request.method, "x-seen": request.headers.get("x-test") ?? "" },
    });
  }
  if (url.pathname === "/ticks") {
    // Ticks until the request is aborted, then says so.
    let n = 0;
    request.signal.addEventListener("abort", () => emit("aborted", n), { once: true });
    return new Response(
      new ReadableStream({
        async pull(out) {
          await new Promise((r) => setTimeout(r, 5));
          if (request.signal.aborted) return out.close();
          out.enqueue(new TextEncoder().encode(`tick ${n++}\n`));
        },
      }),
    );
  }
  if (url.pathname === "/busy") {
    // Holds this worker's thread (as onnxruntime-node's run() does) for the asked milliseconds.
    const until = performance.now() + Number(url.searchParams.get("ms"));
    while (performance.now() < until) { /* busy */ }
    return new Response("done");
  }
  if (url.pathname === "/empty") return new Response(null, { status: 204 });
  if (url.pathname === "/crash") {
    setTimeout(() => {
      throw new Error("the engine fell over");
    });
    return new Promise(() => {}); // never answers: the worker dies first
  }
  throw new Error("unknown path");
};
// "slow": a module that takes a while before it listens (as an engine loading ORT does).
if (self.name === "slow") await new Promise((resolve) => setTimeout(resolve, 500));
({ emit } = serveRequests(handler, { hello: () => ({ from: self.name }) }));
emit("started", self.name);
