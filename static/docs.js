// Renders /openapi.json as a readable list of endpoints: what each does, its query parameters,
// an example request to copy, the server-sent events of streaming routes, and the schemas.
const doc = await (await fetch("/openapi.json")).json();
document.getElementById("intro").textContent = doc.info.description;
const root = document.getElementById("paths");
root.textContent = "";

const resolve = (schema) =>
  schema?.$ref ? doc.components.schemas[schema.$ref.split("/").pop()] : schema;
const el = (tag, props = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
};
const pre = (obj) => el("pre", { textContent: JSON.stringify(obj, null, 2) });
const details = (summary, ...content) => el("details", {}, el("summary", {}, summary), ...content);
const curl = (method, path, example) =>
  `curl -s ${location.origin}${path}` +
  (method === "get"
    ? ""
    : ` \\\n  -H 'content-type: application/json' \\\n  -d '${JSON.stringify(example)}'`);

for (const [path, methods] of Object.entries(doc.paths)) {
  for (const [method, op] of Object.entries(methods)) {
    const section = el("section", {}, el("h2", {}, `${method.toUpperCase()} ${path}`));
    section.append(el("p", {}, op.summary ?? ""));
    if (op.description) section.append(el("p", {}, op.description));
    const params = op.parameters ?? [];
    if (params.length > 0) {
      const rows = params.map((p) =>
        el(
          "tr",
          {},
          el("td", {}, el("code", {}, p.name)),
          el("td", {}, p.in),
          el("td", {}, p.schema?.type ?? ""),
          el("td", {}, p.required ? "required" : "optional"),
          el("td", {}, p.description ?? p.schema?.description ?? ""),
        )
      );
      section.append(
        el("h3", {}, "Query parameters"),
        el("table", { className: "params" }, el("tbody", {}, ...rows)),
      );
    }
    const body = op.requestBody?.content;
    const example = body?.["application/json"]?.example;
    if (example || method === "get") {
      section.append(
        el("h3", {}, "Example"),
        el("pre", { textContent: curl(method, path, example) }),
      );
    }
    if (body) {
      section.append(
        details(
          `Request body (${Object.keys(body).join(", ")})`,
          pre(resolve(Object.values(body)[0].schema)),
        ),
      );
    }
    const ok = op.responses?.["200"];
    if (ok?.content?.["text/event-stream"]) {
      const events = ok.description.split("\n").slice(1);
      section.append(
        el("h3", {}, "Streaming (stream: true): server-sent events"),
        el("ul", {}, ...events.map((e) => el("li", {}, e))),
      );
    }
    const schema = ok?.content?.["application/json"]?.schema;
    if (schema) section.append(details("Response 200", pre(resolve(schema))));
    root.append(section);
  }
}
