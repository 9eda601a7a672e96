"""Train dalle-tiny in two stages; each resumes from its checkpoint.

    /usr/bin/python3 training/train_dalle.py --stage vae --steps 1500 --threads 2
    /usr/bin/python3 training/train_dalle.py --stage transformer --steps 3000 --threads 2

(the shipped model's runs). Stage 1 trains the VQ-VAE on sd-tiny's latents of the training images
(data/runs/sd-tiny/latents.pt, written by `train_sd.py --stage unet`, or encoded from the export
with `--sd models/embedded/sd-tiny`; MSE + 0.25 commitment).
Stage 2 encodes them to token grids once (8 x 8, or 16 x 16 after `--grid 16` in stage 1; cached)
and trains the transformer on [caption ; image tokens] with next-token prediction, the caption
drawn from the scene's reference set; as in the paper, the text positions weigh 1/8 of the loss and
the image positions 7/8.
"""
import argparse
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from common import EOS, Checkpointer, World, WordTokenizer, optimizer_step, progress, seed_everything, set_threads, vocabulary
from dalle_model import DalleConfig, VqVae, transformer
from train_sd import sd_latents


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=["vae", "transformer"], required=True)
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--sd", default="data/runs/sd-tiny",
                    help="sd-tiny's run (with latents.pt) or its export (models/embedded/sd-tiny)")
    ap.add_argument("--grid", type=int, default=8, choices=[8, 16], help="the dVAE's token grid (stage vae)")
    ap.add_argument("--out", default="data/runs/dalle-tiny")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def vae_stage(args, config: DalleConfig, vae: VqVae, latents: torch.Tensor, schedule: dict) -> None:
    """Stage 1: the VQ-VAE on the latents (MSE + 0.25 commitment), into {out}/vqvae.pt."""
    opt = torch.optim.Adam(vae.parameters(), lr=args.lr)
    ckpt = Checkpointer(f"{args.out}/vqvae.pt")
    first = step = ckpt.load(vae, opt)
    start = time.time()
    while step < args.steps:
        x = latents[np.random.randint(0, len(latents), args.batch)]
        y, ids, commit = vae(x)
        rec = F.mse_loss(y, x)
        loss = rec + 0.25 * commit
        optimizer_step(vae, opt, loss, step, **schedule, clip=None)  # the VQ-VAE was trained unclipped
        step += 1
        if step % 20 == 0:
            used = len(torch.unique(ids))
            progress(step, args.steps, start, first, rec=rec.item(), commit=commit.item(), codes_used=used)
        ckpt.maybe_save(vae, opt, step, config=config.to_dict())
    ckpt.maybe_save(vae, opt, step, force=True, config=config.to_dict())


def image_codes(vae: VqVae, latents: torch.Tensor, out: str) -> torch.Tensor:
    """The trained VQ-VAE's token grids of the latents, [N, grid²], encoded once into {out}/codes.pt."""
    vae.load_state_dict(torch.load(f"{out}/vqvae.pt", map_location="cpu")["model"])
    vae.eval()
    cache = f"{out}/codes.pt"
    if not os.path.exists(cache):
        with torch.no_grad():
            codes = torch.cat([vae.encode_ids(latents[i:i + 500]) for i in range(0, len(latents), 500)])
        torch.save(codes, cache)
    return torch.load(cache).view(len(latents), -1)


def transformer_stage(args, config: DalleConfig, tok: WordTokenizer, train: World, codes: torch.Tensor,
                      schedule: dict) -> None:
    """Stage 2: the transformer on [caption ; image tokens], into {out}/transformer.pt."""
    model = transformer(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    ckpt = Checkpointer(f"{args.out}/transformer.pt")
    first = step = ckpt.load(model, opt)
    r = random.Random(args.seed + step)
    L = config.text_length
    weights = torch.cat([torch.full((L - 1,), 1 / 8 / (L - 1)), torch.full((config.image_tokens,), 7 / 8 / config.image_tokens)])
    start = time.time()
    model.train()
    while step < args.steps:
        idx = np.random.randint(0, len(train), args.batch)
        text = torch.full((args.batch, L), EOS, dtype=torch.long)  # padded with <|endoftext|>
        for j, i in enumerate(idx):
            t = tok.encode(r.choice(train.meta[i]["references"]))[:L]
            text[j, : len(t)] = torch.tensor(t)
        seq = torch.cat([text, codes[idx] + config.text_vocab], 1)  # [B, L + 64]
        x = seq[:, :-1]
        T = x.shape[1]
        logits = model(model.embed(x), torch.ones(args.batch, T), torch.arange(T).expand(args.batch, T))[0]
        loss_each = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1), reduction="none")
        loss = (loss_each.view(args.batch, -1) * weights).sum(1).mean()
        optimizer_step(model, opt, loss, step, **schedule, clip=1.0)
        step += 1
        if step % 20 == 0:
            image_loss = loss_each.view(args.batch, -1)[:, L - 1:].mean().item()
            progress(step, args.steps, start, first, loss=loss.item(), image_ce=image_loss)
        ckpt.maybe_save(model, opt, step, config=config.to_dict(), batch=args.batch)
    ckpt.maybe_save(model, opt, step, force=True, config=config.to_dict(), batch=args.batch)


def main():
    args = parse_args()
    set_threads(args.threads)
    seed_everything(args.seed)
    tok = WordTokenizer(vocabulary(args.data), max_length=24)
    # The transformer's image tokens are its dVAE's grid.
    grid = args.grid if args.stage == "vae" else torch.load(f"{args.out}/vqvae.pt")["config"]["grid"]
    config = DalleConfig(text_vocab=len(tok.tokens), grid=grid)
    train = World(args.data, "train")
    vae = VqVae(config)
    latents, _ = sd_latents(args.sd, train, args.out)
    schedule = dict(total=args.steps, lr=args.lr, warmup=200, floor=0.05)
    if args.stage == "vae":
        vae_stage(args, config, vae, latents, schedule)
    else:
        transformer_stage(args, config, tok, train, image_codes(vae, latents, args.out), schedule)
    print("done", flush=True)


if __name__ == "__main__":
    main()
