"""The shapes world: a small, deterministic world of coloured shapes written in real dataset formats.

Each image (default 64x64, grey background) holds 1-4 shapes in the cells of a 2x2 grid (two in
most scenes); a shape has a kind (circle, square, triangle, diamond, star, cross), a colour (8) and a
size (small: 0.3, large: 0.42 of the image side: an object covers 2-9 patches of 8x8 pixels).
Captions name every object's size, colour, kind and place, and relations and counts, so fine-grained
understanding (which colour goes with which shape, what is where) is measurable and dense alignment is
learnable. Captions are unique within each evaluation split, so an oracle can reach 100.

``generate(root, ...)`` writes, from a seed, byte-identically on every run:

- ``world.json``: the ground truth (every scene: objects with polygons and boxes, captions, split);
- ``images/NNNNNN.png``: all images;
- ``dataset_shapes.json``: Karpathy split JSON (splits train, restval, val, test; some images have 6
  captions, as in COCO);
- ``annotations/captions_<split>.json`` and ``annotations/instances_<split>.json``: COCO captions and
  COCO instances (polygons, boxes, areas; category ids 1, 3, 4, 7, 8, 10 are gapped on purpose);
- ``VOCdevkit/VOC2012/``: ``JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (palette PNGs: 0
  background, 1-6 the kinds, 255 a one-pixel void border around every shape, as VOC) and
  ``ImageSets/Segmentation/{train,val}.txt`` (val = the world's test split);
- ``imagefolder/<split>/<kind>/*.png``: a classification view of single-shape images (600 train, 150
  val, 600 test by default; drawn from their own random stream, not bound by caption uniqueness, and
  listed in ``world.json`` under ``classification``), with ``imagefolder/classnames.txt``;
- ``sugarcrepe/<category>.json``: SugarCrepe-style (caption, negative_caption) pairs for the test
  images with two or more shapes (swap_att, replace_att, replace_obj, replace_rel, swap_obj, add_obj,
  add_att); a negative has its positive's length and form, so text alone does not tell them apart
  (version 5: the add_att positive names the true size where its negative names a wrong one, and the
  add_obj positive a true object where its negative names an absent one).

``default_world()`` generates the standard world once into the cache folder and returns its path;
task YAMLs refer to it as ``${shapes}``. ``training_world()`` (``${shapes_train}``) is the larger
pretraining set of the bundled checkpoints.
"""
from __future__ import annotations

import json
import math
import random
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..fileio import atomic_write_json, cache_root, default_mode, sha256_json

WORLD_VERSION = 5
KINDS = ("circle", "square", "triangle", "diamond", "star", "cross")
COLOURS = {
    "red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 119, 180), "yellow": (240, 200, 30),
    "purple": (148, 103, 189), "orange": (255, 127, 14), "white": (245, 245, 245), "black": (25, 25, 25),
}
SIZES = {"small": 0.3, "large": 0.42}  # diameter / image side; with the jitter below, shapes stay in their cell
BACKGROUND = (128, 128, 128)
CATEGORY_IDS = (1, 3, 4, 7, 8, 10)
ROWS = ("top", "bottom")
COLS = ("left", "right")
GRID = 2
JITTER = 0.05  # of a cell's side: the largest shape (0.42 of the image) still ends inside its cell
OBJECT_COUNTS = {1: 1, 2: 5, 3: 3, 4: 2}  # weights of 1-4 objects per captioned scene
REPEAT = 0.1  # chance that a later object copies the first one's colour and kind (count captions)
SUGARCREPE_CATEGORIES = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")
DEFAULT_SPLITS = {"train": 1600, "restval": 200, "val": 300, "test": 1000}
DEFAULT_CLASSIFICATION = {"train": 600, "val": 150, "test": 600}
TRAINING_SPLITS = {"train": 20000}
TRAINING_SEED = 1
VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128] + [0] * (3 * 248) \
    + [224, 224, 192]
RELATIONS = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below",
             "below": "above"}
COUNT_WORDS = ("one", "two", "three", "four")


@dataclass
class Shape:
    kind: str
    colour: str
    size: str
    row: int
    col: int
    cx: float
    cy: float

    def phrase(self, with_size: bool = False) -> str:
        return f"{self.size} {self.colour} {self.kind}" if with_size else f"{self.colour} {self.kind}"

    @property
    def position(self) -> str:
        return f"{ROWS[self.row]} {COLS[self.col]}"

    def placed(self) -> str:
        """Attributes and place: "a small red circle in the top left"."""
        return f"a {self.phrase(True)} in the {self.position}"


def polygon(shape: Shape, image_size: int) -> list[tuple[float, float]]:
    """Vertices of the shape in pixel coordinates (x, y)."""
    r = SIZES[shape.size] * image_size / 2
    cx, cy = shape.cx, shape.cy
    if shape.kind == "circle":
        pts = [(math.cos(2 * math.pi * i / 24), math.sin(2 * math.pi * i / 24)) for i in range(24)]
    elif shape.kind == "square":
        s = 0.8
        pts = [(-s, -s), (s, -s), (s, s), (-s, s)]
    elif shape.kind == "triangle":
        pts = [(0, -1), (0.9, 0.75), (-0.9, 0.75)]
    elif shape.kind == "diamond":
        pts = [(0, -1), (0.75, 0), (0, 1), (-0.75, 0)]
    elif shape.kind == "star":
        pts = [((1 if i % 2 == 0 else 0.45) * math.sin(math.pi * i / 5),
                -(1 if i % 2 == 0 else 0.45) * math.cos(math.pi * i / 5)) for i in range(10)]
    else:
        a, b = 0.32, 1.0
        pts = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a),
               (-a, -a)]
    return [(round(cx + r * x, 2), round(cy + r * y, 2)) for x, y in pts]


def holds(relation: str, a: Shape, b: Shape) -> bool:
    """Whether ``a`` stands in ``relation`` (a key of ``RELATIONS``) to ``b`` on the grid."""
    return {"to the left of": a.col < b.col, "to the right of": a.col > b.col, "above": a.row < b.row,
            "below": a.row > b.row}[relation]


def _relation(a: Shape, b: Shape) -> tuple[str, str]:
    """(a relation b, b inverse a): left/right when the columns differ, else above/below."""
    if a.col != b.col:
        return ("to the left of", "to the right of") if a.col < b.col else ("to the right of", "to the left of")
    return ("above", "below") if a.row < b.row else ("below", "above")


_ARTICLE = re.compile(r"\ba (?=[aeiou])")


def _articles(text: str) -> str:
    """Fix the indefinite article before a vowel ("a orange" -> "an orange")."""
    return _ARTICLE.sub("an ", text)


def _plural(kind: str) -> str:
    return kind + ("es" if kind.endswith("s") else "s")


def _listing(phrases: list[str]) -> str:
    """"a X", "a X and a Y", "a X, a Y and a Z"."""
    items = [f"a {p}" for p in phrases]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def captions(shapes: list[Shape], n: int) -> list[str]:
    """``n`` (5 or 6) captions of a scene; together they name every object's size, colour, kind and place.

    Caption 0 of a scene with two or more objects relates its first two objects ("a red circle to the
    left of a blue square"); captions 1 and 2 place the objects with all their attributes, two per
    caption. Every caption stays within 24 words (the bundled models read 32 tokens).
    """
    first = shapes[0]
    if len(shapes) == 1:
        out = [f"a {first.phrase(True)}", f"{first.placed()}", f"a single {first.phrase()} on a grey background",
               f"one {first.phrase(True)} in the {first.position} of the picture",
               f"a picture of a {first.phrase()} in the {first.position}",
               f"a {first.size} {first.kind} coloured {first.colour}"]
        return [_articles(c) for c in out[:n]]
    a, b = shapes[0], shapes[1]
    rel, _ = _relation(a, b)
    count = COUNT_WORDS[len(shapes) - 1]
    placed = [s.placed() for s in shapes]
    out = [f"a {a.phrase()} {rel} a {b.phrase()}",
           " and ".join(placed[:2]),
           " and ".join(placed[2:]) if len(shapes) > 2 else f"{placed[1]} and {placed[0]}",
           _listing([s.phrase(True) for s in shapes]),
           f"{count} shapes: " + _listing([s.phrase() for s in shapes]),
           f"{count} shapes on a grey background, the {a.phrase()} in the {a.position}"]
    if len(shapes) == 3:
        out[2] = f"{placed[2]} next to a {a.phrase()} and a {b.phrase()}"
    counts: dict[tuple[str, str], int] = {}
    for s in shapes:
        counts[(s.colour, s.kind)] = counts.get((s.colour, s.kind), 0) + 1
    (colour, kind), k = max(counts.items(), key=lambda kv: kv[1])
    if k > 1:
        rest = [s.phrase() for s in shapes if (s.colour, s.kind) != (colour, kind)]
        out[4] = f"{COUNT_WORDS[k - 1]} {colour} {_plural(kind)}" + (f" and {_listing(rest)}" if rest else "")
    return [_articles(c) for c in out[:n]]


def sample_scene(rng: random.Random, image_size: int, n: int | None = None) -> list[Shape]:
    """1-4 shapes (``n`` of them when given) in distinct cells of the 2x2 grid, listed in reading order."""
    n = n or rng.choices(list(OBJECT_COUNTS), weights=list(OBJECT_COUNTS.values()))[0]
    cells = sorted(rng.sample(range(GRID * GRID), n))
    shapes: list[Shape] = []
    cell_px = image_size / GRID
    jitter = cell_px * JITTER
    for i, cell in enumerate(cells):
        row, col = divmod(cell, GRID)
        if i > 0 and rng.random() < REPEAT:
            kind, colour = shapes[0].kind, shapes[0].colour
        else:
            kind, colour = rng.choice(KINDS), rng.choice(list(COLOURS))
        size = rng.choice(list(SIZES))
        cx = round((col + 0.5) * cell_px + rng.uniform(-jitter, jitter), 2)
        cy = round((row + 0.5) * cell_px + rng.uniform(-jitter, jitter), 2)
        shapes.append(Shape(kind, colour, size, row, col, cx, cy))
    return shapes


def render(shapes: list[Shape], image_size: int) -> tuple[Image.Image, list[np.ndarray]]:
    """The RGB image and one boolean mask per shape.

    Masks are the polygons rasterised by pycocotools, and the image is painted from them, so the
    COCO segmentation, the drawn pixels and the VOC label map agree exactly.
    """
    from pycocotools import mask as mask_utils

    pixels = np.empty((image_size, image_size, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    masks = []
    for s in shapes:
        poly = [c for p in polygon(s, image_size) for c in p]
        rle = mask_utils.merge(mask_utils.frPyObjects([poly], image_size, image_size))
        m = mask_utils.decode(rle).astype(bool)
        pixels[m] = COLOURS[s.colour]
        masks.append(m)
    return Image.fromarray(pixels, mode="RGB"), masks


def _bbox(points: list[tuple[float, float]]) -> list[float]:
    """COCO box [x, y, w, h] of a polygon (its extents, as COCO's own boxes)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]


def _voc_mask(shapes: list[Shape], masks: list[np.ndarray]) -> Image.Image:
    label = np.zeros(masks[0].shape, dtype=np.uint8)
    union = np.zeros_like(masks[0])
    for s, m in zip(shapes, masks):
        label[m] = KINDS.index(s.kind) + 1
        union |= m
    grown = union.copy()
    grown[1:] |= union[:-1]
    grown[:-1] |= union[1:]
    grown[:, 1:] |= union[:, :-1]
    grown[:, :-1] |= union[:, 1:]
    label[grown & ~union] = 255
    out = Image.fromarray(label, mode="P")
    out.putpalette(VOC_PALETTE)
    return out


def _matches(shape: Shape, colour: str | None, kind: str, size: str | None = None) -> bool:
    return shape.kind == kind and colour in (None, shape.colour) and size in (None, shape.size)


def _relation_true(shapes: list[Shape], first: tuple, relation: str, second: tuple) -> bool:
    """Whether some object matching ``first`` (colour, kind) stands in ``relation`` to another matching ``second``."""
    return any(_matches(x, *first) and _matches(y, *second) and holds(relation, x, y)
               for x in shapes for y in shapes if x is not y)


def _negatives(shapes: list[Shape], rng: random.Random) -> dict[str, tuple[str, str]]:
    """SugarCrepe-style (positive, negative) caption pairs of a scene with two or more objects.

    Each negative is false of the scene and has the positive's length and form: it changes words of the
    positive (replace, swap) or puts an absent object or a wrong size where the positive has a true one
    (add_obj, add_att), so no text-only cue (length, word frequencies) tells which caption is true.
    """
    a, b = rng.sample(shapes, 2)
    rel, _ = _relation(a, b)
    present = {(s.colour, s.kind) for s in shapes}
    pos = f"a {a.phrase()} {rel} a {b.phrase()}"
    out: dict[str, tuple[str, str]] = {}
    colours = [c for c in COLOURS if (c, a.kind) not in present]
    if colours:
        out["replace_att"] = (pos, f"a {rng.choice(colours)} {a.kind} {rel} a {b.phrase()}")
    kinds = [k for k in KINDS if (a.colour, k) not in present]
    if kinds:
        out["replace_obj"] = (pos, f"a {a.colour} {rng.choice(kinds)} {rel} a {b.phrase()}")
    opposite = RELATIONS[rel]
    if not _relation_true(shapes, (a.colour, a.kind), opposite, (b.colour, b.kind)):
        out["replace_rel"] = (pos, f"a {a.phrase()} {opposite} a {b.phrase()}")
    if a.colour != b.colour and not _relation_true(shapes, (b.colour, a.kind), rel, (a.colour, b.kind)):
        out["swap_att"] = (pos, f"a {b.colour} {a.kind} {rel} a {a.colour} {b.kind}")
    if a.kind != b.kind and not _relation_true(shapes, (a.colour, b.kind), rel, (b.colour, a.kind)):
        out["swap_obj"] = (pos, f"a {a.colour} {b.kind} {rel} a {b.colour} {a.kind}")
    wrong = "large" if a.size == "small" else "small"
    if not any(_matches(s, None, a.kind, wrong) for s in shapes):
        out["add_att"] = (f"a {a.size} {a.kind} and a {b.phrase()}", f"a {wrong} {a.kind} and a {b.phrase()}")
    listed = [a, b] + ([rng.choice([s for s in shapes if s is not a and s is not b])] if len(shapes) > 2 else [])
    absent = [k for k in KINDS if k not in {s.kind for s in shapes}]
    added = f"{rng.choice(list(COLOURS))} {rng.choice(absent)}"
    out["add_obj"] = (_listing([s.phrase() for s in listed]), _listing([s.phrase() for s in listed[:-1]] + [added]))
    return {k: (_articles(p), _articles(n)) for k, (p, n) in out.items()}


def classification_sizes(splits: dict[str, int] | None, classification: dict[str, int] | None) -> dict[str, int]:
    """Images per split of the classification view: as given, the default for the default world, else
    one per captioned image of train/val/test, at most 600 each."""
    if classification is not None:
        return dict(classification)
    if splits is None:
        return dict(DEFAULT_CLASSIFICATION)
    return {k: min(v, 600) for k, v in splits.items() if k in ("train", "val", "test")}


def _classification_view(root: Path, sizes: dict[str, int], seed: int, image_size: int) -> list[dict]:
    """Single-shape images in ``imagefolder/<split>/<kind>/`` (their own random stream)."""
    rng = random.Random(seed + 2)
    entries = []
    for split, n in sizes.items():
        for _ in range(n):
            (shape,) = sample_scene(rng, image_size, n=1)
            img, (mask,) = render([shape], image_size)
            cid = len(entries)
            rel = f"imagefolder/{split}/{shape.kind}/c{cid:06d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            img.save(root / rel, optimize=False)
            pts = polygon(shape, image_size)
            entries.append({"id": cid, "split": split, "file": rel,
                            "objects": [{**asdict(shape), "category_id": CATEGORY_IDS[KINDS.index(shape.kind)],
                                         "bbox": _bbox(pts), "area": float(mask.sum())}]})
    return entries


def generate(root: Path | str, splits: dict[str, int] | None = None, seed: int = 0, image_size: int = 64,
             classification: dict[str, int] | None = None) -> Path:
    """Write the shapes world into ``root`` (created; must be empty or absent). Deterministic in the seed."""
    root = Path(root)
    cls_sizes = classification_sizes(splits, classification)
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    rng = random.Random(seed)
    scenes = []
    used: dict[str, set[str]] = {}
    eval_split = {"val", "test"}
    for split, n in splits.items():
        used.setdefault(split, set())
        made = 0
        while made < n:
            shapes = sample_scene(rng, image_size)
            n_caps = 6 if len(scenes) % 7 == 3 else 5
            caps = captions(shapes, n_caps)
            if split in eval_split and (len(set(caps)) < len(caps) or used[split] & set(caps)):
                continue
            used[split].update(caps)
            scenes.append({"id": len(scenes), "split": split, "shapes": shapes, "captions": caps})
            made += 1
    for d in ("images", "annotations", "VOCdevkit/VOC2012/JPEGImages", "VOCdevkit/VOC2012/SegmentationClass",
              "VOCdevkit/VOC2012/ImageSets/Segmentation", "sugarcrepe"):
        (root / d).mkdir(parents=True, exist_ok=True)
    world = {"version": WORLD_VERSION, "seed": seed, "image_size": image_size, "splits": splits,
             "kinds": list(KINDS), "colours": list(COLOURS), "category_ids": list(CATEGORY_IDS), "scenes": []}
    coco = {s: {"images": [], "captions": [], "instances": []} for s in splits}
    karpathy = []
    voc_lists: dict[str, list[str]] = {"train": [], "val": []}
    sugar: dict[str, dict] = {c: {} for c in SUGARCREPE_CATEGORIES}
    neg_rng = random.Random(seed + 1)
    sent_id = ann_id = 0
    for sc in scenes:
        sid, split, shapes = sc["id"], sc["split"], sc["shapes"]
        fname = f"{sid:06d}.png"
        img, masks = render(shapes, image_size)
        img.save(root / "images" / fname, optimize=False)
        objects = []
        for s, m in zip(shapes, masks):
            pts = polygon(s, image_size)
            objects.append({**asdict(s), "category_id": CATEGORY_IDS[KINDS.index(s.kind)], "bbox": _bbox(pts),
                            "area": float(m.sum()), "polygon": [c for p in pts for c in p]})
        world["scenes"].append({"id": sid, "file": f"images/{fname}", "split": split, "objects": objects,
                                "captions": sc["captions"]})
        cs = coco[split]
        cs["images"].append({"id": sid, "file_name": fname, "width": image_size, "height": image_size})
        sentences = []
        for cap in sc["captions"]:
            cs["captions"].append({"id": sent_id, "image_id": sid, "caption": cap})
            sentences.append({"raw": cap, "tokens": cap.replace(",", "").replace(":", "").split(), "imgid": sid,
                              "sentid": sent_id})
            sent_id += 1
        karpathy.append({"split": split, "filepath": "images", "filename": fname, "imgid": sid, "cocoid": sid,
                         "sentids": [s["sentid"] for s in sentences], "sentences": sentences})
        for o in objects:
            cs["instances"].append({"id": ann_id + 1, "image_id": sid, "category_id": o["category_id"],
                                    "bbox": o["bbox"], "area": o["area"], "iscrowd": 0,
                                    "segmentation": [o["polygon"]]})
            ann_id += 1
        voc_split = "val" if split == "test" else ("train" if split in ("train", "restval") else None)
        if voc_split:
            stem = f"{sid:06d}"
            img.save(root / "VOCdevkit/VOC2012/JPEGImages" / f"{stem}.jpg", quality=95)
            _voc_mask(shapes, masks).save(root / "VOCdevkit/VOC2012/SegmentationClass" / f"{stem}.png")
            voc_lists[voc_split].append(stem)
        if split == "test" and len(shapes) >= 2:
            for cat, (pos, neg) in _negatives(shapes, neg_rng).items():
                sugar[cat][str(sid)] = {"filename": fname, "caption": pos, "negative_caption": neg}
    categories = [{"id": cid, "name": k, "supercategory": "shape"} for k, cid in zip(KINDS, CATEGORY_IDS)]
    info = {"description": "sparc-eval shapes world", "version": str(WORLD_VERSION), "year": 2026}
    for split, cs in coco.items():
        atomic_write_json(root / "annotations" / f"captions_{split}.json",
                          {"info": info, "licenses": [], "images": cs["images"], "annotations": cs["captions"]})
        atomic_write_json(root / "annotations" / f"instances_{split}.json",
                          {"info": info, "licenses": [], "images": cs["images"], "annotations": cs["instances"],
                           "categories": categories})
    atomic_write_json(root / "dataset_shapes.json", {"dataset": "shapes", "images": karpathy})
    for split, stems in voc_lists.items():
        (root / "VOCdevkit/VOC2012/ImageSets/Segmentation" / f"{split}.txt").write_text(
            "".join(s + "\n" for s in stems))
    for cat, items in sugar.items():
        atomic_write_json(root / "sugarcrepe" / f"{cat}.json", items)
    world["classification"] = _classification_view(root, cls_sizes, seed, image_size)
    (root / "imagefolder" / "classnames.txt").write_text("".join(k + "\n" for k in KINDS))
    atomic_write_json(root / "world.json", world)
    return root


def world_id(splits: dict[str, int] | None = None, seed: int = 0, image_size: int = 64) -> str:
    params = {"version": WORLD_VERSION, "splits": splits or DEFAULT_SPLITS, "seed": seed, "image_size": image_size,
              "classification": classification_sizes(splits, None)}
    return f"v{WORLD_VERSION}-{sha256_json(params)[:12]}"


def default_world(splits: dict[str, int] | None = None, seed: int = 0, image_size: int = 64) -> Path:
    """The standard shapes world in the cache folder, generated on first use (atomically)."""
    target = cache_root() / "shapes" / world_id(splits, seed, image_size)
    if (target / "world.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        tmp.chmod(default_mode(directory=True))  # mkdtemp's 0o700 would hide a shared cache from others
        generate(tmp, splits, seed, image_size)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "world.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def training_world() -> Path:
    """The pretraining set of the bundled checkpoints (``${shapes_train}``): 20,000 images (~100k captions)
    from seed 1, generated on first use; disjoint in seed from the evaluation world."""
    return default_world(TRAINING_SPLITS, seed=TRAINING_SEED)


def load_world(root: Path | str) -> dict:
    """The ground truth ``world.json`` of a generated world."""
    with (Path(root) / "world.json").open(encoding="utf-8") as f:
        return json.load(f)
