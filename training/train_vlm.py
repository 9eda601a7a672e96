"""Train the multimodal chat models on the shapes world's question/answer pairs and captions:
vlm-tiny (method A, unified embedding decoder) or vlm-xattn-tiny (method B, cross-attention).
clip-tiny's vision tower is frozen, so its patch features are computed once and cached. The
loss is on the assistant's answer only. Resumes.

    /usr/bin/python3 training/train_vlm.py --kind unified --out data/runs/vlm-tiny --steps 4000
    /usr/bin/python3 training/train_vlm.py --kind xattn --out data/runs/vlm-xattn-tiny --steps 4000
"""
import argparse
import math
import os
import random
import re
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_model import Clip, ClipConfig
from common import SPECIAL, Checkpointer, World, WordTokenizer, progress, seed_everything, vocabulary
from train_clip import pixels
from vlm_model import Connector, Decoder, ImageAdapter, VlmConfig

# SmolVLM's chat tokens, and the image placeholders its processor expands.
CHAT = ["<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>", "<global-img>"]
QA_WORDS = ["what", "color", "shape", "object", "how", "many", "where", "is", "there", "yes", "no",
            "describe", "image", "?", ".", "user", "assistant"]


class ChatTokenizer(WordTokenizer):
    """The world's word-level tokenizer plus chat tokens, matched before splitting words
    (as `tokenizers` matches added tokens)."""

    def __init__(self, words: list, max_length: int = 128):
        super().__init__(CHAT + [w for w in words + QA_WORDS if w not in CHAT], max_length)
        self.special = set(SPECIAL + CHAT)

    def encode_plain(self, text: str) -> list:
        ids = []
        for part in re.split("(" + "|".join(re.escape(t) for t in CHAT) + ")", text):
            if part in CHAT:
                ids.append(self.ids[part])
            elif part:
                ids += [self.ids.get(w, 2) for w in re.findall(r"\w+|[^\w\s]+", part.lower())]
        return ids

    def tokenizer_json(self) -> dict:
        j = super().tokenizer_json()
        j["added_tokens"] += [
            {"id": self.ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for t in CHAT]
        j["post_processor"] = None  # chat prompts carry their own special tokens
        j["truncation"] = None
        return j


def prompt_text(question: str, kind: str, image_tokens: int) -> str:
    """SmolVLM's chat template for one user turn with one image, generation prompt added;
    method A expands <image> as Idefics3's processor does, method B keeps one marker."""
    image = ("<fake_token_around_image><global-img>" + "<image>" * image_tokens + "<fake_token_around_image>"
             if kind == "unified" else "<image>")
    return f"<|im_start|>User:{image}{question}<end_of_utterance>\nAssistant:"


@torch.no_grad()
def patch_features(clip_path: str, world: World, batch: int = 500) -> torch.Tensor:
    state = torch.load(clip_path, map_location="cpu")
    clip = Clip(ClipConfig(**state["config"]))
    clip.load_state_dict(state["model"])
    clip.eval()
    out = [clip.vision(pixels(world.images[i:i + batch]))[2][:, 1:].half() for i in range(0, len(world), batch)]
    return torch.cat(out)  # [N, 64, 128]: last_hidden_state without the class token


class Vlm(nn.Module):
    def __init__(self, c: VlmConfig, kind: str, image_token_id: int):
        super().__init__()
        self.kind, self.image_token_id = kind, image_token_id
        self.decoder = Decoder(c, cross=kind == "xattn")
        self.image = Connector(c) if kind == "unified" else ImageAdapter(c)

    def forward(self, ids, mask, patches):
        emb = self.decoder.embed(ids)
        img = self.image(patches)
        positions = torch.arange(ids.shape[1])[None].expand(ids.shape[0], -1)
        if self.kind == "unified":  # image embeddings take the places of the <image> tokens
            slots = ids == self.image_token_id
            emb = emb.masked_scatter(slots[..., None], img.reshape(-1, img.shape[-1]).to(emb.dtype))
            return self.decoder(emb, mask, positions)[0]
        return self.decoder(emb, mask, positions, image=img)[0]


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
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    tok = ChatTokenizer(vocabulary(args.data))
    config = VlmConfig(vocab_size=len(tok.tokens))
    train = World(args.data, "train")
    cache = os.path.join(os.path.dirname(args.out.rstrip("/")) or ".", "vlm-features-train.pt")
    if not os.path.exists(cache):
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        torch.save(patch_features(args.clip, train), cache + ".tmp")
        os.replace(cache + ".tmp", cache)
    feats = torch.load(cache)

    model = Vlm(config, args.kind, tok.ids["<image>"])
    for p in model.parameters():
        if p.dim() >= 2:
            nn.init.normal_(p, std=0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    ckpt = Checkpointer(f"{args.out}/last.pt")
    first = step = ckpt.load(model, opt)
    r = random.Random(args.seed + step)
    eou = tok.ids["<end_of_utterance>"]
    lr_at = lambda s: args.lr * min(1.0, (s + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    print(f"{args.kind}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, vocab {len(tok.tokens)}, from step {step}", flush=True)
    start = time.time()
    model.train()
    while step < args.steps:
        idx = np.random.randint(0, len(train), args.batch)
        rows, targets = [], []
        for i in idx:
            qa = r.choice(train.meta[i]["qa"])
            p = tok.encode_plain(prompt_text(qa["question"], args.kind, config.image_tokens))
            a = tok.encode_plain(" " + qa["answer"]) + [eou]
            rows.append(p + a)
            targets.append([-100] * (len(p) - 1) + a + [-100])  # predict the answer, shifted
        width = max(len(x) for x in rows)
        ids = torch.full((len(rows), width), 1, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        tgt = torch.full((len(rows), width), -100, dtype=torch.long)
        for j, (x, t) in enumerate(zip(rows, targets)):
            ids[j, : len(x)], mask[j, : len(x)] = torch.tensor(x), 1
            tgt[j, : len(t)] = torch.tensor(t)
        logits = model(ids, mask, feats[idx].float())
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            progress(step, args.steps, start, first, loss=loss.item(), lr=lr_at(step))
        ckpt.maybe_save(model, opt, step, config=config.to_dict(), kind=args.kind, vocab=tok.tokens)
    ckpt.maybe_save(model, opt, step, force=True, config=config.to_dict(), kind=args.kind, vocab=tok.tokens)
    print("done", flush=True)


if __name__ == "__main__":
    main()
