/**
 * `deno task models <command>`: manage pulled models in MM_MODELS_DIR.
 *
 *   models list                      the catalogue, with what is installed
 *   models pull <id> [--dtype q8]    download from HF_ENDPOINT (token: HF_TOKEN), resumable
 *   models rm <id>                   delete an installed model
 *   models verify <id>               re-hash its files against what the pull recorded
 */
import { parseArgs } from "node:util";
import { loadConfig } from "../core/config.ts";
import { ProgressBar } from "../core/progress.ts";
import {
  type Dtype,
  DTYPES,
  isInstalled,
  loadCatalog,
  pullModel,
  removeModel,
  verifyModel,
} from "./catalog.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { dtype: { type: "string", default: "fp32" } },
});
const [command, id] = positionals;
const config = loadConfig();
const catalog = await loadCatalog();
const dir = config.pulledModelsDir;

function fail(message: string): never {
  console.error(`error: ${message}`);
  Deno.exit(1);
}
const entryOf = (id?: string) => {
  if (!id) fail(`usage: deno task models ${command} <id>`);
  return catalog.find((e) => e.id === id) ??
    fail(`unknown model "${id}"; known: ${catalog.map((e) => e.id).join(", ")}`);
};

switch (command) {
  case "list": {
    console.log(`models folder: ${dir}\n`);
    console.log("| id | family | installed | dtypes (≈ MB) | license |");
    console.log("| --- | --- | --- | --- | --- |");
    for (const e of catalog) {
      const installed = e.embedded ? "embedded" : (await isInstalled(dir, e.id)) ? "yes" : "no";
      const sizes = e.dtypes.map((d) => `${d}${e.size_mb[d] ? ` ${e.size_mb[d]}` : ""}`).join(", ");
      console.log(
        `| ${e.id} | ${e.family} | ${installed} | ${e.embedded ? "fp32" : sizes} | ${e.license} |`,
      );
    }
    break;
  }
  case "pull": {
    const entry = entryOf(id);
    if (!DTYPES.includes(values.dtype as Dtype)) {
      fail(`--dtype must be one of ${DTYPES.join(", ")}`);
    }
    const bars = new Map<string, ProgressBar>();
    try {
      await pullModel(entry, {
        ...config.hub,
        modelsDir: dir,
        dtype: values.dtype as Dtype,
        onProgress: (file, done, total) => {
          if (!bars.has(file)) {
            bars.set(file, new ProgressBar(file.padEnd(36).slice(0, 36), total ?? 0));
          }
          bars.get(file)!.update(done, `${(done / 2 ** 20).toFixed(1)} MiB`);
        },
      });
    } catch (e) {
      fail((e as Error).message);
    }
    console.log(`pulled ${entry.id} (${values.dtype}) into ${dir}/${entry.id}`);
    break;
  }
  case "rm": {
    const entry = entryOf(id);
    if (!(await removeModel(dir, entry.id))) fail(`${entry.id} is not installed in ${dir}`);
    console.log(`removed ${entry.id}`);
    break;
  }
  case "verify": {
    const entry = entryOf(id);
    const problems = await verifyModel(dir, entry.id);
    for (const p of problems) console.error(`  ${p.path}: ${p.problem}`);
    if (problems.length) fail(`${entry.id} failed verification`);
    console.log(`${entry.id}: every file matches its pull`);
    break;
  }
  default:
    console.error(
      "usage: deno task models list | pull <id> [--dtype fp32|fp16|q8|q4] | rm <id> | verify <id>",
    );
    Deno.exit(2);
}
