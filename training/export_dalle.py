"""Export dalle-tiny: its dVAE and transformer to ONNX, the decoder weights for the WebGPU kernels,
the tokenizer, configs, manifest and model card.

No public ONNX layout exists for DALL-E; this one follows the chat models' names:
    onnx/decoder_model_merged.onnx  input_ids, attention_mask, position_ids, past_key_values.{i}.key/value
                                    -> logits, present.{i}.key/value (text and image ids in one vocabulary),
                                    attentions [B, layers, heads, T, total] (the self-attention
                                    probabilities: the prompt words' maps of return_attention)
    onnx/vqvae_decoder.onnx         image_tokens [B, 8, 8] (codebook ids) -> sample [B, 3, 64, 64] in [-1, 1]
    onnx/vqvae_encoder.onnx         pixel_values [B, 3, 64, 64] in [-1, 1] -> image_tokens [B, 8, 8]
    model.safetensors               the transformer's weights (the chat decoder's names)
    config.json, tokenizer.json, tokenizer_config.json

    /usr/bin/python3 training/export_dalle.py --scores /tmp/dalle-scores.md

Every export also writes the golden fixture tests/fixtures/dalle-tiny.golden.json (fixed inputs
and PyTorch's outputs, which tests/golden_test.ts checks ONNX Runtime against); `--golden-only`
writes just that fixture from the shipped files in --out (the transformer from model.safetensors,
the dVAE and VAE decoders from onnx/vqvae_decoder.onnx), and touches nothing there; `--reexport`
writes onnx/decoder_model_merged.onnx again from model.safetensors (for a change of its outputs,
the training run not being kept) and the fixture, and nothing else.
"""
import argparse
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import EOS, World, WordTokenizer, vocabulary
from dalle_model import DalleConfig, VqVae, transformer
from onnx_export import (card_scores, export, golden_values, graph_constant, load_onnx_weights, load_safetensors,
                         n_parameters, save_safetensors, write_fixture, write_json)
from export_sd import vae_from_export
from sd_model import SdConfig, Vae, to_unit


class TokensToImage(nn.Module):
    """Codebook ids -> VQ decoder -> sd-tiny's VAE decoder -> pixels."""

    def __init__(self, vq: VqVae, vae: Vae, scale: float):
        super().__init__()
        self.vq, self.vae, self.scale = vq, vae, scale

    def forward(self, image_tokens):
        return self.vae.decode(self.vq.decode_ids(image_tokens) / self.scale)


class ImageToTokens(nn.Module):
    def __init__(self, vq: VqVae, vae: Vae, scale: float):
        super().__init__()
        self.vq, self.vae, self.scale = vq, vae, scale

    def forward(self, pixel_values):
        return self.vq.encode_ids(self.vae.encode(pixel_values)[0] * self.scale)


class Decoder(nn.Module):
    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, input_ids, attention_mask, position_ids, *past):
        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)]
        logits, presents, maps = self.decoder(self.decoder.embed(input_ids), attention_mask, position_ids, pairs,
                                              attentions=True)
        return (logits, *[t for kv in presents for t in kv], maps["self"])


def decoder_graph(model):
    """The export() arguments of decoder_model_merged.onnx (module, example inputs, input names,
    output names, dynamic axes)."""
    vc = model.c
    L = vc.layers
    past_names = [f"past_key_values.{i}.{w}" for i in range(L) for w in ("key", "value")]
    present_names = [f"present.{i}.{w}" for i in range(L) for w in ("key", "value")]
    past = [torch.zeros(1, vc.kv_heads, 3, vc.head_dim) for _ in range(2 * L)]
    return (Decoder(model), (torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 5, dtype=torch.long),
                             torch.arange(3, 5)[None], *past),
            ["input_ids", "attention_mask", "position_ids", *past_names], ["logits", *present_names, "attentions"],
            {"input_ids": {0: "batch_size", 1: "sequence_length"},
             "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
             "position_ids": {0: "batch_size", 1: "sequence_length"}, "logits": {0: "batch_size", 1: "sequence_length"},
             "attentions": {0: "batch_size", 3: "sequence_length", 4: "total_sequence_length"},
             **{n: {0: "batch_size", 2: "past_sequence_length"} for n in past_names},
             **{n: {0: "batch_size", 2: "total_sequence_length"} for n in present_names}})


def vqvae_decoder_graph(vq: VqVae, vae: Vae, scale: float, c: DalleConfig):
    return (TokensToImage(vq, vae, scale), (torch.zeros(2, c.grid, c.grid, dtype=torch.long),),
            ["image_tokens"], ["sample"], {"image_tokens": {0: "batch_size"}, "sample": {0: "batch_size"}})


def vqvae_encoder_graph(vq: VqVae, vae: Vae, scale: float):
    return (ImageToTokens(vq, vae, scale), (torch.zeros(2, 3, 64, 64),), ["pixel_values"], ["image_tokens"],
            {"pixel_values": {0: "batch_size"}, "image_tokens": {0: "batch_size"}})


def load_export(out: str, encoder: bool = False):
    """The transformer, dVAE and VAE (decoder halves; with `encoder` the encoding halves too) and
    scale from an exported folder."""
    cfg = json.load(open(f"{out}/config.json"))
    t = cfg["text_config"]
    c = DalleConfig(codebook=cfg["codebook_size"], grid=cfg["image_grid"], text_vocab=cfg["text_vocab_size"],
                    text_length=cfg["text_length"], width=t["hidden_size"], layers=t["num_hidden_layers"],
                    heads=t["num_attention_heads"], kv_heads=t["num_key_value_heads"])
    model = transformer(c)
    model.load_state_dict(load_safetensors(f"{out}/model.safetensors"))
    vq, vae = VqVae(c), Vae(SdConfig())
    path = f"{out}/onnx/vqvae_decoder.onnx"
    scale = graph_constant(path, "Div")  # sd-tiny's scaling_factor, baked into the graph
    module, example, inputs, outputs, dynamic = vqvae_decoder_graph(vq, vae, scale, c)
    load_onnx_weights(module, example, path, inputs, outputs, dynamic)
    if encoder:
        module, example, inputs, outputs, dynamic = vqvae_encoder_graph(vq, vae, scale)
        load_onnx_weights(module, example, f"{out}/onnx/vqvae_encoder.onnx", inputs, outputs, dynamic)
    for m in (vq, model, vae):
        m.eval()
    return c, model, vq, vae, scale


@torch.no_grad()
def write_golden(c: DalleConfig, model, vq: VqVae, vae: Vae, scale: float, tok: WordTokenizer, path: str):
    """Golden fixture: the decoder's prefill of a caption (padded to text_length with
    <|endoftext|>, as the service pads it) and three image tokens from an empty cache, one decode
    step of a fourth image token on the prefill's cache, and vqvae_decoder on a fixed 8 x 8 grid."""
    caption = "a large red circle to the left of a small blue square on a white background"
    text = tok.encode(caption)[: c.text_length]
    text += [EOS] * (c.text_length - len(text))
    g = torch.Generator().manual_seed(18)
    codes = torch.randint(0, c.codebook, (4,), generator=g).tolist()
    ids = torch.tensor([text + [c.text_vocab + k for k in codes[:3]]])
    T = ids.shape[1]
    vc = model.c
    empty = [torch.zeros(1, vc.kv_heads, 0, vc.head_dim) for _ in range(2 * vc.layers)]
    dec = Decoder(model)
    prefill = dec(ids, torch.ones(1, T, dtype=torch.long), torch.arange(T)[None], *empty)
    logits, presents, maps = prefill[0], prefill[1:-1], prefill[-1]
    step = dec(torch.tensor([[c.text_vocab + codes[3]]]), torch.ones(1, T + 1, dtype=torch.long),
               torch.tensor([[T]]), *presents)
    grid = torch.randint(0, c.codebook, (1, c.grid, c.grid), generator=g)
    sample = TokensToImage(vq, vae, scale)(grid)
    write_fixture(path, {"model": "dalle-tiny", "caption": caption, "input_ids": ids[0].tolist(),
                         "next_token": c.text_vocab + codes[3], "logits": golden_values(logits),
                         "logits_last": golden_values(logits[0, -1]), "present_last_value": golden_values(presents[-1]),
                         "attentions_last": golden_values(maps[0, :, :, -1]),
                         "step_logits": golden_values(step[0]), "image_tokens": grid.flatten().tolist(),
                         "sample": golden_values(sample)})


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="data/runs/dalle-tiny")
    ap.add_argument("--sd", default="data/runs/sd-tiny", help="sd-tiny's run or its export (models/embedded/sd-tiny)")
    ap.add_argument("--id", default="dalle-tiny", help="the manifest's model id")
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--out", default="models/embedded/dalle-tiny")
    ap.add_argument("--scores", help="the table `deno task eval images` printed, for the model card")
    ap.add_argument("--golden", default="tests/fixtures/dalle-tiny.golden.json")
    ap.add_argument("--attention-heads", default="1:1",
                    help="the decoder heads (layer:head, comma-separated) whose attention makes the "
                         "word maps; 'all' for every head (the pointing game chose 1:1, README)")
    ap.add_argument("--golden-only", action="store_true",
                    help="write only the golden fixture, from the model already exported in --out")
    ap.add_argument("--reexport", action="store_true",
                    help="write onnx/decoder_model_merged.onnx and the fixture again from --out's own files")
    return ap.parse_args()


def golden_from_export(out: str, golden: str) -> None:
    """--golden-only: the fixture of the model shipped in `out`, from its own files."""
    c, model, vq, vae, scale = load_export(out)
    tok = WordTokenizer([], max_length=c.text_length)
    tok.ids = json.load(open(f"{out}/tokenizer.json"))["model"]["vocab"]  # the shipped words
    write_golden(c, model, vq, vae, scale, tok, golden)


def load_run(run: str, sd: str):
    """The dVAE and transformer from their training run, sd-tiny's VAE and scaling_factor from its
    run or its export (all in eval mode), and the steps each stage trained for."""
    vq_state = torch.load(f"{run}/vqvae.pt", map_location="cpu")
    tf_state = torch.load(f"{run}/transformer.pt", map_location="cpu")
    c = DalleConfig(**tf_state["config"])
    vq, model = VqVae(c), transformer(c)
    vq.load_state_dict(vq_state["model"])
    model.load_state_dict(tf_state["model"])
    if os.path.exists(f"{sd}/vae.pt"):
        vae = Vae(SdConfig())
        vae.load_state_dict(torch.load(f"{sd}/vae.pt", map_location="cpu")["model"])
        scale = torch.load(f"{sd}/latents.pt")["scaling_factor"]
    else:
        vae, scale = vae_from_export(sd)
    for m in (vq, model, vae):
        m.eval()
    return c, model, vq, vae, scale, {"vqvae_steps": vq_state["step"], "transformer_steps": tf_state["step"],
                                      "transformer_batch": tf_state.get("batch", 32)}


def export_graphs(c: DalleConfig, model, vq: VqVae, vae: Vae, scale: float, out: str) -> None:
    """onnx/vqvae_decoder.onnx, onnx/vqvae_encoder.onnx, onnx/decoder_model_merged.onnx and the
    transformer's model.safetensors."""
    os.makedirs(f"{out}/onnx", exist_ok=True)
    module, example, inputs, outputs, dynamic = vqvae_decoder_graph(vq, vae, scale, c)
    export(module, example, f"{out}/onnx/vqvae_decoder.onnx", inputs, outputs, dynamic)
    module, example, inputs, outputs, dynamic = vqvae_encoder_graph(vq, vae, scale)
    export(module, example, f"{out}/onnx/vqvae_encoder.onnx", inputs, outputs, dynamic)
    module, example, inputs, outputs, dynamic = decoder_graph(model)
    export(module, example, f"{out}/onnx/decoder_model_merged.onnx", inputs, outputs, dynamic)
    save_safetensors(model.state_dict(), f"{out}/model.safetensors")


def write_configs(c: DalleConfig, model, tok: WordTokenizer, out: str, attention_heads: str = "all",
                  model_id: str = "dalle-tiny") -> None:
    """config.json, the tokenizer files and manifest.json."""
    vc = model.c
    write_json(out, "config.json", {
        "architectures": ["DalleForImageGeneration"], "model_type": "dalle",
        "text_vocab_size": c.text_vocab, "text_length": c.text_length, "text_pad_token_id": EOS,
        "codebook_size": c.codebook, "image_token_offset": c.text_vocab, "image_grid": c.grid,
        "image_size": 64, "pixels_per_token": 64 // c.grid,
        "text_config": {"model_type": "llama", "hidden_size": vc.hidden, "intermediate_size": vc.intermediate,
                        "num_hidden_layers": vc.layers, "num_attention_heads": vc.heads,
                        "num_key_value_heads": vc.kv_heads, "head_dim": vc.head_dim,
                        "vocab_size": vc.vocab_size, "max_position_embeddings": vc.max_positions,
                        "rope_theta": vc.rope_theta, "rms_norm_eps": 1e-5, "hidden_act": "silu"},
    })
    write_json(out, "tokenizer.json", tok.tokenizer_json())
    write_json(out, "tokenizer_config.json", tok.tokenizer_config())
    write_json(out, "manifest.json", {
        "id": model_id, "family": "dalle",
        "description": "DALL-E's design trained by this project on the shapes world: a discrete VAE "
                       f"({c.grid} x {c.grid} tokens, {c.codebook} codes) and a transformer over caption + image "
                       "tokens, reranked by CLIP",
        "capabilities": ["text-to-image", "clip-rerank", "attention-maps"],
        "modalities": {"input": ["text"], "output": ["image"]},
        "files": {"decoder": "onnx/decoder_model_merged.onnx", "vqvae_decoder": "onnx/vqvae_decoder.onnx",
                  "vqvae_encoder": "onnx/vqvae_encoder.onnx", "weights": "model.safetensors"},
        "license": "MIT", "preload": True,
        "settings": {"default_temperature": 1.0, "default_top_k": 32,
                     **({"attention_heads": [[int(v) for v in h.split(":")] for h in attention_heads.split(",")]}
                        if attention_heads != "all" else {})},
    })


@torch.no_grad()
def validation_scores(c: DalleConfig, model, vq: VqVae, vae: Vae, scale: float, tok: WordTokenizer,
                      data: str) -> dict:
    """Scores for the card on (up to) 500 validation images: the dVAE's reconstruction error and
    codes used, and the transformer's image-token cross-entropy given the canonical caption."""
    val = World(data, "val")
    n = min(500, len(val))
    x = to_unit(val.images[:n])
    ids = ImageToTokens(vq, vae, scale)(x)
    rec = TokensToImage(vq, vae, scale)(ids)
    rec_err = float(((rec.clamp(-1, 1) - x).abs() * 127.5).mean())
    used = len(torch.unique(ids))
    text = torch.full((n, c.text_length), EOS, dtype=torch.long)
    for j in range(n):
        t = tok.encode(val.meta[j]["references"][0])[: c.text_length]
        text[j, : len(t)] = torch.tensor(t)
    seq = torch.cat([text, ids.view(n, -1) + c.text_vocab], 1)
    ce = []
    for a in range(0, n, 100):
        s = seq[a:a + 100]
        T = s.shape[1] - 1
        logits = model(model.embed(s[:, :-1]), torch.ones(len(s), T), torch.arange(T).expand(len(s), T))[0]
        ce.append(F.cross_entropy(logits[:, c.text_length - 1:].reshape(-1, logits.shape[-1]),
                                  s[:, c.text_length:].reshape(-1), reduction="none"))
    image_ce = float(torch.cat(ce).mean())
    return {"images": n, "val_reconstruction_mean_abs": rec_err, "val_codes_used": used,
            "val_image_token_ce": image_ce, "val_image_token_perplexity": math.exp(image_ce)}


def model_card(c: DalleConfig, model, stats: dict, n: int, scores: str, attention_heads: str) -> str:
    vc, L = model.c, model.c.layers
    g = f"{c.grid} x {c.grid}"
    vq_grid = ("keep that grid (one token per latent pixel)" if c.grid == 16 else f"halve that grid to {g}")
    heads = ("the mean of every layer's heads" if attention_heads == "all" else
             "those of " + ", ".join(f"layer {h.split(':')[0]} head {h.split(':')[1]}" for h in attention_heads.split(",")))
    rec_err, used, image_ce = stats["val_reconstruction_mean_abs"], stats["val_codes_used"], stats["val_image_token_ce"]
    return f"""# dalle-tiny

DALL-E's design (Ramesh et al. 2021) trained by this project on the shapes world
(`../../../shared/WORLD.md`): a discrete VAE turns a 64 x 64 image into a {g} grid of codebook
tokens and back; a transformer learns [caption tokens ; image tokens] as one sequence, so that
generation samples the {c.grid ** 2} image tokens after the caption; the service samples n candidates and,
with `rerank`, returns the k that clip-tiny scores highest against the prompt, as the paper did.

- dVAE: a VQ-VAE (van den Oord et al. 2017), not the paper's Gumbel-softmax relaxation: nearest
  codebook entry with the straight-through gradient, commitment loss 0.25, codebook entries as
  exponential moving averages, entries unused for ~300 steps restarted from encoder outputs. On
  two CPU cores it gives a usable codebook in minutes, without a temperature schedule or a KL
  weight to tune; the transformer only needs the token grid, which both give. Its outer layers
  are sd-tiny's frozen convolutional autoencoder (64 x 64 x 3 <-> 4 x 16 x 16); the VQ encoder
  and decoder trained here ({stats['vq_parameters'] / 1e6:.2f} M parameters) {vq_grid}, {c.code_dim} channels, and quantize
  it against {c.codebook} codes. Exported end to end: `vqvae_encoder` (pixels -> tokens) and
  `vqvae_decoder` (tokens -> pixels).
- Transformer: the chat models' decoder (RMSNorm, rotary positions, grouped-query attention with
  {vc.heads} query and {vc.kv_heads} key/value heads, SwiGLU), {L} layers, width {vc.hidden}, {stats['transformer_parameters'] / 1e6:.2f} M parameters,
  one vocabulary of {c.text_vocab} words + {c.codebook} image codes (image ids offset by {c.text_vocab}). The caption is
  padded with `<|endoftext|>` to {c.text_length} tokens, so each image token has a fixed position.
  Sharing the chat decoder's architecture lets the WebGPU backend sample on the same WGSL kernels.
  `decoder_model_merged.onnx` also returns `attentions` [batch, layers, heads, T, total] (the
  self-attention probabilities, the chat models' layout): the prompt words' maps of
  `return_attention`, read at the query that samples each image token (on ONNX Runtime; the WGSL
  kernels have no such output). The maps are {heads} (`settings.attention_heads`,
  `--attention-heads`), chosen with the pointing game on other scenes: most heads attend by
  position, a few by word (README, `deno task eval pointing`).

## Training
- `deno task world` (seed 0), 20,000 training scenes; never the held-out pairs.
- dVAE: {stats['vqvae_steps']} steps, batch 32, Adam lr 1e-3 with warm-up and cosine decay, MSE on sd-tiny's
  (unit-variance) latents of the training images.
- Transformer: {stats['transformer_steps']} steps, batch {stats['transformer_batch']}, AdamW lr 1e-3, next-token cross-entropy over the whole
  sequence with the paper's weights (text positions 1/8 of the loss, image positions 7/8); the
  caption is a random one of the scene's reference captions and paraphrases. 2 CPU cores.
- Reproduce: `/usr/bin/python3 training/train_dalle.py --stage vae --steps {stats['vqvae_steps']}`, then
  `--stage transformer --steps {stats['transformer_steps']}`, then `training/export_dalle.py`.

## Scores
- dVAE round trip on {n} validation images: mean |error| {rec_err:.2f} / 255 per channel; {used} of {c.codebook} codes used.
- Transformer on the same images with their canonical captions: image-token cross-entropy
  {image_ce:.3f} nats (perplexity {math.exp(image_ce):.1f} of {c.codebook}).
- Pixel judge (`deno task eval images`, the same prompts as sd-tiny):

{scores}
"""


def main():
    args = parse_args()
    torch.manual_seed(0)
    if args.golden_only:
        golden_from_export(args.out, args.golden)
        print(f"wrote {args.golden} (from {args.out})")
        return
    if args.reexport:
        c, model, vq, vae, scale = load_export(args.out)
        module, example, inputs, outputs, dynamic = decoder_graph(model)
        export(module, example, f"{args.out}/onnx/decoder_model_merged.onnx", inputs, outputs, dynamic)
        golden_from_export(args.out, args.golden)
        print(f"wrote {args.out}/onnx/decoder_model_merged.onnx and {args.golden} (from {args.out})")
        return
    c, model, vq, vae, scale, steps = load_run(args.run, args.sd)
    tok = WordTokenizer(vocabulary(args.data), max_length=c.text_length)
    assert len(tok.tokens) == c.text_vocab
    export_graphs(c, model, vq, vae, scale, args.out)
    write_golden(c, model, vq, vae, scale, tok, args.golden)
    write_configs(c, model, tok, args.out, args.attention_heads, args.id)
    scores = validation_scores(c, model, vq, vae, scale, tok, args.data)
    n = scores.pop("images")
    stats = {**steps, "vq_parameters": n_parameters(vq), "transformer_parameters": n_parameters(model), **scores}
    write_json(args.out, "training.json", stats)
    print(json.dumps(stats, indent=2))
    card = model_card(c, model, stats, n, card_scores(args.scores, "images"), args.attention_heads)
    open(f"{args.out}/README.md", "w").write(card)


if __name__ == "__main__":
    main()
