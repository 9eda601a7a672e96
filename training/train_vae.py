"""Train sd-tiny's VAE: reconstruction (MSE + L1) plus a small KL term; resumes.

The first 90% of the steps see random 32x32 crops (the VAE has no normalization layers, so a
crop is just a smaller image, at a quarter of the cost), the rest whole 64x64 images.

    /usr/bin/python3 training/train_vae.py --data data/world --out data/runs/sd-tiny --steps 3000
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from common import Checkpointer, World, progress, seed_everything, warmup_cosine
from sd_model import SdConfig, Vae, to_unit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--out", default="data/runs/sd-tiny")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kl", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    config = SdConfig()
    vae = Vae(config)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    ckpt = Checkpointer(f"{args.out}/vae.pt")
    first = step = ckpt.load(vae, opt)
    train = World(args.data, "train")
    lr_at = lambda s: warmup_cosine(s, args.steps, args.lr, warmup=100, floor=0.1)
    print(f"sd-tiny vae: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M parameters, from step {step}", flush=True)
    start = time.time()
    while step < args.steps:
        idx = np.random.randint(0, len(train), args.batch)
        x = to_unit(train.images[idx])
        if step < 0.9 * args.steps:
            oy, ox = np.random.randint(0, 33, 2)
            x = x[:, :, oy:oy + 32, ox:ox + 32]
        mean, logvar = vae.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        y = vae.decode(z)
        rec = F.mse_loss(y, x) + 0.5 * F.l1_loss(y, x)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = rec + args.kl * kl
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            progress(step, args.steps, start, first, rec=rec.item(), kl=kl.item(), std=mean.std().item())
        ckpt.maybe_save(vae, opt, step, config=config.to_dict())
    ckpt.maybe_save(vae, opt, step, force=True, config=config.to_dict())
    print("done", flush=True)


if __name__ == "__main__":
    main()
