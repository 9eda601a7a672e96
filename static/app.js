// The playground calls the public API exactly as a user's front-end would.
const $ = (id) => document.getElementById(id);

const health = await fetch("/health").then((r) => r.json()).catch(() => null);
$("backend").textContent = health?.backend
  ? `Backend: ${health.backend} (${health.execution_provider}, ${health.device})`
  : `Backend: not ready (${health?.error?.message ?? "no answer"})`;

$("clip-image").addEventListener("change", () => {
  const file = $("clip-image").files[0];
  if (!file) return;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
});

$("clip-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("clip-error").textContent = "";
  $("clip-results").textContent = "Classifying…";
  const form = new FormData();
  form.append("image", $("clip-image").files[0]);
  for (const label of $("clip-labels").value.split("\n").map((s) => s.trim()).filter(Boolean)) {
    form.append("candidate_labels[]", label);
  }
  form.append("hypothesis_template", $("clip-template").value);
  const res = await fetch("/v1/clip/classify", { method: "POST", body: form });
  const body = await res.json();
  $("clip-results").textContent = "";
  if (!res.ok) {
    $("clip-error").textContent = `Error: ${body.error?.message ?? res.statusText}`;
    return;
  }
  for (const { label, score } of body.results) {
    const row = document.createElement("div");
    row.className = "row";
    row.innerHTML = `<span></span><div class="bar"></div><span>${(score * 100).toFixed(1)}%</span>`;
    row.firstChild.textContent = label;
    row.children[1].style.width = `${Math.max(1, score * 100)}%`;
    $("clip-results").append(row);
  }
  $("clip-timing").textContent = `Server-Timing: ${res.headers.get("server-timing") ?? "n/a"}`;
});
