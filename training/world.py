"""A second renderer of the shapes world (../shared/WORLD.md), in numpy, for endless fresh scenes.

Trainers draw new scenes every batch instead of re-reading the 20,000 of `deno task world`, and
because this renderer is not the service's own (its own sub-pixel sampling, noise and sampler), a
model trained on both learns the spec rather than one renderer's habits. Held-out colour–shape
pairs never appear unless asked for.

    r = np.random.default_rng(0)
    scene = sample_scene(r)             # {"background": ..., "objects": [...]}
    rgb = render(scene, r)              # uint8 [64, 64, 3]
    canonical_caption(scene), references(scene)
"""
import numpy as np

CANVAS = 64
SHAPES = ["circle", "square", "triangle", "diamond"]
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
           "yellow": (235, 205, 40), "purple": (145, 60, 200), "orange": (245, 135, 30)}
BACKGROUNDS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}
POSITIONS = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]
HELD_OUT = {("purple", "triangle"), ("orange", "circle")}


def held_out(colour, shape) -> bool:
    return (colour, shape) in HELD_OUT


def _separated(a, b) -> bool:
    gap_x = max(a["x"] - (b["x"] + b["side"]), b["x"] - (a["x"] + a["side"]))
    gap_y = max(a["y"] - (b["y"] + b["side"]), b["y"] - (a["y"] + a["side"]))
    return gap_x >= 2 or gap_y >= 2


def sample_object(r, colour=None, shape=None, size=None):
    size = size or ("small" if r.random() < 0.5 else "large")
    side = int(r.integers(10, 14) if size == "small" else r.integers(20, 27))
    return {"shape": shape or SHAPES[r.integers(4)], "colour": colour or list(COLOURS)[r.integers(6)],
            "size": size, "side": side, "x": int(r.integers(0, CANVAS - side + 1)),
            "y": int(r.integers(0, CANVAS - side + 1))}


def sample_scene(r, count=None, held_out_pair=False):
    """1–3 non-overlapping objects; with `held_out_pair`, exactly one object is a held-out pair."""
    while True:
        n = count or int(r.integers(1, 4))
        objects = []
        forced = int(r.integers(n)) if held_out_pair else -1
        for _ in range(200):
            if len(objects) == n:
                break
            if len(objects) == forced:
                c, s = sorted(HELD_OUT)[r.integers(2)]
                o = sample_object(r, c, s)
            else:
                o = sample_object(r)
                if held_out(o["colour"], o["shape"]):
                    continue
            if any(p["colour"] == o["colour"] and p["shape"] == o["shape"] for p in objects):
                continue
            if any(not _separated(p, o) for p in objects):
                continue
            objects.append(o)
        if len(objects) == n:
            return {"background": list(BACKGROUNDS)[r.integers(3)], "objects": objects}


def coverage(o, s=4, jitter=None):
    """Fraction of each pixel of the object's box covered by the shape, by s × s sampling."""
    side = o["side"]
    off = (np.arange(s) + 0.5) / s if jitter is None else np.sort(jitter)
    p = np.arange(side)[:, None] + off[None, :]  # [side, s] sample coordinates inside the box
    ys = p.reshape(-1)[:, None]
    xs = p.reshape(-1)[None, :]
    h = side / 2
    if o["shape"] == "square":
        m = np.ones((ys.size, xs.size), bool)
    elif o["shape"] == "circle":
        m = (xs - h) ** 2 + (ys - h) ** 2 <= h * h
    elif o["shape"] == "diamond":
        m = np.abs(xs - h) + np.abs(ys - h) <= h
    else:  # triangle, apex up, base = height
        m = np.abs(xs - h) <= ys / side * h
    return m.reshape(side, s, side, s).mean((1, 3))


def render(scene, r, noise=8):
    """uint8 [64, 64, 3]: anti-aliased shapes over the background, plus uniform noise ≤ ±noise."""
    img = np.empty((CANVAS, CANVAS, 3), np.float32)
    img[:] = BACKGROUNDS[scene["background"]]
    for o in scene["objects"]:
        a = coverage(o, jitter=r.random(4))[..., None]
        y, x, side = o["y"], o["x"], o["side"]
        box = img[y:y + side, x:x + side]
        box[:] = box * (1 - a) + np.array(COLOURS[o["colour"]], np.float32) * a
    if noise:
        img += r.integers(-noise, noise + 1, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def position(o) -> str:
    cell = lambda v: min(2, int(v // (CANVAS / 3)))
    return POSITIONS[cell(o["y"] + o["side"] / 2) * 3 + cell(o["x"] + o["side"] / 2)]


def phrase(o, with_size=True) -> str:
    words = ([o["size"]] if with_size else []) + [o["colour"], o["shape"]]
    return ("an " if words[0] == "orange" else "a ") + " ".join(words)


def caption_order(scene):
    os_ = scene["objects"]
    cx = lambda o: o["x"] + o["side"] / 2
    cy = lambda o: o["y"] + o["side"] / 2
    if len(os_) == 2:
        if abs(cx(os_[0]) - cx(os_[1])) >= 8:
            return sorted(os_, key=lambda o: (cx(o), cy(o))), "to the left of"
        return sorted(os_, key=cy), "above"
    return (sorted(os_, key=lambda o: (cx(o), cy(o))) if len(os_) == 3 else os_), None


def describe(scene, with_size=True, with_background=True, mirrored=False) -> str:
    objects, relation = caption_order(scene)
    p = lambda o: phrase(o, with_size)
    if len(objects) == 1:
        body = f"{p(objects[0])} in the {position(objects[0])}"
    elif len(objects) == 2:
        if mirrored:
            body = f"{p(objects[1])} {'below' if relation == 'above' else 'to the right of'} {p(objects[0])}"
        else:
            body = f"{p(objects[0])} {relation} {p(objects[1])}"
    else:
        body = f"{p(objects[0])} , {p(objects[1])} and {p(objects[2])}"
    bg = scene["background"]
    return f"{body} on a {bg} background" if with_background else body


def canonical_caption(scene) -> str:
    return describe(scene)


def references(scene) -> list:
    refs = [describe(scene), describe(scene, with_size=False), describe(scene, with_background=False)]
    objects, _ = caption_order(scene)
    if len(objects) == 2:
        refs.append(describe(scene, mirrored=True))
    if len(objects) == 1:
        refs.append(f"there is {phrase(objects[0])} in the {position(objects[0])}")
    elif len(objects) == 2:
        refs.append(f"there are two shapes : {phrase(objects[0])} and {phrase(objects[1])}")
    else:
        refs.append(f"there are three shapes : {phrase(objects[0])} , {phrase(objects[1])} and {phrase(objects[2])}")
    return refs


def hard_negative(scene, r, allow_held_out=False):
    """The scene with exactly one thing changed — one object's shape or colour, or (with two or
    more objects) the colours of two objects swapped — the NegCLIP recipe for binding. Returns
    None when no change gives a valid training scene."""
    objects = scene["objects"]
    for _ in range(20):
        new = [dict(o) for o in objects]
        kind = r.integers(3) if len(objects) > 1 else r.integers(2)
        if kind == 2:
            i, j = r.choice(len(objects), 2, replace=False)
            if new[i]["colour"] == new[j]["colour"]:
                continue
            new[i]["colour"], new[j]["colour"] = new[j]["colour"], new[i]["colour"]
        else:
            o = new[r.integers(len(new))]
            key, values = ("shape", SHAPES) if kind == 0 else ("colour", list(COLOURS))
            o[key] = values[r.integers(len(values))]
        if [(o["colour"], o["shape"]) for o in new] == [(o["colour"], o["shape"]) for o in objects]:
            continue
        pairs = [(o["colour"], o["shape"]) for o in new]
        if len(set(pairs)) < len(pairs):
            continue
        if not allow_held_out and any(held_out(*p) for p in pairs):
            continue
        return {"background": scene["background"], "objects": new}
    return None


NUMBERS = ["zero", "one", "two", "three"]


def questions(scene, r, allow_held_out=False) -> list:
    """The question/answer pairs of WORLD.md's table, as (type, question, answer). With
    `allow_held_out` False (training), no question names a held-out pair, not even a "no" one."""
    objects = scene["objects"]
    qa = []
    for shape in SHAPES:
        having = [o for o in objects if o["shape"] == shape]
        if len(having) == 1:
            qa.append(("color", f"what color is the {shape}?", having[0]["colour"]))
    for colour in COLOURS:
        having = [o for o in objects if o["colour"] == colour]
        if len(having) == 1:
            qa.append(("shape", f"what shape is the {colour} object?", having[0]["shape"]))
    qa.append(("count", "how many shapes are there?", NUMBERS[len(objects)]))
    for o in objects:
        qa.append(("position", f"where is the {o['colour']} {o['shape']}?", f"in the {position(o)}"))
    ask = lambda c, s: f"is there {'an' if c == 'orange' else 'a'} {c} {s}?"
    yes = objects[r.integers(len(objects))]
    qa.append(("exists", ask(yes["colour"], yes["shape"]), "yes"))
    for _ in range(50):
        swap_colour = r.random() < 0.5
        c = list(COLOURS)[r.integers(6)] if swap_colour else yes["colour"]
        s = yes["shape"] if swap_colour else SHAPES[r.integers(4)]
        if any(o["colour"] == c and o["shape"] == s for o in objects):
            continue
        if not allow_held_out and held_out(c, s):
            continue
        qa.append(("exists", ask(c, s), "no"))
        break
    qa.append(("background", "what color is the background?", scene["background"]))
    qa.append(("describe", "describe the image.", canonical_caption(scene)))
    return qa
