/**
 * Downloads from a Hugging Face–compatible hub: `{endpoint}/{repo}/resolve/{revision}/{path}`,
 * with an optional token, resume of interrupted downloads (HTTP Range), atomic placement (a
 * `.part` file renamed only once complete and verified), and verification against the size and
 * SHA-256 the hub announces (`X-Linked-Size`, `X-Linked-Etag` for LFS files).
 *
 *   await downloadFile({ endpoint: "https://huggingface.co" }, "Xenova/clip-vit-base-patch32",
 *     "main", "onnx/text_model.onnx", "/models/Xenova/clip-vit-base-patch32/onnx/text_model.onnx");
 */
import { createHash } from "node:crypto";
import { ApiError } from "../core/errors.ts";

export const DEFAULT_ENDPOINT = "https://huggingface.co";

export interface HubOptions {
  endpoint: string;
  token?: string;
  /** Called as bytes arrive: (bytes so far, total or null). */
  onProgress?: (done: number, total: number | null) => void;
  signal?: AbortSignal;
}

export interface Downloaded {
  path: string;
  size: number;
  sha256: string;
  /** Whether the hub announced a SHA-256 that this file was checked against. */
  verified: boolean;
}

export class HubError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
    this.name = "HubError";
  }
}

export function fileUrl(endpoint: string, repo: string, revision: string, path: string): string {
  const enc = (s: string) => s.split("/").map(encodeURIComponent).join("/");
  return `${endpoint.replace(/\/+$/, "")}/${enc(repo)}/resolve/${encodeURIComponent(revision)}/${
    enc(path)
  }`;
}

function explain(status: number, repo: string, path: string, token?: string): string {
  if (status === 401 || status === 403) {
    return token
      ? `Access to ${repo} was refused (${status}): the token in HF_TOKEN has no access to this repository`
      : `${repo} is gated or private (${status}): set HF_TOKEN to a token that has access`;
  }
  if (status === 404) {
    return `${repo}/${path} was not found on the hub (404): check the model id and file`;
  }
  return `Downloading ${repo}/${path} failed with HTTP ${status}`;
}

/** What the hub says about a file before the download: its size and, for LFS files, its SHA-256. */
async function head(url: string, headers: Headers, opts: HubOptions, repo: string, path: string) {
  // The hub answers LFS files with a redirect to a CDN; the metadata is on the redirect itself.
  const res = await fetch(url, {
    method: "HEAD",
    headers,
    redirect: "manual",
    signal: opts.signal,
  });
  await res.body?.cancel();
  if (res.status >= 400) {
    throw new HubError(explain(res.status, repo, path, opts.token), res.status);
  }
  const size = Number(res.headers.get("x-linked-size") ?? res.headers.get("content-length") ?? NaN);
  const etag = (res.headers.get("x-linked-etag") ?? res.headers.get("etag") ?? "").replace(
    /^W\//,
    "",
  ).replaceAll('"', "");
  return {
    size: Number.isFinite(size) ? size : null,
    sha256: /^[0-9a-f]{64}$/.test(etag) ? etag : null,
  };
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

/** SHA-256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/**
 * Downloads one file to `dest`, resuming `dest.part` if an earlier try was cut, and verifies it.
 * On a size or SHA-256 mismatch the partial file is deleted and a HubError is thrown.
 */
export async function downloadFile(
  opts: HubOptions,
  repo: string,
  revision: string,
  path: string,
  dest: string,
): Promise<Downloaded> {
  const url = fileUrl(opts.endpoint, repo, revision, path);
  const headers = new Headers({ "user-agent": "mm-edge/0.1" });
  if (opts.token) headers.set("authorization", `Bearer ${opts.token}`);
  const meta = await head(url, headers, opts, repo, path);
  const part = `${dest}.part`;
  await Deno.mkdir(dest.replace(/\/[^/]*$/, ""), { recursive: true });

  let have = await sizeOf(part);
  if (meta.size !== null && have > meta.size) have = 0; // a stale partial of another version
  const getHeaders = new Headers(headers);
  if (have > 0) getHeaders.set("range", `bytes=${have}-`);
  const res = await fetch(url, { headers: getHeaders, signal: opts.signal });
  if (res.status === 416 && meta.size === have) {
    await res.body?.cancel(); // already complete
  } else if (res.status >= 400) {
    await res.body?.cancel();
    throw new HubError(explain(res.status, repo, path, opts.token), res.status);
  } else {
    const resumed = res.status === 206;
    if (!resumed) have = 0;
    const total = meta.size ??
      (res.headers.get("content-length") ? have + Number(res.headers.get("content-length")) : null);
    using file = await Deno.open(part, {
      write: true,
      create: true,
      append: resumed,
      truncate: !resumed,
    });
    let done = have;
    opts.onProgress?.(done, total);
    for await (const chunk of res.body!) {
      let written = 0;
      while (written < chunk.length) written += await file.write(chunk.subarray(written));
      done += chunk.length;
      opts.onProgress?.(done, total);
    }
  }

  const size = await sizeOf(part);
  if (meta.size !== null && size !== meta.size) {
    if (size > meta.size) await Deno.remove(part);
    throw new HubError(
      `${repo}/${path}: got ${size} of ${meta.size} bytes` +
        (size < meta.size
          ? "; run the same command again to resume"
          : "; the partial file was deleted"),
    );
  }
  const sha256 = await sha256File(part);
  if (meta.sha256 && sha256 !== meta.sha256) {
    await Deno.remove(part);
    throw new HubError(
      `${repo}/${path}: SHA-256 mismatch (expected ${meta.sha256}, got ${sha256}); the file was deleted`,
    );
  }
  await Deno.rename(part, dest);
  return { path: dest, size, sha256, verified: meta.sha256 !== null };
}

/** Turns hub failures into the service's error type (used where the server pulls on demand). */
export function hubToApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  const status = e instanceof HubError ? e.status : undefined;
  return new ApiError(
    status === 404 ? "model_not_found" : "internal_error",
    (e as Error).message,
    "model",
  );
}
