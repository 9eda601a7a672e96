"""Stable Diffusion 2.x's UNet and VAE decoder at their public sizes (SD-Turbo's configs), for the
real-size benchmarks: random weights, the public graphs' inputs and outputs. Written from the
architecture as the SD and diffusers papers and configs describe it (UNet2DConditionModel with
block_out_channels 320/640/1280/1280, two ResNets a level, one linear-projection transformer with
self-attention, cross-attention to 1024-wide text states and a GEGLU feed-forward after each ResNet
of the first three levels and in the middle; AutoencoderKL's decoder with 512/512/256/128 channels,
three ResNets a level and one attention block in the middle). sd_model.py is the small UNet the
project trains; this one is not trained."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def group_norm(ch: int, eps: float = 1e-5) -> nn.GroupNorm:
    return nn.GroupNorm(32, ch, eps=eps)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int = 0, eps: float = 1e-5):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin, eps), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(temb, cout) if temb else None
        self.norm2, self.conv2 = group_norm(cout, eps), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, t=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time is not None:
            h = h + self.time(F.silu(t))[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class Attention(nn.Module):
    def __init__(self, dim: int, ctx: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(ctx, dim, bias=False)
        self.v = nn.Linear(ctx, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, context):
        B, T, C = x.shape
        split = lambda y: y.reshape(B, y.shape[1], self.heads, C // self.heads).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(context)), split(self.v(context))
        att = (q @ k.transpose(-1, -2) * (C // self.heads) ** -0.5).softmax(-1)
        return self.out((att @ v).transpose(1, 2).reshape(B, T, C))


class Transformer2D(nn.Module):
    """GroupNorm, a linear projection in, one BasicTransformerBlock, a linear projection out."""

    def __init__(self, ch: int, ctx: int, heads: int):
        super().__init__()
        self.norm = group_norm(ch, 1e-6)
        self.proj_in, self.proj_out = nn.Linear(ch, ch), nn.Linear(ch, ch)
        self.ln1, self.self_attn = nn.LayerNorm(ch), Attention(ch, ch, heads)
        self.ln2, self.cross_attn = nn.LayerNorm(ch), Attention(ch, ctx, heads)
        self.ln3 = nn.LayerNorm(ch)
        self.geglu, self.ff_out = nn.Linear(ch, 8 * ch), nn.Linear(4 * ch, ch)

    def forward(self, x, context):
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        n = self.ln1(h)
        h = h + self.self_attn(n, n)
        h = h + self.cross_attn(self.ln2(h), context)
        value, gate = self.geglu(self.ln3(h)).chunk(2, -1)
        h = h + self.ff_out(value * F.gelu(gate))
        return x + self.proj_out(h).transpose(1, 2).reshape(B, C, H, W)


class UNet2DCondition(nn.Module):
    """SD 2.x's UNet: `sample` [B, 4, h, w], `timestep` [B], `encoder_hidden_states` [B, 77, 1024]
    -> the predicted noise."""

    def __init__(self, channels=(320, 640, 1280, 1280), attention=(True, True, True, False), ctx=1024,
                 head_dim=64, layers=2):
        super().__init__()
        temb = 4 * channels[0]
        self.base = channels[0]
        self.time = nn.Sequential(nn.Linear(channels[0], temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(4, channels[0], 3, padding=1)
        skips = [channels[0]]
        self.down = nn.ModuleList()
        cin = channels[0]
        for level, (ch, att) in enumerate(zip(channels, attention)):
            for _ in range(layers):
                self.down.append(nn.ModuleList([ResnetBlock(cin, ch, temb),
                                                Transformer2D(ch, ctx, ch // head_dim) if att else nn.Identity()]))
                cin = ch
                skips.append(ch)
            if level < len(channels) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        top = channels[-1]
        self.mid = nn.ModuleList([ResnetBlock(top, top, temb), Transformer2D(top, ctx, top // head_dim),
                                  ResnetBlock(top, top, temb)])
        self.up = nn.ModuleList()
        for level, (ch, att) in enumerate(zip(reversed(channels), reversed(attention))):
            for _ in range(layers + 1):
                self.up.append(nn.ModuleList([ResnetBlock(cin + skips.pop(), ch, temb),
                                              Transformer2D(ch, ctx, ch // head_dim) if att else nn.Identity()]))
                cin = ch
            if level < len(channels) - 1:
                self.up.append(nn.Conv2d(ch, ch, 3, padding=1))  # after a nearest 2x upsampling
        self.norm_out = group_norm(channels[0])
        self.conv_out = nn.Conv2d(channels[0], 4, 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states):
        half = self.base // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = timestep.float()[:, None] * freqs[None]
        t = self.time(torch.cat([torch.cos(args), torch.sin(args)], -1))
        h = self.conv_in(sample)
        skips = [h]
        for block in self.down:
            if isinstance(block, nn.Conv2d):
                h = block(h)
            else:
                h = block[1](block[0](h, t), encoder_hidden_states) if isinstance(block[1], Transformer2D) \
                    else block[0](h, t)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, t), encoder_hidden_states), t)
        for block in self.up:
            if isinstance(block, nn.Conv2d):
                h = block(F.interpolate(h, scale_factor=2.0, mode="nearest"))
                continue
            h = block[0](torch.cat([h, skips.pop()], 1), t)
            if isinstance(block[1], Transformer2D):
                h = block[1](h, encoder_hidden_states)
        return self.conv_out(F.silu(self.norm_out(h)))


class VaeAttention(nn.Module):
    """The VAE's middle attention: one head over every position, GroupNorm first, residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = group_norm(ch, 1e-6)
        self.attn = Attention(ch, ch, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)
        return x + self.attn(h, h).transpose(1, 2).reshape(B, C, H, W)


class VaeDecoder(nn.Module):
    """AutoencoderKL's decoder with its post-quantization convolution: `latent_sample` [B, 4, h, w]
    (already divided by the scaling factor) -> `sample` [B, 3, 8h, 8w] in [-1, 1]."""

    def __init__(self, channels=(128, 256, 512, 512), layers=2):
        super().__init__()
        top = channels[-1]
        self.post_quant_conv = nn.Conv2d(4, 4, 1)
        self.conv_in = nn.Conv2d(4, top, 3, padding=1)
        self.mid = nn.Sequential(ResnetBlock(top, top, eps=1e-6), VaeAttention(top), ResnetBlock(top, top, eps=1e-6))
        blocks, cin = [], top
        for level, ch in enumerate(reversed(channels)):
            for _ in range(layers + 1):
                blocks.append(ResnetBlock(cin, ch, eps=1e-6))
                cin = ch
            if level < len(channels) - 1:
                blocks += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]
        self.up = nn.Sequential(*blocks)
        self.norm_out = group_norm(channels[0], 1e-6)
        self.conv_out = nn.Conv2d(channels[0], 3, 3, padding=1)

    def forward(self, latent_sample):
        h = self.up(self.mid(self.conv_in(self.post_quant_conv(latent_sample))))
        return self.conv_out(F.silu(self.norm_out(h)))


def gflop(model: nn.Module, *args) -> float:
    """Multiply-adds × 2 of one forward pass on `args`: every convolution and linear layer, and
    both products of every attention, counted as the pass runs."""
    macs = [0]
    count = lambda n: macs.__setitem__(0, macs[0] + n)
    hooks = [m.register_forward_hook(lambda m, i, o: count(o.numel() * m.in_channels // m.groups
                                                           * m.kernel_size[0] * m.kernel_size[1]))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(lambda m, i, o: count(o.numel() * m.in_features))
              for m in model.modules() if isinstance(m, nn.Linear)]
    hooks += [m.register_forward_hook(lambda m, i, o: count(2 * i[0].numel() * i[1].shape[1]))
              for m in model.modules() if isinstance(m, Attention)]
    with torch.no_grad():
        model(*args)
    for h in hooks:
        h.remove()
    return 2 * macs[0] / 1e9
