"""Train a captioner (nic, sat-soft, sat-hard, vit-gpt2) on the world's canonical captions; resumes.

By default every batch is drawn fresh by training/world.py (--fresh 0 re-reads data/world).

    /usr/bin/python3 training/train_caption.py --kind sat-soft --steps 3000
"""
import argparse
import time

import numpy as np
import torch

from caption_model import Captioner, CaptionConfig, load_encoder, pixels
from clip_model import init_stem_from_onnx
from vit_gpt2_model import VitGpt2, VitGpt2Config
import world
from common import Checkpointer, World, WordTokenizer, optimizer_step, progress, seed_everything, set_threads, vocabulary

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["nic", "sat-soft", "sat-hard", "vit-gpt2"], required=True)
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=None, help="default: 2e-3 (LSTM), 1e-3 (vit-gpt2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--fresh", type=float, default=1.0,
                    help="share of each batch drawn fresh by training/world.py (the rest: data/world)")
    ap.add_argument("--init-encoder", default=None,
                    help="sat-soft-tiny's encoder_model.onnx: the LSTM kinds' encoder, vit-gpt2's hybrid stem; frozen")
    args = ap.parse_args()
    out = args.out or f"data/runs/{args.kind}-tiny"

    set_threads(args.threads)
    seed_everything(args.seed)
    tok = WordTokenizer(vocabulary(args.data), max_length=32)
    if args.kind == "vit-gpt2":
        config = VitGpt2Config(vocab_size=len(tok.tokens), stem="sat" if args.init_encoder else "linear")
        model, args.lr = VitGpt2(config), args.lr or 1e-3
        if args.init_encoder:  # its inputs are in [-1, 1], as the sat CNN's were: no affine fold
            init_stem_from_onnx(model.encoder, args.init_encoder, mean=torch.tensor(0.5), std=torch.tensor(0.5))
            model.encoder.patch.requires_grad_(False)
    else:
        config, args.lr = CaptionConfig(kind=args.kind, vocab_size=len(tok.tokens)), args.lr or 2e-3
        model = Captioner(config)
        if args.init_encoder:
            load_encoder(model, args.init_encoder)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    ckpt = Checkpointer(f"{out}/last.pt")
    first = step = ckpt.load(model, opt)
    train = World(args.data, "train")
    captions = [m["caption"] for m in train.meta]
    print(f"{args.kind}-tiny: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, from step {step}", flush=True)
    baseline = None
    start = time.time()
    model.train()
    r = np.random.default_rng([args.seed, step])  # a resumed run draws scenes it has not seen
    while step < args.steps:
        fresh = int(round(args.batch * args.fresh))
        idx = np.random.randint(0, len(train), args.batch - fresh)
        scenes = [world.sample_scene(r) for _ in range(fresh)]
        images = np.concatenate([train.images[idx], *([np.stack([world.render(sc, r) for sc in scenes])] if fresh else [])])
        ids, mask = tok.batch([captions[i] for i in idx] + [world.canonical_caption(sc) for sc in scenes])
        loss, stats = model.loss(pixels(images), ids, mask.float(), baseline)
        if "reward" in stats:  # moving-average baseline for REINFORCE
            baseline = stats["reward"] if baseline is None else 0.9 * baseline + 0.1 * stats["reward"]
        optimizer_step(model, opt, loss, step, args.steps, args.lr, warmup=100, floor=0.05, clip=5.0)
        step += 1
        if step % 20 == 0:
            progress(step, args.steps, start, first, loss=loss.item(), **stats)
        ckpt.maybe_save(model, opt, step, config=config.to_dict(), batch=args.batch)
    ckpt.maybe_save(model, opt, step, force=True, config=config.to_dict(), batch=args.batch)
    print("done", flush=True)


if __name__ == "__main__":
    main()
