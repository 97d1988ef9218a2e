"""COCO instances JSON (``instances_val2017.json``) for detection and instance segmentation.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

The evaluation split is ``annotations``/``images``; transfer tasks also read the training split.
Category ids may have gaps (COCO: 80 categories with ids 1-90): label ``i`` is the ``i``-th entry of
``categories`` as listed in the file, which is how mmdet's ``CocoDataset`` numbers them, and
``cat_ids[i]`` maps it back. Checked on load: required fields, unique image / annotation / category
ids and category names, boxes of 4 numbers with non-negative size, every annotation pointing at a
listed image and category, every listed image present on disk. Duplicate ids, names or image files,
non-integer ids, non-string names, and a ``file_name`` that is absolute or leaves the image folder
through ``..`` (unless ``dataset.allow_outside_root``) are ``DataIntegrityError``s.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, DataIntegrityError
from ..fileio import sha256_json
from ..params import Param
from .base import (
    ImageSet,
    Reader,
    allow_outside_root,
    check_images_exist,
    check_root,
    check_unique,
    fingerprint,
    path_key,
    read_json,
    require_fields,
    require_str,
    safe_join,
)


@dataclass
class CocoInstances:
    """One split of a COCO instances file. ``images.ids`` are the COCO image ids as strings;
    ``image_ids`` the same as ints. ``train`` is the training split when the config names one."""

    images: ImageSet
    image_ids: list[int]
    annotation_file: Path
    image_dir: Path
    cat_ids: list[int]
    classes: list[str]
    n_annotations: int
    has_masks: bool
    fingerprint: str
    n_total_images: int
    train: CocoInstances | None = None
    info: dict = field(default_factory=dict)

    def limit(self, n: int | None) -> CocoInstances:
        """The first ``n`` images of the file (evaluation restricted to them)."""
        if n is None or n >= len(self.image_ids):
            return self
        return CocoInstances(self.images.subset(range(n)), self.image_ids[:n], self.annotation_file, self.image_dir,
                             self.cat_ids, self.classes, self.n_annotations, self.has_masks,
                             sha256_json([self.fingerprint, "limit", n]), self.n_total_images, self.train, self.info)


def _check_id(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataIntegrityError(f"{where}: id must be an integer, found {value!r:.40}")
    return value


def read_split(root: Path, annotations: str, images: str, what: str, allow_outside: bool = False) -> CocoInstances:
    """Load and check one split (``annotations`` JSON and ``images`` folder, relative to ``root``);
    ``allow_outside`` admits ``file_name``s that are absolute or leave the image folder."""
    ann_file = root / annotations
    image_dir = root / images
    data = read_json(ann_file, what)
    require_fields(data, ["images", "annotations", "categories"], str(ann_file))
    for key in ("images", "annotations", "categories"):
        if not isinstance(data[key], list):
            raise DataError(f"{ann_file}: '{key}' must be a list, found {type(data[key]).__name__}")
    cat_ids, classes = [], []
    for i, cat in enumerate(data["categories"]):
        where = f"{ann_file}: categories[{i}]"
        require_fields(cat, ["id", "name"], where)
        cid = _check_id(cat["id"], where)
        if cid in cat_ids:
            raise DataIntegrityError(f"{where}: category id {cid} is listed twice")
        name = require_str(cat["name"], f"{where}.name", "a category name (string)")
        if name in classes:
            raise DataIntegrityError(f"{where}: category name {name!r} is listed twice (names must be unique)")
        cat_ids.append(cid)
        classes.append(name)
    if not cat_ids:
        raise DataError(f"{ann_file}: 'categories' is empty; expected at least one category")
    image_ids, paths, seen = [], [], set()
    for i, img in enumerate(data["images"]):
        where = f"{ann_file}: images[{i}]"
        require_fields(img, ["id", "file_name", "width", "height"], where)
        iid = _check_id(img["id"], where)
        if iid in seen:
            raise DataIntegrityError(f"{where}: image id {iid} is listed twice")
        seen.add(iid)
        image_ids.append(iid)
        file_name = require_str(img["file_name"], f"{where}.file_name", "a file name (string)")
        paths.append(safe_join(image_dir, file_name, f"{where}.file_name", allow_outside))
    if not image_ids:
        raise DataError(f"{ann_file}: 'images' is empty; expected at least one image")
    check_unique([path_key(str(p)) for p in paths], "image file", str(ann_file), lambda k: f"images[{k}]")
    known_cats, ann_ids = set(cat_ids), set()
    has_masks = True
    for i, ann in enumerate(data["annotations"]):
        where = f"{ann_file}: annotations[{i}]"
        require_fields(ann, ["id", "image_id", "category_id", "bbox", "area"], where)
        aid = _check_id(ann["id"], where)
        if aid in ann_ids:
            raise DataIntegrityError(f"{where}: annotation id {aid} is used twice")
        ann_ids.add(aid)
        _check_id(ann["image_id"], f"{where}.image_id")
        _check_id(ann["category_id"], f"{where}.category_id")
        if ann["image_id"] not in seen:
            raise DataError(f"{where}: image_id {ann['image_id']!r} is not among the file's images")
        if ann["category_id"] not in known_cats:
            raise DataError(f"{where}: category_id {ann['category_id']!r} is not among the file's categories "
                            f"{sorted(known_cats)[:12]}")
        box = ann["bbox"]
        if (not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box)
                or box[2] < 0 or box[3] < 0):
            raise DataError(f"{where}: bbox must be [x, y, w, h] with w, h >= 0, found {box!r:.60}")
        seg = ann.get("segmentation")
        if seg is None:
            has_masks = False
        elif not isinstance(seg, (list, dict)):
            raise DataError(f"{where}: segmentation must be polygons (list) or RLE (dict), found "
                            f"{type(seg).__name__}")
    check_images_exist(paths, f"{ann_file} (images listed in the file)")
    fp = fingerprint("coco_instances", [ann_file], paths, root)
    return CocoInstances(ImageSet(paths, [str(i) for i in image_ids], fp), image_ids, ann_file, image_dir, cat_ids,
                         classes, len(data["annotations"]), has_masks, fp, len(image_ids),
                         info={"annotations": str(ann_file)})


class CocoInstancesReader(Reader):
    format = "coco_instances"
    kind = "detection"
    params = {
        "root": Param("path", help="dataset folder"),
        "annotations": Param("str", "annotations/instances_val2017.json", "evaluation split JSON, relative to root"),
        "images": Param("str", "val2017", "folder of the evaluation images, relative to root"),
        "train_annotations": Param("str", None, "training split JSON (transfer tasks), relative to root"),
        "train_images": Param("str", None, "folder of the training images, relative to root"),
    }
    layout = """

    <root>/annotations/instances_val2017.json    {"images": [{"id", "file_name", "width", "height"}],
                                                  "annotations": [{"id", "image_id", "category_id",
                                                                   "bbox": [x, y, w, h], "area",
                                                                   "iscrowd"?, "segmentation"?}],
                                                  "categories": [{"id", "name"}]}
    <root>/val2017/<file_name>                   the images (``images``)
    <root>/annotations/instances_train2017.json  training split (``train_annotations``, optional)
    <root>/train2017/<file_name>                 (``train_images``)"""

    def load(self, cfg) -> CocoInstances:
        root = check_root(cfg, "coco_instances")
        outside = allow_outside_root(cfg)
        data = read_split(root, cfg["annotations"], cfg["images"], "coco_instances", outside)
        if cfg.get("train_annotations"):
            if not cfg.get("train_images"):
                raise DataError("dataset.train_images: needed with dataset.train_annotations (the folder of the "
                                "training images, relative to root)")
            train = read_split(root, cfg["train_annotations"], cfg["train_images"], "coco_instances (train)", outside)
            if train.cat_ids != data.cat_ids or train.classes != data.classes:
                raise DataError(f"{train.annotation_file}: categories differ from {data.annotation_file} "
                                f"(ids {train.cat_ids[:8]}... vs {data.cat_ids[:8]}...); both splits must list "
                                f"the same categories in the same order")
            data.train = train
            data.fingerprint = sha256_json([data.fingerprint, train.fingerprint])
        return data


READER = CocoInstancesReader()
