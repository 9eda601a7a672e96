/** The playground (`/`), the docs page (`/docs`) and their assets, from static/. */
import type { App } from "./http.ts";

const ROOT = new URL("../static/", import.meta.url);
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
};

async function file(name: string): Promise<Response | null> {
  try {
    const body = await Deno.readFile(new URL(name, ROOT));
    return new Response(body, {
      headers: { "content-type": TYPES[name.split(".").pop() ?? ""] ?? "application/octet-stream" },
    });
  } catch {
    return null;
  }
}

export function staticRoutes(app: App): void {
  app.get("/", async (c) => (await file("index.html")) ?? c.notFound());
  app.get("/docs", async (c) => (await file("docs.html")) ?? c.notFound());
  app.get(
    "/static/:name{[\\w-]+\\.\\w+}",
    async (c) => (await file(c.req.param("name"))) ?? c.notFound(),
  );
}
