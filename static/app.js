// The playground calls the public API exactly as a user's front-end would.
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- status bar and API calls

const health = await fetch("/health").then((r) => r.json()).catch(() => null);
$("status-backend").textContent = health?.backend
  ? `Backend: ${health.backend} (${health.execution_provider}, ${health.device})`
  : `Backend: not ready (${health?.error?.message ?? "no answer"})`;

/**
 * fetch() for the API. A server started with MM_API_KEYS answers 401 without a key: the page
 * asks for one once, keeps it in this browser (localStorage) and sends it as a Bearer token.
 */
const KEY = "mm-edge.api-key";
async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  const send = () => {
    const key = localStorage.getItem(KEY);
    if (key) headers.set("authorization", `Bearer ${key}`);
    return fetch(path, { ...init, headers });
  };
  const res = await send();
  if (res.status !== 401) return res;
  const key = prompt("This server needs an API key (it was started with MM_API_KEYS):");
  if (!key?.trim()) return res;
  localStorage.setItem(KEY, key.trim());
  return send();
}

/** Shows which endpoint answered and its per-stage timings, whatever the tab. */
function showTiming(path, stages) {
  $("status-timing").textContent = `${path}: ${stages || "no timings"}`;
}
/** Server-Timing "decode;dur=1.2, infer;dur=30" → "decode 1 ms · infer 30 ms". */
const serverTiming = (header) =>
  (header ?? "").split(",").map((m) => m.trim().match(/^([\w-]+).*dur=([\d.]+)/))
    .filter(Boolean).map(([, name, ms]) => `${name} ${Number(ms).toFixed(0)} ms`).join(" · ");

/** An API error in plain words: the envelope's message, else the HTTP status. */
async function apiError(res) {
  const body = await res.json().catch(() => ({}));
  return new Error(body.error?.message ?? `${res.status} ${res.statusText}`);
}

/** POSTs JSON (or FormData) and returns the parsed answer; shows its timings. */
async function post(path, body) {
  const res = await api(path, {
    method: "POST",
    ...(body instanceof FormData
      ? { body }
      : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
  if (!res.ok) throw await apiError(res);
  showTiming(path, serverTiming(res.headers.get("server-timing")));
  return res.json();
}

/**
 * POSTs JSON to an endpoint that answers with Server-Sent Events and calls `onData` with each
 * event's parsed data (the closing "[DONE]" skipped); API errors become thrown Errors.
 */
async function streamEvents(path, body, signal, onData) {
  const res = await api(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok) throw await apiError(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const data = buffer.slice(0, cut).match(/^data: (.*)$/m)?.[1];
      buffer = buffer.slice(cut + 2);
      if (!data || data === "[DONE]") continue;
      const event = JSON.parse(data);
      if (event.error) throw new Error(event.error.message);
      // Cancel wins over events that arrived in the same chunk.
      signal.throwIfAborted();
      onData(event);
    }
  }
}

/** Runs `task`, showing a thrown error under the form (a cancelled request in gentler words). */
async function guarded(errorEl, task, cancelled = "Cancelled.") {
  errorEl.textContent = "";
  try {
    await task();
  } catch (e) {
    errorEl.textContent = e.name === "AbortError" ? cancelled : `Error: ${e.message}`;
  }
}

const models = (await api("/v1/models").then((r) => r.json()).catch(() => ({ data: [] }))).data;
// Each picker starts on its family's default (what the API uses when no model is given).
function fillModels(select, family, label = (m) => m.id, preselect = true) {
  for (const m of models.filter((m) => m.family === family && m.installed)) {
    const on = preselect && m.default === true;
    select.append(new Option(label(m), m.id, on, on));
  }
}
fillModels(
  $("cap-model"),
  "captioning",
  (m) => `${m.id}${m.capabilities.includes("attention-maps") ? " (attention)" : ""}`,
);
fillModels($("gen-model"), "diffusion", (m) => `${m.id} (diffusion)`);
fillModels($("gen-model"), "dalle", (m) => `${m.id} (DALL-E)`, false); // diffusion first
fillModels($("chat-model"), "chat", (m) => `${m.id} — ${m.description.split(",")[0]}`);

// ---------------------------------------------------------------- tabs

const tabs = [...document.querySelectorAll('[role="tab"]')];
function selectTab(tab, focus = false) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  if (focus) tab.focus();
  history.replaceState(null, "", `#${tab.id.slice(4)}`);
}
for (const [i, t] of tabs.entries()) {
  t.addEventListener("click", () => selectTab(t));
  t.addEventListener("keydown", (e) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (step) selectTab(tabs[(i + step + tabs.length) % tabs.length], true);
  });
}
selectTab($(`tab-${location.hash.slice(1)}`) ?? tabs[0]);

// ---------------------------------------------------------------- images in

/** The chosen images ({ blob, url, caption?, questions? }); `current` is the one used. */
const images = [];
let current = -1;
const MAX_CHOSEN = 8;

function choose(i) {
  current = i;
  const image = images[i];
  $("current").hidden = !image;
  if (image) {
    $("preview").src = image.url;
    $("preview-caption").textContent = image.caption ? `Scene: ${image.caption}` : image.name ?? "";
  }
  [...$("thumbs").children].forEach((b, j) => b.setAttribute("aria-pressed", String(j === i)));
  showSuggestions();
  drawMaskBase();
}

/** Adds an image to the chosen ones, once the browser has read it (a broken file never shows). */
async function addImage(blob, extra = {}) {
  const name = blob.name ?? extra.name ?? "that file";
  if (!blob.type.startsWith("image/")) {
    $("image-error").textContent = `Error: ${name} is not an image`;
    return;
  }
  const url = URL.createObjectURL(blob);
  try {
    await loadImage(url);
  } catch {
    URL.revokeObjectURL(url);
    $("image-error").textContent = `Error: ${name} could not be read as an image`;
    return;
  }
  $("image-error").textContent = "";
  if (images.length === MAX_CHOSEN) removeImage(0);
  images.push({ blob, url, ...extra });
  const b = document.createElement("button");
  b.type = "button";
  b.className = "thumb";
  b.setAttribute(
    "aria-label",
    `Use image ${images.length}${extra.caption ? `: ${extra.caption}` : ""}`,
  );
  b.innerHTML = '<img alt="">';
  b.firstChild.src = url;
  b.addEventListener("click", () => choose([...$("thumbs").children].indexOf(b)));
  $("thumbs").append(b);
  choose(images.length - 1);
}
/** Adds files in their order. */
async function addFiles(files, name) {
  for (const f of files) await addImage(f, { name: name ?? f.name });
}
function removeImage(i) {
  URL.revokeObjectURL(images[i].url);
  images.splice(i, 1);
  $("thumbs").children[i].remove();
}

$("image").addEventListener("change", () => {
  addFiles([...$("image").files]);
  $("image").value = "";
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  addFiles([...e.dataTransfer.files]);
});
document.addEventListener("paste", (e) => {
  const files = [...e.clipboardData.files];
  if (files.length === 0) return;
  e.preventDefault();
  addFiles(files, "pasted image");
});

const fromBase64 = (b64, type = "image/png") =>
  new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type });

$("random-scene").addEventListener("click", () =>
  guarded($("image-error"), async () => {
    const split = $("random-heldout").checked ? "heldout" : "test";
    const res = await api(`/v1/world/scene?split=${split}`);
    if (!res.ok) throw await apiError(res);
    const scene = await res.json();
    await addImage(fromBase64(scene.b64_json), {
      caption: scene.caption,
      questions: scene.questions,
    });
  }));

/** The current image, or an error the form shows. */
function currentImage() {
  if (!images[current]) throw new Error("Choose an image first (upload, drop, paste or random).");
  return images[current];
}
const dataUrl = (blob) =>
  new Promise((resolve) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.readAsDataURL(blob);
  });
const loadImage = (url) =>
  new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("The browser could not read that image"));
    img.src = url;
  });

// ---------------------------------------------------------------- heatmaps

/**
 * Paints `values` (a rows × cols grid) over the image as a translucent heat layer, by magnitude:
 * attention weights are positive, and an occlusion map's sign only says which way a patch moved
 * the match.
 */
async function paintHeatmap(canvas, imageUrl, values, rows, cols) {
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(await loadImage(imageUrl), 0, 0, canvas.width, canvas.height);
  const hi = Math.max(...values.map(Math.abs));
  const grid = new OffscreenCanvas(cols, rows);
  const g = grid.getContext("2d");
  const px = g.createImageData(cols, rows);
  values.forEach((v, i) => {
    const t = hi > 0 ? Math.abs(v) / hi : 0;
    px.data.set([255, Math.round(255 * t), 0, Math.round(200 * t)], i * 4);
  });
  g.putImageData(px, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(grid, 0, 0, canvas.width, canvas.height);
  canvas.hidden = false;
  canvas.dataset.painted = "true";
}

/**
 * `tokens` as word buttons in `container`; hovering or focusing one paints its map (`maps.words`
 * in the same order) over the image on `canvas`. Returns the buttons.
 */
function explainedWords(container, tokens, maps, canvas, imageUrl, onShow = () => {}) {
  return tokens.map((token, i) => {
    const word = document.createElement("button");
    word.type = "button";
    word.className = "word";
    word.textContent = token.token;
    if (token.logprob !== undefined) word.title = `log-probability ${token.logprob.toFixed(3)}`;
    const weights = maps?.words[i]?.weights;
    if (weights) {
      const show = () => {
        onShow(word);
        paintHeatmap(canvas, imageUrl, weights, maps.rows, maps.cols);
      };
      word.addEventListener("mouseenter", show);
      word.addEventListener("focus", show);
    }
    container.append(word, " ");
    return word;
  });
}

// ---------------------------------------------------------------- caption

let captionWords = [];
let lastWord = null; // the word whose attention is shown
function focusWord(i) {
  captionWords[Math.max(0, Math.min(captionWords.length - 1, i))]?.focus();
}
$("cap-prev").addEventListener("click", () => focusWord(captionWords.indexOf(lastWord) - 1));
$("cap-next").addEventListener("click", () => focusWord(captionWords.indexOf(lastWord) + 1));

$("cap-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded($("cap-error"), async () => {
    $("cap-text").textContent = "Captioning…";
    $("cap-heatmap").hidden = $("cap-steps").hidden = true;
    $("cap-score").textContent = $("cap-alternatives").textContent = "";
    captionWords = [];
    const image = currentImage();
    const model = $("cap-model").value;
    const attention = models.find((m) => m.id === model)?.capabilities.includes("attention-maps");
    const form = new FormData();
    form.append("image", image.blob);
    form.append("model", model);
    form.append("strategy", $("cap-strategy").value);
    form.append("return_attention", String(Boolean(attention)));
    const out = await post("/v1/captions", form).finally(() => $("cap-text").textContent = "");
    const [caption] = out.captions;
    const att = caption.attention;
    captionWords = explainedWords(
      $("cap-text"),
      caption.tokens,
      att,
      $("cap-heatmap"),
      image.url,
      (word) => lastWord = word,
    );
    $("cap-score").textContent = `log-probability ${caption.logprob.toFixed(2)} (${
      (caption.logprob / Math.max(1, caption.tokens.length)).toFixed(2)
    } per word)`;
    for (const alt of out.alternatives ?? []) {
      const li = document.createElement("li");
      li.textContent = `${alt.text} (log-probability ${alt.logprob.toFixed(2)})`;
      $("cap-alternatives").append(li);
    }
    $("cap-steps").hidden = !att;
    if (att) focusWord(0);
  });
});

// ---------------------------------------------------------------- CLIP

const lines = (el) => el.value.split("\n").map((s) => s.trim()).filter(Boolean);

$("clip-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded($("clip-error"), async () => {
    $("clip-results").textContent = "";
    $("clip-patch-box").hidden = true;
    const image = currentImage();
    const out = await post("/v1/clip/classify", {
      image: await dataUrl(image.blob),
      candidate_labels: lines($("clip-labels")),
      hypothesis_template: lines($("clip-template")),
      return_patch_maps: true,
    });
    const showMap = (r) => {
      if (!r.patch_map) return;
      $("clip-patch-box").hidden = false;
      $("clip-patch-label").textContent =
        `Where "${r.label}" is seen: how much blanking each patch changes the match`;
      const { values, rows, cols } = r.patch_map;
      paintHeatmap($("clip-patch"), image.url, values, rows, cols);
    };
    for (const r of out.results) {
      const row = document.createElement("button");
      row.type = "button";
      row.className = "row";
      row.title = "Show where this label matches";
      row.innerHTML = `<span></span><div class="bar"></div><span>${
        (r.score * 100).toFixed(1)
      }%</span>`;
      row.firstChild.textContent = r.label;
      row.children[1].style.width = `${Math.max(1, r.score * 100)}%`;
      row.addEventListener("click", () => showMap(r));
      $("clip-results").append(row);
    }
    showMap(out.results[0]);
  });
});

$("sim-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded($("sim-error"), async () => {
    $("sim-results").textContent = "";
    if (images.length === 0) currentImage();
    const texts = lines($("sim-texts"));
    const out = await post("/v1/clip/similarity", {
      images: await Promise.all(images.map((i) => dataUrl(i.blob))),
      texts,
    });
    // Rows: images; columns: texts; each cell coloured by its softmax over the row's texts.
    const table = document.createElement("table");
    table.className = "heatmap";
    table.innerHTML = "<caption>Cosine similarity (colour: probability over the texts)</caption>";
    const head = table.createTHead().insertRow();
    head.append(document.createElement("th"));
    for (const t of texts) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = t;
      head.append(th);
    }
    const body = table.createTBody();
    out.cosine.forEach((row, i) => {
      const tr = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.innerHTML = `<img class="thumb-img" alt="image ${i + 1}">`;
      th.firstChild.src = images[i].url;
      tr.append(th);
      row.forEach((cos, j) => {
        const td = tr.insertCell();
        const p = out.probabilities[i][j];
        td.textContent = cos.toFixed(2);
        td.style.background = `rgb(59 130 246 / ${(p * 100).toFixed(0)}%)`;
        td.title = `probability ${(p * 100).toFixed(1)}%`;
      });
    });
    $("sim-results").append(table);
  });
});

// ---------------------------------------------------------------- generate

// The inpainting mask lives in its own canvas at the image's resolution (white = redraw); the
// visible canvas shows the image with the painted strokes over it.
const maskCanvas = document.createElement("canvas");
async function drawMaskBase() {
  const image = images[current];
  const view = $("gen-mask");
  const ctx = view.getContext("2d");
  ctx.clearRect(0, 0, view.width, view.height);
  if (!image) return;
  const img = await loadImage(image.url).catch(() => null);
  if (!img) return; // not an image the browser can read; the API will say so in words
  maskCanvas.width = img.naturalWidth;
  maskCanvas.height = img.naturalHeight;
  const m = maskCanvas.getContext("2d");
  m.fillStyle = "black";
  m.fillRect(0, 0, maskCanvas.width, maskCanvas.height);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, view.width, view.height);
  view.dataset.painted = "false";
}
function paintMask(e) {
  const view = $("gen-mask");
  const box = view.getBoundingClientRect();
  const x = (e.clientX - box.left) / box.width, y = (e.clientY - box.top) / box.height;
  const r = Number($("gen-brush").value) / 2 / 64; // brush size in 64-pixel units of the image
  const ctx = view.getContext("2d");
  ctx.fillStyle = "rgb(255 0 128 / 60%)";
  ctx.beginPath();
  ctx.arc(x * view.width, y * view.height, r * view.width, 0, 2 * Math.PI);
  ctx.fill();
  const m = maskCanvas.getContext("2d");
  m.fillStyle = "white";
  m.beginPath();
  m.arc(x * maskCanvas.width, y * maskCanvas.height, r * maskCanvas.width, 0, 2 * Math.PI);
  m.fill();
  view.dataset.painted = "true";
}
$("gen-mask").addEventListener("pointerdown", (e) => {
  $("gen-mask").setPointerCapture(e.pointerId);
  paintMask(e);
});
$("gen-mask").addEventListener("pointermove", (e) => {
  if (e.buttons) paintMask(e);
});
$("gen-mask-clear").addEventListener("click", drawMaskBase);
$("gen-strength").addEventListener("input", () => {
  $("gen-strength-value").textContent = $("gen-strength").value;
});
const isDalle = () => models.find((m) => m.id === $("gen-model").value)?.family === "dalle";
// Each generator family shows its own parameters (the API rejects the other family's).
function showGenerateFields() {
  const dalle = isDalle();
  for (const el of document.querySelectorAll(".diffusion-only")) el.hidden = dalle;
  for (const el of document.querySelectorAll(".dalle-only")) el.hidden = !dalle;
  $("gen-img2img").hidden = dalle || $("gen-mode").value !== "img2img";
  $("gen-inpaint").hidden = dalle || $("gen-mode").value !== "inpaint";
}
$("gen-mode").addEventListener("change", showGenerateFields);
$("gen-model").addEventListener("change", showGenerateFields);

// SSE over fetch (POST), so progress, previews and the final image stream in; Cancel aborts the
// request, and the server stops the job between steps.
let generation = null;
let lastGenerated = null;
$("gen-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("gen-seed-used").textContent = "";
  $("gen-reuse").hidden = $("gen-keep").hidden = true;
  $("gen-progress").value = 0;
  $("gen-percent").textContent = "0%";
  generation = new AbortController();
  $("gen-cancel").disabled = false;
  $("gen-go").disabled = true;
  guarded($("gen-error"), async () => {
    const dalle = isDalle();
    const mode = dalle ? "text" : $("gen-mode").value;
    const seed = $("gen-seed").value;
    const rerank = Number($("gen-rerank").value);
    const model = models.find((m) => m.id === $("gen-model").value);
    const request = {
      model: $("gen-model").value || undefined,
      prompt: $("gen-prompt").value,
      seed: seed === "" ? undefined : Number(seed),
      stream: true,
      partial_images: 3,
      // Each prompt word's map, where the model can say where it acted.
      ...(model?.capabilities.includes("attention-maps") ? { return_attention: true } : {}),
      ...(dalle
        ? {
          temperature: Number($("gen-temperature").value),
          top_k: Number($("gen-topk").value),
          n: Number($("gen-n").value),
          rerank: rerank > 0 ? rerank : undefined,
        }
        : {
          negative_prompt: $("gen-negative").value || undefined,
          num_inference_steps: Number($("gen-steps").value),
          guidance_scale: Number($("gen-guidance").value),
          scheduler: $("gen-scheduler").value,
          size: $("gen-size").value,
        }),
    };
    $("gen-gallery").textContent = $("gen-words").textContent = "";
    $("gen-heatmap").hidden = $("gen-words-hint").hidden = true;
    let path = "/v1/images/generations";
    if (mode !== "text") {
      path = "/v1/images/edits";
      request.image = await dataUrl(currentImage().blob);
      delete request.size; // edits keep the input image's size
      if (mode === "img2img") request.strength = Number($("gen-strength").value);
      else {
        if ($("gen-mask").dataset.painted !== "true") throw new Error("Paint the mask first.");
        request.mask = maskCanvas.toDataURL("image/png");
      }
    }
    await streamEvents(path, request, generation.signal, (data) => {
      // Generations stream image_generation.* events, edits image_edit.* (OpenAI's names).
      const kind = data.type.slice(data.type.indexOf(".") + 1);
      if (kind === "progress") {
        $("gen-progress").value = data.percent;
        $("gen-percent").textContent = `${data.percent}% (step ${data.step} of ${data.total})`;
      } else if (kind === "partial_image") {
        $("gen-image").src = `data:image/png;base64,${data.b64_json}`;
        $("gen-image").hidden = false;
      } else if (kind === "completed" && data.data) {
        // One completed event per image (OpenAI's shape); the last also carries them all.
        const [image] = data.data;
        lastGenerated = image;
        $("gen-image").src = `data:image/png;base64,${image.b64_json}`;
        $("gen-image").hidden = false;
        $("gen-progress").value = 100;
        $("gen-percent").textContent = "100%";
        $("gen-seed-used").textContent = `Seed used: ${image.seed}${
          image.clip_score === undefined ? "" : ` (CLIP score ${image.clip_score.toFixed(3)})`
        }`;
        $("gen-reuse").hidden = $("gen-keep").hidden = false;
        if (image.attention) {
          $("gen-words").textContent = "";
          const words = image.attention.words.map((w) => ({ token: w.token }));
          const url = `data:image/png;base64,${image.b64_json}`;
          explainedWords($("gen-words"), words, image.attention, $("gen-heatmap"), url);
          $("gen-words-hint").hidden = false;
        }
        for (const other of data.data.slice(1)) {
          const fig = document.createElement("figure");
          fig.innerHTML =
            '<img class="pixel" alt="Another generated image"><figcaption></figcaption>';
          fig.firstChild.src = `data:image/png;base64,${other.b64_json}`;
          fig.lastChild.textContent = `seed ${other.seed}${
            other.clip_score === undefined ? "" : `, CLIP score ${other.clip_score.toFixed(3)}`
          }`;
          $("gen-gallery").append(fig);
        }
        // Every stage's time, whichever the generator: "unet_ms" → "unet 120 ms".
        const stages = Object.entries(data.timings).filter(([k, v]) =>
          k !== "total_ms" && (Array.isArray(v) ? v.length > 0 : v > 0)
        ).map(
          ([k, v]) =>
            `${k.replace(/_ms$/, "").replaceAll("_", " ")} ${
              (Array.isArray(v) ? v.reduce((a, b) => a + b, 0) : v).toFixed(0)
            } ms`,
        );
        const how = data.loop ? `${data.loop} loop` : data.decoder;
        showTiming(path, `${data.backend} (${how}) · ${stages.join(" · ")} · ${data.steps} steps`);
      }
    });
  }).finally(() => {
    $("gen-cancel").disabled = true;
    $("gen-go").disabled = false;
  });
});
$("gen-cancel").addEventListener("click", () => generation?.abort());
$("gen-reuse").addEventListener("click", () => $("gen-seed").value = lastGenerated.seed);
$("gen-keep").addEventListener(
  "click",
  () =>
    addImage(fromBase64(lastGenerated.b64_json), { name: `generated, seed ${lastGenerated.seed}` }),
);

// ---------------------------------------------------------------- chat

// The conversation is kept here and sent whole each turn (the API is stateless); the chosen image
// goes with a user message whenever it differs from the last one sent.
let conversation = [];
let sentImage = null;
let sentImages = 0; // maps are over one image: asked for while the conversation holds one
let chatting = null;
function say(role, text) {
  const p = document.createElement("p");
  p.className = `msg ${role}`;
  p.textContent = `${role === "user" ? "You" : "Model"}: ${text}`;
  $("chat-log").append(p);
  return p;
}
function showSuggestions() {
  $("chat-suggestions").textContent = "";
  for (const qa of images[current]?.questions?.slice(0, 4) ?? []) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip";
    b.textContent = qa.question;
    b.title = `Expected answer: ${qa.answer}`;
    b.addEventListener("click", () => {
      $("chat-input").value = qa.question;
      $("chat-form").requestSubmit();
    });
    $("chat-suggestions").append(b);
  }
}
$("chat-clear").addEventListener("click", () => {
  conversation = [];
  sentImage = null;
  sentImages = 0;
  $("chat-log").textContent = "";
  $("chat-heatmap").hidden = $("chat-maps-hint").hidden = true;
});
$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  let reply = null;
  guarded($("chat-error"), async () => {
    const text = $("chat-input").value.trim();
    const image = images[current];
    const content = [];
    if (image && image !== sentImage) {
      content.push({ type: "image_url", image_url: { url: await dataUrl(image.blob) } });
    }
    if (text) content.push({ type: "text", text });
    if (!content.length) throw new Error("Write a message or choose an image first.");
    conversation.push({ role: "user", content });
    const imageCount = sentImages + (content[0].type === "image_url" ? 1 : 0);
    const model = $("chat-model").value;
    const explain = imageCount === 1 &&
      models.find((m) => m.id === model)?.capabilities.includes("attention-maps");
    say("user", `${content[0].type === "image_url" ? "(image) " : ""}${text}`);
    reply = say("assistant", "");
    chatting = new AbortController();
    $("chat-stop").disabled = false;
    $("chat-send").disabled = true;
    let answer = "";
    const tokens = [], maps = { rows: 0, cols: 0, words: [] };
    const request = {
      model,
      messages: conversation,
      stream: true,
      stream_options: { include_usage: true },
      ...(explain ? { return_attention: true, logprobs: true } : {}),
    };
    try {
      await streamEvents("/v1/chat/completions", request, chatting.signal, (chunk) => {
        const choice = chunk.choices?.[0];
        const delta = choice?.delta?.content;
        if (delta) {
          answer += delta;
          reply.textContent = `Model: ${answer}`;
        }
        tokens.push(...choice?.logprobs?.content ?? []);
        if (choice?.attention) {
          Object.assign(maps, { rows: choice.attention.rows, cols: choice.attention.cols });
          maps.words.push(...choice.attention.words);
        }
        if (chunk.usage) {
          const t = chunk.timings;
          showTiming(
            "/v1/chat/completions",
            `${chunk.usage.prompt_tokens} prompt + ${chunk.usage.completion_tokens} answer tokens · prefill ${
              t.prefill_ms.toFixed(0)
            } ms · ${t.tokens_per_second.toFixed(0)} tokens/s`,
          );
        }
      });
    } catch (e) {
      conversation.pop(); // the turn did not complete; send it again or change it
      throw e;
    }
    // A model may end its turn immediately (the tiny ones were trained on single questions, and
    // a later turn of a conversation sometimes gets nothing back): say so rather than show "".
    if (!answer.trim()) reply.textContent = "Model: (no answer)";
    else if (maps.words.length) {
      // The answer as words, each showing where the model looked as it chose it.
      reply.textContent = "Model: ";
      explainedWords(reply, tokens, maps, $("chat-heatmap"), (sentImage ?? image).url);
      $("chat-maps-hint").hidden = false;
    }
    if (image && image !== sentImage) sentImages++;
    if (image) sentImage = image;
    conversation.push({ role: "assistant", content: answer });
  }, "Stopped.").finally(() => {
    $("chat-stop").disabled = true;
    $("chat-send").disabled = false;
  });
});
$("chat-stop").addEventListener("click", () => chatting?.abort());

// Every listener is in place: said for scripts and tests that drive the page (a drop or paste
// sent before this would reach no handler).
document.documentElement.dataset.ready = "true";
