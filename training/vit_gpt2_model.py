"""vit-gpt2-tiny: a ViT encoder and a GPT-2-style decoder with cross-attention to the image.

The ONNX export follows the public `Xenova/vit-gpt2-image-captioning` layout, so that one
pipeline serves both:
  onnx/encoder_model.onnx         pixel_values -> last_hidden_state
  onnx/decoder_model_merged.onnx  input_ids, encoder_hidden_states, past_key_values.{i}.key/value,
                                  use_cache_branch -> logits, present.{i}.key/value
                                  (+ cross_attentions [B, T, S]: mean over layers and heads; ours only)
The past holds self-attention keys and values only (GPT-2 recomputes cross-attention from the
encoder states), and may have length 0 on the first step, so one graph serves both branches.
"""
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from caption_model import shape_cnn
from clip_model import Block


@dataclass
class VitGpt2Config:
    kind: str = "vit-gpt2"
    image_size: int = 64
    patch_size: int = 8
    enc_width: int = 128
    enc_layers: int = 3
    enc_heads: int = 4
    n_embd: int = 128
    n_layer: int = 3
    n_head: int = 4
    n_positions: int = 32
    vocab_size: int = 64
    bos_token_id: int = 0
    eos_token_id: int = 1
    # "sat": the ViT paper's hybrid, sat-soft-tiny's encoder CNN as the patch embedding (started
    # from its weights and frozen: the public model's ViT came pretrained); "linear": plain patches.
    stem: str = "linear"

    def to_dict(self):
        return asdict(self)


class ViT(nn.Module):
    def __init__(self, c: VitGpt2Config):
        super().__init__()
        grid = c.image_size // c.patch_size
        self.patch = shape_cnn() if c.stem == "sat" else nn.Conv2d(3, c.enc_width, c.patch_size, c.patch_size)
        self.cls = nn.Parameter(torch.randn(c.enc_width) * 0.02)
        self.pos = nn.Parameter(torch.randn(grid * grid + 1, c.enc_width) * 0.02)
        self.blocks = nn.ModuleList(Block(c.enc_width, c.enc_heads) for _ in range(c.enc_layers))
        self.ln = nn.LayerNorm(c.enc_width)

    def forward(self, pixel_values):
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], 1) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.ln(x)  # [B, 1 + L, enc_width]


class DecoderBlock(nn.Module):
    """GPT-2 block with cross-attention: self-attn (cached), cross-attn, MLP; pre-norm."""

    def __init__(self, c: VitGpt2Config):
        super().__init__()
        d, self.h = c.n_embd, c.n_head
        self.ln_1, self.ln_x, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.q_x, self.kv_x, self.proj_x = nn.Linear(d, d), nn.Linear(c.enc_width, 2 * d), nn.Linear(d, d)
        self.fc, self.fc_out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def heads(self, x):  # [B, T, d] -> [B, h, T, hd]
        B, T, d = x.shape
        return x.view(B, T, self.h, d // self.h).transpose(1, 2)

    def forward(self, x, enc, past_k, past_v):
        B, T, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, -1)
        q, k, v = self.heads(q), torch.cat([past_k, self.heads(k)], 2), torch.cat([past_v, self.heads(v)], 2)
        P = k.shape[2] - T
        # Causal over past + new positions: query i (absolute P + i) sees keys j <= P + i.
        i = torch.arange(T)[:, None] + P
        j = torch.arange(k.shape[2])[None, :]
        att = (q @ k.transpose(-1, -2)) * (d // self.h) ** -0.5
        att = att.masked_fill(j > i, float("-inf")).softmax(-1)
        x = x + self.c_proj((att @ v).transpose(1, 2).reshape(B, T, d))
        qx = self.heads(self.q_x(self.ln_x(x)))
        kx, vx = self.kv_x(enc).split(d, -1)
        cross = ((qx @ self.heads(kx).transpose(-1, -2)) * (d // self.h) ** -0.5).softmax(-1)  # [B, h, T, S]
        x = x + self.proj_x((cross @ self.heads(vx)).transpose(1, 2).reshape(B, T, d))
        x = x + self.fc_out(F.gelu(self.fc(self.ln_2(x))))
        return x, k, v, cross


class VitGpt2(nn.Module):
    def __init__(self, c: VitGpt2Config):
        super().__init__()
        self.c = c
        self.encoder = ViT(c)
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.n_positions, c.n_embd)
        nn.init.normal_(self.wte.weight, std=0.02)  # GPT-2's initialisation (the output layer is tied)
        nn.init.normal_(self.wpe.weight, std=0.01)
        self.blocks = nn.ModuleList(DecoderBlock(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)

    def empty_past(self, B):
        hd = self.c.n_embd // self.c.n_head
        return [torch.zeros(B, self.c.n_head, 0, hd) for _ in range(2 * self.c.n_layer)]

    def decode(self, input_ids, enc, past):
        """-> logits [B, T, V], presents (2 per layer), cross-attention [B, T, S] over layers and heads.

        The mean over every layer and head is the map that points at the named object (89% of
        colour and shape words on run 2, teacher-forced; the last layer alone, 55%)."""
        P = past[0].shape[2]
        pos = torch.arange(input_ids.shape[1]) + P
        x = self.wte(input_ids) + self.wpe(pos)
        presents, cross = [], 0
        for n, b in enumerate(self.blocks):
            x, k, v, layer_cross = b(x, enc, past[2 * n], past[2 * n + 1])
            presents += [k, v]
            cross = cross + layer_cross.mean(1) / len(self.blocks)
        logits = self.ln_f(x) @ self.wte.weight.T  # tied output embedding, as in GPT-2
        return logits, presents, cross

    def loss(self, pixel_values, ids, mask, baseline=None):
        enc = self.encoder(pixel_values)
        logits, _, _ = self.decode(ids[:, :-1], enc, self.empty_past(ids.shape[0]))
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        m = mask[:, 1:].reshape(-1)
        loss = (nll * m).sum() / m.sum()
        return loss, {"nll": loss.item()}


class EncoderExport(nn.Module):
    def __init__(self, m: VitGpt2):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return self.m.encoder(pixel_values)


class DecoderExport(nn.Module):
    def __init__(self, m: VitGpt2):
        super().__init__()
        self.m = m

    def forward(self, input_ids, encoder_hidden_states, *past):
        logits, presents, cross = self.m.decode(input_ids, encoder_hidden_states, list(past))
        return (logits, *presents, cross)
