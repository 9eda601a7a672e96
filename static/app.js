// The playground calls the public API exactly as a user's front-end would.
const $ = (id) => document.getElementById(id);

const health = await fetch("/health").then((r) => r.json()).catch(() => null);
$("backend").textContent = health?.backend
  ? `Backend: ${health.backend} (${health.execution_provider}, ${health.device})`
  : `Backend: not ready (${health?.error?.message ?? "no answer"})`;

const models = (await fetch("/v1/models").then((r) => r.json()).catch(() => ({ data: [] }))).data;
for (const m of models.filter((m) => m.family === "captioning" && m.installed)) {
  $("cap-model").append(
    new Option(`${m.id}${m.capabilities.includes("attention-maps") ? " (attention)" : ""}`, m.id),
  );
}

for (const m of models.filter((m) => m.family === "chat" && m.installed)) {
  $("chat-model").append(new Option(`${m.id} — ${m.description.split(",")[0]}`, m.id));
}

$("image").addEventListener("change", () => {
  const file = $("image").files[0];
  if (!file) return;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
});

/** Posts the chosen image with `fields` as multipart; shows API errors in plain words. */
async function call(path, fields, errorEl) {
  errorEl.textContent = "";
  const file = $("image").files[0];
  if (!file) {
    errorEl.textContent = "Choose an image first.";
    return null;
  }
  const form = new FormData();
  form.append("image", file);
  for (const [k, v] of fields) form.append(k, v);
  const res = await fetch(path, { method: "POST", body: form });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    errorEl.textContent = `Error: ${body.error?.message ?? res.statusText}`;
    return null;
  }
  return { body, timing: res.headers.get("server-timing") ?? "n/a" };
}

/**
 * POSTs JSON to an endpoint that answers with Server-Sent Events and calls `onData` with each
 * event's parsed data (the closing "[DONE]" skipped); API errors become thrown Errors.
 */
async function streamEvents(path, body, signal, onData) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok) {
    const answer = await res.json().catch(() => ({}));
    throw new Error(answer.error?.message ?? res.statusText);
  }
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
      if (data && data !== "[DONE]") onData(JSON.parse(data));
    }
  }
}

$("clip-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("clip-results").textContent = "";
  const labels = $("clip-labels").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const out = await call("/v1/clip/classify", [
    ...labels.map((l) => ["candidate_labels[]", l]),
    ["hypothesis_template", $("clip-template").value],
  ], $("clip-error"));
  if (!out) return;
  for (const { label, score } of out.body.results) {
    const row = document.createElement("div");
    row.className = "row";
    row.innerHTML = `<span></span><div class="bar"></div><span>${(score * 100).toFixed(1)}%</span>`;
    row.firstChild.textContent = label;
    row.children[1].style.width = `${Math.max(1, score * 100)}%`;
    $("clip-results").append(row);
  }
  $("clip-timing").textContent = `Server-Timing: ${out.timing}`;
});

$("cap-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("cap-text").textContent = "Captioning…";
  $("cap-overlay").hidden = $("cap-hint").hidden = true;
  const model = $("cap-model").value;
  const attention = models.find((m) => m.id === model)?.capabilities.includes("attention-maps");
  const strategy = $("cap-strategy").value;
  const out = await call("/v1/captions", [
    ["model", model],
    ["strategy", strategy],
    ["return_attention", String(Boolean(attention))],
  ], $("cap-error"));
  $("cap-text").textContent = "";
  if (!out) return;
  const [caption] = out.body.captions;
  caption.tokens.forEach((t, i) => {
    const word = document.createElement("button");
    word.type = "button";
    word.className = "word";
    word.textContent = t.token;
    word.title = `log-probability ${t.logprob}`;
    const overlay = caption.attention?.words[i]?.overlay_png;
    if (overlay) {
      const show = () => {
        $("cap-overlay").src = `data:image/png;base64,${overlay}`;
        $("cap-overlay").hidden = false;
      };
      word.addEventListener("mouseenter", show);
      word.addEventListener("focus", show);
    }
    $("cap-text").append(word, " ");
  });
  $("cap-hint").hidden = !caption.attention;
  $("cap-timing").textContent = `Server-Timing: ${out.timing}`;
});

// Generate: SSE over fetch (POST), so progress, previews and the final image stream in; Cancel
// aborts the request, and the server stops the job between steps.
let generation = null;
$("gen-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("gen-error").textContent = $("gen-seed-used").textContent = $("gen-timing").textContent = "";
  $("gen-progress").value = 0;
  $("gen-percent").textContent = "0%";
  generation = new AbortController();
  $("gen-cancel").disabled = false;
  $("gen-go").disabled = true;
  const seed = $("gen-seed").value;
  const request = {
    prompt: $("gen-prompt").value,
    negative_prompt: $("gen-negative").value || undefined,
    num_inference_steps: Number($("gen-steps").value),
    guidance_scale: Number($("gen-guidance").value),
    scheduler: $("gen-scheduler").value,
    size: $("gen-size").value,
    seed: seed === "" ? undefined : Number(seed),
    stream: true,
    partial_images: 3,
  };
  try {
    await streamEvents("/v1/images/generations", request, generation.signal, (data) => {
      if (data.type === "image_generation.progress") {
        $("gen-progress").value = data.percent;
        $("gen-percent").textContent = `${data.percent}% (step ${data.step} of ${data.total})`;
      } else if (data.type === "image_generation.partial_image") {
        $("gen-image").src = `data:image/png;base64,${data.b64_json}`;
        $("gen-image").hidden = false;
      } else if (data.type === "image_generation.completed") {
        const [image] = data.data;
        $("gen-image").src = `data:image/png;base64,${image.b64_json}`;
        $("gen-image").hidden = false;
        $("gen-progress").value = 100;
        $("gen-percent").textContent = "100%";
        $("gen-seed-used").textContent =
          `Seed used: ${image.seed} (put it in Seed to get this image again)`;
        const t = data.timings;
        const unet = t.unet_ms.reduce((a, b) => a + b, 0);
        $("gen-timing").textContent = `Backend ${health?.backend ?? "?"} · text encoder ${
          t.text_encoder_ms.toFixed(0)
        } ms · UNet ${unet.toFixed(0)} ms (${data.steps} steps) · VAE ${
          t.vae_decoder_ms.toFixed(0)
        } ms`;
      } else if (data.error) {
        throw new Error(data.error.message);
      }
    });
  } catch (e) {
    $("gen-error").textContent = e.name === "AbortError" ? "Cancelled." : `Error: ${e.message}`;
  } finally {
    $("gen-cancel").disabled = true;
    $("gen-go").disabled = false;
  }
});
$("gen-cancel").addEventListener("click", () => generation?.abort());

// Chat: the conversation is kept here and sent whole each turn (the API is stateless); the image
// goes with the first user message. Tokens stream in over SSE; Stop aborts the request.
let conversation = [];
let chatting = null;
const readFile = (file) =>
  new Promise((resolve) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.readAsDataURL(file);
  });
function say(role, text) {
  const p = document.createElement("p");
  p.className = `msg ${role}`;
  p.textContent = `${role === "user" ? "You" : "Model"}: ${text}`;
  $("chat-log").append(p);
  return p;
}
$("chat-clear").addEventListener("click", () => {
  conversation = [];
  $("chat-log").textContent = "";
});
$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("chat-error").textContent = "";
  const text = $("chat-input").value.trim();
  const file = $("image").files[0];
  const content = [];
  if (conversation.length === 0 && file) {
    content.push({ type: "image_url", image_url: { url: await readFile(file) } });
  }
  if (text) content.push({ type: "text", text });
  if (!content.length) {
    $("chat-error").textContent = "Write a message or choose an image first.";
    return;
  }
  conversation.push({ role: "user", content });
  say("user", text || "(image)");
  const reply = say("assistant", "");
  chatting = new AbortController();
  $("chat-stop").disabled = false;
  $("chat-send").disabled = true;
  let answer = "";
  try {
    const request = {
      model: $("chat-model").value,
      messages: conversation,
      stream: true,
      stream_options: { include_usage: true },
    };
    await streamEvents("/v1/chat/completions", request, chatting.signal, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        answer += delta;
        reply.textContent = `Model: ${answer}`;
      }
      if (chunk.usage) {
        const t = chunk.timings;
        $("chat-timing").textContent = `Backend ${
          health?.backend ?? "?"
        } · ${chunk.usage.prompt_tokens} prompt + ${chunk.usage.completion_tokens} answer tokens · prefill ${
          t.prefill_ms.toFixed(0)
        } ms · ${t.tokens_per_second.toFixed(0)} tokens/s`;
      }
    });
    conversation.push({ role: "assistant", content: answer });
  } catch (e) {
    $("chat-error").textContent = e.name === "AbortError" ? "Stopped." : `Error: ${e.message}`;
    conversation.pop(); // the turn did not complete; send it again or change it
  } finally {
    $("chat-stop").disabled = true;
    $("chat-send").disabled = false;
  }
});
$("chat-stop").addEventListener("click", () => chatting?.abort());
