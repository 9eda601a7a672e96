"""Shared training code: seeds, the world dataset, the word-level tokenizer, checkpoints, the
learning-rate schedule and the optimizer step.

Every trainer reads the dataset written by `deno task world` and resumes from its last
checkpoint, so a run can be stopped and started again at any time.
"""
import ctypes
import json
import math
import os
import random
import re
import time

import numpy as np
import torch

SPECIAL = ["<|startoftext|>", "<|endoftext|>", "<|unk|>"]
BOS, EOS, UNK = 0, 1, 2


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(n: int = 0) -> None:
    """Torch's threads and OpenBLAS's (0: one per core). Debian's torch calls OpenBLAS's pthread
    build for some ops, which starts a thread per core whatever torch.set_num_threads says: a
    `--threads 1` run's matmuls took about 1.5 cores until its pool was sized too."""
    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    for lib in ("libopenblas.so.0", "libblas.so.3"):
        try:
            ctypes.CDLL(lib).openblas_set_num_threads(n)
            return
        except (OSError, AttributeError):
            continue


class World:
    """One split of the world: images as uint8 [N, 64, 64, 3] and their metadata."""

    def __init__(self, root: str, split: str):
        self.meta = [json.loads(line) for line in open(f"{root}/{split}/meta.jsonl")]
        raw = np.fromfile(f"{root}/{split}/images.u8", dtype=np.uint8)
        self.images = raw.reshape(len(self.meta), 64, 64, 3)

    def __len__(self) -> int:
        return len(self.meta)


def vocabulary(root: str) -> list:
    return json.load(open(f"{root}/world.json"))["vocabulary"]


class WordTokenizer:
    """The tokenizer.json our models ship: lower-case, split words and punctuation, one id a word.

    It mirrors the HF `tokenizers` pipeline (Lowercase, Whitespace, word-only WordPiece, TemplateProcessing)
    that transformers.js runs on the same file, and a test checks that the two agree.
    """

    def __init__(self, words: list, max_length: int):
        self.tokens = SPECIAL + list(words)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.max_length = max_length

    def encode(self, text: str) -> list:
        words = re.findall(r"\w+|[^\w\s]+", text.lower())
        ids = [self.ids.get(w, UNK) for w in words][: self.max_length - 2]
        return [BOS] + ids + [EOS]

    def batch(self, texts: list) -> tuple:
        """Right-padded with EOS (as CLIP pads), with an attention mask."""
        rows = [self.encode(t) for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), EOS, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask

    def tokenizer_config(self) -> dict:
        """The tokenizer_config.json that goes with tokenizer_json() (the captioners' and dalle-tiny's)."""
        return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": SPECIAL[0], "eos_token": SPECIAL[1],
                "pad_token": SPECIAL[1], "unk_token": SPECIAL[2], "model_max_length": self.max_length,
                "clean_up_tokenization_spaces": False}

    def tokenizer_json(self) -> dict:
        added = [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, t in enumerate(SPECIAL)
        ]
        special = lambda t: {"SpecialToken": {"id": t, "type_id": 0}}
        seq = lambda s: {"Sequence": {"id": s, "type_id": 0}}
        return {
            "version": "1.0",
            "truncation": {"direction": "Right", "max_length": self.max_length, "strategy": "LongestFirst", "stride": 0},
            "padding": None,
            "added_tokens": added,
            "normalizer": {"type": "Lowercase"},
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [special(SPECIAL[BOS]), seq("A"), special(SPECIAL[EOS])],
                "pair": [special(SPECIAL[BOS]), seq("A"), special(SPECIAL[EOS]), seq("B"), special(SPECIAL[EOS])],
                "special_tokens": {t: {"id": t, "ids": [i], "tokens": [t]} for i, t in enumerate(SPECIAL[:2])},
            },
            # A WordPiece model whose vocabulary holds only whole words is a word-level tokenizer
            # that every tokenizers implementation runs (transformers.js has no WordLevel).
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": False},
            "model": {"type": "WordPiece", "vocab": self.ids, "unk_token": SPECIAL[UNK],
                      "continuing_subword_prefix": "##", "max_input_chars_per_word": 100},
        }


def warmup_cosine(step: int, total: int, lr: float, warmup: int, floor: float = 0.0) -> float:
    """Every trainer's schedule: linear warm-up over `warmup` steps, then cosine decay from lr to
    floor * lr at step `total` (held there after it)."""
    cosine = 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    return lr * min(1.0, (step + 1) / warmup) * (floor + (1 - floor) * cosine)


def optimizer_step(model, optimizer, loss, step: int, total: int, lr: float, warmup: int, floor: float = 0.0,
                   clip=1.0) -> float:
    """Every trainer's step after its forward pass: the learning rate warmup_cosine gives `step`
    set on every param group (times the group's "scale", where it has one: a part trained at a
    fraction of the rate), zero_grad, backward, the gradients' total norm over model.parameters()
    clipped to `clip` (None: no clipping), the optimizer's step. Returns the rate it set."""
    rate = warmup_cosine(step, total, lr, warmup, floor)
    for g in optimizer.param_groups:
        g["lr"] = rate * g.get("scale", 1.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return rate


class Checkpointer:
    """Saves model + optimizer + step every `every_s` seconds, atomically; loads the last one."""

    def __init__(self, path: str, every_s: float = 180.0):
        self.path, self.every_s, self.last = path, every_s, time.time()

    def load(self, model, optimizer) -> int:
        if not os.path.exists(self.path):
            return 0
        state = torch.load(self.path, map_location="cpu")
        model.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        return state["step"]

    def maybe_save(self, model, optimizer, step: int, force: bool = False, **extra) -> bool:
        if not force and time.time() - self.last < self.every_s:
            return False
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = self.path + ".tmp"
        torch.save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
            "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(), **extra,
        }, tmp)
        os.replace(tmp, self.path)
        self.last = time.time()
        return True


def progress(step: int, total: int, start: float, first: int, **metrics) -> None:
    done = step - first
    rate = done / max(time.time() - start, 1e-9)
    width = 30
    filled = int(width * step / total)
    text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
    print(f"[{'#' * filled}{'.' * (width - filled)}] {step}/{total} {rate:.2f} it/s {text}", flush=True)
