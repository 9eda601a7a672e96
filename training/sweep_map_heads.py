"""Which attention heads should a generator's word maps read? The pointing game, head by head.

    /usr/bin/python3 training/sweep_map_heads.py --model models/embedded/dalle-tiny [--count 50 --seed 1]

Makes one copy of the export per head under --out (its files linked, not copied), each serving
its maps from that head alone — dalle: `settings.attention_heads` in the manifest; sd: its
`unet/model_attention.onnx` re-exported with `--map-blocks block:k` (export_sd.from_export) — and
scores them all in one `deno task eval pointing` on other scenes than the eval's own (--seed 1),
then prints the heads best first (by the mean of both splits); `--sets` scores sets of heads
instead (the maps' mean over them). Most heads attend by position, a few by word; the maps of the
best one or two are what the shipped manifest or graph should name.
"""
import argparse
import json
import os
import re
import subprocess

from export_sd import from_export
from onnx_export import write_json
from sd_model import SdConfig

SD_BLOCKS = ("down1", "down2", "mid", "up2", "up1")


def linked_copy(src: str, dst: str, skip: set) -> None:
    """dst mirrors src: real folders, every file a symlink except those in `skip` (relative paths)."""
    for root, _, files in os.walk(src):
        rel = os.path.relpath(root, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            path = os.path.normpath(os.path.join(rel, f))
            target = os.path.join(dst, path)
            if path not in skip and not os.path.lexists(target):
                os.symlink(os.path.abspath(os.path.join(src, path)), target)


def make_copies(model: str, out: str, sets: list[str]) -> list[tuple[str, str]]:
    """(model id, heads) of each copy made: one per head, or one per set in `sets` ("block:k,block:k")."""
    manifest = json.load(open(f"{model}/manifest.json"))
    family, base = manifest["family"], manifest["id"]
    if family == "dalle":
        t = json.load(open(f"{model}/config.json"))["text_config"]
        heads = [(layer, h) for layer in range(t["num_hidden_layers"]) for h in range(t["num_attention_heads"])]
        names = [f"{layer}:{h}" for layer, h in heads]
    elif family == "diffusion":
        names = [f"{b}:{h}" for b in SD_BLOCKS for h in range(SdConfig().heads)]  # every block has as many
    else:
        raise SystemExit(f"{model}: a {family} model has no word maps to sweep")
    names = sets or names
    copies = []
    for name in names:
        model_id = f"{base}-heads-{name.replace(':', '-').replace(',', '_')}"
        dst = f"{out}/{model_id}"
        linked_copy(model, dst, {"manifest.json", "unet/model_attention.onnx"})
        m = json.loads(json.dumps(manifest))
        m["id"], m["preload"] = model_id, False
        if family == "dalle":
            m.setdefault("settings", {})["attention_heads"] = [[int(v) for v in h.split(":")] for h in name.split(",")]
        write_json(dst, "manifest.json", m)
        if family == "diffusion" and not os.path.exists(f"{dst}/unet/model_attention.onnx"):
            from_export(dst, f"{out}/{model_id}.golden.json", tuple(name.split(",")))
        copies.append((model_id, name))
    return copies


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="an exported dalle or sd model folder")
    ap.add_argument("--out", default="/tmp/map-heads")
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1, help="scenes other than the eval's own (seed 0)")
    ap.add_argument("--sets", default="", help="head sets to score instead of every head alone, ';'-separated "
                                               "(e.g. 'up2:3,down2:0;up2:3')")
    args = ap.parse_args()
    copies = make_copies(args.model, args.out, [h for h in args.sets.split(";") if h])
    ids = ",".join(i for i, _ in copies)
    cmd = ["deno", "task", "eval", "pointing", "--model", ids, "--count", str(args.count), "--seed", str(args.seed)]
    print(f"MM_MODELS_DIR={args.out} {' '.join(cmd)}", flush=True)
    run = subprocess.run(cmd, env={**os.environ, "MM_MODELS_DIR": args.out}, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(run.stderr[-2000:])
    hits = {}  # model id -> split -> (hits, colour words, shape words, random cell), in %
    for line in run.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 9 and cells[0] in dict(copies) and re.match(r"[\d.]+%", cells[5]):
            hits.setdefault(cells[0], {})[cells[1]] = tuple(float(cells[i][:-1]) for i in (5, 6, 7, 8))
    head = dict(copies)
    mean = lambda s: (s["test"][0] + s["heldout"][0]) / 2
    print("| head | test hits | held-out hits | mean | test colour / shape words | random cell (test) |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for model_id, s in sorted(hits.items(), key=lambda kv: -mean(kv[1])):
        t, h = s["test"], s["heldout"]
        print(f"| {head[model_id]} | {t[0]:.1f}% | {h[0]:.1f}% | {mean(s):.1f}% | {t[1]:.1f}% / {t[2]:.1f}% | {t[3]:.1f}% |")


if __name__ == "__main__":
    main()
