/**
 * The model catalogue (models/catalog.json) and installing from it: which files a model needs
 * for a dtype, pulling them into the models folder with a manifest and a lock file (sizes and
 * SHA-256 of what was fetched), removing, and verifying an installed model against its lock.
 */
import { z } from "zod";
import { downloadFile, type HubOptions, sha256File } from "./hub.ts";
import { FAMILY_NAMES, type Manifest } from "./manifest.ts";

export const DTYPES = ["fp32", "fp16", "q8", "q4"] as const;
export type Dtype = typeof DTYPES[number];
/** transformers.js' file suffix per dtype: onnx/<name><suffix>.onnx */
const SUFFIX: Record<Dtype, string> = { fp32: "", fp16: "_fp16", q8: "_quantized", q4: "_q4" };

const Entry = z.object({
  id: z.string(),
  family: z.enum(FAMILY_NAMES),
  embedded: z.boolean().default(false),
  repo: z.string().optional(),
  revision: z.string().default("main"),
  description: z.string().default(""),
  license: z.string(),
  capabilities: z.array(z.string()).default([]),
  modalities: z.object({ input: z.array(z.string()), output: z.array(z.string()) }).default({
    input: [],
    output: [],
  }),
  files: z.array(z.string()).default([]),
  /** ONNX files by role, without the dtype suffix and extension. */
  onnx: z.record(z.string(), z.string()).default({}),
  dtypes: z.array(z.enum(DTYPES)).default(["fp32"]),
  size_mb: z.record(z.string(), z.number()).default({}),
  settings: z.record(z.string(), z.unknown()).default({}),
});
export type CatalogEntry = z.infer<typeof Entry>;

const LockFile = z.object({
  id: z.string(),
  repo: z.string(),
  revision: z.string(),
  dtype: z.enum(DTYPES),
  files: z.array(
    z.object({ path: z.string(), size: z.number(), sha256: z.string(), verified: z.boolean() }),
  ),
});
export const LOCK_NAME = ".mm-lock.json";

export async function loadCatalog(
  path = new URL("./catalog.json", import.meta.url),
): Promise<CatalogEntry[]> {
  const raw = JSON.parse(await Deno.readTextFile(path));
  return z.object({ models: z.array(Entry) }).parse(raw).models;
}

/** The files a pull of `entry` at `dtype` fetches, and the ONNX file for each role. */
export function planFiles(
  entry: CatalogEntry,
  dtype: Dtype,
): { files: string[]; roles: Record<string, string> } {
  if (!entry.dtypes.includes(dtype)) {
    throw new RangeError(
      `${entry.id} has no ${dtype} files; choose one of: ${entry.dtypes.join(", ")}`,
    );
  }
  const roles = Object.fromEntries(
    Object.entries(entry.onnx).map(([role, base]) => [role, `${base}${SUFFIX[dtype]}.onnx`]),
  );
  return { files: [...entry.files, ...Object.values(roles)], roles };
}

export const modelDir = (modelsDir: string, id: string) => `${modelsDir.replace(/\/+$/, "")}/${id}`;

export interface PullOptions extends Omit<HubOptions, "onProgress"> {
  modelsDir: string;
  dtype?: Dtype;
  /** Called per file as bytes arrive. */
  onProgress?: (file: string, done: number, total: number | null) => void;
  /** HF_HUB_OFFLINE: refuse to touch the network. */
  offline?: boolean;
}

/** Pulls a catalogue model into `<modelsDir>/<id>/`, writing manifest.json and the lock file last. */
export async function pullModel(entry: CatalogEntry, opts: PullOptions): Promise<Manifest> {
  if (entry.embedded || !entry.repo) {
    throw new RangeError(`${entry.id} ships with the service; there is nothing to pull`);
  }
  if (opts.offline) throw new Error(`Offline mode (HF_HUB_OFFLINE=1): cannot pull ${entry.id}`);
  const dtype = opts.dtype ?? "fp32";
  const { files, roles } = planFiles(entry, dtype);
  const dir = modelDir(opts.modelsDir, entry.id);
  const lock: z.infer<typeof LockFile> = {
    id: entry.id,
    repo: entry.repo,
    revision: entry.revision,
    dtype,
    files: [],
  };
  for (const file of files) {
    const got = await downloadFile(
      { ...opts, onProgress: (done, total) => opts.onProgress?.(file, done, total) },
      entry.repo,
      entry.revision,
      file,
      `${dir}/${file}`,
    );
    lock.files.push({ path: file, size: got.size, sha256: got.sha256, verified: got.verified });
  }
  const manifest: Manifest = {
    id: entry.id,
    family: entry.family,
    description: entry.description,
    capabilities: entry.capabilities,
    modalities: entry.modalities,
    files: roles,
    license: entry.license,
    preload: false,
    default: false,
    settings: { ...entry.settings, dtype },
  };
  await Deno.writeTextFile(`${dir}/${LOCK_NAME}`, JSON.stringify(lock, null, 2) + "\n");
  // The manifest is what makes a folder a model: written last, so a half pull is never served.
  await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
  return manifest;
}

export async function isInstalled(modelsDir: string, id: string): Promise<boolean> {
  try {
    return (await Deno.stat(`${modelDir(modelsDir, id)}/manifest.json`)).isFile;
  } catch {
    return false;
  }
}

/** Removes an installed model folder; false when it was not installed. */
export async function removeModel(modelsDir: string, id: string): Promise<boolean> {
  if (!(await isInstalled(modelsDir, id)) && !(await exists(modelDir(modelsDir, id)))) return false;
  await Deno.remove(modelDir(modelsDir, id), { recursive: true });
  return true;
}

async function exists(path: string) {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

export interface VerifyProblem {
  path: string;
  problem: string;
}

/** Re-hashes every file of an installed model against its lock file; returns the problems. */
export async function verifyModel(modelsDir: string, id: string): Promise<VerifyProblem[]> {
  const dir = modelDir(modelsDir, id);
  let lock: z.infer<typeof LockFile>;
  try {
    lock = LockFile.parse(JSON.parse(await Deno.readTextFile(`${dir}/${LOCK_NAME}`)));
  } catch {
    return [{
      path: LOCK_NAME,
      problem: `${id} is not installed (or was not pulled by this tool)`,
    }];
  }
  const problems: VerifyProblem[] = [];
  for (const f of lock.files) {
    const path = `${dir}/${f.path}`;
    if (!(await exists(path))) {
      problems.push({ path: f.path, problem: "missing" });
      continue;
    }
    const size = (await Deno.stat(path)).size;
    if (size !== f.size) {
      problems.push({ path: f.path, problem: `size ${size}, expected ${f.size}` });
    } else if ((await sha256File(path)) !== f.sha256) {
      problems.push({ path: f.path, problem: "SHA-256 differs from the pull" });
    }
  }
  return problems;
}
