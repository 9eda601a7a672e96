"""Train clip-tiny on the shapes world with the symmetric contrastive loss; resumes.

    /usr/bin/python3 training/train_clip.py --data data/world --out data/runs/clip-tiny --steps 6000
"""
import argparse
import math
import random
import time

import numpy as np
import torch

from clip_model import Clip, ClipConfig
from common import Checkpointer, World, WordTokenizer, progress, seed_everything, use_all_cores, vocabulary

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, 64, 64, 3] -> normalized float [B, 3, 64, 64], as the preprocessor config says."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


def object_phrase(o, with_size=True):
    words = ([o["size"]] if with_size else []) + [o["colour"], o["shape"]]
    return ("an " if words[0] == "orange" else "a ") + " ".join(words)


def training_text(meta: dict, r: random.Random) -> str:
    """A caption from the reference set or, for one object, a CLIP-style photo prompt."""
    choices = list(meta["references"])
    objects = meta["scene"]["objects"]
    if len(objects) == 1:
        o = objects[0]
        choices += [f"a photo of {object_phrase(o)}", f"a photo of {object_phrase(o, False)}"]
        choices += [f"a photo of {object_phrase(o, False)}"] * 2  # the zero-shot prompt form
    return r.choice(choices)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--out", default="data/runs/clip-tiny")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    use_all_cores()
    seed_everything(args.seed)
    words = vocabulary(args.data)
    tok = WordTokenizer(words, max_length=32)
    config = ClipConfig(vocab_size=len(tok.tokens))
    model = Clip(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    ckpt = Checkpointer(f"{args.out}/last.pt")
    first = step = ckpt.load(model, opt)
    train = World(args.data, "train")
    # Half of every batch: single-object scenes with the short prompt. Colour, position and
    # background tell most scenes apart, so without these near-duplicates (same colour, other
    # shape) the contrastive loss has little reason to learn shape.
    singles = np.array([i for i, m in enumerate(train.meta) if len(m["scene"]["objects"]) == 1])
    r = random.Random(args.seed + step)
    warmup = 200
    lr_at = lambda s: args.lr * min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    print(f"clip-tiny: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, from step {step}", flush=True)
    start = time.time()
    model.train()
    while step < args.steps:
        half = args.batch // 2
        idx = np.concatenate([np.random.randint(0, len(train), args.batch - half), singles[np.random.randint(0, len(singles), half)]])
        images = train.images[idx]
        texts = [training_text(train.meta[i], r) for i in idx[: args.batch - half]]
        texts += [f"a photo of {object_phrase(train.meta[i]['scene']['objects'][0], False)}" for i in idx[args.batch - half:]]
        ids, mask = tok.batch(texts)
        same = torch.tensor([[a == b for b in texts] for a in texts])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model.loss(pixels(images), ids, mask, same)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 10 == 0:
            progress(step, args.steps, start, first, loss=loss.item(), lr=lr_at(step), scale=model.logit_scale.exp().item())
        ckpt.maybe_save(model, opt, step, config=config.to_dict(), batch=args.batch)
    ckpt.maybe_save(model, opt, step, force=True, config=config.to_dict(), batch=args.batch)
    print("done", flush=True)


if __name__ == "__main__":
    main()
