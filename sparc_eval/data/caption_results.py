"""A captioner's output in COCO results format: ``[{"image_id": 391895, "caption": "a man ..."}, ...]``.

One caption per image. ``image_id`` is an integer or string equal to the dataset's image id (the
Karpathy file's ``cocoid`` for COCO, ``imgid`` for Flickr30k; the ``id`` of COCO captions files).
Errors name the file and the entry: wrong JSON shape, missing fields, non-string or empty captions
(no letter or digit), duplicate image ids, ids that are not in the dataset.
"""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from ..errors import DataError
from .base import read_json


def read_caption_results(path: Path | str, known_ids: Collection[str]) -> dict[str, str]:
    """``{image id (str): caption}`` from ``path``; every id must be in ``known_ids``."""
    path = Path(path).expanduser()
    data = read_json(path, "predictions")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of {{\"image_id\", \"caption\"}} objects (COCO results "
                        f"format), found a JSON {type(data).__name__}")
    known = set(known_ids)
    out: dict[str, str] = {}
    unknown: list[str] = []
    for i, entry in enumerate(data):
        where = f"{path}: entry [{i}]"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object {{\"image_id\", \"caption\"}}, found {entry!r:.60}")
        missing = [k for k in ("image_id", "caption") if k not in entry]
        if missing:
            raise DataError(f"{where}: missing field(s) {missing}; found {sorted(entry)}")
        image_id, caption = entry["image_id"], entry["caption"]
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise DataError(f"{where}: image_id must be an integer or string, found {image_id!r}")
        if not isinstance(caption, str):
            raise DataError(f"{where} (image_id {image_id!r}): caption must be a string, found {caption!r:.60}")
        if not any(ch.isalnum() for ch in caption):
            raise DataError(f"{where} (image_id {image_id!r}): empty caption {caption!r}")
        key = str(image_id)
        if key in out:
            raise DataError(f"{where}: duplicate image_id {image_id!r} (one caption per image expected)")
        if key not in known:
            unknown.append(key)
        out[key] = caption.strip()
    if unknown:
        example = sorted(known, key=lambda s: (len(s), s))[:3]
        raise DataError(f"{path}: {len(unknown)} image_id(s) not in the dataset, e.g. {unknown[:5]}; "
                        f"expected ids such as {example}")
    if not out:
        raise DataError(f"{path}: no predictions (empty list)")
    return out
