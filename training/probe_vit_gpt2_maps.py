"""Which of vit-gpt2-tiny's cross-attention maps points at the object a word names?

    /usr/bin/python3 training/probe_vit_gpt2_maps.py data/runs/vit-gpt2-tiny-v2/last.pt test|heldout [seed]

Teacher-forced on 150 fresh scenes: for each decoder layer and head (and their means), the share of
colour and shape words whose map peaks on a cell touching the named object's box, at the word's own
step and one before or after: `deno task eval pointing`'s game, on the training checkpoint, to
choose what the export serves as `cross_attentions`.
"""
import sys

import numpy as np
import torch

import world
from caption_model import pixels
from common import World, WordTokenizer, vocabulary
from vit_gpt2_model import VitGpt2, VitGpt2Config
torch.set_num_threads(1)
st = torch.load(sys.argv[1], map_location="cpu")
m = VitGpt2(VitGpt2Config(**st["config"])); m.load_state_dict(st["model"]); m.eval()
tok = WordTokenizer(vocabulary("data/world"), max_length=32)
r = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
held = sys.argv[2] == "heldout"
scenes = [world.sample_scene(r, held_out_pair=held) for _ in range(150)]
images = np.stack([world.render(s, r) for s in scenes])
caps = [world.canonical_caption(s) for s in scenes]
ids, mask = tok.batch(caps)
G = 8
def touches(cell, o):
    rr, cc = divmod(cell, G); w = 64 / G
    return cc * w < o["x"] + o["side"] and o["x"] < (cc + 1) * w and rr * w < o["y"] + o["side"] and o["y"] < (rr + 1) * w
with torch.no_grad():
    enc = m.encoder(pixels(images))
    x = m.wte(ids[:, :-1]) + m.wpe(torch.arange(ids.shape[1] - 1))
    past = m.empty_past(len(scenes)); crosses = []
    for n, b in enumerate(m.blocks):
        x, k, v, cross = b(x, enc, past[2 * n], past[2 * n + 1]); crosses.append(cross[..., 1:])
C = torch.stack(crosses, 1)  # [B, layers, heads, T, 64]
variants = {f"L{l}h{h}": C[:, l, h] for l in range(C.shape[1]) for h in range(C.shape[2])}
variants.update({f"L{l}mean": C[:, l].mean(1) for l in range(C.shape[1])})
variants["all-mean"] = C.mean((1, 2))
colours, shapes = set(world.COLOURS), set(world.SHAPES)
score = {k: {d: [0, 0] for d in (-1, 0, 1)} for k in variants}
for b, s in enumerate(scenes):
    words = tok.encode(caps[b])[1:-1]
    wt = [tok.tokens[i] for i in words]
    for j in range(len(wt) - 1):
        if wt[j] in colours and wt[j + 1] in shapes:
            o = next((o for o in s["objects"] if o["colour"] == wt[j] and o["shape"] == wt[j + 1]), None)
            if o is None: continue
            for at in (j, j + 1):
                for k, A in variants.items():
                    for d in (-1, 0, 1):
                        t = at + d
                        if 0 <= t < A.shape[1]:
                            score[k][d][0] += touches(int(A[b, t].argmax()), o); score[k][d][1] += 1
rows = sorted(score.items(), key=lambda kv: -kv[1][0][0] / kv[1][0][1])
for k, v in rows[:12] + [kv for kv in rows if kv[0] in ("all-mean", f"L{C.shape[1]-1}mean")]:
    print(k, " ".join(f"{d:+d}:{v[d][0]/max(v[d][1],1):.3f}" for d in (-1, 0, 1)))
