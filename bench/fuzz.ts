/**
 * `deno task fuzz [--seed S] [--count N]`: malformed requests against the app in-process, every
 * route of its /openapi.json plus the pages, unknown paths and wrong methods. Lying and cut image
 * headers, decompression bombs, extreme aspect ratios, RGBA, wrong JSON types for every field,
 * huge strings, 10,000-deep JSON, repeated and odd form fields, wrong content types, empty bodies,
 * invalid UTF-8, overlong headers. Every answer is checked (see `checkResponse`): below 500, the
 * error envelope on every 4xx, no stack trace or file path in any body; and RSS after the run is at
 * most RSS after a warm-up batch plus `--rss-mb`. Case i of seed S is the same request on every
 * run: a violation prints the command that replays it alone.
 *
 *   deno task fuzz [--seed 1] [--count 10000] [--max-seconds 1800] [--rss-mb 256] [--case I]
 *                  [--workers]   (through the engine workers, as the server runs; RSS bound 512)
 *
 * tests/fuzz_test.ts runs a short pass of the same generator and checker in CI.
 */
import { parseArgs } from "node:util";
import { deflateSync } from "node:zlib";
import sharp from "sharp";
import { rng } from "../core/random.ts";
import { renderScene } from "../world/world.ts";

// ---------------------------------------------------------------------------------------------
// Images: valid ones to start from, and the hostile ones built from them.

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
const concat = (...parts: Uint8Array[]) => concatAll(parts);
function concatAll(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}
const ascii = (s: string) => Uint8Array.from(s, (ch) => ch.charCodeAt(0) & 0xff);
const u32 = (n: number) => new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const body = concat(ascii(type), data);
  return concat(u32(data.length), body, u32(crc32(body)));
}

/**
 * A PNG whose every row is zeros, written by hand so that huge and odd ones cost nothing to make:
 * colour type 0 (grey), 2 (RGB), 6 (RGBA). `claim` puts other dimensions in IHDR than the data has.
 */
export function zeroPng(
  width: number,
  height: number,
  { bitDepth = 8, colourType = 0, claim }: {
    bitDepth?: number;
    colourType?: number;
    claim?: [number, number];
  } = {},
): Uint8Array {
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colourType] ?? 1;
  const rowBytes = 1 + Math.ceil((width * channels * bitDepth) / 8);
  const [w, h] = claim ?? [width, height];
  const ihdr = concat(u32(w), u32(h), new Uint8Array([bitDepth, colourType, 0, 0, 0]));
  return concat(
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", new Uint8Array(deflateSync(new Uint8Array(rowBytes * height), { level: 9 }))),
    pngChunk("IEND", new Uint8Array()),
  );
}

/** The images the generator draws from; built once (about a second). */
export interface Assets {
  /** Name → bytes; valid images first, then the hostile ones. */
  images: Record<string, Uint8Array>;
  /** A 64 × 64 RGB PNG that every image route accepts. */
  png: Uint8Array;
  /** A 64 × 64 RGBA PNG (a mask). */
  rgba: Uint8Array;
}

export async function buildAssets(): Promise<Assets> {
  const scene = renderScene({
    background: "white",
    objects: [{ shape: "circle", colour: "red", size: "large", side: 24, x: 20, y: 20 }],
  });
  const raw = { raw: { width: 64, height: 64, channels: 3 as const } };
  const out = async (s: ReturnType<typeof sharp>) => new Uint8Array(await s.toBuffer());
  const png = await out(sharp(scene, raw).png());
  const rgba = await out(sharp(scene, raw).ensureAlpha(0.5).png());
  const jpeg = await out(sharp(scene, raw).jpeg());
  const webp = await out(sharp(scene, raw).webp());
  const gif = await out(sharp(scene, raw).gif());
  const grey = await out(sharp(scene, raw).greyscale().png());
  const palette = await out(sharp(scene, raw).png({ palette: true }));
  const png16 = await out(sharp(scene, raw).toColourspace("rgb16").png());

  // JPEG whose start-of-frame claims other sizes (the data stays 64 × 64).
  const jpegSized = (w: number, h: number) => {
    const b = jpeg.slice();
    for (let i = 2; i + 9 < b.length;) {
      const m = b[i + 1];
      if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
        b[i + 5] = h >> 8, b[i + 6] = h & 255, b[i + 7] = w >> 8, b[i + 8] = w & 255;
        return b;
      }
      i += 2 + ((b[i + 2] << 8) | b[i + 3]);
    }
    return b;
  };
  const gifSized = (w: number, h: number) => {
    const b = gif.slice();
    b[6] = w & 255, b[7] = w >> 8, b[8] = h & 255, b[9] = h >> 8;
    return b;
  };
  const riff = (chunk: string, payload: Uint8Array) =>
    concat(ascii("RIFF"), u32(0).reverse(), ascii("WEBP"), ascii(chunk), payload);
  const le24 = (n: number) => new Uint8Array([n & 255, (n >> 8) & 255, (n >> 16) & 255]);

  const images: Record<string, Uint8Array> = {
    "png-64": png,
    "png-rgba-64": rgba,
    "jpeg-64": jpeg,
    "webp-64": webp,
    "gif-64": gif,
    "png-grey-64": grey,
    "png-palette-64": palette,
    "png-16bit-64": png16,
    // Extreme aspect ratios, under the pixel limit: legal, and must stay cheap.
    "png-1x65536": zeroPng(1, 65536, { bitDepth: 1 }),
    "png-65536x1": zeroPng(65536, 1, { bitDepth: 1 }),
    "png-1x200000": zeroPng(1, 200000, { bitDepth: 1 }),
    "png-rgba-1x65536": zeroPng(1, 65536, { colourType: 6 }),
    // The largest image allowed (4096²), 2 KB compressed: decoded, and must not stall the server.
    "bomb-4096x4096-1bit": zeroPng(4096, 4096, { bitDepth: 1 }),
    "bomb-rgba-4096x4096": zeroPng(4096, 4096, { colourType: 6 }),
    // A real decompression bomb over the limit: 20000² pixels in 50 KB.
    "bomb-20000x20000-1bit": zeroPng(20000, 20000, { bitDepth: 1 }),
    // Lying headers.
    "png-ihdr-100000x100000": zeroPng(64, 64, { claim: [100000, 100000] }),
    "png-ihdr-4000x4000-data-64": zeroPng(64, 64, { colourType: 2, claim: [4000, 4000] }),
    "png-ihdr-0x64": zeroPng(64, 64, { claim: [0, 64] }),
    "png-ihdr-2^31": zeroPng(64, 64, { claim: [0x7fffffff, 0x7fffffff] }),
    "png-ihdr-2^32-1": zeroPng(64, 64, { claim: [0xffffffff, 1] }),
    "jpeg-sof-65535x65535": jpegSized(65535, 65535),
    "jpeg-sof-4000x4000": jpegSized(4000, 4000),
    "jpeg-sof-0x0": jpegSized(0, 0),
    "gif-screen-65535x65535": gifSized(65535, 65535),
    "gif-screen-4000x4000": gifSized(4000, 4000),
    "gif-cut-8": gif.slice(0, 8),
    "gif-cut-13": gif.slice(0, 13),
    "webp-cut-20": webp.slice(0, 20),
    "webp-cut-29": webp.slice(0, 29),
    "webp-vp8x-16384x16384": riff(
      "VP8X",
      concat(u32(10).reverse(), new Uint8Array(4), le24(16383), le24(16383)),
    ),
    "webp-vp8l-16384x16384": riff(
      "VP8L",
      concat(u32(5).reverse(), new Uint8Array([0x2f, 0xff, 0xff, 0xff, 0x0f])),
    ),
    "webp-vp8-junk": riff("VP8 ", concat(u32(10).reverse(), new Uint8Array(10).fill(0xff))),
    "jpeg-soi-only": jpeg.slice(0, 2),
    "jpeg-no-sof": concat(
      jpeg.slice(0, 2),
      new Uint8Array([0xff, 0xe0, 0x00, 0x10]),
      new Uint8Array(14),
    ),
    "png-magic-only": png.slice(0, 8),
    "png-ihdr-only": png.slice(0, 33),
    "png-no-idat": concat(png.slice(0, 33), pngChunk("IEND", new Uint8Array())),
    "png-head-jpeg-body": concat(png.slice(0, 33), jpeg.slice(2)),
    // Formats the server does not take.
    "bmp": concat(ascii("BM"), new Uint8Array(60)),
    "tiff": concat(ascii("II*\0"), new Uint8Array(60)),
    "svg": new TextEncoder().encode(
      '<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"/>',
    ),
    "avif-ftyp": concat(u32(24), ascii("ftypavif"), new Uint8Array(12)),
    "empty": new Uint8Array(),
    "one-byte": new Uint8Array([0x89]),
  };
  return { images, png, rgba };
}

// ---------------------------------------------------------------------------------------------
// Cases.

export interface Part {
  name: string;
  value: string | Uint8Array;
  filename?: string;
  type?: string;
}

/** One request, reproducible from (seed, index) alone. */
export interface FuzzCase {
  index: number;
  /** What it tries, e.g. "json-field-type messages.0.content ← [[[]]]". */
  kind: string;
  /** The row of the outcome table. */
  route: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
  /** Stricter than the common checks, for this case (e.g. a path escape must not be a 200). */
  forbid?: { statuses: number[]; why: string };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Routes the app declares (from /openapi.json), plus its pages. */
export interface RouteInfo {
  method: string;
  /** The OpenAPI path, `{model}` style. */
  path: string;
}

export async function routesOf(
  app: { request: (path: string) => Response | Promise<Response> },
): Promise<RouteInfo[]> {
  const doc = await (await app.request("/openapi.json")).json() as {
    paths: Record<string, Record<string, unknown>>;
  };
  const out: RouteInfo[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const method of Object.keys(ops)) out.push({ method: method.toUpperCase(), path });
  }
  for (const path of ["/", "/docs", "/openapi.json", "/static/{name}"]) {
    if (!out.some((r) => r.path === path)) out.push({ method: "GET", path });
  }
  return out;
}

/** Valid, cheap requests per POST route (one step, a few tokens), which the mutations break. */
function baseBodies(a: Assets): Record<string, Array<Record<string, Json>>> {
  const png = `data:image/png;base64,${a.png.toBase64()}`;
  const mask = `data:image/png;base64,${a.rgba.toBase64()}`;
  return {
    "/v1/embeddings": [
      { model: "clip-tiny", input: "a red circle", encoding_format: "float" },
      { input: ["a red circle", { type: "image_url", image_url: { url: png } }] },
    ],
    "/v1/clip/classify": [{
      model: "clip-tiny",
      image: png,
      candidate_labels: ["red circle", "blue square"],
      hypothesis_template: "a photo of a {}",
      return_patch_maps: false,
    }, { image: png, candidate_labels: "red circle, blue square" }],
    "/v1/clip/similarity": [{ images: [png], texts: ["a red circle", "a blue square"] }],
    "/v1/captions": [{
      model: "nic-tiny",
      image: png,
      strategy: "greedy",
      beam_size: 2,
      max_tokens: 3,
      n: 1,
      temperature: 1,
      top_k: 0,
      top_p: 1,
      seed: 1,
      top_logprobs: 0,
      return_attention: false,
    }, { model: "sat-soft-tiny", image: png, max_tokens: 2, return_attention: true }],
    "/v1/images/generations": [{
      model: "sd-tiny",
      prompt: "a red circle",
      negative_prompt: "blue",
      n: 1,
      size: "64x64",
      num_inference_steps: 1,
      guidance_scale: 1,
      seed: 1,
      response_format: "b64_json",
      output_format: "png",
      stream: false,
    }, { model: "dalle-tiny", prompt: "a red circle", n: 1, seed: 1, top_k: 8, temperature: 1 }],
    "/v1/images/edits": [{
      model: "sd-tiny",
      prompt: "a red circle",
      image: png,
      mask,
      num_inference_steps: 1,
      strength: 0.5,
      seed: 1,
    }],
    "/v1/chat/completions": [{
      model: "vlm-tiny",
      messages: [{
        role: "user",
        content: [{ type: "text", text: "what is it?" }, {
          type: "image_url",
          image_url: { url: png, detail: "low" },
        }],
      }],
      max_tokens: 2,
      temperature: 0,
      seed: 1,
      stop: ["."],
      logit_bias: { "5": 1 },
      stream: false,
    }, {
      model: "vlm-xattn-tiny",
      messages: [{ role: "system", content: "be brief" }, { role: "user", content: "hi" }],
      max_tokens: 1,
    }],
  };
}

/** Where an image goes in each route's base bodies: [which base, path]. */
const IMAGE_FIELDS: Record<string, Array<[number, string[]]>> = {
  "/v1/embeddings": [[1, ["input", "1", "image_url", "url"]]],
  "/v1/clip/classify": [[0, ["image"]], [1, ["image"]]],
  "/v1/clip/similarity": [[0, ["images", "0"]]],
  "/v1/captions": [[0, ["image"]], [1, ["image"]]],
  "/v1/images/edits": [[0, ["image"]], [0, ["mask"]]],
  "/v1/chat/completions": [[0, ["messages", "0", "content", "1", "image_url", "url"]]],
};

/**
 * Values of the wrong type or range. Strings marked RAW are spliced into the JSON text as they
 * are (JSON.stringify cannot write them): 1e999 parses as Infinity, the rest are not JSON.
 */
const RAW = "\u0001raw:";
const WRONG: Json[] = [
  0,
  -1,
  1.5,
  -0.000001,
  1e308,
  -1e308,
  2 ** 53 + 2,
  4294967296,
  `${RAW}1e999`,
  `${RAW}-1e999`,
  `${RAW}-0`,
  `${RAW}1E400`,
  `${RAW}NaN`,
  `${RAW}Infinity`,
  `${RAW}undefined`,
  `${RAW}01`,
  `${RAW}"\\ud800"`,
  `${RAW}"\\u0000"`,
  "",
  " ",
  ",",
  "NaN",
  "Infinity",
  "-Infinity",
  "1e999",
  "null",
  "undefined",
  "true",
  "0x10",
  "1_000",
  "{}",
  "[]",
  "\u202e\u0000\uffff",
  "🙂".repeat(300),
  "a".repeat(5000),
  true,
  false,
  null,
  [],
  [[]],
  [[[[1]]]],
  [null],
  [1, "a", {}, [], null, true],
  {},
  { a: { b: { c: { d: {} } } } },
  { type: "image_url" },
  { type: "text", text: 1 },
  { url: 1 },
  { __proto__: { polluted: 1 } } as unknown as Json,
  { constructor: { prototype: { polluted: 1 } } },
  { length: 1e9 },
  Array.from({ length: 300 }, () => "x"),
  Array.from({ length: 100 }, () => ({ role: "user", content: "x" })),
];

/** The JSON text of a body, with RAW markers spliced in. */
export function jsonText(body: Json): string {
  const raws: string[] = [];
  const text = JSON.stringify(body, (_k, v) => {
    if (typeof v === "string" && v.startsWith(RAW)) {
      raws.push(v.slice(RAW.length));
      return `\u0002${raws.length - 1}\u0002`;
    }
    return v;
  });
  return text.replace(/"\\u0002(\d+)\\u0002"/g, (_, i) => raws[Number(i)]);
}

const clone = <T>(v: T): T => structuredClone(v);

/** Every path into a JSON value (objects' keys and arrays' indices). */
function pathsOf(v: Json, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  if (v && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      const p = [...prefix, k];
      out.push(p, ...pathsOf(x, p));
    }
  }
  return out;
}

function setAt(root: Json, path: string[], value: Json | undefined): Json {
  if (path.length === 0) return value ?? null;
  let node = root as Record<string, Json>;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string, Json>;
  const last = path[path.length - 1];
  if (value === undefined) {
    if (Array.isArray(node)) node.splice(Number(last), 1);
    else delete node[last];
  } else {
    // defineProperty, so that a key named "__proto__" becomes a key, not the prototype.
    Object.defineProperty(node, last, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return root;
}

const MODELS = [
  "clip-tiny",
  "sd-tiny",
  "dalle-tiny",
  "nic-tiny",
  "vlm-tiny",
  "sat-soft-tiny",
  "Xenova/clip-vit-base-patch32",
  "onnxruntime/sd-turbo",
  "no-such-model",
  "../../etc/passwd",
  "%2e%2e%2f",
  "a/b/c/d",
  "CLIP-TINY",
  "x".repeat(3000),
];

/** Case i of seed S: the same request every time. */
export class FuzzGenerator {
  readonly posts: RouteInfo[];
  readonly gets: RouteInfo[];
  private readonly bases: Record<string, Array<Record<string, Json>>>;
  private readonly imageNames: string[];

  constructor(readonly seed: number, readonly assets: Assets, readonly routes: RouteInfo[]) {
    this.posts = routes.filter((r) => r.method === "POST");
    this.gets = routes.filter((r) => r.method === "GET");
    this.bases = baseBodies(assets);
    this.imageNames = Object.keys(assets.images);
  }

  case(index: number): FuzzCase {
    const r = rng((this.seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
    const g = new Draw(r);
    const categories: Array<[number, (g: Draw) => Omit<FuzzCase, "index">]> = [
      [22, (g) => this.imageCase(g)],
      [24, (g) => this.fieldCase(g)],
      [12, (g) => this.multipartCase(g)],
      [3, (g) => this.urlencodedCase(g)],
      [8, (g) => this.contentTypeCase(g)],
      [3, (g) => this.deepCase(g)],
      [3, (g) => this.hugeCase(g)],
      [4, (g) => this.utf8Case(g)],
      [5, (g) => this.headerCase(g)],
      [6, (g) => this.unknownPathCase(g)],
      [5, (g) => this.wrongMethodCase(g)],
      [5, (g) => this.getCase(g)],
    ];
    return { index, ...g.weighted(categories)(g) };
  }

  /**
   * The warm-up batch: every image above as a data URL in every image field, once. The largest
   * allocations of a run (4096² decodes) happen here, so that the RSS baseline taken after it is
   * the allocator's high-water mark, not a fraction of it. Warm-up case j replays as `--case wj`.
   */
  warmupCases(): FuzzCase[] {
    const out: FuzzCase[] = [];
    for (const [path, fields] of Object.entries(IMAGE_FIELDS)) {
      if (!this.posts.some((r) => r.path === path)) continue;
      for (const [which, field] of fields) {
        for (const name of this.imageNames) {
          const body = clone(this.bases[path][which]);
          const url = `data:image/png;base64,${this.assets.images[name].toBase64()}`;
          setAt(body, field, url);
          out.push({
            index: -2 - out.length,
            ...this.post(path, jsonText(body), `warm-up: image ${name} in ${field.join(".")}`),
          });
        }
      }
    }
    return out;
  }

  private post(path: string, body: string | Uint8Array, kind: string, headers = {}) {
    return {
      kind,
      route: `POST ${path}`,
      method: "POST",
      path,
      headers: { "content-type": "application/json", ...headers },
      body,
    };
  }

  private knownPost(g: Draw): string {
    const known = this.posts.filter((p) => this.bases[p.path]);
    return g.pick(known.length > 0 ? known : this.posts).path;
  }

  private base(g: Draw, path: string): Record<string, Json> {
    return clone(g.pick(this.bases[path] ?? [{ model: "clip-tiny" }]));
  }

  /** A hostile image, as bytes, then as the string a JSON body carries. */
  private image(g: Draw): { name: string; bytes: Uint8Array } {
    const pick = g.int(10);
    if (pick < 6) {
      const name = g.pick(this.imageNames);
      return { name, bytes: this.assets.images[name] };
    }
    const valid = g.pick(this.imageNames.slice(0, 8));
    const src = this.assets.images[valid];
    if (pick < 8) {
      const cut = g.int(src.length);
      return { name: `${valid} cut at ${cut}`, bytes: src.slice(0, cut) };
    }
    if (pick < 9) {
      const b = src.slice();
      const flips = 1 + g.int(8);
      for (let i = 0; i < flips; i++) b[g.int(b.length)] = g.int(256);
      return { name: `${valid} with ${flips} bytes changed`, bytes: b };
    }
    return { name: "random bytes", bytes: g.bytes(1 + g.int(4096)) };
  }

  private imageString(g: Draw, bytes: Uint8Array): { how: string; value: string } {
    const b64 = bytes.toBase64();
    const forms: Array<[string, () => string]> = [
      ["data URL", () => `data:image/png;base64,${b64}`],
      ["data URL", () => `data:image/png;base64,${b64}`],
      ["bare base64", () => b64],
      ["base64url", () => bytes.toBase64({ alphabet: "base64url", omitPadding: true })],
      ["data URL, wrong mime", () => `data:text/plain;base64,${b64}`],
      ["data URL, not base64", () => `data:image/png,${b64}`],
      ["data URL, no comma", () => `data:image/png;base64`],
      ["base64 with line breaks", () => b64.replace(/(.{76})/g, "$1\r\n")],
      [
        "base64 with junk",
        () => `${b64.slice(0, b64.length >> 1)}!!*${b64.slice(b64.length >> 1)}`,
      ],
      ["an http URL", () => "http://127.0.0.1:1/x.png"],
      ["a file URL", () => "file:///etc/passwd"],
      ["whitespace", () => "   "],
    ];
    const [how, value] = g.pick(forms);
    return { how, value: value() };
  }

  private imageCase(g: Draw): Omit<FuzzCase, "index"> {
    const path = g.pick(
      Object.keys(IMAGE_FIELDS).filter((p) => this.posts.some((r) => r.path === p)),
    );
    const { name, bytes } = this.image(g);
    const [which, field] = g.pick(IMAGE_FIELDS[path]);
    if (g.int(3) === 0 && path !== "/v1/embeddings" && path !== "/v1/chat/completions") {
      // As a multipart upload.
      const body = clone(this.bases[path][which]);
      const parts = formParts(body).filter((p) => p.name !== field[0]);
      parts.push({ name: field[0], value: bytes, filename: "x.png", type: "image/png" });
      const boundary = g.boundary();
      return {
        kind: `image ${name} as a multipart file in ${field[0]}`,
        route: `POST ${path}`,
        method: "POST",
        path,
        headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
        body: multipart(g.shuffle(parts), boundary),
      };
    }
    const body = clone(this.bases[path][which]);
    const { how, value } = this.imageString(g, bytes);
    setAt(body, field, value);
    return this.post(path, jsonText(body), `image ${name} as ${how} in ${field.join(".")}`);
  }

  private fieldCase(g: Draw): Omit<FuzzCase, "index"> {
    const path = this.knownPost(g);
    const body = this.base(g, path);
    const paths = pathsOf(body);
    const what = g.int(10);
    if (what === 0) {
      const p = g.pick(paths);
      setAt(body, p, undefined);
      return this.post(path, jsonText(body), `json field removed: ${p.join(".")}`);
    }
    if (what === 1) {
      const key = g.pick([
        "__proto__",
        "constructor",
        "prototype",
        "toString",
        "x".repeat(300),
        "",
      ]);
      setAt(body, [key], g.pick(WRONG));
      return this.post(path, jsonText(body), `json extra field ${key.slice(0, 20)}`);
    }
    if (what === 2) {
      // Two fields changed at once.
      const [p1, p2] = [g.pick(paths), g.pick(paths)];
      const [v1, v2] = [g.pick(WRONG), g.pick(WRONG)];
      setAt(body, p1, clone(v1));
      if (pathsOf(body).some((p) => p.join(".") === p2.join("."))) setAt(body, p2, clone(v2));
      return this.post(path, jsonText(body), `json fields ${p1.join(".")}, ${p2.join(".")} wrong`);
    }
    if (what === 3) {
      // The whole body of the wrong type.
      const v = g.pick(WRONG);
      return this.post(path, jsonText(v), `json body is ${describe(v)}`);
    }
    const p = g.pick(paths);
    const v = g.pick(WRONG);
    setAt(body, p, clone(v));
    return this.post(path, jsonText(body), `json field ${p.join(".")} ← ${describe(v)}`);
  }

  private multipartCase(g: Draw): Omit<FuzzCase, "index"> {
    const path = this.knownPost(g);
    const body = this.base(g, path);
    let parts = formParts(body);
    const boundary = g.boundary();
    const type = `multipart/form-data; boundary=${boundary}`;
    const what = g.int(12);
    const ok = (
      kind: string,
      p = parts,
      headers: Record<string, string> = { "content-type": type },
    ) => ({
      kind: `multipart ${kind}`,
      route: `POST ${path}`,
      method: "POST",
      path,
      headers,
      body: multipart(p, boundary),
    });
    switch (what) {
      case 0: {
        const n = g.pick([1000, 20000, 80000]);
        const name = g.pick(parts).name;
        const many = Array.from({ length: n }, () => ({ name, value: "a" }));
        return ok(`field ${name} repeated ${n} times`, [...parts, ...many]);
      }
      case 1: {
        const name = g.pick([
          "__proto__",
          "constructor",
          "prototype",
          "__proto__[]",
          "hasOwnProperty",
          "toString",
          "valueOf",
        ]);
        const value = g.pick(['{"model":"x"}', "[1,2]", "1", "x", '{"__proto__":{"a":1}}']);
        return ok(`field named ${name} = ${value}`, [...g.shuffle(parts), { name, value }]);
      }
      case 2:
        return ok("without a boundary in the content type", parts, {
          "content-type": "multipart/form-data",
        });
      case 3:
        return ok("with another boundary in the content type", parts, {
          "content-type": "multipart/form-data; boundary=other",
        });
      case 4: {
        return {
          kind: "multipart body of binary junk",
          route: `POST ${path}`,
          method: "POST",
          path,
          headers: { "content-type": type },
          body: g.bytes(g.int(20000)),
        };
      }
      case 5: {
        const whole = multipart(parts, boundary);
        const cut = g.int(whole.length);
        return { ...ok(`cut at ${cut} of ${whole.length}`), body: whole.slice(0, cut) };
      }
      case 6: {
        // A file where a text field goes, and text where a file goes.
        parts = parts.map((p) =>
          typeof p.value === "string"
            ? { ...p, value: g.bytes(g.int(64)), filename: "a.bin" }
            : { name: p.name, value: "not a file" }
        );
        return ok("files and texts swapped");
      }
      case 7: {
        const name = g.pick(parts).name;
        return ok(
          `part ${name} with odd headers`,
          parts.map((p) =>
            p.name === name
              ? {
                ...p,
                filename: g.pick(["../../etc/passwd", "x".repeat(5000), "\u00ff\u00fe", ""]),
                type: g.pick(["", "x/y", "multipart/mixed"]),
              }
              : p
          ),
        );
      }
      case 8:
        return ok("with no parts", []);
      case 9: {
        const p = g.pick(parts);
        return ok(
          `field ${p.name} ← ${"(empty)"}`,
          parts.map((q) => q === p ? { ...q, value: "" } : q),
        );
      }
      case 10: {
        const p = g.pick(parts);
        const v = jsonText(g.pick(WRONG));
        return ok(
          `field ${p.name} ← ${v.slice(0, 30)}`,
          parts.map((q) => (q === p ? { name: q.name, value: v } : q)),
        );
      }
      default: {
        const bytes = multipart(parts, boundary);
        return {
          ...ok("with a part header line of 100 KB"),
          body: concat(
            ascii(
              `--${boundary}\r\nContent-Disposition: form-data; name="${
                "n".repeat(100_000)
              }"\r\n\r\nx\r\n`,
            ),
            bytes,
          ),
        };
      }
    }
  }

  private urlencodedCase(g: Draw): Omit<FuzzCase, "index"> {
    const path = this.knownPost(g);
    const bodies = [
      () => "candidate_labels=a&".repeat(g.pick([10, 80000, 300000])),
      () => "__proto__=%7B%22model%22%3A%22x%22%7D&constructor=1&prototype=2",
      () => "%zz=%zz&=&&&=x&%00=%00",
      () => "input=" + "%ff".repeat(1000),
      () => `prompt=${"a".repeat(100_000)}`,
      () => "messages=[[[[[[]]]]]]&model[]=x&model[]=y",
      () => jsonText(this.base(g, path)),
      () => "",
    ];
    const i = g.int(bodies.length);
    const body = bodies[i]();
    return {
      kind: `urlencoded body #${i} (${body.length} bytes)`,
      route: `POST ${path}`,
      method: "POST",
      path,
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body,
    };
  }

  private contentTypeCase(g: Draw): Omit<FuzzCase, "index"> {
    const path = g.pick(this.posts).path;
    const type = g.pick([
      undefined,
      "",
      "text/plain",
      "application/xml",
      "application/octet-stream",
      "image/png",
      "application/json; charset=utf-16",
      "application/jsonp",
      "text/json",
      "APPLICATION/JSON",
      "multipart/form-data",
      "multipart/mixed; boundary=x",
      "application/x-www-form-urlencoded",
      "application/json, text/plain",
      ";;;",
      `application/json; ${"x=y; ".repeat(2000)}`,
    ]);
    const body = g.pick<string | Uint8Array>([
      "",
      jsonText(this.base(g, this.knownPost(g))),
      "{",
      "}",
      "[",
      "\u0000",
      "null",
      "0",
      '""',
      "[]",
      "{}",
      this.assets.png,
      g.bytes(512),
      "a=1&b=2",
      '{"model": "clip-tiny",}',
      '{"a":1}{"b":2}',
      "\ufeff{}",
      " ".repeat(100_000),
    ]);
    const desc = typeof body === "string"
      ? JSON.stringify(body.slice(0, 20))
      : `${body.length} bytes`;
    return {
      kind: `content type ${JSON.stringify(type?.slice(0, 40) ?? "none")} with body ${desc}`,
      route: `POST ${path}`,
      method: "POST",
      path,
      headers: type === undefined ? {} : { "content-type": type },
      body,
    };
  }

  private deepCase(g: Draw): Omit<FuzzCase, "index"> {
    const path = g.pick(this.posts).path;
    const depth = g.pick([1000, 10_000, 10_000, 100_000]);
    const shape = g.int(4);
    const nested = shape === 0
      ? "[".repeat(depth) + "]".repeat(depth)
      : shape === 1
      ? '{"a":'.repeat(depth) + "1" + "}".repeat(depth)
      : shape === 2
      ? '[{"a":'.repeat(depth) + "null" + "}]".repeat(depth)
      : '{"a":['.repeat(depth) + "]}".repeat(depth);
    const base = this.bases[path]?.[0] ?? {};
    const field = g.pick([...Object.keys(base), "extra"]);
    const wrap = g.int(2) === 0;
    const text = wrap ? jsonText({ ...base, [field]: `${RAW}${nested}` }) : nested;
    return this.post(
      path,
      text,
      `json nested ${depth} deep (${["arrays", "objects", "mixed", "mixed"][shape]}) ${
        wrap ? `in ${field}` : "as the body"
      }`,
    );
  }

  private hugeCase(g: Draw): Omit<FuzzCase, "index"> {
    const path = this.knownPost(g);
    const base = this.base(g, path);
    const field = g.pick(pathsOf(base));
    const mb = g.pick([0.1, 1, 1, 5, 21]);
    const len = Math.round(mb * 1024 * 1024);
    const unit = g.pick(["a", "🙂", "\\u0000", "a "]);
    // Built as text so that a 21 MB string is not escaped twice.
    const marker = "\u0003huge\u0003";
    setAt(base, field, marker);
    const text = jsonText(base).replace(
      JSON.stringify(marker),
      `"${unit.repeat(Math.ceil(len / unit.length))}"`,
    );
    return this.post(
      path,
      text,
      `json field ${field.join(".")} a ${mb} MB string of ${JSON.stringify(unit)}`,
    );
  }

  private utf8Case(g: Draw): Omit<FuzzCase, "index"> {
    const path = this.knownPost(g);
    const base = this.base(g, path);
    const bad = g.pick([
      [0xff],
      [0xfe, 0xff],
      [0xc0, 0xaf],
      [0xe0, 0x80, 0xaf],
      [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0xf8, 0x88, 0x80, 0x80, 0x80],
      [0xe2, 0x82],
      [0x80],
      [0x00],
    ]);
    const text = new TextEncoder().encode(jsonText(base));
    // Inside a string value (after a quote) or anywhere.
    const quotes = [...text.keys()].filter((i) => text[i] === 0x22);
    const at = g.int(3) > 0 && quotes.length > 0 ? g.pick(quotes) + 1 : g.int(text.length + 1);
    const body = concat(text.slice(0, at), new Uint8Array(bad), text.slice(at));
    return this.post(
      path,
      body,
      `invalid UTF-8 ${bad.map((b) => b.toString(16)).join(" ")} at byte ${at}`,
    );
  }

  private headerCase(g: Draw): Omit<FuzzCase, "index"> {
    const route = g.pick(this.routes);
    const path = concrete(route.path, g);
    const base = route.method === "POST" ? this.bases[route.path]?.[0] : undefined;
    const big = (n: number) => g.pick(["a", "%", "\u00ff", "=", "Z9"]).repeat(n);
    const sets: Array<[string, () => Record<string, string>]> = [
      ["x-request-id of 64 KB", () => ({ "x-request-id": big(65536) })],
      ["x-request-id with odd characters", () => ({ "x-request-id": "../\u00ff<script>" })],
      ["authorization of 64 KB", () => ({ authorization: `Bearer ${big(65536)}` })],
      [
        "authorization malformed",
        () => ({ authorization: g.pick(["Bearer", "Basic x", "Bearer  ", "bearer x y"]) }),
      ],
      ["cookie of 256 KB", () => ({ cookie: big(262144) })],
      [
        "content-length lying",
        () => ({ "content-length": g.pick(["0", "1", "99999999999", "-1", "x"]) }),
      ],
      [
        "a thousand headers",
        () => Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`x-h${i}`, "v"])),
      ],
      [
        "origin of a foreign page",
        () => ({
          origin: g.pick([
            "http://evil.test",
            "null",
            "chrome-extension://abc",
            "http://localhost.evil.test",
            big(5000),
          ]),
        }),
      ],
      ["sec-fetch-site cross-site", () => ({ "sec-fetch-site": "cross-site" })],
      ["host of 16 KB", () => ({ host: big(16384) })],
      ["accept junk", () => ({ accept: big(10000), "accept-encoding": "gzip;q=x, *;q=-1" })],
    ];
    const [what, make] = g.pick(sets);
    return {
      kind: `headers: ${what}`,
      route: `${route.method} ${route.path}`,
      method: route.method,
      path,
      headers: { ...(base ? { "content-type": "application/json" } : {}), ...make() },
      body: base ? jsonText(base) : undefined,
    };
  }

  private unknownPathCase(g: Draw): Omit<FuzzCase, "index"> {
    const seg = () => g.string(1 + g.int(12), "abcdefghijklmnopqrstuvwxyz0123456789-_.~%");
    const known = g.pick(this.routes).path.replace(/\{[^}]+\}/g, "x");
    const path = g.pick([
      () => `/${seg()}`,
      () => `/v1/${seg()}`,
      () => `/v1/${seg()}/${seg()}`,
      () => `/v2${known}`,
      () => `${known}/`,
      () => `${known}/${seg()}`,
      () => known.toUpperCase(),
      () => `/${known}`,
      () => `${known};${seg()}`,
      () => `/static/..%2f..%2fmain.ts`,
      () => `/static/%2e%2e/deno.json`,
      () => `/static/../../deno.json`,
      () => `/static/${seg()}.js`,
      () => `/v1/models/${g.pick(MODELS)}`,
      () => `/v1/models/%00`,
      () => `/v1/models/%ff%fe`,
      () => `/${"a/".repeat(5000)}`,
      () => `/${"x".repeat(20000)}`,
      () => "/%zz",
      () => "/v1/embeddings%00",
    ])();
    const method = g.pick(["GET", "POST", "GET", "PUT", "DELETE"]);
    const traversal = /\.\.|%2e/i.test(path) && path.startsWith("/static/");
    return {
      kind: `unknown path ${path.slice(0, 60)}`,
      route: traversal ? "GET /static/ path escapes" : "unknown paths",
      method,
      path,
      headers: method === "POST" ? { "content-type": "application/json" } : {},
      body: method === "POST" ? "{}" : undefined,
      forbid: traversal
        ? { statuses: [200], why: "a path escaping static/ must not be served" }
        : undefined,
    };
  }

  private wrongMethodCase(g: Draw): Omit<FuzzCase, "index"> {
    const route = g.pick(this.routes);
    const extension = `X${g.string(1 + g.int(8), "ABCDEFGHIJKLMNOPQRSTUVWXYZ")}`;
    const all = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND", "get"];
    const others = [...all, extension]
      .filter((m) => {
        const u = m.toUpperCase();
        return u !== route.method && !(route.method === "GET" && u === "HEAD");
      });
    const method = g.pick(others);
    const base = this.bases[route.path]?.[0];
    const bodiless = ["GET", "HEAD"].includes(method.toUpperCase());
    return {
      kind: `method ${method} on ${route.path}`,
      route: "wrong methods",
      method,
      path: concrete(route.path, g),
      headers: base && !bodiless ? { "content-type": "application/json" } : {},
      body: base && !bodiless ? jsonText(base) : undefined,
    };
  }

  private getCase(g: Draw): Omit<FuzzCase, "index"> {
    const route = g.pick(this.gets);
    const keys = ["seed", "split", "objects", "model", "__proto__", "constructor", "limit", "x"];
    const values = [
      "-1",
      "1e400",
      "NaN",
      "abc",
      "",
      "%zz",
      "%00",
      "4294967296",
      "1.5",
      "0x1f",
      "heldout",
      "3",
      "9".repeat(400),
      "a".repeat(10000),
    ];
    const n = g.int(5);
    const q = Array.from(
      { length: n },
      () => `${g.pick(keys)}${g.int(4) === 0 ? "[]" : ""}=${g.pick(values)}`,
    );
    if (g.int(10) === 0) { for (let i = 0; i < 10000; i++) q.push("seed=1"); }
    const path = concrete(route.path, g) + (q.length ? `?${q.join("&")}` : "");
    return {
      kind: `query ${path.slice(0, 80)}`,
      route: `GET ${route.path}`,
      method: "GET",
      path,
      headers: {},
    };
  }
}

/** An OpenAPI path with its parameters filled in. */
function concrete(path: string, g: Draw): string {
  return path.replace(/\{model\}/g, () => encodeURIComponent(g.pick(MODELS)).replace(/%2F/g, "/"))
    .replace(/\{name\}/g, () => g.pick(["app.js", "x.css", "none.png", "a.b"]))
    .replace(/\{[^}]+\}/g, "x");
}

/** A body's fields as form parts: images as file uploads, lists as repeated fields. */
export function formParts(body: Record<string, Json>): Part[] {
  const parts: Part[] = [];
  const fromDataUrl = (s: string) =>
    s.startsWith("data:image/") ? Uint8Array.fromBase64(s.slice(s.indexOf(",") + 1)) : null;
  for (const [name, v] of Object.entries(body)) {
    const values = Array.isArray(v) && v.every((x) => typeof x !== "object") ? v : [v];
    for (const x of values) {
      const bytes = typeof x === "string" ? fromDataUrl(x) : null;
      if (bytes) parts.push({ name, value: bytes, filename: "image.png", type: "image/png" });
      else parts.push({ name, value: typeof x === "string" ? x : JSON.stringify(x) });
    }
  }
  return parts;
}

export function multipart(parts: Part[], boundary: string): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const p of parts) {
    const file = p.filename !== undefined ? `; filename="${p.filename}"` : "";
    const type = p.type ? `\r\nContent-Type: ${p.type}` : "";
    chunks.push(
      ascii(
        `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${file}${type}\r\n\r\n`,
      ),
    );
    chunks.push(typeof p.value === "string" ? new TextEncoder().encode(p.value) : p.value);
    chunks.push(ascii("\r\n"));
  }
  chunks.push(ascii(`--${boundary}--\r\n`));
  return concatAll(chunks);
}

function describe(v: Json): string {
  const s = jsonText(v).replaceAll(RAW, "");
  return s.length > 40 ? `${s.slice(0, 37)}... (${s.length} chars)` : s;
}

/** Seeded choices. */
class Draw {
  constructor(readonly r: () => number) {}
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  weighted<T>(xs: Array<[number, T]>): T {
    let x = this.r() * xs.reduce((s, [w]) => s + w, 0);
    for (const [w, v] of xs) if ((x -= w) < 0) return v;
    return xs[xs.length - 1][1];
  }
  shuffle<T>(xs: T[]): T[] {
    const out = xs.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
  string(n: number, alphabet: string): string {
    let s = "";
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
  boundary(): string {
    return `----fuzz${this.string(16, "abcdefghijklmnopqrstuvwxyz0123456789")}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Checks.

/**
 * What a body must never hold: file paths of this checkout or of any source file, package
 * folders, stack frames. ("at " alone would match "at least one"; a frame is "at" then a name
 * and a parenthesis, a file or "async", or "at " opening a line.)
 */
export const LEAKS: Array<[string, RegExp]> = [
  ["a /work/ path", /\/work\//],
  ["a source position (.ts:)", /\.[cm]?[jt]sx?:\d/],
  ["'.ts:'", /\.ts:/],
  ["node_modules", /node_modules/],
  ["a file:// URL", /file:\/\//],
  ["a stack frame", /(^|\n|\\n)\s*at\s|\bat\s+(async\s+)?[\w.$<>]+\s+\(|\bat\s+(file|ext|node):/],
  [
    "this checkout's path",
    new RegExp(new URL("..", import.meta.url).pathname.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")),
  ],
];

export interface Outcome {
  status: number;
  ms: number;
  problems: string[];
  /** The first 500 characters of the body. */
  body: string;
}

/** The checks every response passes; an empty list means it did. */
export function checkResponse(
  c: FuzzCase,
  status: number,
  headers: Headers,
  text: string,
): string[] {
  const problems: string[] = [];
  const notReady = status === 503 && text.includes('"not_ready"');
  if (status >= 500 && !notReady) problems.push(`status ${status}`);
  if (status < 100 || status >= 600) problems.push(`status ${status} is not an HTTP status`);
  if (c.forbid?.statuses.includes(status)) problems.push(`status ${status}: ${c.forbid.why}`);
  for (const [what, re] of LEAKS) if (re.test(text)) problems.push(`the body holds ${what}`);
  const bodyless = c.method.toUpperCase() === "HEAD";
  if (status >= 400 && !bodyless) {
    if (!(headers.get("content-type") ?? "").includes("application/json")) {
      problems.push(`error with content type ${headers.get("content-type")}`);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      problems.push("error body is not JSON");
    }
    const e = (body as { error?: Record<string, unknown> })?.error;
    const ok = body !== null && typeof body === "object" && Object.keys(body).join() === "error" &&
      e !== null && typeof e === "object" &&
      Object.keys(e).sort().join() === "code,message,param,type" &&
      typeof e.message === "string" && e.message.length > 0 && typeof e.type === "string" &&
      (e.param === null || typeof e.param === "string") &&
      (e.code === null || typeof e.code === "string");
    if (body !== undefined && !ok) {
      problems.push("error body is not the envelope { error: { message, type, param, code } }");
    }
  }
  const allow = headers.get("allow")?.split(/,\s*/) ?? [];
  if (status === 405 && allow.includes(c.method.toUpperCase())) {
    problems.push(`405 for ${c.method}, which its Allow header lists`);
  }
  if ((status === 429 || status === 503) && !headers.get("retry-after")) {
    problems.push(`${status} without Retry-After`);
  }
  return problems;
}

/** Sends one case and checks its answer; a request that does not end within `timeoutMs` fails. */
export async function runCase(
  app: { request: (path: string, init: RequestInit) => Response | Promise<Response> },
  c: FuzzCase,
  timeoutMs: number,
): Promise<Outcome> {
  const t0 = performance.now();
  const abort = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  const answer = (async () => {
    const res = await app.request(c.path, {
      method: c.method,
      headers: c.headers,
      body: c.body as BodyInit | undefined,
      signal: abort.signal,
    });
    return { status: res.status, headers: res.headers, text: await res.text() };
  })();
  try {
    const r = await Promise.race([answer, timeout]);
    const ms = performance.now() - t0;
    if (r === "timeout") {
      abort.abort();
      await answer.catch(() => {}); // let it end before the next case (or the exit)
      return { status: 0, ms, problems: [`no answer within ${timeoutMs / 1000} s`], body: "" };
    }
    return {
      status: r.status,
      ms,
      problems: checkResponse(c, r.status, r.headers, r.text),
      body: r.text.slice(0, 500),
    };
  } catch (e) {
    const ms = performance.now() - t0;
    return {
      status: 0,
      ms,
      problems: [`the request threw ${(e as Error)?.name}: ${(e as Error)?.message}`],
      body: "",
    };
  } finally {
    clearTimeout(timer);
  }
}

export interface Violation {
  case: FuzzCase;
  outcome: Outcome;
}

export interface FuzzReport {
  seed: number;
  count: number;
  /** route → status → count. */
  table: Map<string, Map<number, number>>;
  violations: Violation[];
  slowest: { case: FuzzCase; ms: number } | null;
  /** The case after which RSS rose most. */
  biggestRssStep: { case: FuzzCase; bytes: number } | null;
  seconds: number;
  /** Requests of the warm-up batch (checked too, not in `table`). */
  warmupRequests: number;
  /** Stopped at the time bound before `count`. */
  stoppedEarly: boolean;
  rss: {
    afterWarmup: number;
    after: number;
    peak: number;
    /** The JS heap's size when RSS peaked (garbage not yet collected counts in both). */
    heapAtPeak: number;
    boundBytes: number;
  };
}

export interface FuzzOptions {
  seed: number;
  count: number;
  /** Cases before the RSS baseline is taken (after the warm-up batch). */
  warmup?: number;
  /** Run the warm-up batch (every image in every image field) first; default true. */
  warmupBatch?: boolean;
  timeoutMs?: number;
  maxSeconds?: number;
  /** RSS after the run may exceed RSS after the warm-up by this much. */
  rssBoundBytes?: number;
  progress?: (done: number, total: number, violations: number) => void;
  /** Stop at the first violation. */
  failFast?: boolean;
  /** Collects garbage wherever the app keeps it (default: this isolate, with --expose-gc). */
  collect?: () => Promise<void>;
}

const gc = () => (globalThis as { gc?: () => void }).gc?.();

/** Runs `count` cases of `seed` one after another against `app`, and checks each. */
export async function runFuzz(
  app: { request: (path: string, init?: RequestInit) => Response | Promise<Response> },
  assets: Assets,
  o: FuzzOptions,
): Promise<FuzzReport> {
  const gen = new FuzzGenerator(o.seed, assets, await routesOf(app));
  const warmup = o.warmup ?? Math.min(500, Math.floor(o.count / 10));
  const timeoutMs = o.timeoutMs ?? 60_000;
  const table = new Map<string, Map<number, number>>();
  const violations: Violation[] = [];
  let slowest: FuzzReport["slowest"] = null;
  let biggestRssStep: FuzzReport["biggestRssStep"] = null;
  const t0 = performance.now();
  const batch = o.warmupBatch === false ? [] : gen.warmupCases();
  for (const c of batch) {
    const outcome = await runCase(app, c, timeoutMs);
    if (outcome.problems.length > 0) violations.push({ case: c, outcome });
  }
  let afterWarmup = Deno.memoryUsage().rss, peak = afterWarmup, heapAtPeak = 0;
  let done = 0, stoppedEarly = false;
  for (let i = 0; i < o.count; i++) {
    if (o.maxSeconds !== undefined && performance.now() - t0 > o.maxSeconds * 1000) {
      stoppedEarly = true;
      break;
    }
    const c = gen.case(i);
    const before = Deno.memoryUsage().rss;
    const outcome = await runCase(app, c, timeoutMs);
    const { rss, heapTotal } = Deno.memoryUsage();
    if (!biggestRssStep || rss - before > biggestRssStep.bytes) {
      biggestRssStep = { case: c, bytes: rss - before };
    }
    done++;
    const row = table.get(c.route) ?? new Map<number, number>();
    row.set(outcome.status, (row.get(outcome.status) ?? 0) + 1);
    table.set(c.route, row);
    if (!slowest || outcome.ms > slowest.ms) slowest = { case: c, ms: outcome.ms };
    if (outcome.problems.length > 0) {
      violations.push({ case: c, outcome });
      if (o.failFast) break;
    }
    if (rss > peak) peak = rss, heapAtPeak = heapTotal;
    if (i + 1 === warmup) {
      await (o.collect ?? gc)();
      afterWarmup = Deno.memoryUsage().rss;
    }
    o.progress?.(done, o.count, violations.length);
  }
  await (o.collect ?? gc)();
  const after = Deno.memoryUsage().rss;
  const boundBytes = o.rssBoundBytes ?? 256 * 2 ** 20;
  if (done > warmup && after > afterWarmup + boundBytes) {
    violations.push({
      case: { index: -1, kind: "the whole run", route: "-", method: "-", path: "-", headers: {} },
      outcome: {
        status: 0,
        ms: 0,
        problems: [
          `RSS grew from ${mb(afterWarmup)} (after the warm-up) to ${mb(after)}, more than ${
            mb(boundBytes)
          }`,
        ],
        body: "",
      },
    });
  }
  const labels = await checkMetricLabels(app);
  if (labels.length > 0) {
    violations.push({
      case: {
        index: -1,
        kind: "GET /metrics after the run",
        route: "-",
        method: "GET",
        path: "/metrics",
        headers: {},
      },
      outcome: { status: 0, ms: 0, problems: labels, body: "" },
    });
  }
  return {
    seed: o.seed,
    count: done,
    table,
    violations,
    slowest,
    biggestRssStep,
    warmupRequests: batch.length,
    seconds: (performance.now() - t0) / 1000,
    stoppedEarly,
    rss: { afterWarmup, after, peak, heapAtPeak, boundBytes },
  };
}

/**
 * After the run, the request metrics' labels come from bounded sets: `model` an installed model,
 * "" or "other", `method` a standard method or "other" (a label from a request body or method
 * line is a new series per value, kept for ever).
 */
export async function checkMetricLabels(
  app: { request: (path: string, init?: RequestInit) => Response | Promise<Response> },
): Promise<string[]> {
  const models = (await (await app.request("/v1/models")).json()) as {
    data: Array<{ id: string; installed: boolean }>;
  };
  const ids = new Set(["", "other", ...models.data.filter((m) => m.installed).map((m) => m.id)]);
  const methods = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"]);
  const text = await (await app.request("/metrics")).text();
  const bad = new Set<string>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("mm_http_")) continue;
    const model = line.match(/[{,]model="((?:[^"\\]|\\.)*)"/)?.[1];
    const method = line.match(/[{,]method="((?:[^"\\]|\\.)*)"/)?.[1];
    if (model !== undefined && !ids.has(model)) bad.add(`model="${model.slice(0, 40)}"`);
    if (method !== undefined && !methods.has(method)) bad.add(`method="${method.slice(0, 40)}"`);
  }
  return bad.size === 0 ? [] : [
    `/metrics has ${bad.size} label value(s) taken from requests: ${
      [...bad].slice(0, 5).join(", ")
    }`,
  ];
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MB`;

/** The request, as printed for a violation (long bodies and headers shortened). */
export function describeCase(c: FuzzCase): string {
  const short = (
    s: string,
    n = 300,
  ) => (s.length > n ? `${s.slice(0, n)}... (${s.length} chars)` : s);
  const headers = Object.entries(c.headers).map(([k, v]) => `    ${k}: ${short(v, 120)}`).join(
    "\n",
  );
  const body = c.body === undefined
    ? "(none)"
    : typeof c.body === "string"
    ? short(JSON.stringify(c.body))
    : `${c.body.length} bytes: ${
      short([...c.body.subarray(0, 96)].map((b) => b.toString(16).padStart(2, "0")).join(" "))
    }`;
  return `  case ${c.index}: ${c.kind}\n  ${c.method} ${
    short(c.path, 200)
  }\n${headers}\n  body: ${body}`;
}

/** The outcome table: one row per route, one column per status. */
export function formatTable(report: FuzzReport): string {
  const statuses = [...new Set([...report.table.values()].flatMap((m) => [...m.keys()]))].sort((
    a,
    b,
  ) => a - b);
  const rows = [...report.table.entries()].sort(([a], [b]) => a.localeCompare(b));
  const lines = [
    `| route | requests | ${
      statuses.map((s) => (s === 0 ? "no answer" : String(s))).join(" | ")
    } |`,
    `| --- | --- | ${statuses.map(() => "---").join(" | ")} |`,
  ];
  for (const [route, m] of rows) {
    const n = [...m.values()].reduce((a, b) => a + b, 0);
    lines.push(`| ${route} | ${n} | ${statuses.map((s) => m.get(s) ?? "").join(" | ")} |`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// The command.

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seed: { type: "string", default: String(Date.now() % 1_000_000) },
      count: { type: "string", default: "10000" },
      case: { type: "string" },
      "max-seconds": { type: "string", default: "1800" },
      "timeout-s": { type: "string", default: "60" },
      "rss-mb": { type: "string" },
      "fail-fast": { type: "boolean", default: false },
      workers: { type: "boolean", default: false },
    },
  });
  const seed = Number(values.seed) >>> 0;
  const count = Math.max(1, Math.min(Number(values.count), 1_000_000));
  const { loadConfig } = await import("../core/config.ts");
  const { createApp, createFront } = await import("../main.ts");
  // --workers: through the HTTP thread's forwarding to engine workers, as the server runs.
  const config = loadConfig({ MM_BACKEND: "cpu", MM_PRELOAD: "all" });
  const served = values.workers ? await createFront(config) : await createApp(config);
  if ("pool" in served) await served.pool.models.whenReady();
  else await served.registry.preload();
  const { app } = served;
  const assets = await buildAssets();
  const timeoutMs = Number(values["timeout-s"]) * 1000;

  if (values.case !== undefined) {
    // Replay one case, and show it whole.
    const gen = new FuzzGenerator(seed, assets, await routesOf(app));
    const w = values.case.match(/^w(\d+)$/);
    const c = w ? gen.warmupCases()[Number(w[1])] : gen.case(Number(values.case));
    if (!c) throw new RangeError(`no case ${values.case}`);
    console.log(describeCase(c));
    const o = await runCase(app, c, timeoutMs);
    console.log(`  → ${o.status} in ${o.ms.toFixed(0)} ms: ${o.body}`);
    console.log(o.problems.length ? `  VIOLATION: ${o.problems.join("; ")}` : "  ok");
    Deno.exit(o.problems.length ? 1 : 0);
  }

  const tty = Deno.stderr.isTerminal();
  const enc = new TextEncoder();
  let lastDraw = 0;
  const t0 = performance.now();
  const progress = (done: number, total: number, bad: number) => {
    const now = performance.now();
    if (done !== total && now - lastDraw < (tty ? 200 : 15_000)) return;
    lastDraw = now;
    const width = 30, filled = Math.round((done / total) * width);
    const line = `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} ` +
      `${((now - t0) / 1000).toFixed(0)} s, ${bad} violation(s), RSS ${mb(Deno.memoryUsage().rss)}`;
    Deno.stderr.writeSync(enc.encode(tty ? `\r${line}${done === total ? "\n" : ""}` : `${line}\n`));
  };

  console.log(
    `fuzz: seed ${seed}, ${count} requests, in-process${
      values.workers ? " through engine workers" : ""
    }, backend cpu`,
  );
  const report = await runFuzz(app, assets, {
    // The engine workers' isolates too: V8's --expose-gc is process-wide.
    collect: "pool" in served ? async () => (gc(), await served.pool.collectGarbage()) : undefined,
    seed,
    count,
    timeoutMs,
    maxSeconds: Number(values["max-seconds"]),
    // Through the workers RSS settles about 300 MB higher whatever the count (each thread's
    // allocator keeps the pages it freed: +337 MB after 3,000 requests, +308 MB after 9,000).
    rssBoundBytes: Number(values["rss-mb"] ?? (values.workers ? 512 : 256)) * 2 ** 20,
    progress,
    failFast: values["fail-fast"],
  });
  if (tty) Deno.stderr.writeSync(enc.encode("\n"));
  console.log(`\n${formatTable(report)}\n`);
  console.log(
    `${report.count} requests (after a warm-up batch of ${report.warmupRequests}) in ${
      report.seconds.toFixed(1)
    } s` +
      (report.stoppedEarly ? ` (stopped at the --max-seconds bound before ${count})` : ""),
  );
  if (report.slowest) {
    console.log(
      `slowest: ${
        report.slowest.ms.toFixed(0)
      } ms, case ${report.slowest.case.index}: ${report.slowest.case.kind}`,
    );
  }
  if (report.biggestRssStep) {
    const { case: c, bytes } = report.biggestRssStep;
    console.log(`largest RSS step: +${mb(bytes)}, case ${c.index}: ${c.kind}`);
  }
  const { afterWarmup, after, peak, heapAtPeak, boundBytes } = report.rss;
  console.log(
    `RSS: ${mb(afterWarmup)} after the warm-up, ${mb(after)} after the run (bound +${
      mb(boundBytes)
    }), peak ${mb(peak)} (JS heap then ${mb(heapAtPeak)})`,
  );
  if (report.violations.length === 0) {
    console.log(`0 violations (seed ${seed})`);
  } else {
    console.log(`\n${report.violations.length} VIOLATION(S), seed ${seed}:`);
    for (const v of report.violations.slice(0, 20)) {
      console.log(
        `\n${describeCase(v.case)}\n  → ${v.outcome.status}: ${
          v.outcome.problems.join("; ")
        }\n  body: ${v.outcome.body}`,
      );
      const i = v.case.index;
      const which = i >= 0 ? String(i) : i <= -2 ? `w${-2 - i}` : null;
      if (which !== null) console.log(`  replay: deno task fuzz --seed ${seed} --case ${which}`);
    }
    Deno.exit(1);
  }
  Deno.exit(0);
}
