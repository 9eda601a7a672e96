"""sd-tiny: latent diffusion in the Stable Diffusion design, small enough to train on two cores.

Three parts, as in SD (Rombach et al. 2022):
- a VAE that maps a 64x64 RGB image in [-1, 1] to a 4x16x16 latent and back (SD: factor 8;
  here 4, since the world's small objects are only 10-13 px wide);
- a UNet that predicts the noise in a latent at timestep t, with cross-attention from its
  feature maps (queries) to the text encoder's hidden states (keys and values);
- the text encoder: clip-tiny's text tower, frozen, as SD freezes CLIP's.

The ONNX exports carry the names of the public SD exports (Olive/diffusers):
vae_encoder: sample -> latent_sample; vae_decoder: latent_sample -> sample;
unet: sample, timestep, encoder_hidden_states -> out_sample;
text_encoder: input_ids -> last_hidden_state, pooler_output.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_LENGTH = 32  # clip-tiny's model_max_length: prompts are padded to it, as SD pads to 77


@dataclass
class SdConfig:
    latent_channels: int = 4
    vae_channels: tuple = (32, 64, 64)  # 64x64 -> 32x32 -> 16x16
    unet_channels: tuple = (32, 64, 64)  # 16x16 -> 8x8 -> 4x4
    text_width: int = 128
    heads: int = 4
    # Learned position embeddings at each attention block over a latent of this side (0: none).
    # Convolutions and attention see content, not where it is, so without them "on the left"
    # has nothing to attend from; resized to the latent's actual size (the service draws 32-128 px).
    position_side: int = 0
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012

    def to_dict(self):
        return asdict(self)


def to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1], SD's pixel range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def alphas_cumprod(c: SdConfig) -> torch.Tensor:
    """SD's "scaled_linear" schedule: betas linear in sqrt space."""
    betas = torch.linspace(c.beta_start ** 0.5, c.beta_end ** 0.5, c.num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


class Res(nn.Module):
    """Residual block: two 3x3 convs, SiLU, optional GroupNorm and a time embedding added between."""

    def __init__(self, cin: int, cout: int, temb: int = 0, norm: bool = True):
        super().__init__()
        self.n1 = nn.GroupNorm(8, cin) if norm else nn.Identity()
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.n2 = nn.GroupNorm(8, cout) if norm else nn.Identity()
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout) if temb else None
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, t=None):
        h = self.c1(F.silu(self.n1(x)))
        if self.t is not None:
            h = h + self.t(t)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


# ---------------------------------------------------------------- VAE

class Vae(nn.Module):
    """Convolutional KL autoencoder without normalization layers, so that it trains on crops
    and runs on any image size that is a multiple of 4."""

    def __init__(self, c: SdConfig):
        super().__init__()
        a, b, d = c.vae_channels
        z = c.latent_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(3, a, 3, padding=1), Res(a, a, norm=False),
            nn.Conv2d(a, b, 3, stride=2, padding=1), Res(b, b, norm=False),
            nn.Conv2d(b, d, 3, stride=2, padding=1), Res(d, d, norm=False),
            nn.SiLU(), nn.Conv2d(d, 2 * z, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(z, d, 3, padding=1), Res(d, d, norm=False), Res(d, d, norm=False),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(d, b, 3, padding=1), Res(b, b, norm=False),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(b, a, 3, padding=1), Res(a, a, norm=False),
            nn.SiLU(), nn.Conv2d(a, 3, 3, padding=1),
        )

    def encode(self, x):
        mean, logvar = self.encoder(x).chunk(2, 1)
        return mean, logvar.clamp(-30, 20)

    def decode(self, z):
        return self.decoder(z)


# ---------------------------------------------------------------- UNet

def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (float) timesteps, cos first as diffusers' flip_sin_to_cos."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


class CrossAttention(nn.Module):
    """Self-attention over positions, then cross-attention to the text, then an MLP (SD's
    BasicTransformerBlock), all pre-norm with residuals. At the 16x16 level the self-attention
    is left out: 256 positions cost more than the two CPU cores can pay for."""

    def __init__(self, ch: int, ctx: int, heads: int, self_attention: bool = True, position_side: int = 0):
        super().__init__()
        self.heads = heads
        # Zero at first: a block given positions starts as the block without them.
        self.position = nn.Parameter(torch.zeros(1, ch, position_side, position_side)) if position_side else None
        self.self_attention = self_attention
        self.downscale = 1  # how much coarser than the UNet's finest level (set by the UNet)
        self.name = ""  # where in the UNet (set by the UNet): down1, down2, mid, up2, up1
        self.norm_in = nn.GroupNorm(8, ch)
        if self_attention:
            self.ln1 = nn.LayerNorm(ch)
            self.self_qkv = nn.Linear(ch, 3 * ch, bias=False)
            self.self_out = nn.Linear(ch, ch)
        self.ln2 = nn.LayerNorm(ch)
        self.q = nn.Linear(ch, ch, bias=False)
        self.kv = nn.Linear(ctx, 2 * ch, bias=False)
        self.cross_out = nn.Linear(ch, ch)
        self.ln3 = nn.LayerNorm(ch)
        self.ff = nn.Sequential(nn.Linear(ch, 4 * ch), nn.GELU(), nn.Linear(4 * ch, ch))

    def attend(self, q, k, v):
        """-> the attended values [B, T, C] and the attention probabilities [B, heads, T, S]."""
        B, T, C = q.shape
        h = self.heads
        split = lambda x: x.reshape(B, x.shape[1], h, C // h).transpose(1, 2)
        att = ((split(q) @ split(k).transpose(-1, -2)) * (C // h) ** -0.5).softmax(-1)
        return (att @ split(v)).transpose(1, 2).reshape(B, T, C), att

    def forward(self, x, context, maps: list = None):
        """`maps`, when given, gets this block's cross-attention probabilities [B, heads, H*W,
        text tokens], the level's H and W and its downscale from the finest level appended (the
        word maps of return_attention) and the block's name."""
        B, C, H, W = x.shape
        h = self.norm_in(x)
        if self.position is not None:
            h = h + F.interpolate(self.position, size=(H, W), mode="bilinear", align_corners=False)
        h = h.flatten(2).transpose(1, 2)  # [B, HW, C]
        if self.self_attention:
            q, k, v = self.self_qkv(self.ln1(h)).chunk(3, -1)
            h = h + self.self_out(self.attend(q, k, v)[0])
        k, v = self.kv(context).chunk(2, -1)
        y, att = self.attend(self.q(self.ln2(h)), k, v)
        if maps is not None:
            maps.append((att, H, W, self.downscale, self.name))
        h = h + self.cross_out(y)
        h = h + self.ff(self.ln3(h))
        return x + h.transpose(1, 2).reshape(B, C, H, W)


class UNet(nn.Module):
    """in_channels: the latent channels, or 2 x latent + 1 for an inpainting UNet, which also reads
    the mask and the masked image's latents."""

    def __init__(self, c: SdConfig, in_channels: int = 0):
        super().__init__()
        a, b, d = c.unet_channels
        z, ctx, heads = c.latent_channels, c.text_width, c.heads
        temb = 4 * a
        self.a = a
        self.time = nn.Sequential(nn.Linear(a, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(in_channels or z, a, 3, padding=1)
        p = c.position_side
        self.down1 = Res(a, a, temb)                      # 16x16
        self.att1 = CrossAttention(a, ctx, heads, self_attention=False, position_side=p)
        self.pool1 = nn.Conv2d(a, a, 3, stride=2, padding=1)
        self.down2 = Res(a, b, temb)                      # 8x8
        self.att2 = CrossAttention(b, ctx, heads, position_side=p // 2)
        self.pool2 = nn.Conv2d(b, b, 3, stride=2, padding=1)
        self.mid1 = Res(b, d, temb)                       # 4x4
        self.att_mid = CrossAttention(d, ctx, heads, position_side=p // 4)
        self.mid2 = Res(d, d, temb)
        self.up2 = Res(d + b, b, temb)                    # 8x8
        self.att_up2 = CrossAttention(b, ctx, heads, position_side=p // 2)
        self.up1 = Res(b + a, a, temb)                    # 16x16
        self.att_up1 = CrossAttention(a, ctx, heads, self_attention=False, position_side=p)
        self.norm_out = nn.GroupNorm(8, a)
        self.conv_out = nn.Conv2d(a, z, 3, padding=1)
        for block, f in ((self.att2, 2), (self.att_mid, 4), (self.att_up2, 2)):
            block.downscale = f
        for block, name in ((self.att1, "down1"), (self.att2, "down2"), (self.att_mid, "mid"), (self.att_up2, "up2"),
                            (self.att_up1, "up1")):
            block.name = name

    def forward(self, sample, timestep, encoder_hidden_states, maps: list = None):
        """`maps`: a list to collect every cross-attention block's probabilities in (see
        CrossAttention.forward); the output is the same with or without it."""
        t = self.time(timestep_embedding(timestep, self.a))
        ctx = encoder_hidden_states
        h1 = self.att1(self.down1(self.conv_in(sample), t), ctx, maps)
        h2 = self.att2(self.down2(self.pool1(h1), t), ctx, maps)
        m = self.mid2(self.att_mid(self.mid1(self.pool2(h2), t), ctx, maps), t)
        u2 = F.interpolate(m, scale_factor=2.0, mode="nearest")
        u2 = self.att_up2(self.up2(torch.cat([u2, h2], 1), t), ctx, maps)
        u1 = F.interpolate(u2, scale_factor=2.0, mode="nearest")
        u1 = self.att_up1(self.up1(torch.cat([u1, h1], 1), t), ctx, maps)
        return self.conv_out(F.silu(self.norm_out(u1)))


def word_maps(maps: list, blocks: tuple = ()) -> torch.Tensor:
    """DAAM's aggregation within one UNet pass (Tang et al. 2022): each cross-attention block's
    probabilities averaged over its heads, laid out as [B, text tokens, h, w], upsampled
    (bilinear) to the finest level and averaged over the blocks -> [B, tokens, H, W]. `blocks`
    narrows it: a block's name keeps all its heads, "name:k" its head k alone; empty: all. The
    sum over the denoising steps is the service's (kernels/word_maps.ts)."""
    def heads(name, n):
        if not blocks or name in blocks:
            return list(range(n))
        return [int(b.split(":")[1]) for b in blocks if b.split(":")[0] == name]
    maps = [(m, heads(m[4], m[0].shape[1])) for m in maps]
    maps = [(m, hs) for m, hs in maps if hs]
    total = None
    for (att, h, w, downscale, _), hs in maps:
        B, _, _, T = att.shape
        m = att[:, hs].mean(1).transpose(1, 2).reshape(B, T, h, w)
        if downscale != 1:
            m = F.interpolate(m, scale_factor=float(downscale), mode="bilinear", align_corners=False)
        total = m if total is None else total + m
    return total / len(maps)


class UNetWithMaps(nn.Module):
    """unet/model_attention.onnx: the same UNet, and its word maps as a second output."""

    def __init__(self, unet: UNet, blocks: tuple = ()):
        super().__init__()
        self.unet = unet
        self.blocks = blocks

    def forward(self, sample, timestep, encoder_hidden_states):
        maps = []
        out = self.unet(sample, timestep, encoder_hidden_states, maps)
        return out, word_maps(maps, self.blocks)
