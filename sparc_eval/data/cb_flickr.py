"""CLIP_benchmark's ``flickr30k`` / ``flickr8k`` folders, read as ``clip_benchmark eval --dataset_root`` takes them.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

As CLIP_benchmark's ``Flickr`` reader: the first line is skipped, blank lines are ignored, each line is
stripped and split at ``.jpg,`` (captions may hold commas), images come in order of first appearance
with their captions in file order. A first line that is itself a caption (no header) is an error, as is
a line without ``.jpg,`` or with it twice (CLIP_benchmark would drop the first caption silently, or fail).
An image name that is absolute or leaves root through ``..`` (unless ``dataset.allow_outside_root``),
or one file under two spellings (``a.jpg``, ``./a.jpg``), is a ``DataIntegrityError`` naming the line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, DataIntegrityError
from ..params import Param
from .base import (
    ImageSet,
    Reader,
    RetrievalSet,
    allow_outside_root,
    check_images_exist,
    check_root,
    check_unique,
    fingerprint,
    path_key,
    safe_join,
)

SEPARATOR = ".jpg,"


def read_pairs(path) -> list[tuple[int, str, str]]:
    """(line number, image file name, caption) of each caption line of a CLIP_benchmark Flickr
    annotation file, in file order."""
    if not path.is_file():
        raise DataError(f"cb_flickr: annotation file {path} is missing")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    if not lines:
        raise DataError(f"{path}: empty file; expected a header line, then <image>.jpg,<caption> lines")
    if SEPARATOR in lines[0]:
        raise DataError(f"{path}:1: {lines[0]!r:.80} is a caption line, but the first line must be a header "
                        f"(e.g. 'image,caption'): CLIP_benchmark skips it, so this caption would be lost")
    pairs = []
    for lineno, raw in enumerate(lines[1:], 2):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(SEPARATOR)
        if len(parts) == 2 and parts[0] and not parts[1].strip():
            raise DataIntegrityError(f"{path}:{lineno}: empty caption for {parts[0]}.jpg; expected "
                                     f"'<image>.jpg,<caption>' with text to encode")
        if len(parts) != 2 or not parts[0]:
            raise DataError(f"{path}:{lineno}: expected '<image>.jpg,<caption>' with '.jpg,' once, found {line!r:.80}")
        pairs.append((lineno, parts[0] + ".jpg", parts[1]))
    if not pairs:
        raise DataError(f"{path}: no <image>.jpg,<caption> lines after the header")
    return pairs


class CbFlickrReader(Reader):
    format = "cb_flickr"
    kind = "retrieval"
    params = {
        "root": Param("path", help="CLIP_benchmark's dataset_root for flickr30k or flickr8k"),
        "split": Param("str", "test", "train, val or test (CLIP_benchmark's --split)", choices=("train", "val", "test")),
        "annotations": Param("str", "flickr30k_{split}_karpathy.txt", "annotation file under root ({split} is filled "
                             "in; flickr8k_{split}_karpathy.txt for flickr8k)"),
    }
    layout = """

    <root>/flickr30k_test_karpathy.txt   a header line, then one "<image>.jpg,<caption>" per line
                                         (flickr8k_test_karpathy.txt for flickr8k; mehdidc/retrieval_annotations)
    <root>/<image>.jpg                   the images, directly in root"""

    def load(self, cfg, check_images: bool = True) -> RetrievalSet:
        root = check_root(cfg, "cb_flickr")
        ann = root / cfg["annotations"].replace("{split}", cfg["split"])
        outside = allow_outside_root(cfg)
        order: dict[str, int] = {}
        first_line: list[int] = []
        paths: list[Path] = []
        captions, caption_image = [], []
        for lineno, name, caption in read_pairs(ann):
            if name not in order:
                order[name] = len(order)
                first_line.append(lineno)
                paths.append(safe_join(root, name, f"{ann}:{lineno}: image", outside))
            captions.append(caption)
            caption_image.append(order[name])
        names = list(order)
        check_unique([path_key(str(p)) for p in paths], "image file", str(ann),
                     lambda k: f"line {first_line[k]} {names[k]!r}")
        if check_images:
            check_images_exist(paths, str(ann))
        per_image = [0] * len(names)
        caption_ids = []
        for owner in caption_image:
            caption_ids.append(f"{names[owner]}:{per_image[owner]}")
            per_image[owner] += 1
        fp = fingerprint("cb_flickr", [ann], paths, root, {"split": cfg["split"]})
        return RetrievalSet(ImageSet(paths, names, fp), captions, np.asarray(caption_image), caption_ids, fp,
                            len(paths), {"annotations": str(ann)})


READER = CbFlickrReader()
