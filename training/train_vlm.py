"""Train the multimodal chat models on the shapes world's question/answer pairs and captions:
vlm-tiny (method A, unified embedding decoder) or vlm-xattn-tiny (method B, cross-attention).
Every batch is fresh scenes from training/world.py; clip-tiny's vision tower is frozen and run on
them. A question type is drawn per scene, uniformly or by `--kind-weights`; the loss is on the assistant's answer only.
Prints answer accuracy per question type (fresh test and held-out scenes) every --eval-every
steps. Resumes.

    /usr/bin/python3 training/train_vlm.py --kind unified --out data/runs/vlm-tiny --steps 4000
    /usr/bin/python3 training/train_vlm.py --kind xattn --out data/runs/vlm-xattn-tiny --steps 4000
"""
import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_model import Clip, load_clip, pixels
from common import Checkpointer, optimizer_step, progress, seed_everything, set_threads, vocabulary, warmup_cosine
from vlm_model import ChatTokenizer, Vlm, VlmConfig, prompt_text
import world


def frozen_tower(clip_path: str) -> Clip:
    clip, _ = load_clip(clip_path)
    for p in clip.parameters():
        p.requires_grad_(False)
    return clip


def patch_features(vision: nn.Module, images: np.ndarray, batch: int = 500) -> torch.Tensor:
    """[N, 64, 128]: the tower's last_hidden_state without the class token (with gradients
    only when the tower is being tuned)."""
    with torch.set_grad_enabled(vision.training and torch.is_grad_enabled()):
        out = [vision(pixels(images[i:i + batch]))[2][:, 1:] for i in range(0, len(images), batch)]
    return torch.cat(out)


def pick_question(qa: list, r, weights: dict | None = None) -> tuple:
    """A question type (uniformly, or by --kind-weights), then one question of it: "describe" is
    one question a scene against up to three of position, yet it is the hardest to answer."""
    kinds = sorted({q[0] for q in qa})
    if weights:
        w = np.array([weights.get(k, 1.0) for k in kinds])
        kind = kinds[r.choice(len(kinds), p=w / w.sum())]
    else:  # the draw runs 1-8 made, so their seeds still give their scenes
        kind = kinds[r.integers(len(kinds))]
    of = [q for q in qa if q[0] == kind]
    return of[r.integers(len(of))]


def encode_batch(tok, pairs, kind, image_tokens):
    """Prompt + answer rows, right-padded, with targets on the answer only (shifted)."""
    eou = tok.ids["<end_of_utterance>"]
    rows, targets = [], []
    for question, answer in pairs:
        p = tok.encode_plain(prompt_text(question, kind, image_tokens))
        a = tok.encode_plain(" " + answer) + [eou]
        rows.append(p + a)
        targets.append([-100] * (len(p) - 1) + a + [-100])
    width = max(len(x) for x in rows)
    ids = torch.full((len(rows), width), 1, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    tgt = torch.full((len(rows), width), -100, dtype=torch.long)
    for j, (x, t) in enumerate(zip(rows, targets)):
        ids[j, : len(x)], mask[j, : len(x)] = torch.tensor(x), 1
        tgt[j, : len(t)] = torch.tensor(t)
    return ids, mask, tgt


@torch.no_grad()
def greedy_answers(model, tok, prompts: list, feats: torch.Tensor, max_tokens=24) -> list:
    """Greedy answers (token ids) to prompt rows, each with its image features [64, D]."""
    eou, image = tok.ids["<end_of_utterance>"], tok.ids["<image>"]
    rows, answers, done = [p[:] for p in prompts], [[] for _ in prompts], [False] * len(prompts)
    for _ in range(max_tokens):
        live = [j for j in range(len(rows)) if not done[j]]
        if not live:
            break
        w = max(len(rows[j]) for j in live)
        ids = torch.full((len(live), w), 1, dtype=torch.long)
        mask = torch.zeros((len(live), w), dtype=torch.long)
        for k, j in enumerate(live):
            ids[k, : len(rows[j])], mask[k, : len(rows[j])] = torch.tensor(rows[j]), 1
        logits = model(ids, mask, feats[live])
        logits[..., image] = -float("inf")  # never a new image slot
        for k, j in enumerate(live):
            t = int(logits[k, len(rows[j]) - 1].argmax())
            if t == eou:
                done[j] = True
            else:
                answers[j].append(t)
                rows[j].append(t)
    return answers


@torch.no_grad()
def answer_accuracy(model, vision, tok, kind, image_tokens, n=40, seed=10**6, chunk=128) -> dict:
    """Greedy answers to every question of n fresh scenes per split, exact match, per type."""
    out = {}
    for split, held in (("test", False), ("heldout", True)):
        r = np.random.default_rng(seed + held)
        scenes = [world.sample_scene(r, held_out_pair=held) for _ in range(n)]
        feats = patch_features(vision, np.stack([world.render(s, r) for s in scenes]))
        items = [(i, q) for i, s in enumerate(scenes) for q in world.questions(s, r, allow_held_out=True)]
        right, total = {}, {}
        for c in range(0, len(items), chunk):
            part = items[c:c + chunk]
            prompts = [tok.encode_plain(prompt_text(q, kind, image_tokens)) for _, (_, q, _) in part]
            answers = greedy_answers(model, tok, prompts, feats[[i for i, _ in part]])
            for (_, (t, _, a)), ans in zip(part, answers):
                said = " ".join(tok.tokens[i] for i in ans).strip().rstrip(".").strip()
                total[t] = total.get(t, 0) + 1
                right[t] = right.get(t, 0) + (said == a)
        for t in total:
            out[f"{split}_{t}"] = right[t] / total[t]
        out[f"{split}_all"] = sum(right.values()) / sum(total.values())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["unified", "xattn"], required=True)
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--out", required=True)
    ap.add_argument("--clip", default="data/runs/clip-tiny/last.pt")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tune-tower", type=float, default=0.0,
                    help="train clip-tiny's vision tower too, at this fraction of --lr (0: frozen); "
                         "the tuned tower is saved with the model and exported as its vision encoder")
    ap.add_argument("--cross-every", type=int, default=2, help="method B: a cross-attention layer after every k-th layer")
    ap.add_argument("--gate-init", type=float, default=0.0, help="method B: the tanh gates at initialisation")
    ap.add_argument("--adapter-pos-out", action="store_true",
                    help="method B: add a position table after the image adapter's norm (zero at first, "
                         "so it can start from a model without one)")
    ap.add_argument("--kind-weights", default="",
                    help="question types drawn this much more often, e.g. position=3 (default: uniform)")
    ap.add_argument("--init-from", default=None,
                    help="an exported model folder (models/embedded/vlm-tiny): go on training its weights, "
                         "tower included, instead of starting from random ones and --clip")
    args = ap.parse_args()

    set_threads(args.threads)
    kind_weights = {k: float(v) for k, v in (x.split("=") for x in args.kind_weights.split(",") if x)}
    seed_everything(args.seed)
    tok = ChatTokenizer(vocabulary(args.data))
    if args.init_from:  # the shipped model is the start; data/ does not survive a new machine, exports do
        from export_vlm import load_export
        model, clip, config, kind, shipped = load_export(args.init_from)
        assert kind == args.kind and shipped.ids == tok.ids, f"{args.init_from} is not a {args.kind} model of this world"
        for p in clip.parameters():
            p.requires_grad_(False)
    else:
        config = VlmConfig(vocab_size=len(tok.tokens), cross_every=args.cross_every, gate_init=args.gate_init,
                           adapter_pos_out=args.adapter_pos_out)
        clip = frozen_tower(args.clip)
        model = Vlm(config, args.kind, tok.ids["<image>"])
        for p in model.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
    if args.adapter_pos_out and not config.adapter_pos_out:  # an export without the table
        config.adapter_pos_out = True
        model.image.pos_out = nn.Parameter(torch.zeros_like(model.image.pos))
    groups = [{"params": list(model.parameters()), "scale": 1.0}]
    if args.tune_tower > 0:
        model.tower = clip.vision  # a submodule now: trained, checkpointed and exported with it
        for p in model.tower.parameters():
            p.requires_grad_(True)
        groups.append({"params": list(model.tower.parameters()), "scale": args.tune_tower})
    vision = model.tower if args.tune_tower > 0 else clip.vision
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01)
    ckpt = Checkpointer(f"{args.out}/last.pt")
    first = step = ckpt.load(model, opt)
    r = np.random.default_rng([args.seed, step])  # a resumed run draws scenes it has not seen
    schedule = dict(total=args.steps, lr=args.lr, warmup=200, floor=0.05)
    lr_at = lambda s: warmup_cosine(s, **schedule)
    print(f"{args.kind}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, vocab {len(tok.tokens)}, from step {step}", flush=True)
    # What the export's card reads back: the schedule, the learning rate and where the run started.
    record = dict(config=config.to_dict(), kind=args.kind, vocab=tok.tokens, tune_tower=args.tune_tower,
                  kind_weights=kind_weights, steps=args.steps, lr=args.lr, init_from=args.init_from)
    start = time.time()
    model.train()
    while step < args.steps:
        scenes = [world.sample_scene(r) for _ in range(args.batch)]
        feats = patch_features(vision, np.stack([world.render(sc, r) for sc in scenes]))
        pairs = [pick_question(world.questions(sc, r), r, kind_weights)[1:] for sc in scenes]
        ids, mask, tgt = encode_batch(tok, pairs, args.kind, config.image_tokens)
        logits = model(ids, mask, feats)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
        # The tower's group has its "scale" (--tune-tower); checkpoints from before it have none.
        optimizer_step(model, opt, loss, step, **schedule, clip=1.0)
        step += 1
        if step % 20 == 0:
            progress(step, args.steps, start, first, loss=loss.item(), lr=lr_at(step))
        if step % args.eval_every == 0:
            model.eval()
            scores = answer_accuracy(model, vision, tok, args.kind, config.image_tokens)
            model.train()
            print(f"eval step={step} " + " ".join(f"{k}={v:.3f}" for k, v in sorted(scores.items())), flush=True)
        ckpt.maybe_save(model, opt, step, **record)
    ckpt.maybe_save(model, opt, step, force=True, **record)
    print("done", flush=True)


if __name__ == "__main__":
    main()
