"""Export the chat models.

vlm-tiny (method A) in the layout and ONNX names of the public SmolVLM / Idefics3 exports that
@huggingface/transformers runs (HuggingFaceTB/SmolVLM-256M-Instruct):
    onnx/vision_encoder.onnx        pixel_values [B, N, 3, H, W], pixel_attention_mask [B, N, H, W]
                                    -> image_features [B*N, 16, hidden]
    onnx/embed_tokens.onnx          input_ids -> inputs_embeds
    onnx/decoder_model_merged.onnx  inputs_embeds, attention_mask, position_ids,
                                    past_key_values.{i}.key/value -> logits, present.{i}.key/value,
                                    attentions [B, layers, heads, T, total] (self-attention
                                    probabilities, for the maps of return_attention)
    config.json, preprocessor_config.json, processor_config.json, generation_config.json,
    tokenizer.json, tokenizer_config.json (with the chat template), special_tokens_map.json

vlm-xattn-tiny (method B, no public ONNX layout exists for the Llama 3.2 Vision family in
transformers.js; this one follows the same naming):
    onnx/vision_encoder.onnx        pixel_values [B, N, 3, H, W] -> cross_attention_states [B, N*64, hidden]
    onnx/decoder_model_merged.onnx  input_ids, attention_mask, position_ids, cross_attention_states,
                                    past_key_values.{i}.key/value -> logits, present.{i}.key/value,
                                    cross_attentions [B, cross layers, heads, T, image tokens]
    model.safetensors               the decoder's weights, for the WebGPU path's own kernels

    /usr/bin/python3 training/export_vlm.py --run data/runs/vlm-tiny --out models/embedded/vlm-tiny

Every export also writes the golden fixture tests/fixtures/<id>.golden.json (fixed inputs and
PyTorch's outputs, which tests/golden_test.ts checks ONNX Runtime against). `--golden-only`
writes just that fixture for a model already exported, and touches nothing in --out: from the
run (--run, with its --clip) when given, else from the shipped files themselves (the decoder
from model.safetensors where there is one, the rest from the ONNX initializers).
"""
import argparse
import base64
import json
import os

import numpy as np
import torch
import torch.nn as nn

import world
from clip_model import MEAN, STD, Clip, ClipConfig, load_clip, pixels
from common import SPECIAL, vocabulary
from onnx_export import (card_scores, export, golden_values, load_onnx_weights, load_safetensors, n_parameters,
                         save_safetensors, write_fixture, write_json)
from vlm_model import CHAT, ChatTokenizer, Vlm, VlmConfig, prompt_text

CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


class VisionA(nn.Module):
    def __init__(self, clip: Clip, model: Vlm):
        super().__init__()
        self.vision, self.connector = clip.vision, model.image

    def forward(self, pixel_values, pixel_attention_mask):
        B, N = pixel_values.shape[:2]
        x = pixel_values.reshape(B * N, *pixel_values.shape[2:])
        # The mask marks real (unpadded) pixels; at one 64 x 64 tile per image it is all ones,
        # and multiplying keeps it an input of the graph, as in the public exports.
        x = x * pixel_attention_mask.reshape(B * N, 1, *pixel_attention_mask.shape[2:]).to(x.dtype)
        patches = self.vision(x)[2][:, 1:]
        return self.connector(patches)


class VisionB(nn.Module):
    def __init__(self, clip: Clip, model: Vlm):
        super().__init__()
        self.vision, self.adapter = clip.vision, model.image

    def forward(self, pixel_values):
        B, N = pixel_values.shape[:2]
        patches = self.vision(pixel_values.reshape(B * N, *pixel_values.shape[2:]))[2][:, 1:]
        return self.adapter(patches).reshape(B, N * patches.shape[1], -1)


class Embed(nn.Module):
    def __init__(self, model: Vlm):
        super().__init__()
        self.embed = model.decoder.embed

    def forward(self, input_ids):
        return self.embed(input_ids)


class DecoderA(nn.Module):
    """`attentions`: the self-attention probabilities as a last output (ours; public exports have none)."""

    def __init__(self, model: Vlm, attentions: bool = True):
        super().__init__()
        self.decoder, self.attentions = model.decoder, attentions

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)]
        logits, presents, maps = self.decoder(inputs_embeds, attention_mask, position_ids, pairs, attentions=True)
        return (logits, *[t for kv in presents for t in kv], *([maps["self"]] if self.attentions else []))


class DecoderB(nn.Module):
    def __init__(self, model: Vlm):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, input_ids, attention_mask, position_ids, cross_attention_states, *past):
        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)]
        emb = self.decoder.embed(input_ids)
        logits, presents, maps = self.decoder(emb, attention_mask, position_ids, pairs, image=cross_attention_states,
                                              attentions=True)
        return (logits, *[t for kv in presents for t in kv], maps["cross"])


def graphs(model: Vlm, clip: Clip, c: VlmConfig, kind: str, attentions: bool = True) -> dict:
    """file -> the export() arguments of each ONNX graph of the layout (module, example inputs,
    input names, output names, dynamic axes); without `attentions`, method A's decoder has only the
    public layout's outputs."""
    L, kvh, hd = c.layers, c.kv_heads, c.head_dim
    past_names = [f"past_key_values.{i}.{w}" for i in range(L) for w in ("key", "value")]
    present_names = [f"present.{i}.{w}" for i in range(L) for w in ("key", "value")]
    past = [torch.zeros(1, kvh, 3, hd) for _ in range(2 * L)]
    dyn_past = {n: {0: "batch_size", 2: "past_sequence_length"} for n in past_names}
    dyn_present = {n: {0: "batch_size", 2: "total_sequence_length"} for n in present_names}
    S = clip.config.image_size
    px = torch.zeros(1, 1, 3, S, S)
    mask = torch.ones(1, 5, dtype=torch.long)
    pos = torch.arange(3, 5)[None]
    if kind == "unified":
        return {
            "vision_encoder.onnx": (
                VisionA(clip, model), (px, torch.ones(1, 1, S, S, dtype=torch.bool)),
                ["pixel_values", "pixel_attention_mask"], ["image_features"],
                {"pixel_values": {0: "batch_size", 1: "num_images"}, "pixel_attention_mask": {0: "batch_size", 1: "num_images"}}),
            "embed_tokens.onnx": (
                Embed(model), (torch.zeros(1, 2, dtype=torch.long),), ["input_ids"],
                ["inputs_embeds"], {"input_ids": {0: "batch_size", 1: "sequence_length"}}),
            "decoder_model_merged.onnx": (
                DecoderA(model, attentions), (torch.zeros(1, 2, c.hidden), mask, pos, *past),
                ["inputs_embeds", "attention_mask", "position_ids", *past_names],
                ["logits", *present_names, *(["attentions"] if attentions else [])],
                {"inputs_embeds": {0: "batch_size", 1: "sequence_length"},
                 "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
                 "position_ids": {0: "batch_size", 1: "sequence_length"}, "logits": {0: "batch_size", 1: "sequence_length"},
                 "attentions": {0: "batch_size", 3: "sequence_length", 4: "total_sequence_length"},
                 **dyn_past, **dyn_present}),
        }
    xs = torch.zeros(1, c.image_grid ** 2, c.hidden)
    return {
        "vision_encoder.onnx": (
            VisionB(clip, model), (px,), ["pixel_values"], ["cross_attention_states"],
            {"pixel_values": {0: "batch_size", 1: "num_images"}, "cross_attention_states": {0: "batch_size", 1: "image_tokens"}}),
        "decoder_model_merged.onnx": (
            DecoderB(model), (torch.zeros(1, 2, dtype=torch.long), mask, pos, xs, *past),
            ["input_ids", "attention_mask", "position_ids", "cross_attention_states", *past_names],
            ["logits", *present_names, "cross_attentions"],
            {"input_ids": {0: "batch_size", 1: "sequence_length"},
             "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
             "position_ids": {0: "batch_size", 1: "sequence_length"},
             "cross_attention_states": {0: "batch_size", 1: "image_tokens"},
             "logits": {0: "batch_size", 1: "sequence_length"},
             "cross_attentions": {0: "batch_size", 3: "sequence_length", 4: "image_tokens"},
             **dyn_past, **dyn_present}),
    }


def export_model(model: Vlm, clip: Clip, c: VlmConfig, kind: str, tok: ChatTokenizer, out: str,
                 attentions: bool = True) -> None:
    """The ONNX files and the configs of either layout (not the manifest or the card); `attentions`
    False: method A's decoder as public exports have it, without its attention output."""
    os.makedirs(f"{out}/onnx", exist_ok=True)
    write = lambda name, obj: write_json(out, name, obj)

    S, patch = clip.config.image_size, clip.config.patch_size
    for name, (module, example, inputs, outputs, dynamic) in graphs(model, clip, c, kind, attentions).items():
        export(module, example, f"{out}/onnx/{name}", inputs, outputs, dynamic)
    if kind == "xattn":
        save_safetensors(model.decoder.state_dict(), f"{out}/model.safetensors")

    eou, image = tok.ids["<end_of_utterance>"], tok.ids["<image>"]
    text_config = {"model_type": "llama", "hidden_size": c.hidden, "intermediate_size": c.intermediate,
                   "num_hidden_layers": c.layers, "num_attention_heads": c.heads, "num_key_value_heads": c.kv_heads,
                   "head_dim": c.head_dim, "vocab_size": c.vocab_size,
                   # Rotary positions have no table: the limit is a choice (training saw ~60 tokens).
                   "max_position_embeddings": max(c.max_positions, 256),
                   "rope_theta": c.rope_theta, "rms_norm_eps": 1e-5, "hidden_act": "silu",
                   "bos_token_id": tok.ids["<|im_start|>"], "eos_token_id": eou, "pad_token_id": 1}
    vision_config = {"model_type": "clip_vision_model", "image_size": S, "patch_size": patch, "hidden_size": c.vision_width}
    if kind == "unified":
        write("config.json", {"architectures": ["Idefics3ForConditionalGeneration"], "model_type": "idefics3",
                              "image_token_id": image, "scale_factor": c.scale_factor, "text_config": text_config,
                              "vision_config": vision_config})
    else:
        cross = [i for i in range(c.layers) if (i + 1) % c.cross_every == 0]
        write("config.json", {"architectures": ["MmXattnForConditionalGeneration"], "model_type": "mm_xattn",
                              "image_token_id": image, "image_tokens_per_image": c.image_grid ** 2,
                              "text_config": {**text_config, "cross_attention_layers": cross},
                              "vision_config": vision_config})
    write("preprocessor_config.json", {
        "image_processor_type": "Idefics3ImageProcessor", "processor_class": "Idefics3Processor",
        "do_convert_rgb": True, "do_resize": True,
        "size": {"longest_edge": S}, "resample": 1, "do_image_splitting": False,
        "max_image_size": {"longest_edge": S}, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": MEAN.flatten().tolist(), "image_std": STD.flatten().tolist(),
        "do_pad": True,
    })
    write("processor_config.json", {"processor_class": "Idefics3Processor",
                                    "image_seq_len": c.image_tokens if kind == "unified" else 1})
    write("generation_config.json", {"bos_token_id": tok.ids["<|im_start|>"], "eos_token_id": eou, "pad_token_id": 1})
    write("tokenizer.json", tok.tokenizer_json())
    write("tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>",
        "pad_token": SPECIAL[1], "unk_token": SPECIAL[2], "model_max_length": c.max_positions,
        "additional_special_tokens": CHAT, "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,  # the world writes " , " apart
    })
    write("special_tokens_map.json", {"bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>",
                                      "pad_token": SPECIAL[1], "unk_token": SPECIAL[2],
                                      "additional_special_tokens": CHAT})


def load_run(run: str, clip_path: str, data: str):
    """The model, its tower and config from a training run (and the clip-tiny run it read)."""
    state = torch.load(f"{run}/last.pt", map_location="cpu")
    kind = state["kind"]
    c = VlmConfig(**state["config"])
    tok = ChatTokenizer(vocabulary(data))
    assert tok.tokens == state["vocab"], "the vocabulary changed since training"
    model = Vlm(c, kind, tok.ids["<image>"])
    clip, _ = load_clip(clip_path)
    # A run with --tune-tower saved its own tuned copy of the tower: that one is the encoder.
    tower = {k[len("tower."):]: v for k, v in state["model"].items() if k.startswith("tower.")}
    if tower:
        clip.vision.load_state_dict(tower)
    model.load_state_dict({k: v for k, v in state["model"].items() if not k.startswith("tower.")})
    model.eval(), clip.eval()
    return model, clip, c, kind, tok, state, tower


def load_export(out: str):
    """The same from an exported folder, for a model whose run is not kept: the configs and the
    tokenizer from its JSON files, the decoder from model.safetensors where there is one, every
    other weight from the ONNX initializers."""
    read = lambda name: json.load(open(f"{out}/{name}"))
    config = read("config.json")
    t = config["text_config"]
    kind = "unified" if config["model_type"] == "idefics3" else "xattn"
    v = config["vision_config"]
    S, patch = v["image_size"], v["patch_size"]
    import onnx
    names = {i.name: tuple(i.dims) for i in onnx.load(f"{out}/onnx/vision_encoder.onnx").graph.initializer}
    c = VlmConfig(vocab_size=t["vocab_size"], hidden=t["hidden_size"], layers=t["num_hidden_layers"],
                  heads=t["num_attention_heads"], kv_heads=t["num_key_value_heads"],
                  intermediate=t["intermediate_size"], max_positions=read("tokenizer_config.json")["model_max_length"],
                  rope_theta=t["rope_theta"], vision_width=v["hidden_size"], image_grid=S // patch,
                  **({"scale_factor": config["scale_factor"]} if kind == "unified" else
                     {"cross_every": t["cross_attention_layers"][0] + 1,
                      "adapter_pos_out": "adapter.pos_out" in names}))
    # The shipped word -> id map is all that encoding needs (a word listed twice in training's
    # vocabulary has its later id there, as ChatTokenizer.ids has).
    tok = ChatTokenizer([])
    tok.ids = read("tokenizer.json")["model"]["vocab"]
    tok.tokens = [None] * c.vocab_size
    for w, i in tok.ids.items():
        tok.tokens[i] = w
    model = Vlm(c, kind, tok.ids["<image>"])
    # The tower's layout from the vision graph's names: the stem (a "sat" CNN, a "conv" stack or a
    # linear patch embedding) and the number of blocks.
    stem = ("linear" if "vision.patch.weight" in names else
            "sat" if names["vision.patch.0.weight"][-1] == 4 else "conv")
    layers = len({n.split(".")[2] for n in names if n.startswith("vision.blocks.")})
    clip = Clip(ClipConfig(image_size=S, patch_size=patch, vision_width=v["hidden_size"], vision_layers=layers,
                           stem=stem))
    model.eval(), clip.eval()
    files = graphs(model, clip, c, kind)
    if kind == "xattn":
        model.decoder.load_state_dict(load_safetensors(f"{out}/model.safetensors"))
        del files["decoder_model_merged.onnx"]
    for name, (module, example, inputs, outputs, dynamic) in files.items():
        load_onnx_weights(module, example, f"{out}/onnx/{name}", inputs, outputs, dynamic)
    return model, clip, c, kind, tok


@torch.no_grad()
def write_golden(model: Vlm, clip: Clip, c: VlmConfig, kind: str, tok: ChatTokenizer, model_id: str, path: str):
    """Golden fixture: a fixed scene and question, and PyTorch's outputs for every ONNX graph: the
    vision encoder on the image, embed_tokens on the prompt (method A), the decoder's prefill of
    the prompt (with the image features in the <image> slots, or as cross-attention states) from an
    empty cache, and one decode step of the greedy next token on the prefill's cache."""
    r = np.random.default_rng(18)
    scene = world.sample_scene(r, count=2)
    image = world.render(scene, r)
    question = "how many shapes are there?"
    S = clip.config.image_size
    px = pixels(image[None])[None]  # [1, 1, 3, S, S]
    image_id = tok.ids["<image>"]
    prompt = prompt_text(question, kind, c.image_tokens)
    ids = torch.tensor([tok.encode_plain(prompt)])
    T = ids.shape[1]
    empty = [torch.zeros(1, c.kv_heads, 0, c.head_dim) for _ in range(2 * c.layers)]
    mask, pos = torch.ones(1, T, dtype=torch.long), torch.arange(T)[None]
    step_mask, step_pos = torch.ones(1, T + 1, dtype=torch.long), torch.tensor([[T]])
    out = {"model": model_id, "kind": kind, "prompt": prompt, "image_rgb_base64":
           base64.b64encode(image.tobytes()).decode(), "image_size": S, "input_ids": ids[0].tolist(),
           "image_token_id": image_id}
    if kind == "unified":
        feats = VisionA(clip, model)(px, torch.ones(1, 1, S, S, dtype=torch.bool))  # [1, 16, hidden]
        embeds = Embed(model)(ids)
        merged = embeds.clone()
        merged[ids == image_id] = feats.reshape(-1, c.hidden)
        prefill = DecoderA(model)(merged, mask, pos, *empty)
        out["image_features"], out["inputs_embeds"] = golden_values(feats), golden_values(embeds, 1024)
    else:
        feats = VisionB(clip, model)(px)  # [1, 64, hidden]
        prefill = DecoderB(model)(ids, mask, pos, feats, *empty)
        out["cross_attention_states"] = golden_values(feats)
    logits, presents, maps = prefill[0], prefill[1:-1], prefill[-1]
    last = logits[0, -1].clone()
    last[image_id] = -float("inf")  # as the service: never a new image slot
    nxt = int(last.argmax())
    if kind == "unified":
        step = DecoderA(model)(Embed(model)(torch.tensor([[nxt]])), step_mask, step_pos, *presents)
    else:
        step = DecoderB(model)(torch.tensor([[nxt]]), step_mask, step_pos, feats, *presents)
    out.update({"logits": golden_values(logits), "logits_last": golden_values(logits[0, -1]),
                "present_last_value": golden_values(presents[-1]), "next_token": nxt,
                "attentions_last": golden_values(maps[0, :, :, -1]),
                "step_logits": golden_values(step[0])})
    write_fixture(path, out)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="the training run (required unless --golden-only)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--clip", default="data/runs/clip-tiny/last.pt")
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--scores", help="the table `deno task eval chat` printed, for the model card")
    ap.add_argument("--golden", help="the golden fixture to write (default: tests/fixtures/<id>.golden.json)")
    ap.add_argument("--golden-only", action="store_true",
                    help="write only the golden fixture of the model in --out (from --run if given, else "
                         "from --out's own files); nothing in --out changes")
    ap.add_argument("--reexport", action="store_true",
                    help="export the model in --out again from its own files (the ONNX graphs, configs and "
                         "golden fixture; the manifest and card stay), for a layout change when its run is "
                         "not kept")
    return ap


def write_manifest(model_id: str, kind: str, out: str) -> None:
    files = ({"vision": "onnx/vision_encoder.onnx", "embed": "onnx/embed_tokens.onnx",
              "decoder": "onnx/decoder_model_merged.onnx"} if kind == "unified" else
             {"vision": "onnx/vision_encoder.onnx", "decoder": "onnx/decoder_model_merged.onnx",
              "weights": "model.safetensors"})
    write_json(out, "manifest.json", {
        "id": model_id, "family": "chat",
        "description": ("Multimodal chat, unified embedding decoder (image patches projected into the token "
                        "stream), SmolVLM layout, trained by this project on the shapes world") if kind == "unified" else
                       ("Multimodal chat, cross-attention decoder (text queries attend to image keys/values, "
                        "Llama 3.2 Vision design), trained by this project on the shapes world"),
        "capabilities": ["chat", "visual-question-answering", "attention-maps"],
        "modalities": {"input": ["text", "image"], "output": ["text"]},
        "files": files, "license": "MIT", "preload": True,
        "settings": {"architecture": "unified" if kind == "unified" else "cross-attention"},
    })


def model_card(model_id: str, c: VlmConfig, kind: str, state: dict, tower: dict, n_params: int, clip_path: str,
               scores: str) -> str:
    """README.md: the design (method A or B), the training and how to reproduce it, the QA scores."""
    how = "tuned with the decoder" if tower else "frozen"
    pos_out = " (a second table\n  after the adapter's norm)" if c.adapter_pos_out else ""
    design = (f"""- Method A, unified embedding decoder (SmolVLM / Idefics3 design and ONNX layout): clip-tiny's
  vision tower ({how}) gives 8 x 8 patch features; a 2 x 2 pixel shuffle makes 16 tokens of 4x
  the width, a linear connector projects them to the LM's width, and they take the places of the
  16 `<image>` tokens the processor writes into the prompt. The decoder reads one sequence.""" if kind == "unified" else
              f"""- Method B, cross-modality attention (Llama 3.2 Vision design): clip-tiny's vision tower ({how})
  gives 8 x 8 patch features, projected to the decoder's width with learned positions{pos_out}; the prompt
  keeps one `<image>` marker. After every {"" if c.cross_every == 1 else f"{c.cross_every}nd "}decoder layer a gated cross-attention layer
  (tanh gates from {c.gate_init:g}) lets the text's queries attend to the image's keys and values.""")
    schedule = state.get("steps", state["step"])  # the cosine schedule's length
    stopped = f" (stopped at step {state['step']} of a {schedule}-step schedule)" if schedule > state["step"] else ""
    options = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (("tune_tower", state.get("tune_tower")),
                      ("cross_every", c.cross_every if kind != "unified" and c.cross_every != 2 else None),
                      ("gate_init", c.gate_init or None)) if v)
    options += " --adapter-pos-out" if c.adapter_pos_out else ""
    weights = ",".join(f"{k}={v:g}" for k, v in (state.get("kind_weights") or {}).items())
    options += f" --kind-weights {weights}" if weights else ""
    draw = f"by weight ({weights.replace(',', ', ')}; the others 1)" if weights else "uniformly"
    lr = state.get("lr", 2e-3)
    # A run that went on from an export (train_vlm.py --init-from) says which, and how to redo it.
    init = state.get("init_from")
    start = f", going on from the model `{init}` held before this export (every run of the chain: the log)" if init else ""
    options += f" --lr {lr:g}" if lr != 2e-3 else ""
    options += f" --init-from {init}" if init else ""
    return f"""# {model_id}

A multimodal chat model trained by this project on the shapes world (`../../../shared/WORLD.md`)
to answer its questions about an image.

{design}
- Decoder: Llama-style, {c.layers} layers, width {c.hidden}, {c.heads} query heads sharing {c.kv_heads} key/value heads
  (head size {c.head_dim}), RMSNorm, rotary positions, SwiGLU MLP ({c.intermediate}); a word-level vocabulary of
  {c.vocab_size} tokens with SmolVLM's chat tokens and chat template.
- Parameters trained: {n_params / 1e6:.2f} M{" and the vision tower's 0.8 M" if tower else " (the vision tower's 0.8 M frozen)"}.

## Training
- Fresh scenes for every batch from `training/world.py` (the second renderer; never the held-out
  pairs), one question per scene with its type drawn {draw} (colour, shape, count, position,
  existence, background, describe); the tower is clip-tiny's (`{clip_path}`).
- Loss on the answer tokens and the closing `<end_of_utterance>` only. AdamW, lr {lr:g} with
  warm-up and cosine decay, batch 64, {state['step']} steps on 2 CPU cores{stopped}{start}. Log: `training/runs/{model_id}.md`.
- Reproduce: `deno task world` (the vocabulary), `/usr/bin/python3 training/train_vlm.py --kind {kind}
  --out data/runs/{model_id} --clip {clip_path} --steps {schedule}{options}`, then
  `training/export_vlm.py --run data/runs/{model_id} --out models/embedded/{model_id} --clip {clip_path}`.

## Question answering (`deno task eval chat`, greedy, through the service's pipeline)

{scores}

## Limits
It knows the shapes world only. Rotary positions have no table: the config declares 256
positions, but training saw about 60 tokens, so long conversations leave what it learned.
"""


def main():
    ap = parser()
    args = ap.parse_args()
    model_id = os.path.basename(args.out.rstrip("/"))
    golden = args.golden or f"tests/fixtures/{model_id}.golden.json"

    if args.golden_only:
        loaded = load_run(args.run, args.clip, args.data)[:5] if args.run else load_export(args.out)
        write_golden(*loaded, model_id, golden)
        print(f"wrote {golden} ({model_id}, from {args.run or args.out})")
        return
    if args.reexport:
        loaded = load_export(args.out)
        export_model(*loaded, args.out)
        write_golden(*loaded, model_id, golden)
        print(f"exported {model_id} again from its own files")
        return
    if not args.run:
        ap.error("--run is required (unless --golden-only or --reexport)")
    model, clip, c, kind, tok, state, tower = load_run(args.run, args.clip, args.data)
    export_model(model, clip, c, kind, tok, args.out)
    write_golden(model, clip, c, kind, tok, model_id, golden)
    write_manifest(model_id, kind, args.out)
    n_params = n_parameters(model)
    card = model_card(model_id, c, kind, state, tower, n_params, args.clip, card_scores(args.scores, "chat"))
    open(f"{args.out}/README.md", "w").write(card)
    print(f"exported {model_id} ({kind}), {n_params / 1e6:.2f} M parameters, step {state['step']}")


if __name__ == "__main__":
    main()
