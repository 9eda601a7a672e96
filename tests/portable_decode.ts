/**
 * The decode side of tests/portable_test.ts, run without native code (no --allow-ffi, so sharp
 * loads its WebAssembly build): decodes each image file given, preprocesses it as CLIP does,
 * and prints one JSON line of SHA-256 digests per file, plus which codec did it.
 */
import { digests } from "./portable_digest.ts";
import { imageCodec } from "../core/image.ts";

const out: Record<string, unknown> = { codec: imageCodec };
for (const path of Deno.args) out[path] = await digests(await Deno.readFile(path));
console.log(JSON.stringify(out));
