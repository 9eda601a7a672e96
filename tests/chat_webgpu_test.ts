/**
 * vlm-xattn-tiny's decoder on our WGSL kernels (WebGPU) gives the same greedy tokens as its ONNX
 * export through ONNX Runtime, on the software adapter.
 */
import assert from "node:assert/strict";
import { resolveBackend } from "../core/backend.ts";
import { EMBEDDED_MODELS_DIR } from "../core/config.ts";
import { SessionRegistry } from "../core/sessions.ts";
import { type ChatMessage, ChatPipeline, GREEDY } from "../models/chat/pipeline.ts";
import { scanModels } from "../models/manifest.ts";
import { questions, renderScene, rng, sampleScenes } from "../world/world.ts";
import { needsGpu } from "./gpu.ts";

const dir = Deno.env.get("MM_TEST_XATTN_DIR") ?? EMBEDDED_MODELS_DIR;
const entry = (await scanModels([dir])).find((e) => e.manifest.id === "vlm-xattn-tiny");
if (!entry) console.log("chat on WebGPU: vlm-xattn-tiny is not installed; skipped");
const gpu = needsGpu("chat on WebGPU");

Deno.test({
  name: "vlm-xattn-tiny: WGSL-kernel decoder and ONNX Runtime give the same greedy tokens",
  ignore: !entry || gpu.ignore,
  fn: async () => {
    const gpu = await ChatPipeline.load(
      entry!,
      { sessions: new SessionRegistry(await resolveBackend("webgpu")) },
    );
    const options = { ...GREEDY, maxTokens: 24 };
    const scenes = sampleScenes({ split: "test", count: 2, seed: 9 });
    for (const [i, scene] of scenes.entries()) {
      const image = { width: 64, height: 64, data: renderScene(scene, i) };
      for (const qa of questions(scene, rng(i)).slice(-2)) { // background and describe
        const messages: ChatMessage[] = [{
          role: "user",
          content: [{ type: "image", image }, { type: "text", text: qa.question }],
        }];
        const ours = await gpu.chat(messages, options);
        const ort = await gpu.chat(messages, { ...options, kernels: false });
        assert.equal(ours.decoder, "wgsl-kernels");
        assert.equal(ort.decoder, "onnxruntime");
        assert.deepEqual(
          ours.tokens.map((t) => t.token),
          ort.tokens.map((t) => t.token),
          qa.question,
        );
      }
    }
    const textOnly: ChatMessage[] = [{
      role: "user",
      content: [{ type: "text", text: "how many shapes are there?" }],
    }];
    const a = await gpu.chat(textOnly, options),
      b = await gpu.chat(textOnly, { ...options, kernels: false });
    assert.equal(a.text, b.text, "no image: a zero state on both paths");
    // Log-probabilities read the logits back: they agree too.
    const lp = await gpu.chat(textOnly, { ...options, topLogprobs: 2 });
    const lpOrt = await gpu.chat(textOnly, { ...options, topLogprobs: 2, kernels: false });
    lp.tokens.forEach((t, j) => assert.ok(Math.abs(t.logprob - lpOrt.tokens[j].logprob) < 1e-3));
  },
});
