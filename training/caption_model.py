"""LSTM captioners: Show and Tell (Vinyals et al. 2015) and Show, Attend and Tell (Xu et al. 2015).

Both share a small CNN encoder whose last conv layer gives L = 8 × 8 annotation vectors (with a
learned position embedding, so that "top left" can be read from them). Show and Tell flattens
the features into one context vector that is fed to the LSTM before the first word; Show,
Attend and Tell attends over the annotations at every word, softly (weighted sum) or hard
(one sampled location, trained with REINFORCE).

ONNX layout (our own; the pipeline reads the roles from manifest.json):
  onnx/encoder_model.onnx  pixel_values [B,3,64,64] -> annotations [B,L,D], h [B,H], c [B,H]
  onnx/decoder_step.onnx   input_ids [B], h, c, annotations -> logits [B,V], h_out, c_out,
                           attention [B,L] (attention models only)
"""
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Every captioner's pixels, vit-gpt2-tiny's too (one trainer feeds them all).
MEAN, STD = 0.5, 0.5


def load_encoder(m: "Captioner", path: str) -> None:
    """Loads a trained captioner's encoder (its ONNX export) into m and freezes it: the paper gave
    soft and hard attention the same pretrained CNN, used without fine-tuning."""
    from onnx_export import onnx_initializers
    w = onnx_initializers(path)
    m.encoder.load_state_dict({k[len("m.encoder."):]: v for k, v in w.items() if k.startswith("m.encoder.")})
    m.encoder.requires_grad_(False)


def pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, 64, 64, 3] -> [B, 3, 64, 64] in [-1, 1], as preprocessor_config.json says."""
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - MEAN) / STD


@dataclass
class CaptionConfig:
    kind: str = "sat-soft"  # "nic", "sat-soft" or "sat-hard"
    vocab_size: int = 64
    embed: int = 64
    hidden: int = 256
    channels: int = 128
    grid: int = 8
    max_length: int = 32
    bos_token_id: int = 0
    eos_token_id: int = 1

    def to_dict(self):
        return asdict(self)


def shape_cnn(channels: int = 128) -> nn.Sequential:
    """The CNN that reads shape in this world: 64 -> 32 -> 16 -> 8, ending in a linear conv.

    Strided convolutions keep it cheap on a CPU. Its layer indices (0, 2, 4, 7) are the
    state-dict keys of every export built on it: the captioners' encoder (with a ReLU after) and
    the hybrid stems of clip-tiny and vit-gpt2-tiny, which start from sat-soft-tiny's weights.
    """
    return nn.Sequential(
        nn.Conv2d(3, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, channels, 3, padding=1),
    )


class Encoder(nn.Module):
    """64 × 64 RGB -> [B, L = 64, D] annotations (conv features + position embedding)."""

    def __init__(self, c: CaptionConfig):
        super().__init__()
        self.net = nn.Sequential(*shape_cnn(c.channels), nn.ReLU())
        self.pos = nn.Parameter(torch.randn(c.grid * c.grid, c.channels) * 0.02)

    def forward(self, pixel_values):
        f = self.net(pixel_values)  # [B, D, 8, 8]
        return f.flatten(2).transpose(1, 2) + self.pos  # [B, L, D]


class Captioner(nn.Module):
    def __init__(self, c: CaptionConfig):
        super().__init__()
        self.c = c
        self.encoder = Encoder(c)
        self.embed = nn.Embedding(c.vocab_size, c.embed)
        L, D, H = c.grid * c.grid, c.channels, c.hidden
        if c.kind == "nic":
            # Show and Tell: the image, as one vector, is the LSTM's input at t = -1.
            self.squeeze = nn.Conv2d(D, 16, 1)
            # Normalized to the scale of the word embeddings, so the image is not drowned out.
            self.image_in = nn.Sequential(nn.Linear(16 * L, c.embed), nn.LayerNorm(c.embed))
            self.lstm = nn.LSTMCell(c.embed, H)
            self.out = nn.Linear(H, c.vocab_size)
        else:
            # Show, Attend and Tell: h0, c0 from the mean annotation; attention MLP; gated context;
            # deep output layer.
            self.init_h, self.init_c = nn.Linear(D, H), nn.Linear(D, H)
            self.att_a, self.att_h, self.att_v = nn.Linear(D, 128), nn.Linear(H, 128), nn.Linear(128, 1)
            self.gate = nn.Linear(H, D)
            self.lstm = nn.LSTMCell(c.embed + D, H)
            self.out_h, self.out_z = nn.Linear(H, c.embed), nn.Linear(D, c.embed)
            self.out = nn.Linear(c.embed, c.vocab_size)
        # Forget-gate bias 1 (gates are ordered i, f, g, o), so what the LSTM read early (for
        # Show and Tell: the image, once) is kept across the caption by default.
        with torch.no_grad():
            self.lstm.bias_ih[H:2 * H].fill_(1.0)

    # ------------------------------------------------------------------ shared by training and export

    def start(self, pixel_values):
        """Annotations and the initial LSTM state."""
        a = self.encoder(pixel_values)  # [B, L, D]
        B = a.shape[0]
        if self.c.kind == "nic":
            f = self.squeeze(a.transpose(1, 2).reshape(B, -1, self.c.grid, self.c.grid)).flatten(1)
            zeros = a.new_zeros(B, self.c.hidden)
            h, c = self.lstm(self.image_in(f), (zeros, zeros))
            return a, h, c
        mean = a.mean(1)
        return a, torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def attend(self, a, h, pa=None):
        """Attention weights over the L annotations: [B, L]. `pa` = att_a(a), reusable across steps."""
        pa = self.att_a(a) if pa is None else pa
        e = self.att_v(torch.tanh(pa + self.att_h(h)[:, None])).squeeze(-1)
        return e.softmax(-1)

    def step(self, ids, h, c, a, hard_index=None, pa=None):
        """One word: returns logits, new state and attention weights (None for NIC)."""
        x = self.embed(ids)
        if self.c.kind == "nic":
            h, c = self.lstm(x, (h, c))
            return self.out(h), h, c, None
        alpha = self.attend(a, h, pa)  # [B, L]
        if hard_index is not None:  # hard attention: one location
            z = a[torch.arange(a.shape[0]), hard_index]
        else:
            z = (alpha[:, :, None] * a).sum(1)  # soft attention: expected context
        z = torch.sigmoid(self.gate(h)) * z
        h, c = self.lstm(torch.cat([x, z], -1), (h, c))
        logits = self.out(self.embed(ids) + self.out_h(h) + self.out_z(z))
        return logits, h, c, alpha

    # ------------------------------------------------------------------ training losses

    def loss(self, pixel_values, ids, mask, baseline=None):
        """Teacher-forced loss over ids [B, T] (BOS ... EOS, padded), mask [B, T].

        Soft: cross-entropy + the doubly stochastic penalty sum_i (1 - sum_t alpha_ti)^2.
        Hard: cross-entropy with sampled locations + REINFORCE on the sampling, reward = log-likelihood
        of the caption, a moving-average baseline and an entropy bonus; half of the sequences use
        the expected context instead, as in the paper.
        """
        a, h, c = self.start(pixel_values)
        pa = self.att_a(a) if self.c.kind != "nic" else None
        B, T = ids.shape
        nll = torch.zeros(B)
        alphas, logps, entropies = [], [], []
        use_sample = torch.rand(B) < 0.5 if self.c.kind == "sat-hard" else None
        for t in range(T - 1):
            hard_index = None
            if self.c.kind == "sat-hard":
                alpha = self.attend(a, h, pa)
                dist = torch.distributions.Categorical(probs=alpha)
                s = dist.sample()
                logps.append(dist.log_prob(s))
                entropies.append(dist.entropy())
                expected = alpha.argmax(-1)  # replaced below by the soft context where not sampling
                hard_index = torch.where(use_sample, s, expected)
                logits_hard, h_hard, c_hard, _ = self.step(ids[:, t], h, c, a, hard_index, pa)
                logits_soft, h_soft, c_soft, _ = self.step(ids[:, t], h, c, a, None, pa)
                pick = use_sample[:, None]
                logits = torch.where(pick, logits_hard, logits_soft)
                h, c = torch.where(pick, h_hard, h_soft), torch.where(pick, c_hard, c_soft)
            else:
                logits, h, c, alpha = self.step(ids[:, t], h, c, a, None, pa)
                if alpha is not None:
                    alphas.append(alpha * mask[:, t + 1, None])
            nll = nll + F.cross_entropy(logits, ids[:, t + 1], reduction="none") * mask[:, t + 1]
        loss = nll.sum() / mask[:, 1:].sum()
        stats = {"nll": loss.item()}
        if self.c.kind == "sat-soft":
            att = torch.stack(alphas, 1).sum(1)  # [B, L]
            reg = ((1.0 - att) ** 2).sum(-1).mean()
            loss = loss + 1.0 * reg / att.shape[-1]
            stats["att_reg"] = reg.item()
        if self.c.kind == "sat-hard":
            lp = torch.stack(logps, 1) * mask[:, 1:]
            ent = (torch.stack(entropies, 1) * mask[:, 1:]).sum() / mask[:, 1:].sum()
            # Reward: the caption's log-likelihood under the sampled locations. The baseline is
            # the moving average over sampled sequences only: the expected-context half scores
            # higher, and mixing it in made every sample's advantage negative.
            n = max(use_sample.sum().item(), 1)
            reward = -nll.detach()
            sampled = (reward * use_sample.float()).sum() / n
            b = sampled if baseline is None else baseline
            advantage = ((reward - b) * use_sample.float())[:, None]
            reinforce = -(advantage * lp).sum() / n / T
            loss = loss + reinforce - 0.01 * ent
            stats["reward"] = sampled.item()
            stats["entropy"] = ent.item()
        return loss, stats


class EncoderExport(nn.Module):
    def __init__(self, m: Captioner):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return self.m.start(pixel_values)


class StepExport(nn.Module):
    """One decoding step. Hard attention at inference takes the most probable location."""

    def __init__(self, m: Captioner):
        super().__init__()
        self.m = m

    def forward(self, input_ids, h, c, annotations):
        hard = None
        if self.m.c.kind == "sat-hard":
            hard = self.m.attend(annotations, h).argmax(-1)
        logits, h2, c2, alpha = self.m.step(input_ids, h, c, annotations, hard)
        if alpha is None:
            return logits, h2, c2
        return logits, h2, c2, alpha
