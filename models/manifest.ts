/**
 * The model manifest: one `manifest.json` per model folder says what the folder is and which
 * pipeline serves it. The rest of the folder keeps the public export's own layout (config.json,
 * tokenizer files, onnx/...), so a public model only needs a manifest beside its files.
 *
 *   models/embedded/clip-tiny/
 *     manifest.json             ← ours
 *     config.json, preprocessor_config.json, tokenizer.json, ...
 *     onnx/text_model.onnx, onnx/vision_model.onnx, onnx/model.onnx
 */
import { z } from "zod";

/**
 * The families a manifest may name; each has its line in models/families.ts (the compiler holds
 * the two lists to each other).
 */
export const FAMILY_NAMES = ["clip", "captioning", "diffusion", "dalle", "chat"] as const;
export type Family = typeof FAMILY_NAMES[number];

export const Manifest = z.object({
  id: z.string().regex(/^[\w.\-/]+$/),
  family: z.enum(FAMILY_NAMES),
  description: z.string().default(""),
  capabilities: z.array(z.string()),
  modalities: z.object({ input: z.array(z.string()), output: z.array(z.string()) }),
  /** ONNX files by role, relative to the folder, e.g. { "text": "onnx/text_model.onnx" }. */
  files: z.record(z.string(), z.string()),
  license: z.string().default("unknown"),
  /** Loaded and warmed at start-up (the server is healthy once these are ready). */
  preload: z.boolean().default(false),
  /** The family's default model (requests without `model`); else the family's first. */
  default: z.boolean().default(false),
  /** Pipeline settings that differ from the family's defaults. */
  settings: z.record(z.string(), z.unknown()).default({}),
});
export type Manifest = z.infer<typeof Manifest>;

export interface ModelEntry {
  manifest: Manifest;
  /** Absolute folder path, ending in "/". */
  dir: string;
}

/** Reads every `<dir>/<model>/manifest.json` (one level, or two for `owner/name` ids). */
export async function scanModels(dirs: string[]): Promise<ModelEntry[]> {
  const found: ModelEntry[] = [];
  const visit = async (dir: string, depth: number) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      return;
    }
    if (entries.some((e) => e.isFile && e.name === "manifest.json")) {
      const raw = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
      const parsed = Manifest.safeParse(raw);
      if (!parsed.success) {
        throw new Error(`Invalid manifest ${dir}/manifest.json: ${parsed.error.message}`);
      }
      found.push({ manifest: parsed.data, dir: dir.endsWith("/") ? dir : `${dir}/` });
      return;
    }
    if (depth < 2) {
      for (
        const e of entries.filter((e) => e.isDirectory).sort((a, b) => a.name.localeCompare(b.name))
      ) {
        await visit(`${dir.replace(/\/$/, "")}/${e.name}`, depth + 1);
      }
    }
  };
  for (const d of dirs) await visit(d, 0);
  return found;
}

/**
 * `entry` with its q8 files (transformers.js' `onnx/<name>_quantized.onnx`, made by
 * training/quantize.py) in place of fp32 ones where the folder has them; `settings.dtype` says
 * which it got. Roles without a quantized file keep theirs.
 */
export async function withQuantized(entry: ModelEntry): Promise<ModelEntry> {
  const files: Record<string, string> = {};
  let any = false;
  for (const [role, file] of Object.entries(entry.manifest.files)) {
    const q8 = file.replace(/\.onnx$/, "_quantized.onnx");
    const has = q8 !== file && await Deno.stat(entry.dir + q8).then(() => true, () => false);
    files[role] = has ? q8 : file;
    any ||= has;
  }
  if (!any) return entry;
  const settings = { ...entry.manifest.settings, dtype: "q8" };
  return { ...entry, manifest: { ...entry.manifest, files, settings } };
}
