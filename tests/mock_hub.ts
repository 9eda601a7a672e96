/**
 * A local server that speaks the hub's download protocol, for tests: `/{repo}/resolve/{rev}/{path}`,
 * LFS files (.onnx) answered with a redirect whose headers carry `X-Linked-Size` and
 * `X-Linked-Etag` (the SHA-256), Range requests, gated repositories that need a token, and
 * failure injection (a connection cut mid-file, corrupted bytes).
 */
import { createHash } from "node:crypto";

export interface MockHubOptions {
  /** Folder holding `<owner>/<name>/<path>` files. */
  root: string;
  /** Extra files by `<owner>/<name>/<path>` → absolute path (e.g. shared tokenizer files). */
  extra?: Record<string, string>;
  /** Repositories (`owner/name`) that answer 401 without this bearer token. */
  gated?: Record<string, string>;
}

export interface MockHub {
  url: string;
  /** Every request seen: method, path and Range header. */
  log: Array<{ method: string; path: string; range: string | null }>;
  /** The next GET of this repo path sends half the file, then drops the connection. */
  cutOnce(path: string): void;
  /** The next GET of this repo path sends the file with one byte flipped. */
  corruptOnce(path: string): void;
  close(): Promise<void>;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

export function startMockHub({ root, extra = {}, gated = {} }: MockHubOptions): MockHub {
  const log: MockHub["log"] = [];
  const cut = new Set<string>(), corrupt = new Set<string>();

  async function read(repoPath: string): Promise<Uint8Array<ArrayBuffer> | null> {
    try {
      return await Deno.readFile(extra[repoPath] ?? `${root}/${repoPath}`);
    } catch {
      return null;
    }
  }

  function body(bytes: Uint8Array, repoPath: string, range: string | null): Response {
    let data = bytes;
    if (corrupt.delete(repoPath)) (data = bytes.slice())[data.length >> 1] ^= 0xff;
    const start = Number(range?.match(/^bytes=(\d+)-$/)?.[1] ?? 0);
    if (start >= data.length && data.length > 0) return new Response(null, { status: 416 });
    const slice = data.subarray(start);
    const headers = new Headers({
      "content-length": String(slice.length),
      "accept-ranges": "bytes",
    });
    if (start > 0) headers.set("content-range", `bytes ${start}-${data.length - 1}/${data.length}`);
    if (cut.delete(repoPath)) {
      // Half the bytes, then an error: the client sees the connection drop mid-file.
      headers.delete("content-length");
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(slice.subarray(0, slice.length >> 1));
        },
        pull(controller) {
          controller.error(new Error("connection cut by the mock hub"));
        },
      });
      return new Response(stream, { status: start > 0 ? 206 : 200, headers });
    }
    return new Response(slice.slice(), { status: start > 0 ? 206 : 200, headers });
  }

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    const range = req.headers.get("range");
    log.push({ method: req.method, path: url.pathname, range });
    // CDN path for LFS files: /cdn/<owner>/<name>/<path>
    const cdn = url.pathname.match(/^\/cdn\/(.+)$/);
    const resolve = url.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    if (!cdn && !resolve) return new Response("not found", { status: 404 });
    const repo = cdn ? cdn[1].split("/").slice(0, 2).join("/") : resolve![1];
    const repoPath = cdn
      ? decodeURIComponent(cdn[1])
      : `${repo}/${decodeURIComponent(resolve![3])}`;
    const token = gated[repo];
    if (token && req.headers.get("authorization") !== `Bearer ${token}`) {
      return new Response("Access to this repository is restricted", { status: 401 });
    }
    const bytes = await read(repoPath);
    if (!bytes) {
      return new Response("Entry not found", {
        status: 404,
        headers: { "x-error-code": "EntryNotFound" },
      });
    }
    const lfs = repoPath.endsWith(".onnx");
    if (resolve && lfs) {
      return new Response(null, {
        status: 302,
        headers: {
          location: `/cdn/${repoPath}`,
          "x-linked-size": String(bytes.length),
          "x-linked-etag": `"${sha256(bytes)}"`,
        },
      });
    }
    if (req.method === "HEAD") {
      return new Response(null, {
        headers: {
          "content-length": String(bytes.length),
          etag: `"${sha256(bytes).slice(0, 40)}"`,
        },
      });
    }
    return body(bytes, repoPath, range);
  });

  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    log,
    cutOnce: (p) => cut.add(p),
    corruptOnce: (p) => corrupt.add(p),
    close: () => server.shutdown(),
  };
}
