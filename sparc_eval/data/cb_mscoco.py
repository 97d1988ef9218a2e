"""CLIP_benchmark's ``mscoco_captions`` folder, read as ``clip_benchmark eval --dataset_root`` takes it.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

As CLIP_benchmark (torchvision's ``CocoCaptions`` over pycocotools): images in ascending id order, each
with its captions in the order of the file's ``annotations``, every caption used exactly as written (not
stripped). Images without any caption are left out and counted in the details (CLIP_benchmark would
count each as an image->text miss). Duplicate image or annotation ids or image files, empty captions,
ids that are not integers or strings, and a ``file_name`` that is absolute or leaves the image folder
through ``..`` (unless ``dataset.allow_outside_root``) are ``DataIntegrityError``s naming the entry
(pycocotools would silently keep the last of two ids).
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError, DataIntegrityError
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

IMAGE_DIRS = {"train": "train2014", "val": "val2014", "test": "val2014"}


class CbMscocoReader(Reader):
    format = "cb_mscoco"
    kind = "retrieval"
    params = {
        "root": Param("path", help="CLIP_benchmark's dataset_root for mscoco_captions"),
        "split": Param("str", "test", "train, val or test (CLIP_benchmark's --split)", choices=tuple(IMAGE_DIRS)),
        "annotations": Param("str", "coco_{split}_karpathy.json", "captions JSON under root ({split} is filled in)"),
        "image_dir": Param("str", "", "image folder under root ('' = val2014, or train2014 for split train)"),
    }
    layout = """

    <root>/coco_test_karpathy.json   COCO captions format: {"images": [{"id", "file_name"}],
                                     "annotations": [{"id", "image_id", "caption"}]}
                                     (coco_<split>_karpathy.json; mehdidc/retrieval_annotations)
    <root>/val2014/<file_name>       the images (train2014/ for split train)"""

    def load(self, cfg, check_images: bool = True) -> RetrievalSet:
        root = check_root(cfg, "cb_mscoco")
        split = cfg["split"]
        ann = root / cfg["annotations"].replace("{split}", split)
        data = read_json(ann, "cb_mscoco")
        require_fields(data, ["images", "annotations"], str(ann))
        image_dir = root / (cfg["image_dir"] or IMAGE_DIRS[split])
        outside = allow_outside_root(cfg)
        images: dict = {}
        entry: dict = {}
        for i, im in enumerate(data["images"]):
            where = f"{ann}: images[{i}]"
            require_fields(im, ["id", "file_name"], where)
            require_id(im["id"], f"{where}.id")
            if im["id"] in images:
                raise DataIntegrityError(f"{ann}: images[{i}] repeats image id {im['id']!r} (first at "
                                         f"images[{entry[im['id']]}]); expected each image once")
            file_name = require_str(im["file_name"], f"{where}.file_name", "a file name (string)")
            images[im["id"]] = safe_join(image_dir, file_name, f"{where}.file_name", outside)
            entry[im["id"]] = i
        by_image: dict = {}
        seen_ann: dict = {}
        for i, a in enumerate(data["annotations"]):
            where = f"{ann}: annotations[{i}]"
            require_fields(a, ["id", "image_id", "caption"], where)
            ann_id = require_id(a["id"], f"{where}.id")
            if ann_id in seen_ann:
                raise DataIntegrityError(f"{ann}: annotations[{i}] repeats annotation id {a['id']!r} (first at "
                                         f"annotations[{seen_ann[ann_id]}]); expected each id once")
            seen_ann[ann_id] = i
            require_id(a["image_id"], f"{where}.image_id")
            if a["image_id"] not in images:
                raise DataError(f"{ann}: annotations[{i}] refers to image id {a['image_id']!r}, which is not in 'images'")
            by_image.setdefault(a["image_id"], []).append((ann_id, check_caption(a["caption"], f"{where}.caption")))
        try:
            order = sorted(images)
        except TypeError:
            raise DataError(f"{ann}: image ids mix types (e.g. numbers and strings); CLIP_benchmark sorts them") from None
        check_unique([path_key(str(p)) for p in images.values()], "image file", str(ann), lambda k: f"images[{k}]")
        paths, ids, captions, caption_image, caption_ids = [], [], [], [], []
        for image_id in order:
            caps = by_image.get(image_id)
            if not caps:
                continue
            for ann_id, cap in caps:
                captions.append(cap)
                caption_image.append(len(paths))
                caption_ids.append(ann_id)
            paths.append(images[image_id])
            ids.append(str(image_id))
        if not paths:
            raise DataError(f"{ann}: no image has a caption")
        if check_images:
            check_images_exist(paths, str(ann))
        fp = fingerprint("cb_mscoco", [ann], paths, root, {"split": split})
        return RetrievalSet(ImageSet(paths, ids, fp), captions, np.asarray(caption_image), caption_ids, fp, len(paths),
                            {"annotations": str(ann), "image_dir": str(image_dir),
                             "images_without_captions": len(images) - len(paths)})


READER = CbMscocoReader()
