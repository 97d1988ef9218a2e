"""COCO captions JSON (``captions_val2017.json``) for image-text retrieval.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

Images are taken in the order of the file's ``images`` list; images without any caption are left
out (and counted in the result details). Captions are used as written (whitespace stripped).
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..params import Param
from .base import ImageSet, Reader, RetrievalSet, check_images_exist, check_root, fingerprint, read_json, require_fields


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
        by_image: dict = {}
        for i, a in enumerate(data["annotations"]):
            require_fields(a, ["image_id", "caption"], f"{ann}: annotations[{i}]")
            by_image.setdefault(a["image_id"], []).append((a.get("id", i), str(a["caption"]).strip()))
        known = set()
        paths, ids, captions, caption_image, caption_ids = [], [], [], [], []
        for i, im in enumerate(data["images"]):
            require_fields(im, ["id", "file_name"], f"{ann}: images[{i}]")
            known.add(im["id"])
            caps = by_image.get(im["id"])
            if not caps:
                continue
            for cid, cap in caps:
                captions.append(cap)
                caption_image.append(len(paths))
                caption_ids.append(str(cid))
            paths.append(root / cfg["image_dir"] / im["file_name"])
            ids.append(str(im["id"]))
        orphans = sorted(set(by_image) - known, key=str)
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
