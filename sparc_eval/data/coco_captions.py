"""COCO captions JSON (``captions_val2017.json``) for image-text retrieval.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

Images are taken in the order of the file's ``images`` list; images without any caption are left
out (and counted in the result details). Captions are used as written (whitespace stripped).
Image ids, image files and annotation ids must be unique, captions non-empty strings, ids integers
or strings, and ``file_name`` a path inside the image folder (``DataIntegrityError`` naming the
entry; ``dataset.allow_outside_root`` admits absolute and ``..`` paths).
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..params import Param
from .base import (
    ImageSet,
    Reader,
    RetrievalSet,
    allow_outside_root,
    check_caption,
    check_images_exist,
    check_root,
    check_unique,
    fingerprint,
    path_key,
    read_json,
    require_fields,
    require_id,
    require_str,
    safe_join,
)


class CocoCaptionsReader(Reader):
    format = "coco_captions"
    kind = "retrieval"
    params = {
        "root": Param("path", help="COCO folder"),
        "annotations": Param("str", "annotations/captions_val2017.json", "captions JSON, relative to root"),
        "image_dir": Param("str", "val2017", "image folder, relative to root"),
    }
    layout = """

    <root>/annotations/captions_val2017.json   {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}
    <root>/val2017/000000000139.jpg ..."""

    def load(self, cfg, check_images: bool = True) -> RetrievalSet:
        root = check_root(cfg, "coco_captions")
        ann = root / cfg["annotations"]
        data = read_json(ann, "coco_captions")
        require_fields(data, ["images", "annotations"], str(ann))
        image_dir = root / cfg["image_dir"]
        outside = allow_outside_root(cfg)
        by_image: dict = {}
        ann_ids = []
        for i, a in enumerate(data["annotations"]):
            where = f"{ann}: annotations[{i}]"
            require_fields(a, ["image_id", "caption"], where)
            image_id = require_id(a["image_id"], f"{where}.image_id")
            ann_ids.append(require_id(a["id"], f"{where}.id") if "id" in a else str(i))
            by_image.setdefault(image_id, []).append((ann_ids[-1], check_caption(a["caption"], f"{where}.caption").strip()))
        check_unique(ann_ids, "annotation id", str(ann), lambda k: f"annotations[{k}]")
        known, file_paths = [], []
        paths, ids, captions, caption_image, caption_ids = [], [], [], [], []
        for i, im in enumerate(data["images"]):
            where = f"{ann}: images[{i}]"
            require_fields(im, ["id", "file_name"], where)
            image_id = require_id(im["id"], f"{where}.id")
            file_name = require_str(im["file_name"], f"{where}.file_name", "a file name (string)")
            path = safe_join(image_dir, file_name, f"{where}.file_name", outside)
            known.append(image_id)
            file_paths.append(path_key(str(path)))
            caps = by_image.get(image_id)
            if not caps:
                continue
            for cid, cap in caps:
                captions.append(cap)
                caption_image.append(len(paths))
                caption_ids.append(cid)
            paths.append(path)
            ids.append(image_id)
        check_unique(known, "image id", str(ann), lambda k: f"images[{k}]")
        check_unique(file_paths, "image file", str(ann), lambda k: f"images[{k}]")
        orphans = sorted(set(by_image) - set(known), key=str)
        if orphans:
            raise DataError(f"{ann}: annotations refer to image id(s) {orphans[:5]} that are not in 'images'")
        if not paths:
            raise DataError(f"{ann}: no image has a caption")
        if check_images:
            check_images_exist(paths, str(ann))
        fp = fingerprint("coco_captions", [ann], paths, root)
        return RetrievalSet(ImageSet(paths, ids, fp), captions, np.asarray(caption_image), caption_ids, fp, len(paths),
                            {"annotations": str(ann), "images_without_captions": len(data["images"]) - len(paths)})


READER = CocoCaptionsReader()
