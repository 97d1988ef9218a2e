"""The shapes world: deterministic, captions unique per eval split, and loadable by the reference tools."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from sparc_eval.data.synthetic import CATEGORY_IDS, COLOURS, KINDS, SUGARCREPE_CATEGORIES, generate, load_world

SPLITS = {"train": 30, "restval": 6, "val": 12, "test": 24}


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_and_seeded(tmp_path):
    a = generate(tmp_path / "a", SPLITS, seed=3)
    b = generate(tmp_path / "b", SPLITS, seed=3)
    c = generate(tmp_path / "c", SPLITS, seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_captions_unique_within_eval_splits_and_quirks(small_world):
    world = load_world(small_world)
    for split in ("val", "test"):
        caps = [c for s in world["scenes"] if s["split"] == split for c in s["captions"]]
        assert len(caps) == len(set(caps))
    counts = Counter(len(s["captions"]) for s in world["scenes"])
    assert set(counts) == {5, 6}  # some images have more than 5 captions, as in COCO
    karpathy = json.loads((small_world / "dataset_shapes.json").read_text())
    assert {e["split"] for e in karpathy["images"]} == {"train", "restval", "val", "test"}


def test_coco_files_load_in_pycocotools(small_world):
    from pycocotools.coco import COCO

    coco = COCO(str(small_world / "annotations/instances_test.json"))
    assert sorted(coco.getCatIds()) == list(CATEGORY_IDS)  # gapped ids
    world = load_world(small_world)
    for scene in [s for s in world["scenes"] if s["split"] == "test"][:10]:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[scene["id"]]))
        assert len(anns) == len(scene["objects"])
        for ann, obj in zip(anns, scene["objects"]):
            mask = coco.annToMask(ann).astype(bool)
            assert int(mask.sum()) == obj["area"] > 0
            # the painted pixels are exactly the annotated mask
            with Image.open(small_world / scene["file"]) as im:
                pixels = np.asarray(im.convert("RGB"))
            assert (pixels[mask] == COLOURS[obj["colour"]]).all()
            ys, xs = np.nonzero(mask)
            x, y, w, h = ann["bbox"]
            assert x <= xs.min() + 1 and y <= ys.min() + 1 and xs.max() <= x + w and ys.max() <= y + h
            assert obj["category_id"] == ann["category_id"]
    caps = COCO(str(small_world / "annotations/captions_test.json"))
    n_test = sum(1 for s in load_world(small_world)["scenes"] if s["split"] == "test")
    assert len(caps.getImgIds()) == n_test


def test_voc_masks_are_palette_indices(small_world):
    voc = small_world / "VOCdevkit/VOC2012"
    stems = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    world = {s["id"]: s for s in load_world(small_world)["scenes"]}
    for stem in stems[:8]:
        with Image.open(voc / "SegmentationClass" / f"{stem}.png") as im:
            assert im.mode == "P"
            labels = np.asarray(im)
        present = set(np.unique(labels)) - {0, 255}
        assert present == {KINDS.index(o["kind"]) + 1 for o in world[int(stem)]["objects"]}
        assert 255 in set(np.unique(labels))  # the void border, as VOC
        assert (voc / "JPEGImages" / f"{stem}.jpg").is_file()


def test_imagefolder_view_loads_in_torchvision(small_world):
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(small_world / "imagefolder" / "train"))
    view = {Path(c["file"]).name: c for c in load_world(small_world)["classification"] if c["split"] == "train"}
    assert len(ds.samples) == len(view) == 48
    for path, label in ds.samples:
        entry = view[Path(path).name]
        assert len(entry["objects"]) == 1 and ds.classes[label] == entry["objects"][0]["kind"]
        with Image.open(path) as im:  # one shape on the background, of the recorded colour
            assert tuple(COLOURS[entry["objects"][0]["colour"]]) in {c for _, c in im.getcolors()}


def test_sugarcrepe_pairs_differ_and_point_at_images(small_world):
    found = 0
    for cat in SUGARCREPE_CATEGORIES:
        items = json.loads((small_world / "sugarcrepe" / f"{cat}.json").read_text())
        for item in items.values():
            assert item["caption"] != item["negative_caption"]
            assert (small_world / "images" / item["filename"]).is_file()
            found += 1
    assert found > 0


def test_captions_place_every_object_and_negatives_match_their_positive_in_length(small_world):
    from sparc_eval.data.synthetic import COLS, ROWS

    world = load_world(small_world)
    for scene in world["scenes"]:
        text = " | ".join(scene["captions"])
        for o in scene["objects"]:  # size, colour, kind and place of every object, in one caption
            placed = f"{o['size']} {o['colour']} {o['kind']} in the {ROWS[o['row']]} {COLS[o['col']]}"
            assert placed in text, (placed, scene["captions"])
    for cat in SUGARCREPE_CATEGORIES:
        items = json.loads((small_world / "sugarcrepe" / f"{cat}.json").read_text())
        assert items, cat
        for item in items.values():  # no length cue: the negative has the positive's words count
            assert len(item["caption"].split()) == len(item["negative_caption"].split()), (cat, item)
