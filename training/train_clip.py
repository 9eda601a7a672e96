"""Train clip-tiny on fresh scenes of the shapes world with the symmetric contrastive loss,
hard-negative texts (NegCLIP) and a convolutional stem; resumes from its last checkpoint.

    /usr/bin/python3 training/train_clip.py --out data/runs/clip-tiny --steps 12000

Every batch is drawn new by training/world.py, so no scene is seen twice. Prints a zero-shot
score (seen and held-out pairs) every --eval-every steps.
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import world

from clip_model import MEAN, STD, Clip, ClipConfig, init_stem_from_onnx, pixels
from common import Checkpointer, WordTokenizer, optimizer_step, progress, seed_everything, set_threads, vocabulary, warmup_cosine

def training_text(scene, template: int) -> str:
    """Template 0: the zero-shot prompt `a photo of a {colour} {shape}` (single objects only);
    1 + k: the k-th text of the scene's reference set."""
    if template == 0:
        return f"a photo of {world.phrase(scene['objects'][0], False)}"
    return world.references(scene)[template - 1]


def draw_template(scene, r) -> int:
    n = len(world.references(scene))
    if len(scene["objects"]) == 1 and r.random() < 0.5:
        return 0
    return 1 + int(r.integers(n))


def batch_of_scenes(r, n: int, singles: float):
    """Fresh scenes: a share `singles` with one object (near-duplicates that differ in shape are
    what teach shape), the rest 1–3 objects."""
    return [world.sample_scene(r, count=1 if r.random() < singles else None) for _ in range(n)]


@torch.no_grad()
def zero_shot(model, tok, n=240, seed=10**6) -> dict:
    """24-way zero-shot on fresh single-object scenes: seen pairs and held-out pairs, separately."""
    pairs = [(c, s) for c in world.COLOURS for s in world.SHAPES]
    ids, mask = tok.batch([training_text({"objects": [{"colour": c, "shape": s}]}, 0) for c, s in pairs])
    txt = F.normalize(model.text(ids, mask)[0], dim=-1)
    out = {}
    for split, held in (("test", False), ("heldout", True)):
        r = np.random.default_rng(seed + held)
        scenes = [world.sample_scene(r, count=1, held_out_pair=held) for _ in range(n)]
        img = F.normalize(model.vision(pixels(np.stack([world.render(s, r) for s in scenes])))[0], dim=-1)
        pred = (img @ txt.T).argmax(-1).tolist()
        truth = [(s["objects"][0]["colour"], s["objects"][0]["shape"]) for s in scenes]
        out[f"{split}_colour"] = sum(pairs[p][0] == t[0] for p, t in zip(pred, truth)) / n
        out[f"{split}_shape"] = sum(pairs[p][1] == t[1] for p, t in zip(pred, truth)) / n
        out[f"{split}_pair"] = sum(pairs[p] == t for p, t in zip(pred, truth)) / n
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/world", help="only its vocabulary is read")
    ap.add_argument("--out", default="data/runs/clip-tiny")
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--singles", type=float, default=0.5, help="share of single-object scenes")
    ap.add_argument("--negatives", type=int, default=1, help="hard-negative texts per image (0: none)")
    ap.add_argument("--stem", default="sat", choices=["sat", "conv", "linear"])
    ap.add_argument("--init-stem", default="models/embedded/sat-soft-tiny/onnx/encoder_model.onnx",
                    help="sat stem: start from this captioner's encoder (empty: from scratch)")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    set_threads()
    seed_everything(args.seed)
    tok = WordTokenizer(vocabulary(args.data), max_length=32)
    config = ClipConfig(vocab_size=len(tok.tokens), stem=args.stem)
    model = Clip(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    ckpt = Checkpointer(f"{args.out}/last.pt")
    first = step = ckpt.load(model, opt)
    if step == 0 and args.stem == "sat" and args.init_stem:
        init_stem_from_onnx(model.vision, args.init_stem, MEAN, STD)
        print(f"stem initialised from {args.init_stem}", flush=True)
    r = np.random.default_rng([args.seed, step])  # a resumed run draws scenes it has not seen
    schedule = dict(total=args.steps, lr=args.lr, warmup=200)
    lr_at = lambda s: warmup_cosine(s, **schedule)
    print(f"clip-tiny ({args.stem} stem): {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"from step {step}", flush=True)
    start = time.time()
    model.train()
    while step < args.steps:
        scenes = batch_of_scenes(r, args.batch, args.singles)
        images = np.stack([world.render(s, r) for s in scenes])
        templates = [draw_template(s, r) for s in scenes]
        texts = [training_text(s, t) for s, t in zip(scenes, templates)]
        # NegCLIP: per image, a text that differs from its own in exactly one attribute or in
        # which colour goes with which shape, said with the same template.
        for _ in range(args.negatives):
            for s, t in zip(scenes, templates):
                neg = world.hard_negative(s, r)
                if neg is not None:
                    texts.append(training_text(neg, t))
        ids, mask = tok.batch(texts)
        same = torch.tensor([[a == b for b in texts] for a in texts[: args.batch]])  # [B, B + N]
        loss = model.loss(pixels(images), ids, mask, same)
        optimizer_step(model, opt, loss, step, **schedule, clip=1.0)
        step += 1
        if step % 10 == 0:
            progress(step, args.steps, start, first, loss=loss.item(), lr=lr_at(step), scale=model.logit_scale.exp().item())
        if step % args.eval_every == 0:
            model.eval()
            scores = zero_shot(model, tok)
            model.train()
            print(f"eval step={step} " + " ".join(f"{k}={v:.3f}" for k, v in scores.items()), flush=True)
        ckpt.maybe_save(model, opt, step, config=config.to_dict(), batch=args.batch)
    ckpt.maybe_save(model, opt, step, force=True, config=config.to_dict(), batch=args.batch)
    print("done", flush=True)


if __name__ == "__main__":
    main()
