"""Export clip-tiny in the layout of the public `Xenova/clip-vit-base-patch32` export.

    /usr/bin/python3 training/export_clip.py --run data/runs/clip-tiny --out models/embedded/clip-tiny

Writes config.json, preprocessor_config.json, the tokenizer files, onnx/{text_model,vision_model,
model}.onnx, a model card (README.md, with zero-shot accuracy measured here) and a golden
fixture (inputs → PyTorch outputs) that the Deno tests compare ORT's outputs against.
"""
import argparse
import base64
import json
import os

import torch
import torch.nn.functional as F

from clip_model import MEAN, STD, Clip, JointExport, TextExport, VisionExport, load_clip, pixels
from common import EOS, World, WordTokenizer, vocabulary
from onnx_export import export, n_parameters, write_fixture, write_json

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "diamond"]
HELD_OUT = {("purple", "triangle"), ("orange", "circle")}
TEMPLATE = "a photo of a {}"
STEMS = {
    "sat": "sat-soft-tiny's encoder CNN (four convolutions, 64 → 8 × 8 × 128, started from its weights)",
    "conv": "three 3 × 3 stride-2 convolutions",
    "linear": "a linear patch embedding",
}


def label_phrase(colour, shape):
    # "a photo of a {}" with the article fixed for "orange", as the world's grammar wants.
    return TEMPLATE.format(f"{colour} {shape}").replace("a orange", "an orange")


@torch.no_grad()
def zero_shot(model, tok, world: World) -> dict:
    """24-way colour–shape zero-shot classification of the single-object images of a split."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    ids, mask = tok.batch([label_phrase(c, s) for c, s in pairs])
    txt = F.normalize(model.text(ids, mask)[0], dim=-1)
    keep = [i for i, m in enumerate(world.meta) if len(m["scene"]["objects"]) == 1]
    img = F.normalize(model.vision(pixels(world.images[keep]))[0], dim=-1)
    pred = (img @ txt.T).argmax(-1)
    colour = shape = both = 0
    for j, i in enumerate(keep):
        o = world.meta[i]["scene"]["objects"][0]
        c, s = pairs[pred[j]]
        colour += c == o["colour"]
        shape += s == o["shape"]
        both += (c, s) == (o["colour"], o["shape"])
    n = len(keep)
    return {"images": n, "colour": colour / n, "shape": shape / n, "colour_and_shape": both / n}


# The card's closing sections, the same at every export.
CARD_READING = """## Reading
A stem from scratch (three strided convolutions) left shape at chance after 500 steps, as the
plain linear patches had after 3,000; a stem that starts from a CNN which already reads shape —
sat-soft-tiny's encoder, fine-tuned here — reads it within 250. The held-out pairs, never seen
together, score as the seen ones: colour and shape are read separately and bound by the
contrastive loss with its swapped-attribute negatives, so a new combination is no harder.

## Limits
It knows the shapes world only: 4 shapes, 6 colours, 3 backgrounds, 64×64 pixels. Photographs
get embeddings, but they mean nothing.
"""


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="data/runs/clip-tiny")
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--out", default="models/embedded/clip-tiny")
    ap.add_argument("--golden", default="tests/fixtures/clip-tiny.golden.json")
    return ap.parse_args()


def write_configs(model: Clip, out: str) -> None:
    """config.json, preprocessor_config.json and manifest.json."""
    config = model.config
    common = {"hidden_act": "quick_gelu", "projection_dim": config.embed_dim, "layer_norm_eps": 1e-5}
    write_json(out, "config.json", {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": config.embed_dim,
        "logit_scale_init_value": 2.6592, "torch_dtype": "float32",
        "text_config": {"model_type": "clip_text_model", "hidden_size": config.text_width,
                        "intermediate_size": 4 * config.text_width, "num_attention_heads": config.text_heads,
                        "num_hidden_layers": config.text_layers, "max_position_embeddings": config.max_positions,
                        "vocab_size": config.vocab_size, "bos_token_id": 0, "eos_token_id": EOS,
                        "pad_token_id": EOS, **common},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": config.vision_width,
                          "intermediate_size": 4 * config.vision_width, "num_attention_heads": config.vision_heads,
                          "num_hidden_layers": config.vision_layers, "image_size": config.image_size,
                          "patch_size": config.patch_size, "num_channels": 3, **common},
    })
    write_json(out, "preprocessor_config.json", {
        "image_processor_type": "CLIPImageProcessor", "feature_extractor_type": "CLIPFeatureExtractor",
        "do_resize": True, "size": {"shortest_edge": config.image_size}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": config.image_size, "width": config.image_size},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
        "image_mean": MEAN.flatten().tolist(), "image_std": STD.flatten().tolist(),
    })
    write_json(out, "manifest.json", {
        "id": "clip-tiny", "family": "clip",
        "description": "CLIP trained by this project on the shapes world (ViT image tower, transformer text tower)",
        "capabilities": ["embeddings", "zero-shot-classification", "similarity", "patch-maps"],
        "modalities": {"input": ["text", "image"], "output": ["embedding"]},
        "files": {"text": "onnx/text_model.onnx", "vision": "onnx/vision_model.onnx", "joint": "onnx/model.onnx"},
        "license": "MIT", "preload": True,
        "settings": {"logit_scale": round(model.logit_scale.clamp(max=4.6052).exp().item(), 4)},
    })


def write_tokenizer(tok: WordTokenizer, out: str) -> None:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json, CLIPTokenizer's."""
    write_json(out, "tokenizer.json", tok.tokenizer_json())
    write_json(out, "tokenizer_config.json", {
        "tokenizer_class": "CLIPTokenizer", "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": "<|unk|>", "model_max_length": tok.max_length,
        "do_lower_case": True, "clean_up_tokenization_spaces": False,
    })
    write_json(out, "special_tokens_map.json", {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                                                "pad_token": "<|endoftext|>", "unk_token": "<|unk|>"})


def export_graphs(model: Clip, tok: WordTokenizer, out: str) -> None:
    """onnx/text_model.onnx, onnx/vision_model.onnx and the joint onnx/model.onnx, with the public names."""
    size = model.config.image_size
    ids, mask = tok.batch(["a photo of a red circle", "a small blue square in the top left on a white background"])
    px = torch.zeros(2, 3, size, size)
    export(TextExport(model), (ids,), f"{out}/onnx/text_model.onnx", ["input_ids"],
           ["text_embeds", "last_hidden_state"], {"input_ids": {0: "batch_size", 1: "sequence_length"}})
    export(VisionExport(model), (px,), f"{out}/onnx/vision_model.onnx", ["pixel_values"],
           ["image_embeds", "last_hidden_state"], {"pixel_values": {0: "batch_size"}})
    export(JointExport(model), (ids, px, mask), f"{out}/onnx/model.onnx",
           ["input_ids", "pixel_values", "attention_mask"],
           ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"],
           {"input_ids": {0: "text_batch_size", 1: "sequence_length"},
            "attention_mask": {0: "text_batch_size", 1: "sequence_length"},
            "pixel_values": {0: "image_batch_size"}})


def write_golden(model: Clip, tok: WordTokenizer, data: str, path: str) -> None:
    """Golden fixture: raw test images and texts with PyTorch's outputs."""
    test = World(data, "test")
    texts = ["a photo of a red circle", "a large blue square to the left of a small green diamond on a black background",
             "an orange triangle", "photos of zebras"]
    with torch.no_grad():
        img_emb = model.vision(pixels(test.images[:3]))[0]
        txt_emb = torch.cat([model.text(torch.tensor([tok.encode(t)]))[0] for t in texts])
    write_fixture(path, {
        "images_rgb_base64": [base64.b64encode(test.images[i].tobytes()).decode() for i in range(3)],
        "texts": texts, "input_ids": [tok.encode(t) for t in texts],
        "image_embeds": img_emb.tolist(), "text_embeds": txt_emb.tolist(),
    })


def model_card(model: Clip, state: dict, scores: dict, size_mb: float) -> str:
    """README.md: the design, the training, zero-shot accuracy at export (`scores`), the reading and limits."""
    config, n_params = model.config, n_parameters(model)
    row = lambda s: f"| {s} | {scores[s]['images']} | {scores[s]['colour']:.1%} | {scores[s]['shape']:.1%} | {scores[s]['colour_and_shape']:.1%} |"
    return f"""# clip-tiny

A CLIP model (Radford et al. 2021) trained by this project on the shapes world
(`../../../shared/WORLD.md`), in the file layout and ONNX input/output names of the public
`Xenova/clip-vit-base-patch32` export, so that the same loader and pipeline serve both.

- Image encoder: the ViT paper's hybrid: {STEMS[config.stem]}, one token per
  {config.patch_size}×{config.patch_size} cell of the {config.image_size}×{config.image_size} input, then a ViT of width {config.vision_width}, {config.vision_layers} layers,
  {config.vision_heads} heads, class-token pooling.
- Text encoder: causal transformer, width {config.text_width}, {config.text_layers} layers, {config.text_heads} heads,
  {config.max_positions} positions, word-level vocabulary of {config.vocab_size} tokens, EOS pooling.
- Joint embedding: {config.embed_dim} dimensions, learned temperature (now {model.logit_scale.exp().item():.1f}).
- Parameters: {n_params / 1e6:.2f} M; ONNX files (fp32): {size_mb:.1f} MiB in all. The ONNX graphs keep the public
  names (`pixel_values` → `image_embeds`, `last_hidden_state`), so the stem is invisible to the loader.

## Training
- Data: fresh scenes every batch from `training/world.py` (the project's second renderer of the
  world), never the held-out pairs `purple triangle` and `orange circle`; no scene is seen twice.
- Texts: half the batch single-object scenes with the zero-shot prompt `a photo of a {{colour}} {{shape}}`
  (near-duplicates that differ in shape are what teach shape), half 1–3 objects with a text of
  their reference set (the canonical caption and its paraphrases).
- Hard negatives (NegCLIP): for every image one more text that differs from its own in exactly
  one attribute (one object's shape or colour) or in which colour goes with which shape (two
  objects' colours swapped), said with the same template; it joins the image-to-text softmax.
- Objective: symmetric contrastive (InfoNCE) loss; texts that repeat within a batch count as
  matches for every image they describe. AdamW, lr 1e-3 with warm-up and cosine decay,
  weight decay 0.1, batch {state.get('batch', 64)}, {state['step']} steps on 2 CPU cores.
- Reproduce: `deno task world && /usr/bin/python3 training/train_clip.py --steps {state['step']} && /usr/bin/python3 training/export_clip.py`
  (the log of every run: `training/runs/clip-tiny.md`).

## Zero-shot accuracy (measured at export, PyTorch)
24-way classification of single-object images among all colour–shape pairs with the prompt
`{TEMPLATE}`; colour and shape are read off the predicted pair. The held-out split's objects
are `purple triangle` or `orange circle`, pairs never seen in training.

| split | images | colour | shape | colour and shape |
| --- | --- | --- | --- | --- |
{row('test')}
{row('heldout')}

`deno task eval clip` measures the same through the service's own pipeline and ONNX sessions.

""" + CARD_READING


def main():
    args = parse_args()
    model, state = load_clip(f"{args.run}/last.pt")
    tok = WordTokenizer(vocabulary(args.data), max_length=model.config.max_positions)
    os.makedirs(f"{args.out}/onnx", exist_ok=True)
    write_configs(model, args.out)
    write_tokenizer(tok, args.out)
    export_graphs(model, tok, args.out)
    write_golden(model, tok, args.data, args.golden)
    scores = {split: zero_shot(model, tok, World(args.data, split)) for split in ("test", "heldout")}
    size_mb = sum(os.path.getsize(f"{args.out}/onnx/{f}") for f in os.listdir(f"{args.out}/onnx")) / 2**20
    open(f"{args.out}/README.md", "w").write(model_card(model, state, scores, size_mb))
    print(json.dumps(scores, indent=2))


if __name__ == "__main__":
    main()
