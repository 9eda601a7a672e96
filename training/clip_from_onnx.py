"""Rebuild a clip-tiny training checkpoint from the shipped export, for the trainers that take one.

    /usr/bin/python3 training/clip_from_onnx.py --out data/runs/clip-tiny-600.pt

The chat trainers (`train_vlm.py --clip`), export_vlm.py and export_sd.py read clip-tiny as a
checkpoint; `data/` does not survive a new machine, the export does. The weights come back from
onnx/model.onnx (both towers and the temperature), the shape from config.json, and the rebuilt
model must reproduce the golden fixture (PyTorch's embeddings at export) before it is written.
"""
import argparse
import base64
import json
import os

import numpy as np
import torch

from clip_model import Clip, ClipConfig, JointExport, pixels
from onnx_export import load_onnx_weights


def config_of(export: str) -> ClipConfig:
    hf = json.load(open(f"{export}/config.json"))
    text, vision = hf["text_config"], hf["vision_config"]
    return ClipConfig(
        image_size=vision["image_size"], patch_size=vision["patch_size"], vision_width=vision["hidden_size"],
        vision_layers=vision["num_hidden_layers"], vision_heads=vision["num_attention_heads"],
        text_width=text["hidden_size"], text_layers=text["num_hidden_layers"], text_heads=text["num_attention_heads"],
        max_positions=text["max_position_embeddings"], vocab_size=text["vocab_size"],
        embed_dim=hf["projection_dim"], eos_token_id=text["eos_token_id"],
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", default="models/embedded/clip-tiny")
    ap.add_argument("--golden", default="tests/fixtures/clip-tiny.golden.json")
    ap.add_argument("--out", default="data/runs/clip-tiny-600.pt")
    args = ap.parse_args()

    config = config_of(args.export)
    model = Clip(config).eval()
    golden = json.load(open(args.golden))
    size = config.image_size
    ids = torch.tensor([golden["input_ids"][0]] * 2)
    example = (ids, torch.zeros(2, 3, size, size), torch.ones_like(ids))
    # The same wrapper, names and dynamic axes export_clip.py wrote onnx/model.onnx with.
    load_onnx_weights(JointExport(model), example, f"{args.export}/onnx/model.onnx",
                      ["input_ids", "pixel_values", "attention_mask"],
                      ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"],
                      {"input_ids": {0: "text_batch_size", 1: "sequence_length"},
                       "attention_mask": {0: "text_batch_size", 1: "sequence_length"},
                       "pixel_values": {0: "image_batch_size"}})

    images = np.stack([np.frombuffer(base64.b64decode(b), np.uint8).reshape(size, size, 3)
                       for b in golden["images_rgb_base64"]])
    with torch.no_grad():
        image_embeds = model.vision(pixels(images))[0]
        text_embeds = torch.cat([model.text(torch.tensor([i]))[0] for i in golden["input_ids"]])
    error = max((image_embeds - torch.tensor(golden["image_embeds"])).abs().max().item(),
                (text_embeds - torch.tensor(golden["text_embeds"])).abs().max().item())
    if error > 1e-4:
        raise SystemExit(f"rebuilt clip-tiny is off the golden fixture by {error:.2e}: not written")

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    torch.save({"model": model.state_dict(), "config": config.to_dict(), "rebuilt_from": args.export}, args.out)
    print(f"{args.out}: clip-tiny from {args.export}/onnx/model.onnx (golden fixture within {error:.1e})")


if __name__ == "__main__":
    main()
