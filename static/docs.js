// Renders /openapi.json as a readable list of endpoints with their request and response schemas.
const doc = await (await fetch("/openapi.json")).json();
const root = document.getElementById("paths");
root.textContent = "";

const resolve = (schema) =>
  schema?.$ref ? doc.components.schemas[schema.$ref.split("/").pop()] : schema;
const pre = (obj) =>
  Object.assign(document.createElement("pre"), { textContent: JSON.stringify(obj, null, 2) });

for (const [path, methods] of Object.entries(doc.paths)) {
  for (const [method, op] of Object.entries(methods)) {
    const section = document.createElement("section");
    const h = document.createElement("h2");
    h.textContent = `${method.toUpperCase()} ${path}`;
    const p = document.createElement("p");
    p.textContent = op.summary ?? "";
    section.append(h, p);
    const body = op.requestBody?.content;
    if (body) {
      const types = Object.keys(body).join(", ");
      const d = document.createElement("details");
      d.innerHTML = `<summary>Request body (${types})</summary>`;
      d.append(pre(resolve(Object.values(body)[0].schema)));
      section.append(d);
    }
    const ok = op.responses?.["200"]?.content?.["application/json"]?.schema;
    if (ok) {
      const d = document.createElement("details");
      d.innerHTML = "<summary>Response 200</summary>";
      d.append(pre(resolve(ok)));
      section.append(d);
    }
    root.append(section);
  }
}
