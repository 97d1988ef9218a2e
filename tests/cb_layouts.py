"""Exports of a shapes world in CLIP_benchmark's on-disk layouts, for agreement tests against CLIP_benchmark.

- :func:`export_mscoco`: ``DIR/val2014/*`` + ``DIR/coco_<split>_karpathy.json`` (COCO captions format), with
  the images and annotations listed in a shuffled order (CLIP_benchmark sorts images by id and keeps each
  image's captions in file order, so readers must too) and one caption with surrounding spaces;
- :func:`export_flickr`: ``DIR/<id>.jpg`` (JPEG) + ``DIR/<name>_<split>_karpathy.txt`` (header line, then
  ``<image>.jpg,<caption>``), images in a shuffled order of first appearance, one caption with a comma;
- :func:`export_wds_classification` / :func:`export_wds_retrieval`: shards written by CLIP_benchmark's own
  ``clip_benchmark.webdataset_builder`` (``convert_dataset`` / ``convert_retrieval_dataset``), several
  shards (``max_count``) so that shard order matters.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from PIL import Image


def _split_scenes(world: Path, split: str) -> list[dict]:
    scenes = json.loads((world / "world.json").read_text())["scenes"]
    return [s for s in scenes if s["split"] == split]


def export_mscoco(world: Path, out: Path, split: str = "test", seed: int = 0) -> Path:
    """CLIP_benchmark's mscoco_captions folder for ``split`` of the world (images under val2014/)."""
    coco = json.loads((world / "annotations" / f"captions_{split}.json").read_text())
    rng = random.Random(seed)
    images, annotations = list(coco["images"]), list(coco["annotations"])
    rng.shuffle(images)
    rng.shuffle(annotations)
    annotations[0] = {**annotations[0], "caption": f"  {annotations[0]['caption']} "}
    folder = out / ("train2014" if split == "train" else "val2014")
    folder.mkdir(parents=True, exist_ok=True)
    for im in images:
        shutil.copyfile(world / "images" / im["file_name"], folder / im["file_name"])
    (out / f"coco_{split}_karpathy.json").write_text(json.dumps({**coco, "images": images, "annotations": annotations}))
    return out


def export_flickr(world: Path, out: Path, split: str = "test", name: str = "flickr30k", seed: int = 0) -> Path:
    """CLIP_benchmark's flickr30k (or flickr8k) folder for ``split`` of the world."""
    scenes = _split_scenes(world, split)
    random.Random(seed).shuffle(scenes)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["image,caption"]
    for n, sc in enumerate(scenes):
        stem = f"{1000 + sc['id']}"
        Image.open(world / sc["file"]).convert("RGB").save(out / f"{stem}.jpg", quality=95)
        for j, cap in enumerate(sc["captions"]):
            lines.append(f"{stem}.jpg,{cap + ', on grey' if n == 0 and j == 0 else cap}")
    (out / f"{name}_{split}_karpathy.txt").write_text("\n".join(lines) + "\n")
    return out


class _Listing(list):
    """A list of (path, target) samples with the attributes convert_dataset reads."""

    classes: list[str] | None = None
    templates: list[str] | None = None


def export_wds_classification(world: Path, out: Path, split: str = "test", max_count: int = 16) -> Path:
    """The world's single-shape images of ``split`` as CLIP_benchmark classification shards."""
    from clip_benchmark.webdataset_builder import convert_dataset, path_to_bytes

    classes = (world / "imagefolder" / "classnames.txt").read_text().split()
    view = json.loads((world / "world.json").read_text())["classification"]
    samples = _Listing((str(world / c["file"]), classes.index(c["objects"][0]["kind"]))
                       for c in view if c["split"] == split)
    samples.classes = classes
    samples.templates = ["a photo of a {c}.", "a drawing of a {c}.", "a {c} shape."]
    convert_dataset(samples, split, str(out), transform=path_to_bytes, max_count=max_count, verbose=False)
    return out


def export_wds_retrieval(world: Path, out: Path, split: str = "test", max_count: int = 16) -> Path:
    """The world's captioned images of ``split`` as CLIP_benchmark retrieval shards."""
    from clip_benchmark.webdataset_builder import convert_retrieval_dataset, path_to_bytes

    samples = [(str(world / sc["file"]), sc["captions"]) for sc in _split_scenes(world, split)]
    convert_retrieval_dataset(samples, split, str(out), transform=path_to_bytes, max_count=max_count, verbose=False)
    return out
