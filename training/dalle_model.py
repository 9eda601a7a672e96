"""dalle-tiny: DALL-E's two stages (Ramesh et al. 2021) at toy scale.

1. A discrete VAE maps a 64 x 64 image to an 8 x 8 grid of codebook tokens and back. This one
   is a VQ-VAE (van den Oord et al. 2017): nearest-codebook quantization with the
   straight-through gradient, a commitment loss, and codebook entries updated as exponential
   moving averages (with dead entries restarted from the batch). The paper relaxed the discrete
   choice with Gumbel-softmax instead; on two CPU cores the VQ-VAE reaches a usable codebook in
   far fewer steps (no temperature schedule, no KL term to balance), and the second stage only
   needs the token grid, which both give.
   Its outer layers are sd-tiny's trained, frozen convolutional autoencoder (64 x 64 x 3 <->
   16 x 16 x 4): the VQ encoder and decoder trained here work on those latents, halving the grid
   once more. A pixel-space VQ-VAE of the same reach ran at 0.3 steps/s on the two cores; this
   split trains in minutes, and the exported encoder and decoder still go pixels <-> tokens.
2. A decoder-only transformer models [text tokens ; image tokens] as one sequence with next-token
   prediction, so that P(text, image) = P(text) P(image | text); generation samples the image
   tokens after a caption. The caption is padded to a fixed length, so every image token sits at
   a fixed sequence position and rotary positions tell the rows and columns apart.
"""
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from sd_model import Res
from vlm_model import Decoder, VlmConfig


@dataclass
class DalleConfig:
    codebook: int = 512
    code_dim: int = 32
    latent_channels: int = 4     # sd-tiny's latents, 16 x 16
    vq_channels: int = 64
    grid: int = 8
    text_vocab: int = 64
    text_length: int = 24
    width: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2

    def to_dict(self):
        return asdict(self)

    @property
    def image_tokens(self):
        return self.grid * self.grid


class VqVae(nn.Module):
    """Latents [B, 4, 16, 16] <-> token ids [B, grid, grid]: grid 8 halves the latent grid once
    (the shipped model), grid 16 gives every latent pixel its own token (a plain convolution where
    the 8 x 8 one strides)."""

    def __init__(self, c: DalleConfig, decay: float = 0.99):
        super().__init__()
        z, d = c.latent_channels, c.vq_channels
        assert c.grid in (8, 16), "sd-tiny's 16 x 16 latents, halved or not"
        down = nn.Conv2d(d, d, 4, 2, 1) if c.grid == 8 else nn.Conv2d(d, d, 3, padding=1)
        up = nn.ConvTranspose2d(d, d, 4, 2, 1) if c.grid == 8 else nn.Conv2d(d, d, 3, padding=1)
        self.encoder = nn.Sequential(
            nn.Conv2d(z, d, 3, padding=1), Res(d, d, norm=False),
            down, Res(d, d, norm=False), Res(d, d, norm=False),
            nn.SiLU(), nn.Conv2d(d, c.code_dim, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(c.code_dim, d, 3, padding=1), Res(d, d, norm=False), Res(d, d, norm=False),
            up, Res(d, d, norm=False),
            nn.SiLU(), nn.Conv2d(d, z, 3, padding=1),
        )
        self.decay = decay
        self.register_buffer("codes", torch.randn(c.codebook, c.code_dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(c.codebook))
        self.register_buffer("ema_sum", self.codes.clone())

    def quantize(self, z):
        """z [B, D, h, w] -> token ids [B, h, w], their code vectors, and z flattened."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codes.T + self.codes.pow(2).sum(1)[None]
        ids = dist.argmin(1)
        q = self.codes[ids].view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        return ids.view(z.shape[0], z.shape[2], z.shape[3]), q, flat

    def forward(self, x):
        z = self.encoder(x)
        ids, q, flat = self.quantize(z)
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(ids.flatten(), self.codes.shape[0]).float()
                self.ema_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.ema_sum.mul_(self.decay).add_(onehot.T @ flat, alpha=1 - self.decay)
                n = self.ema_count.sum()
                count = (self.ema_count + 1e-5) / (n + self.codes.shape[0] * 1e-5) * n
                self.codes.copy_(self.ema_sum / count[:, None])
                dead = self.ema_count < 0.05  # restart entries unused for ~300 steps from random encoder outputs
                if dead.any():
                    pick = flat[torch.randint(0, flat.shape[0], (int(dead.sum()),))]
                    self.codes[dead] = pick
                    self.ema_sum[dead] = pick
                    self.ema_count[dead] = 1.0
        commit = F.mse_loss(z, q.detach())
        q = z + (q - z).detach()  # straight-through
        return self.decoder(q), ids, commit

    def encode_ids(self, latents):
        return self.quantize(self.encoder(latents))[0]

    def decode_ids(self, ids):
        return self.decoder(self.codes[ids].permute(0, 3, 1, 2))


def transformer(c: DalleConfig) -> Decoder:
    """The chat models' decoder (RMSNorm, rotary positions, grouped-query attention, SwiGLU), over
    one vocabulary: text ids as they are, image ids offset by the text vocabulary. Sharing the
    architecture lets the WebGPU backend run it on the chat decoder's WGSL kernels."""
    return Decoder(VlmConfig(
        vocab_size=c.text_vocab + c.codebook, hidden=c.width, layers=c.layers, heads=c.heads,
        kv_heads=c.kv_heads, intermediate=3 * c.width, max_positions=c.text_length + c.image_tokens,
    ), cross=False)
