"""Export vit-gpt2-tiny in the layout of the public `Xenova/vit-gpt2-image-captioning` export.

    /usr/bin/python3 training/export_vit_gpt2.py
"""
import argparse
import base64
import json
import os

import onnx
import torch

from caption_model import MEAN, STD, pixels
from common import World, WordTokenizer, vocabulary
from onnx_export import export, n_parameters, write_fixture, write_json
from vit_gpt2_model import DecoderExport, EncoderExport, VitGpt2, VitGpt2Config


@torch.no_grad()
def greedy(model, tok, images, max_length=32):
    enc = model.encoder(pixels(images))
    B = len(images)
    ids = torch.full((B, 1), model.c.bos_token_id, dtype=torch.long)
    past, out, done = model.empty_past(B), [[] for _ in range(B)], torch.zeros(B, dtype=torch.bool)
    for _ in range(max_length):
        logits, past, _ = model.decode(ids, enc, past)
        ids = logits[:, -1].argmax(-1, keepdim=True)
        for i, t in enumerate(ids[:, 0].tolist()):
            if not done[i] and t != model.c.eos_token_id:
                out[i].append(tok.tokens[t])
        done |= ids[:, 0] == model.c.eos_token_id
        if done.all():
            break
    return [" ".join(w) for w in out]


def export_onnx(model: VitGpt2, out: str) -> None:
    """encoder_model.onnx and decoder_model_merged.onnx, with the public export's names."""
    c = model.c
    grid = c.image_size // c.patch_size
    export(EncoderExport(model), (torch.zeros(1, 3, c.image_size, c.image_size),), f"{out}/onnx/encoder_model.onnx",
           ["pixel_values"], ["last_hidden_state"], {"pixel_values": {0: "batch_size"}})
    B, hd, S = 2, c.n_embd // c.n_head, grid * grid + 1
    past_names = [f"past_key_values.{i}.{kv}" for i in range(c.n_layer) for kv in ("key", "value")]
    present_names = [f"present.{i}.{kv}" for i in range(c.n_layer) for kv in ("key", "value")]
    past = [torch.zeros(B, c.n_head, 3, hd) for _ in past_names]
    dyn = {"input_ids": {0: "batch_size", 1: "sequence_length"}, "encoder_hidden_states": {0: "batch_size"},
           **{n: {0: "batch_size", 2: "past_sequence_length"} for n in past_names},
           **{n: {0: "batch_size", 2: "total_sequence_length"} for n in present_names},
           "logits": {0: "batch_size", 1: "sequence_length"}, "cross_attentions": {0: "batch_size", 1: "sequence_length"}}
    path = f"{out}/onnx/decoder_model_merged.onnx"
    export(DecoderExport(model), (torch.zeros(B, 2, dtype=torch.long), torch.zeros(B, S, c.enc_width), *past), path,
           ["input_ids", "encoder_hidden_states", *past_names], ["logits", *present_names, "cross_attentions"], dyn)
    # The public merged decoder takes `use_cache_branch` to pick its with/without-past branch. Ours
    # has one branch (a past of length 0 works), so the input is declared and left unused.
    g = onnx.load(path)
    g.graph.input.append(onnx.helper.make_tensor_value_info("use_cache_branch", onnx.TensorProto.BOOL, [1]))
    onnx.save(g, path)


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="data/runs/vit-gpt2-tiny")
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--out", default="models/embedded/vit-gpt2-tiny")
    ap.add_argument("--golden", default="tests/fixtures/vit-gpt2-tiny.golden.json")
    return ap.parse_args()


def write_configs(c: VitGpt2Config, tok: WordTokenizer, out: str) -> None:
    """manifest.json, config.json, generation_config.json, preprocessor_config.json and the tokenizer files."""
    write_json(out, "manifest.json", {
        "id": "vit-gpt2-tiny", "family": "captioning",
        "description": "ViT encoder + GPT-2-style decoder with cross-attention, trained by this project on the shapes world",
        "capabilities": ["captioning", "attention-maps"],
        "modalities": {"input": ["image"], "output": ["text"]},
        "files": {"encoder": "onnx/encoder_model.onnx", "decoder": "onnx/decoder_model_merged.onnx"},
        "license": "MIT", "preload": True,
        "settings": {"architecture": "vision-encoder-decoder", "grid": c.image_size // c.patch_size},
    })
    write_json(out, "config.json", {
        "architectures": ["VisionEncoderDecoderModel"], "model_type": "vision-encoder-decoder",
        "decoder_start_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id, "pad_token_id": c.eos_token_id,
        "encoder": {"model_type": "vit", "image_size": c.image_size, "patch_size": c.patch_size,
                    "hidden_size": c.enc_width, "num_hidden_layers": c.enc_layers,
                    "num_attention_heads": c.enc_heads, "intermediate_size": 4 * c.enc_width, "num_channels": 3},
        "decoder": {"model_type": "gpt2", "add_cross_attention": True, "n_embd": c.n_embd, "n_layer": c.n_layer,
                    "n_head": c.n_head, "n_positions": c.n_positions, "vocab_size": c.vocab_size,
                    "bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id},
    })
    write_json(out, "generation_config.json", {"bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id,
                                               "decoder_start_token_id": c.bos_token_id, "max_length": c.n_positions})
    write_json(out, "preprocessor_config.json", {
        "feature_extractor_type": "ViTFeatureExtractor", "image_processor_type": "ViTImageProcessor",
        "do_resize": True, "size": {"height": c.image_size, "width": c.image_size}, "resample": 2,
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [MEAN] * 3, "image_std": [STD] * 3,
    })
    write_json(out, "tokenizer.json", tok.tokenizer_json())
    write_json(out, "tokenizer_config.json", tok.tokenizer_config())


def model_card(model: VitGpt2, state: dict, exact: float) -> str:
    c = model.c
    grid, n_params = c.image_size // c.patch_size, n_parameters(model)
    sat = c.stem == "sat"
    stem = ("- Encoder: the ViT paper's hybrid: sat-soft-tiny's encoder CNN (four convolutions, its trained\n"
            "  weights, frozen: the public model's ViT came pretrained) gives one token per 8 × 8 cell; then\n"
            f"  {c.enc_layers} transformer layers of width {c.enc_width}." if sat else
            f"- Encoder: linear {c.patch_size} px patches, {c.enc_layers} transformer layers of width {c.enc_width}.")
    data = ("canonical captions of fresh scenes, every batch drawn by `training/world.py` (held-out\n  pairs never)"
            if sat else "canonical captions of 20,000 training scenes")
    init = " --init-encoder models/embedded/sat-soft-tiny/onnx/encoder_model.onnx" if sat else ""
    return f"""# vit-gpt2-tiny — ViT encoder + GPT-2-style decoder

The modern captioning design: a ViT reads {grid} × {grid} patches ({c.patch_size} px) of the 64 × 64 image; a
GPT-2-style decoder ({c.n_layer} layers, width {c.n_embd}, {c.n_head} heads) writes the caption, attending to
the patch states through cross-attention in every layer. Trained by this project on the shapes
world; in the file layout, config and ONNX input/output names of the public
`Xenova/vit-gpt2-image-captioning` export (encoder_model.onnx, decoder_model_merged.onnx with
past_key_values / present and use_cache_branch), plus a `cross_attentions` output (the mean over
layers and heads) that explains each word.

- Parameters: {n_params / 1e6:.2f} M; word-level vocabulary of {c.vocab_size} tokens.
{stem}
- Training: {data}, Adam, lr 1e-3 with warm-up and cosine decay, batch {state.get('batch', 32)},
  {state['step']} steps on 2 CPU cores.
- Exact-match greedy captions on 200 test images at export: {exact:.1%}.
- Reproduce: `/usr/bin/python3 training/train_caption.py --kind vit-gpt2 --steps {state['step']}{init} && /usr/bin/python3 training/export_vit_gpt2.py`
  (the log of every run: `training/runs/vit-gpt2-tiny.md`).
"""


def main():
    args = parse_args()
    state = torch.load(f"{args.run}/last.pt", map_location="cpu")
    c = VitGpt2Config(**state["config"])
    model = VitGpt2(c).eval()
    model.load_state_dict(state["model"])
    tok = WordTokenizer(vocabulary(args.data), max_length=c.n_positions)
    out = args.out
    os.makedirs(f"{out}/onnx", exist_ok=True)
    write_configs(c, tok, out)
    export_onnx(model, out)

    test = World(args.data, "test")
    captions = greedy(model, tok, test.images[:200])
    write_fixture(args.golden, {"images_rgb_base64": [base64.b64encode(test.images[i].tobytes()).decode() for i in range(4)],
                                "greedy": captions[:4]}, indent=1)
    exact = sum(p == m["caption"] for p, m in zip(captions, test.meta[:200])) / 200
    open(f"{out}/README.md", "w").write(model_card(model, state, exact))
    print(json.dumps({"greedy": captions[:4], "exact_match_200": exact}, indent=1))


if __name__ == "__main__":
    main()
