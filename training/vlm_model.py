"""The two multimodal LLM architectures of the course, small enough to train on two cores.

Both read clip-tiny's vision tower (frozen): an image becomes 8 x 8 patch features.

- vlm-tiny (method A, unified embedding decoder), in the SmolVLM / Idefics3 design: the patch
  grid is pixel-shuffled 2 x 2 (64 patches -> 16 tokens of 4x the width), projected by a linear
  connector into the token-embedding space, and the decoder-only LM reads those 16 embeddings in
  place of the <image> tokens of the prompt. The LM is Llama-style (RMSNorm, rotary positions,
  SwiGLU, grouped-query attention) with SmolVLM's ONNX names.
- vlm-xattn-tiny (method B, cross-modality attention), in the Llama 3.2 Vision design: the text
  decoder's layers are self-attention layers plus, every other layer, a gated cross-attention
  layer whose queries come from the text and keys/values from the image features. The image
  never enters the token sequence.
"""
import math
import re
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import SPECIAL, WordTokenizer

# SmolVLM's chat tokens, and the image placeholders its processor expands.
CHAT = ["<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>", "<global-img>"]
QA_WORDS = ["what", "color", "shape", "object", "how", "many", "where", "is", "there", "yes", "no",
            "describe", "image", "?", ".", "user", "assistant"]


class ChatTokenizer(WordTokenizer):
    """The world's word-level tokenizer plus chat tokens, matched before splitting words
    (as `tokenizers` matches added tokens)."""

    def __init__(self, words: list, max_length: int = 128):
        super().__init__(CHAT + [w for w in words + QA_WORDS if w not in CHAT], max_length)
        self.special = set(SPECIAL + CHAT)

    def encode_plain(self, text: str) -> list:
        ids = []
        for part in re.split("(" + "|".join(re.escape(t) for t in CHAT) + ")", text):
            if part in CHAT:
                ids.append(self.ids[part])
            elif part:
                ids += [self.ids.get(w, 2) for w in re.findall(r"\w+|[^\w\s]+", part.lower())]
        return ids

    def tokenizer_json(self) -> dict:
        j = super().tokenizer_json()
        j["added_tokens"] += [
            {"id": self.ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for t in CHAT]
        j["post_processor"] = None  # chat prompts carry their own special tokens
        j["truncation"] = None
        return j


def prompt_text(question: str, kind: str, image_tokens: int) -> str:
    """SmolVLM's chat template for one user turn with one image, generation prompt added;
    method A expands <image> as Idefics3's processor does, method B keeps one marker."""
    image = ("<fake_token_around_image><global-img>" + "<image>" * image_tokens + "<fake_token_around_image>"
             if kind == "unified" else "<image>")
    return f"<|im_start|>User:{image}{question}<end_of_utterance>\nAssistant:"


@dataclass
class VlmConfig:
    vocab_size: int = 96
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384
    max_positions: int = 96
    rope_theta: float = 10000.0
    vision_width: int = 128
    image_grid: int = 8
    scale_factor: int = 2           # pixel shuffle (method A)
    cross_every: int = 2            # a cross-attention layer after every k-th layer (method B)
    gate_init: float = 0.0          # the cross-attention layers' tanh gates at initialisation
    adapter_pos_out: bool = False   # method B: a second position table after the adapter's norm

    def to_dict(self):
        return asdict(self)

    @property
    def head_dim(self):
        return self.hidden // self.heads

    @property
    def image_tokens(self):
        return (self.image_grid // self.scale_factor) ** 2


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, positions, theta: float):
    """Rotary embedding, HF Llama's half-split convention. x [B, H, T, D], positions [B, T]."""
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    ang = positions[:, None, :, None].float() * inv  # [B, 1, T, D/2]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def repeat_kv(x, c: VlmConfig):
    """Grouped-query attention: each key/value head serves heads / kv_heads query heads.
    (expand + flatten rather than repeat_interleave, which exports with fixed shapes.)"""
    return x.unsqueeze(2).expand(-1, -1, c.heads // c.kv_heads, -1, -1).flatten(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, c: VlmConfig):
        super().__init__()
        self.c = c
        self.q = nn.Linear(c.hidden, c.heads * c.head_dim, bias=False)
        self.k = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.v = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.o = nn.Linear(c.heads * c.head_dim, c.hidden, bias=False)

    def forward(self, x, positions, mask, past=None):
        """mask: additive [B, 1, T, S]; past: (k, v) [B, kv_heads, P, D] or None."""
        c = self.c
        B, T, _ = x.shape
        q = self.q(x).view(B, T, c.heads, c.head_dim).transpose(1, 2)
        k = self.k(x).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v(x).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        q, k = rope(q, positions, c.rope_theta), rope(k, positions, c.rope_theta)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        present = (k, v)
        kk, vv = repeat_kv(k, c), repeat_kv(v, c)
        att = ((q @ kk.transpose(-1, -2)) / math.sqrt(c.head_dim) + mask).softmax(-1)
        y = (att @ vv).transpose(1, 2).reshape(B, T, -1)
        return self.o(y), present, att


class Mlp(nn.Module):
    def __init__(self, c: VlmConfig):
        super().__init__()
        self.gate = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.up = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.down = nn.Linear(c.intermediate, c.hidden, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: VlmConfig):
        super().__init__()
        self.ln1 = RMSNorm(c.hidden)
        self.attn = SelfAttention(c)
        self.ln2 = RMSNorm(c.hidden)
        self.mlp = Mlp(c)

    def forward(self, x, positions, mask, past=None):
        h, present, att = self.attn(self.ln1(x), positions, mask, past)
        x = x + h
        return x + self.mlp(self.ln2(x)), present, att


class CrossLayer(nn.Module):
    """Gated cross-attention to the image (Llama 3.2 Vision): tanh gates start at 0, so the
    layer begins as the identity and learns how much of the image to let in (a decoder trained
    from scratch with the image has no language model to protect: `gate_init` opens them)."""

    def __init__(self, c: VlmConfig):
        super().__init__()
        self.c = c
        self.ln1 = RMSNorm(c.hidden)
        self.q = nn.Linear(c.hidden, c.heads * c.head_dim, bias=False)
        self.k = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.v = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.o = nn.Linear(c.heads * c.head_dim, c.hidden, bias=False)
        self.attn_gate = nn.Parameter(torch.full((1,), c.gate_init))
        self.ln2 = RMSNorm(c.hidden)
        self.mlp = Mlp(c)
        self.mlp_gate = nn.Parameter(torch.full((1,), c.gate_init))

    def image_kv(self, image):
        c = self.c
        B, S, _ = image.shape
        k = self.k(image).view(B, S, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v(image).view(B, S, c.kv_heads, c.head_dim).transpose(1, 2)
        return k, v

    def forward(self, x, kv):
        c = self.c
        B, T, _ = x.shape
        q = self.q(self.ln1(x)).view(B, T, c.heads, c.head_dim).transpose(1, 2)
        k, v = repeat_kv(kv[0], c), repeat_kv(kv[1], c)
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(c.head_dim)).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, -1)
        x = x + torch.tanh(self.attn_gate) * self.o(y)
        return x + torch.tanh(self.mlp_gate) * self.mlp(self.ln2(x)), att


def causal_mask(attention_mask, past_length: int, T: int):
    """Additive mask [B, 1, T, P + T] from a [B, P + T] padding mask (1 = attend)."""
    S = past_length + T
    i = torch.arange(T)[:, None] + past_length
    j = torch.arange(S)[None, :]
    allowed = (j <= i)[None, None] & (attention_mask[:, None, None, :S] > 0)
    return torch.where(allowed, torch.zeros(()), torch.full((), -1e9))


class Decoder(nn.Module):
    """The text decoder of both models; `cross` adds method B's cross-attention layers."""

    def __init__(self, c: VlmConfig, cross: bool):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.vocab_size, c.hidden)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.layers))
        self.cross = nn.ModuleDict(
            {str(i): CrossLayer(c) for i in range(c.layers) if cross and (i + 1) % c.cross_every == 0})
        self.norm = RMSNorm(c.hidden)
        self.lm_head = nn.Linear(c.hidden, c.vocab_size, bias=False)

    def forward(self, inputs_embeds, attention_mask, position_ids, past=None, image=None, attentions=False):
        """-> logits, presents, and with `attentions` the attention probabilities of every layer,
        stacked as the exports' outputs: {"self": [B, layers, heads, T, P + T], "cross": [B,
        cross layers, heads, T, image tokens] or None}; else None."""
        T = inputs_embeds.shape[1]
        P = 0 if past is None else past[0][0].shape[2]
        mask = causal_mask(attention_mask, P, T)
        x, presents, selfs, crosses = inputs_embeds, [], [], []
        image_kv = {k: layer.image_kv(image) for k, layer in self.cross.items()} if image is not None else {}
        for i, layer in enumerate(self.layers):
            x, present, att = layer(x, position_ids, mask, None if past is None else past[i])
            presents.append(present)
            selfs.append(att)
            if str(i) in image_kv:
                x, att = self.cross[str(i)](x, image_kv[str(i)])
                crosses.append(att)
        maps = {"self": torch.stack(selfs, 1), "cross": torch.stack(crosses, 1) if crosses else None} \
            if attentions else None
        return self.lm_head(self.norm(x)), presents, maps


class Connector(nn.Module):
    """Idefics3's connector: pixel shuffle (space to depth) then a linear projection."""

    def __init__(self, c: VlmConfig):
        super().__init__()
        self.c = c
        self.proj = nn.Linear(c.vision_width * c.scale_factor ** 2, c.hidden, bias=False)

    def forward(self, patches):  # [B, grid*grid, W]
        c, s = self.c, self.c.scale_factor
        B, N, W = patches.shape
        g = c.image_grid
        x = patches.view(B, g, g // s, W * s)                 # merge s neighbours along x
        x = x.permute(0, 2, 1, 3).reshape(B, g // s, g // s, W * s * s)  # then along y
        x = x.permute(0, 2, 1, 3).reshape(B, (g // s) ** 2, W * s * s)
        return self.proj(x)


class ImageAdapter(nn.Module):
    """Method B's image side: patch features projected to the decoder width (+ positions).
    `pos_out` (config.adapter_pos_out) is added after the norm: the table before it is rescaled
    with the patch's features, so where a patch is reaches the cross-attention's values weakly;
    after it, it is a term of its own (zero at first, so a trained model starts unchanged)."""

    def __init__(self, c: VlmConfig):
        super().__init__()
        self.proj = nn.Linear(c.vision_width, c.hidden)
        self.pos = nn.Parameter(torch.randn(c.image_grid ** 2, c.hidden) * 0.02)
        self.norm = RMSNorm(c.hidden)
        self.pos_out = nn.Parameter(torch.zeros(c.image_grid ** 2, c.hidden)) if c.adapter_pos_out else None

    def forward(self, patches):
        x = self.norm(self.proj(patches) + self.pos)
        return x if self.pos_out is None else x + self.pos_out


class Vlm(nn.Module):
    """Either chat model: the decoder and its image side (method A's connector, method B's adapter)."""

    def __init__(self, c: VlmConfig, kind: str, image_token_id: int):
        super().__init__()
        self.kind, self.image_token_id = kind, image_token_id
        self.decoder = Decoder(c, cross=kind == "xattn")
        self.image = Connector(c) if kind == "unified" else ImageAdapter(c)

    def forward(self, ids, mask, patches):
        emb = self.decoder.embed(ids)
        img = self.image(patches)
        positions = torch.arange(ids.shape[1])[None].expand(ids.shape[0], -1)
        if self.kind == "unified":  # image embeddings take the places of the <image> tokens
            slots = ids == self.image_token_id
            emb = emb.masked_scatter(slots[..., None], img.reshape(-1, img.shape[-1]).to(emb.dtype))
            return self.decoder(emb, mask, positions)[0]
        return self.decoder(emb, mask, positions, image=img)[0]
