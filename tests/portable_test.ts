/**
 * The portable profile (`deno task serve:portable`: MM_BACKEND=wasm, no native code at all).
 *
 * 1. Pixel parity: PNG (RGB and RGBA), JPEG (plain and EXIF-rotated), WebP and GIF files,
 *    decoded and preprocessed for CLIP here with sharp's native addon and in a child process
 *    without --allow-ffi (sharp's WebAssembly build), give byte-identical pixels, alpha and
 *    model inputs.
 * 2. The same API tests as the native profile: `deno task test:portable` runs
 *    tests/{api,captions_api,chat_api,images_api,openai_conformance}_test.ts on the WASM backend
 *    with only --allow-read --allow-env --allow-net=127.0.0.1 --allow-sys=cpus, and passes.
 */
import assert from "node:assert/strict";
import sharp from "sharp";
import { imageCodec } from "../core/image.ts";
import { renderScene, type Scene } from "../world/world.ts";
import { digests } from "./portable_digest.ts";

const ROOT = new URL("../", import.meta.url).pathname;

const scene: Scene = {
  background: "gray",
  objects: [
    { shape: "circle", colour: "red", size: "large", side: 24, x: 6, y: 8 },
    { shape: "triangle", colour: "blue", size: "small", side: 12, x: 40, y: 36 },
  ],
};

async function fixtures(dir: string): Promise<string[]> {
  const raw = { raw: { width: 64, height: 64, channels: 3 as const } };
  const rgb = renderScene(scene);
  const wide = sharp(rgb, raw).resize(96, 64, { fit: "fill" });
  const rgba = new Uint8Array(64 * 64 * 4).map((_, i) =>
    i % 4 === 3 ? (i >> 2) % 256 : rgb[(i >> 2) * 3 + (i % 4)]
  );
  const files: Record<string, Promise<Uint8Array>> = {
    "scene.png": sharp(rgb, raw).png().toBuffer(),
    "alpha.png": sharp(rgba, { raw: { width: 64, height: 64, channels: 4 } }).png().toBuffer(),
    "scene.jpg": wide.clone().jpeg({ quality: 90 }).toBuffer(),
    "rotated.jpg": wide.clone().jpeg({ quality: 80 }).withMetadata({ orientation: 6 }).toBuffer(),
    "scene.webp": sharp(rgb, raw).webp({ quality: 80 }).toBuffer(),
    "scene.gif": sharp(rgb, raw).gif().toBuffer(),
  };
  const paths: string[] = [];
  for (const [name, bytes] of Object.entries(files)) {
    const path = `${dir}/${name}`;
    await Deno.writeFile(path, await bytes);
    paths.push(path);
  }
  return paths;
}

Deno.test("portable: sharp's WebAssembly build decodes and preprocesses byte for byte as the native one", async () => {
  assert.equal(imageCodec.wasm, false, "this side is the native addon");
  const dir = await Deno.makeTempDir();
  try {
    const paths = await fixtures(dir);
    const child = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-env",
        "--allow-sys=cpus",
        "tests/portable_decode.ts",
        ...paths,
      ],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(child.stderr);
    assert.equal(child.code, 0, stderr);
    const wasm = JSON.parse(new TextDecoder().decode(child.stdout).trim().split("\n").at(-1)!);
    assert.equal(wasm.codec.wasm, true, "the child loaded sharp's WebAssembly build");
    assert.equal(wasm.codec.name, imageCodec.name, "the same libvips");
    for (const path of paths) {
      const native = await digests(await Deno.readFile(path));
      assert.deepEqual(wasm[path], native, path.split("/").at(-1)!);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "portable: the API tests pass on WASM with no native code (deno task test:portable)",
  sanitizeResources: false,
  fn: async () => {
    const child = await new Deno.Command(Deno.execPath(), {
      args: ["task", "test:portable"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(child.stdout) + new TextDecoder().decode(child.stderr);
    const summary = out.match(/^(ok|FAILED) \| (\d+) passed.*\| (\d+) failed.*$/m);
    console.log(`test:portable: ${summary?.[0] ?? "(no summary)"}`);
    assert.equal(child.code, 0, out.slice(-4000));
    assert.ok(Number(summary?.[2]) >= 60, "the API tests ran");
  },
});
