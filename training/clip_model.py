"""clip-tiny: a ViT image encoder and a causal transformer text encoder in one embedding space.

The structure follows CLIP (Radford et al. 2021) and HF's CLIPModel: pre-norm blocks, a class
token, pre/post layer norms on the vision side, EOS pooling on the text side, linear
projections without bias, and a learned temperature. The ONNX exports carry the input and
output names of the public CLIP exports, so one loader serves both.
"""
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from caption_model import shape_cnn

# CLIP's pixel statistics: the trainer, the exported preprocessor configs and the chat models' tower use them.
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, 64, 64, 3] -> normalized float [B, 3, 64, 64], as the preprocessor config says."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


@dataclass
class ClipConfig:
    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    text_width: int = 128
    text_layers: int = 3
    text_heads: int = 4
    max_positions: int = 32
    vocab_size: int = 64
    embed_dim: int = 128
    eos_token_id: int = 1
    # The ViT paper's hybrid: a CNN before the transformer, one token per 8 × 8 cell as before.
    # "sat": sat-soft-tiny's encoder CNN (can start from its trained weights); "conv": three
    # 3 × 3 stride-2 convolutions from scratch; "linear": the plain ViT patch embedding, which
    # read shape at chance on 10–13 px objects.
    stem: str = "sat"

    def to_dict(self):
        return asdict(self)


class Block(nn.Module):
    """Pre-norm transformer block with quick-GELU MLP, as in CLIP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x, bias=None):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) * (C // self.heads) ** -0.5  # [B, heads, T, T]
        if bias is not None:
            att = att + bias
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.out(y)
        h = self.fc1(self.ln2(x))
        return x + self.fc2(h * torch.sigmoid(1.702 * h))


class VisionTower(nn.Module):
    def __init__(self, c: ClipConfig):
        super().__init__()
        grid = c.image_size // c.patch_size
        if c.stem == "sat":
            # sat-soft-tiny's encoder CNN (64 -> 32 -> 16 -> 8), which reads shape well, as the
            # hybrid's backbone; see init_stem_from_onnx.
            assert c.patch_size == 8 and c.vision_width == 128, "the sat CNN gives 8 x 8 x 128"
            self.patch = shape_cnn()
        elif c.stem == "conv":
            assert c.patch_size == 8, "the conv stem downsamples by 8"
            w = c.vision_width
            self.patch = nn.Sequential(
                nn.Conv2d(3, w // 4, 3, 2, 1), nn.GELU(),
                nn.Conv2d(w // 4, w // 2, 3, 2, 1), nn.GELU(),
                nn.Conv2d(w // 2, w, 3, 2, 1),
            )
        else:
            self.patch = nn.Conv2d(3, c.vision_width, c.patch_size, c.patch_size, bias=False)
        self.cls = nn.Parameter(torch.randn(c.vision_width) * 0.02)
        self.pos = nn.Parameter(torch.randn(grid * grid + 1, c.vision_width) * 0.02)
        self.pre_ln = nn.LayerNorm(c.vision_width)
        self.blocks = nn.ModuleList(Block(c.vision_width, c.vision_heads) for _ in range(c.vision_layers))
        self.post_ln = nn.LayerNorm(c.vision_width)
        self.proj = nn.Linear(c.vision_width, c.embed_dim, bias=False)

    def forward(self, pixel_values):
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)  # [B, L, width]
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], 1) + self.pos
        x = self.pre_ln(x)
        for b in self.blocks:
            x = b(x)
        last_hidden_state = x  # [B, 1 + L, width]
        tokens = self.proj(self.post_ln(x))  # [B, 1 + L, embed]
        return tokens[:, 0], tokens[:, 1:], last_hidden_state


def init_stem_from_onnx(tower: "VisionTower", path: str, mean, std) -> None:
    """Loads sat-soft-tiny's encoder convolutions from its ONNX export into a "sat" stem. That CNN
    was trained on pixels scaled to [-1, 1]; this tower gets CLIP-normalized ones, so the first
    convolution takes the per-channel affine map between the two: x_sat = 2 std x + 2 mean - 1."""
    from onnx_export import onnx_initializers
    w = onnx_initializers(path)
    with torch.no_grad():
        for k in (0, 2, 4, 7):
            tower.patch[k].weight.copy_(w[f"m.encoder.net.{k}.weight"])
            tower.patch[k].bias.copy_(w[f"m.encoder.net.{k}.bias"])
        a, b = 2 * std.flatten(), 2 * mean.flatten() - 1  # per input channel
        first = tower.patch[0]
        first.bias.add_((first.weight * b[None, :, None, None]).sum((1, 2, 3)))
        first.weight.mul_(a[None, :, None, None])


class TextTower(nn.Module):
    def __init__(self, c: ClipConfig):
        super().__init__()
        self.eos = c.eos_token_id
        self.tok = nn.Embedding(c.vocab_size, c.text_width)
        self.pos = nn.Parameter(torch.randn(c.max_positions, c.text_width) * 0.01)
        self.blocks = nn.ModuleList(Block(c.text_width, c.text_heads) for _ in range(c.text_layers))
        self.final_ln = nn.LayerNorm(c.text_width)
        self.proj = nn.Linear(c.text_width, c.embed_dim, bias=False)

    def forward(self, input_ids, attention_mask=None):
        T = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos[:T]
        causal = torch.full((T, T), float("-inf")).triu(1)  # [T, T]
        bias = causal[None, None]
        if attention_mask is not None:
            pad = (1.0 - attention_mask[:, None, None, :].float()) * -1e9  # [B, 1, 1, T]
            bias = bias + pad
        for b in self.blocks:
            x = b(x, bias)
        last_hidden_state = self.final_ln(x)  # [B, T, width]
        # Pool at the first EOS, as HF CLIP does when eos_token_id is set.
        first_eos = (input_ids == self.eos).int().argmax(-1)
        pooled = last_hidden_state[torch.arange(input_ids.shape[0]), first_eos]
        return self.proj(pooled), last_hidden_state


class Clip(nn.Module):
    def __init__(self, c: ClipConfig):
        super().__init__()
        self.config = c
        self.vision = VisionTower(c)
        self.text = TextTower(c)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))  # log(1 / 0.07)

    def loss(self, pixel_values, input_ids, attention_mask, same=None):
        img, _, _ = self.vision(pixel_values)
        txt, _ = self.text(input_ids, attention_mask)
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        logits = self.logit_scale.clamp(max=4.6052).exp() * img @ txt.T  # [B, B]
        if same is None:
            target = torch.eye(len(img))
        else:  # several images may fit one text: soft targets over every true match
            target = same.float() / same.float().sum(-1, keepdim=True)
        li = torch.sum(-target * logits.log_softmax(-1), -1).mean()
        lt = torch.sum(-target.T * logits.T.log_softmax(-1), -1).mean()
        return (li + lt) / 2


def load_clip(path: str):
    """A clip-tiny training checkpoint: the model (in eval mode) and the checkpoint itself."""
    state = torch.load(path, map_location="cpu")
    clip = Clip(ClipConfig(**state["config"]))
    clip.load_state_dict(state["model"])
    clip.eval()
    return clip, state


# ---------------------------------------------------------------- export wrappers (public names)

class VisionExport(nn.Module):
    """vision_model.onnx: pixel_values -> image_embeds, last_hidden_state."""

    def __init__(self, clip: Clip):
        super().__init__()
        self.clip = clip

    def forward(self, pixel_values):
        image_embeds, _, last_hidden_state = self.clip.vision(pixel_values)
        return image_embeds, last_hidden_state


class TextExport(nn.Module):
    """text_model.onnx: input_ids -> text_embeds, last_hidden_state."""

    def __init__(self, clip: Clip):
        super().__init__()
        self.clip = clip

    def forward(self, input_ids):
        return self.clip.text(input_ids)


class JointExport(nn.Module):
    """model.onnx: input_ids, pixel_values, attention_mask -> logits and embeddings."""

    def __init__(self, clip: Clip):
        super().__init__()
        self.clip = clip

    def forward(self, input_ids, pixel_values, attention_mask):
        img, _, _ = self.clip.vision(pixel_values)
        txt, _ = self.clip.text(input_ids, attention_mask)
        img_n, txt_n = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        logits_per_text = self.clip.logit_scale.clamp(max=4.6052).exp() * txt_n @ img_n.T
        return logits_per_text.T, logits_per_text, txt_n, img_n
