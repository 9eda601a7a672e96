"""Train sd-tiny in two stages into one run folder; each resumes from its checkpoint.

    /usr/bin/python3 training/train_sd.py --stage vae --data data/world --out data/runs/sd-tiny --steps 3000
    /usr/bin/python3 training/train_sd.py --stage unet --data data/world --out data/runs/sd-tiny --steps 8000

Stage 1 trains the VAE (vae.pt): reconstruction (MSE + L1) plus a small KL term. The first 90%
of the steps see random 32x32 crops (the VAE has no normalization layers, so a crop is just a
smaller image, at a quarter of the cost), the rest whole 64x64 images.

Stage 2 encodes the training images with that VAE once (latents.pt, cached; dalle-tiny trains on
it too) and trains the UNet (unet.pt) to predict the noise added to the latents, conditioned on
the frozen clip-tiny text tower; the prompt is dropped 10% of the time so that classifier-free
guidance works. Keeps an EMA of the weights (what is exported). `--vae models/embedded/sd-tiny`
trains a new UNet on the shipped VAE instead of a run's:

    /usr/bin/python3 training/train_sd.py --stage unet --vae models/embedded/sd-tiny \
      --clip data/runs/clip-tiny-600.pt --unet-channels 64,128,128 --out data/runs/sd-tiny-v2
"""
import argparse
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from clip_model import load_clip
from export_sd import unet_from_export, vae_from_export
from common import Checkpointer, World, WordTokenizer, optimizer_step, progress, seed_everything, set_threads, vocabulary, warmup_cosine
from sd_model import MAX_LENGTH, SdConfig, UNet, Vae, alphas_cumprod, to_unit

# Each stage's own defaults for the options they share.
DEFAULTS = {"vae": {"steps": 3000, "batch": 32, "lr": 1e-3}, "unet": {"steps": 8000, "batch": 64, "lr": 5e-4}}


def load_text_tower(path: str):
    return load_clip(path)[0].text


def encode_prompts(text, tok: WordTokenizer, prompts: list) -> torch.Tensor:
    ids = torch.full((len(prompts), MAX_LENGTH), 1, dtype=torch.long)  # pad = <|endoftext|>
    for i, p in enumerate(prompts):
        row = tok.encode(p)
        ids[i, : len(row)] = torch.tensor(row)
    with torch.no_grad():
        return text(ids)[1]  # last_hidden_state [B, 32, 128], no attention mask (as SD)


@torch.no_grad()
def world_latents(vae: Vae, world: World, batch: int = 250) -> torch.Tensor:
    out = [vae.encode(to_unit(world.images[i:i + batch]))[0] for i in range(0, len(world), batch)]
    return torch.cat(out)


def sd_latents(sd: str, train: World, out: str) -> tuple[torch.Tensor, float]:
    """The training images' latents at unit variance [N, 4, 16, 16] and their scaling_factor: from
    {sd}/latents.pt, else encoded once into {out}/latents.pt by the VAE of the run {sd} (vae.pt;
    scaling_factor 1 / the latents' std) or of the export {sd} (vae_encoder/; its scaling_factor)."""
    cache = f"{sd}/latents.pt"
    if not os.path.exists(cache):
        cache = f"{out}/latents.pt"
    if not os.path.exists(cache):
        if os.path.exists(f"{sd}/vae.pt"):
            vae = Vae(SdConfig())
            vae.load_state_dict(torch.load(f"{sd}/vae.pt", map_location="cpu")["model"])
            latents = world_latents(vae.eval(), train)
            scale = float(1.0 / latents.std())
        else:
            vae, scale = vae_from_export(sd)
            latents = world_latents(vae, train)
        os.makedirs(out, exist_ok=True)
        torch.save({"latents": latents, "scaling_factor": scale}, cache)
    cached = torch.load(cache)
    assert len(cached["latents"]) == len(train), f"{cache} was written for another dataset"
    return cached["latents"] * cached["scaling_factor"], cached["scaling_factor"]


def vae_stage(args, config: SdConfig) -> None:
    vae = Vae(config)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    ckpt = Checkpointer(f"{args.out}/vae.pt")
    first = step = ckpt.load(vae, opt)
    train = World(args.data, "train")
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
        optimizer_step(vae, opt, loss, step, args.steps, args.lr, warmup=100, floor=0.1, clip=1.0)
        step += 1
        if step % 20 == 0:
            progress(step, args.steps, start, first, rec=rec.item(), kl=kl.item(), std=mean.std().item())
        ckpt.maybe_save(vae, opt, step, config=config.to_dict())
    ckpt.maybe_save(vae, opt, step, force=True, config=config.to_dict())


def unet_stage(args, config: SdConfig) -> None:
    tok = WordTokenizer(vocabulary(args.data), max_length=MAX_LENGTH)
    text = load_text_tower(args.clip)
    train = World(args.data, "train")

    latents, scale = sd_latents(args.vae or args.out, train, args.out)
    print(f"latents {tuple(latents.shape)}, scaling_factor {scale:.4f}", flush=True)

    unet = UNet(config)
    ema = UNet(config)
    ema.load_state_dict(unet.state_dict())
    # The position tables in a group of their own: at the shared rate they stayed near their zero
    # start (rms 0.01–0.02 after 9,000 steps), and weight decay pulls them back there.
    tables = [p for n, p in unet.named_parameters() if n.endswith(".position")]
    rest = [p for n, p in unet.named_parameters() if not n.endswith(".position")]
    opt = torch.optim.AdamW([{"params": rest}, {"params": tables, "scale": args.position_lr_scale, "weight_decay": 0.0}],
                            lr=args.lr, weight_decay=0.01)
    ckpt = Checkpointer(f"{args.out}/unet.pt")
    first = step = ckpt.load(unet, opt)
    if step:
        ema.load_state_dict(torch.load(ckpt.path, map_location="cpu")["ema"])
    elif args.init:
        # Another run's weights (its EMA) to start from; what this config adds (positions) starts
        # at zero, so step 0 draws what that run drew.
        # A run's unet.pt, or an export folder (data/ does not survive a new machine; the export does).
        init = (unet_from_export(args.init)[1].state_dict() if os.path.isdir(args.init)
                else torch.load(args.init, map_location="cpu")["ema"])
        missing, unexpected = unet.load_state_dict(init, strict=False)
        assert not unexpected and all(k.endswith(".position") for k in missing), (missing, unexpected)
        ema.load_state_dict(unet.state_dict())
        print(f"from {args.init}'s EMA weights; new: {', '.join(missing) or 'none'}", flush=True)
    ac = alphas_cumprod(config)
    r = random.Random(args.seed + step)
    schedule = dict(total=args.steps, lr=args.lr, warmup=200, floor=0.1)
    lr_at = lambda s: warmup_cosine(s, **schedule)
    print(f"sd-tiny unet: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M parameters, from step {step}", flush=True)
    # What the model card says about the training (export_sd.model_card).
    recipe = {"batch": args.batch, "lr": args.lr, "offset_noise": args.offset_noise, "drop": args.drop, "ema": args.ema,
              "clip": args.clip, "init": args.init, "noisy_share": args.noisy_share, "single_share": args.single_share,
              "position_lr_scale": args.position_lr_scale}
    singles = np.array([i for i, m in enumerate(train.meta) if len(m["scene"]["objects"]) == 1])
    n_single, n_noisy = round(args.single_share * args.batch), round(args.noisy_share * args.batch)
    noisy_from = int(0.6 * config.num_train_timesteps)
    start = time.time()
    while step < args.steps:
        idx = np.random.randint(0, len(train), args.batch)
        idx[:n_single] = np.random.choice(singles, n_single)
        x0 = latents[idx]
        prompts = ["" if r.random() < args.drop else r.choice(train.meta[i]["references"]) for i in idx]
        ctx = encode_prompts(text, tok, prompts)
        t = torch.randint(0, config.num_train_timesteps, (args.batch,))
        t[:n_noisy] = torch.randint(noisy_from, config.num_train_timesteps, (n_noisy,))
        eps = torch.randn_like(x0)
        if args.offset_noise:
            # SD's schedule keeps ~7% of the signal at t = T, so without this the model learns to
            # read each image's mean brightness off the noise, and from pure noise at inference
            # draws mid-grey backgrounds; offset noise lets it move the mean itself.
            eps = eps + args.offset_noise * torch.randn(x0.shape[0], x0.shape[1], 1, 1)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(unet(xt, t.float(), ctx), eps)
        optimizer_step(unet, opt, loss, step, **schedule, clip=1.0)
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.mul_(d).add_(p, alpha=1 - d)
        step += 1
        if step % 20 == 0:
            progress(step, args.steps, start, first, loss=loss.item(), lr=lr_at(step))
        ckpt.maybe_save(unet, opt, step, ema=ema.state_dict(), config=config.to_dict(), scaling_factor=scale, recipe=recipe)
    ckpt.maybe_save(unet, opt, step, force=True, ema=ema.state_dict(), config=config.to_dict(), scaling_factor=scale,
                    recipe=recipe)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=["vae", "unet"], required=True)
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--out", default="data/runs/sd-tiny")
    ap.add_argument("--steps", type=int, default=None, help="default: 3000 (vae), 8000 (unet)")
    ap.add_argument("--batch", type=int, default=None, help="default: 32 (vae), 64 (unet)")
    ap.add_argument("--lr", type=float, default=None, help="default: 1e-3 (vae), 5e-4 (unet)")
    ap.add_argument("--kl", type=float, default=1e-5, help="vae: weight of the KL term")
    ap.add_argument("--clip", default="data/runs/clip-tiny/last.pt", help="unet: the run whose text tower conditions it")
    ap.add_argument("--vae", help="unet: the run (vae.pt) or export (vae_encoder/) whose VAE makes the latents; "
                                   "default: this run's")
    ap.add_argument("--unet-channels", default="32,64,64", help="unet: channels at 16 x 16, 8 x 8 and 4 x 4")
    ap.add_argument("--positions", type=int, default=0, metavar="SIDE",
                    help="unet: learned position embeddings over a latent of this side (16 for 64 px)")
    ap.add_argument("--init", help="unet: start from this unet.pt's EMA weights, or this export's UNet (a fresh run folder)")
    ap.add_argument("--drop", type=float, default=0.1, help="unet: share of prompts replaced by the empty one")
    ap.add_argument("--ema", type=float, default=0.999, help="unet: decay of the weights' EMA")
    ap.add_argument("--offset-noise", type=float, default=0.0,
                    help="unet: add this much per-image, per-channel constant noise (Guttenberg 2023)")
    ap.add_argument("--noisy-share", type=float, default=0.0,
                    help="unet: share of each batch whose timestep is drawn from the noisiest 40%%, where the "
                         "layout is decided (the eps loss weighs an x0 error there by the SNR, below 0.2)")
    ap.add_argument("--single-share", type=float, default=0.0,
                    help="unet: share of each batch drawn from one-object images (a third of the world's otherwise)")
    ap.add_argument("--position-lr-scale", type=float, default=1.0,
                    help="unet: the position tables' learning rate, times --lr (no weight decay on them)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for name, value in DEFAULTS[args.stage].items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    set_threads(args.threads)
    seed_everything(args.seed)
    config = SdConfig(unet_channels=tuple(int(c) for c in args.unet_channels.split(",")), position_side=args.positions)
    (vae_stage if args.stage == "vae" else unet_stage)(args, config)
    print("done", flush=True)


if __name__ == "__main__":
    main()
