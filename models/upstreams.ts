/**
 * The models as this server offers them when some are served by upstreams (MM_UPSTREAMS): the
 * local ones, with those an upstream serves shown as the upstream lists them (it takes
 * precedence over a local copy), and the upstream's other configured models added.
 */
import type { Upstreams } from "../core/upstream.ts";
import { type Family, FAMILY_NAMES, type Pipelines } from "./families.ts";
import type { ModelInfo, Models } from "./registry.ts";

const FAMILIES = new Set<string>(FAMILY_NAMES);

export class UpstreamModels implements Models {
  constructor(private local: Models, private upstreams: Upstreams) {}

  get ready(): boolean {
    return this.local.ready; // an upstream that is down fails its own requests, not /health
  }

  get backend() {
    return this.local.backend;
  }

  /**
   * Local models first, an upstream's listing over a local copy's entry (marked `upstream`);
   * an upstream model listed without a family of ours (another kind of server) takes the local
   * copy's, and is left out of the list (not of routing) when there is none.
   */
  list(): ModelInfo[] {
    const local = this.local.list();
    const remote = new Map<string, ModelInfo>();
    for (const u of this.upstreams.all) {
      for (const listed of u.listed()) {
        const id = String(listed.id);
        const mine = local.find((m) => m.id === id);
        const family = FAMILIES.has(String(listed.family)) ? listed.family : mine?.family;
        if (!family || remote.has(id)) continue;
        remote.set(id, {
          ...(mine ?? {
            description: "",
            capabilities: [],
            modalities: { input: [], output: [] },
            license: "",
          }),
          ...listed,
          id,
          object: "model",
          family,
          installed: true,
          loaded: listed.loaded === undefined ? true : Boolean(listed.loaded),
          default: mine?.default,
          upstream: true,
        } as ModelInfo);
      }
    }
    return [
      ...local.map((m) => remote.get(m.id) ?? m),
      ...[...remote.values()].filter((m) => !local.some((l) => l.id === m.id)),
    ];
  }

  /** The local default; for a family with no local model, the first upstream one. */
  defaultId(family: Family): string | undefined {
    return this.local.defaultId(family) ??
      this.list().find((m) => m.family === family && m.upstream)?.id;
  }

  familyOf(id: string): Family | undefined {
    return this.list().find((m) => m.id === id)?.family ?? this.local.familyOf(id);
  }

  get<F extends Family>(family: F, id?: string): Promise<Pipelines[F]> {
    return this.local.get(family, id);
  }
}
