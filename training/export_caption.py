"""Export an LSTM captioner to ONNX with its tokenizer, configs, manifest and a golden fixture.

    /usr/bin/python3 training/export_caption.py --kind sat-soft
"""
import argparse
import base64
import json
import os

import torch

from caption_model import MEAN, STD, Captioner, CaptionConfig, EncoderExport, StepExport, pixels
from common import World, WordTokenizer, vocabulary
from onnx_export import export, n_parameters, write_fixture, write_json

TITLES = {
    "nic": ("Show and Tell", "Vinyals et al. 2015: a CNN encodes the image into one vector, the LSTM's first input"),
    "sat-soft": ("Show, Attend and Tell (soft attention)", "Xu et al. 2015: at every word the LSTM reads the attention-weighted sum of the L annotation vectors"),
    "sat-hard": ("Show, Attend and Tell (hard attention)", "Xu et al. 2015: at every word the LSTM reads one annotation vector, sampled during training (REINFORCE with a baseline) and the most probable one at inference"),
}


@torch.no_grad()
def greedy(model, tok, images, max_length=32):
    a, h, c = model.start(pixels(images))
    ids = torch.full((len(images),), 0, dtype=torch.long)
    out = [[] for _ in images]
    done = torch.zeros(len(images), dtype=torch.bool)
    pa = model.att_a(a) if model.c.kind != "nic" else None
    for _ in range(max_length):
        hard = model.attend(a, h, pa).argmax(-1) if model.c.kind == "sat-hard" else None
        logits, h, c, _ = model.step(ids, h, c, a, hard, pa)
        ids = logits.argmax(-1)
        for i, t in enumerate(ids.tolist()):
            if not done[i] and t != 1:
                out[i].append(tok.tokens[t])
        done |= ids == 1
        if done.all():
            break
    return [" ".join(w) for w in out]


ATTENTION = {"nic": "none", "sat-soft": "soft", "sat-hard": "hard"}


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=list(TITLES), required=True)
    ap.add_argument("--run", default=None)
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--out", default=None)
    ap.add_argument("--golden", default=None)
    ap.add_argument("--default", action="store_true", help="the captioning default (the best captioner)")
    ap.add_argument("--attention-steps", default="0",
                    help="serve each word the mean of these steps' maps, relative to its own (-1,0: the step "
                         "before and its own), as `deno task eval pointing` measured it")
    ap.add_argument("--training-note", default="", help="how this run differed from the defaults, for the card")
    return ap.parse_args()


def write_configs(c: CaptionConfig, tok: WordTokenizer, default: bool, out: str, attention_steps: str = "0") -> None:
    """manifest.json, config.json, generation_config.json, preprocessor_config.json and the tokenizer files."""
    attention = ATTENTION[c.kind]
    write_json(out, "manifest.json", {
        "id": f"{c.kind}-tiny", "family": "captioning",
        "description": f"{TITLES[c.kind][0]}, trained by this project on the shapes world",
        "capabilities": ["captioning"] + (["attention-maps"] if attention != "none" else []),
        "modalities": {"input": ["image"], "output": ["text"]},
        "files": {"encoder": "onnx/encoder_model.onnx", "decoder": "onnx/decoder_step.onnx"},
        "license": "MIT", "preload": True,
        "settings": {"architecture": "lstm", "attention": attention, "grid": c.grid,
                     **({"attention_steps": [int(d) for d in attention_steps.split(",")]}
                        if attention_steps != "0" else {})},
        "default": default,
    })
    write_json(out, "config.json", {"model_type": "lstm-captioner", **c.to_dict()})
    write_json(out, "generation_config.json", {"bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id,
                                               "decoder_start_token_id": c.bos_token_id, "max_length": c.max_length})
    write_json(out, "preprocessor_config.json", {
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 64, "width": 64},
        "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [MEAN] * 3, "image_std": [STD] * 3,
    })
    write_json(out, "tokenizer.json", tok.tokenizer_json())
    write_json(out, "tokenizer_config.json", tok.tokenizer_config())


def export_graphs(model: Captioner, out: str) -> None:
    """onnx/encoder_model.onnx and onnx/decoder_step.onnx (one LSTM step)."""
    c = model.c
    B, L, D, H = 2, c.grid * c.grid, c.channels, c.hidden
    export(EncoderExport(model), (torch.zeros(B, 3, 64, 64),), f"{out}/onnx/encoder_model.onnx", ["pixel_values"],
           ["annotations", "h", "c"], {"pixel_values": {0: "batch_size"}})
    step_inputs = (torch.zeros(B, dtype=torch.long), torch.zeros(B, H), torch.zeros(B, H), torch.zeros(B, L, D))
    names_in = ["input_ids", "h", "c", "annotations"]
    names_out = ["logits", "h_out", "c_out"] + (["attention"] if ATTENTION[c.kind] != "none" else [])
    export(StepExport(model), step_inputs, f"{out}/onnx/decoder_step.onnx", names_in, names_out,
           {n: {0: "batch_size"} for n in names_in})


def model_card(model: Captioner, state: dict, exact: float, training_note: str) -> str:
    c = model.c
    L, D, H = c.grid * c.grid, c.channels, c.hidden
    attention, n_params = ATTENTION[c.kind], n_parameters(model)
    return f"""# {c.kind}-tiny — {TITLES[c.kind][0]}

{TITLES[c.kind][1]}. Trained by this project on the shapes world (`../shared/WORLD.md`).

- Encoder: 4 convolutions (64 → 8 × 8 grid), L = {L} annotation vectors of {D} dimensions with a
  learned position embedding.
- Decoder: LSTM, {H} hidden units, {c.embed}-dimensional word embeddings, word-level vocabulary of
  {c.vocab_size} tokens.{" Attention: " + attention + "." if attention != "none" else ""}
- Parameters: {n_params / 1e6:.2f} M.
- Training: canonical captions of 20,000 training scenes (held-out pairs never seen), Adam, lr 2e-3
  with warm-up and cosine decay, batch {state.get('batch', 32)}, {state['step']} steps on 2 CPU cores.{(" " + training_note) if training_note else ""}
- Exact-match greedy captions on 200 test images at export: {exact:.1%}.
- Reproduce: `deno task world && /usr/bin/python3 training/train_caption.py --kind {c.kind} &&
  /usr/bin/python3 training/export_caption.py --kind {c.kind}`.

ONNX: `onnx/encoder_model.onnx` (pixel_values → annotations, h, c) and `onnx/decoder_step.onnx`
(input_ids, h, c, annotations → logits, h_out, c_out{", attention" if attention != "none" else ""}).
"""


def main():
    args = parse_args()
    run = args.run or f"data/runs/{args.kind}-tiny"
    out = args.out or f"models/embedded/{args.kind}-tiny"
    golden_path = args.golden or f"tests/fixtures/{args.kind}-tiny.golden.json"

    state = torch.load(f"{run}/last.pt", map_location="cpu")
    c = CaptionConfig(**state["config"])
    model = Captioner(c).eval()
    model.load_state_dict(state["model"])
    tok = WordTokenizer(vocabulary(args.data), max_length=c.max_length)
    os.makedirs(f"{out}/onnx", exist_ok=True)
    write_configs(c, tok, args.default, out, args.attention_steps)
    export_graphs(model, out)

    test = World(args.data, "test")
    captions = greedy(model, tok, test.images[:4])
    write_fixture(golden_path, {"images_rgb_base64": [base64.b64encode(test.images[i].tobytes()).decode() for i in range(4)],
                                "greedy": captions}, indent=1)
    exact = sum(p == m["caption"] for p, m in zip(greedy(model, tok, test.images[:200]), test.meta[:200])) / 200
    open(f"{out}/README.md", "w").write(model_card(model, state, exact, args.training_note))
    print(json.dumps({"greedy": captions, "exact_match_200": exact}, indent=1))


if __name__ == "__main__":
    main()
