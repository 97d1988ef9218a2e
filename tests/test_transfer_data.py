"""The COCO instances reader: shapes world, gapped category ids <-> contiguous labels, bad inputs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sparc_eval.data.coco_instances import READER
from sparc_eval.data.synthetic import CATEGORY_IDS, KINDS
from sparc_eval.errors import DataError
from sparc_eval.transfer.coco_results import to_coco_results

# The 80 category ids of COCO 2017 (1-90 with gaps), as in instances_val2017.json.
COCO_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
            60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]


def _cfg(root: Path, ann: str = "instances.json", **kw) -> dict:
    return {"root": str(root), "annotations": ann, "images": "img", "train_annotations": None, "train_images": None,
            **kw}


def _write(root: Path, data: dict, name: str = "instances.json") -> None:
    (root / "img").mkdir(parents=True, exist_ok=True)
    for img in data.get("images", []):
        if isinstance(img, dict) and "file_name" in img and not (root / "img" / img["file_name"]).exists():
            Image.new("RGB", (img.get("width", 8), img.get("height", 8))).save(root / "img" / img["file_name"])
    (root / name).write_text(json.dumps(data))


def _coco_like(root: Path, cat_ids=COCO_IDS) -> dict:
    data = {"images": [{"id": 7 + i, "file_name": f"{i}.png", "width": 32, "height": 32} for i in range(3)],
            "categories": [{"id": c, "name": f"class{c}"} for c in cat_ids], "annotations": []}
    for i, c in enumerate(cat_ids):
        data["annotations"].append({"id": 100 + i, "image_id": 7 + i % 3, "category_id": c,
                                    "bbox": [1.0, 2.0, 10.0, 12.0], "area": 120.0, "iscrowd": 0,
                                    "segmentation": [[1, 2, 11, 2, 11, 14, 1, 14]]})
    _write(root, data)
    return data


def test_shapes_world_splits_with_gapped_ids(small_world):
    cfg = {"root": str(small_world), "annotations": "annotations/instances_val.json", "images": "images",
           "train_annotations": "annotations/instances_train.json", "train_images": "images"}
    data = READER.load(cfg)
    assert data.cat_ids == list(CATEGORY_IDS) and data.classes == list(KINDS)
    assert [data.cat_ids.index(c) for c in (1, 3, 4, 7, 8, 10)] == [0, 1, 2, 3, 4, 5]
    assert len(data.image_ids) == 24 and len(data.train.image_ids) == 48
    assert data.has_masks and data.train.has_masks
    assert all(p.is_file() for p in data.images.paths)
    assert data.limit(5).image_ids == data.image_ids[:5] and data.limit(5).fingerprint != data.fingerprint


def test_real_coco_ids_map_to_contiguous_labels_and_back_as_mmdet(tmp_path):
    from mmdet.datasets import CocoDataset

    _coco_like(tmp_path)
    data = READER.load(_cfg(tmp_path))
    assert len(data.cat_ids) == 80 and data.cat_ids == COCO_IDS
    labels = [data.cat_ids.index(c) for c in COCO_IDS]
    assert labels == list(range(80))
    assert data.cat_ids.index(90) == 79 and data.cat_ids.index(13) == 11
    ds = CocoDataset(ann_file=str(tmp_path / "instances.json"), data_prefix={"img": str(tmp_path / "img") + "/"},
                     metainfo={"classes": tuple(data.classes)}, test_mode=True, pipeline=[])
    assert ds.cat2label == {c: i for i, c in enumerate(data.cat_ids)}
    boxes, _ = to_coco_results(7, np.array([[1.0, 2.0, 11.0, 14.0]] * 3), np.array([0.9, 0.8, 0.7]),
                               np.array([0, 11, 79]), data.cat_ids)
    assert [b["category_id"] for b in boxes] == [1, 13, 90]
    assert boxes[0]["bbox"] == [1.0, 2.0, 10.0, 12.0]


def test_labels_follow_the_file_order_of_categories(tmp_path):
    from mmdet.datasets import CocoDataset

    _coco_like(tmp_path, cat_ids=[10, 3, 7])
    data = READER.load(_cfg(tmp_path))
    assert data.cat_ids == [10, 3, 7] and data.classes == ["class10", "class3", "class7"]
    ds = CocoDataset(ann_file=str(tmp_path / "instances.json"), data_prefix={"img": str(tmp_path / "img") + "/"},
                     metainfo={"classes": tuple(data.classes)}, test_mode=True, pipeline=[])
    assert ds.cat2label == {10: 0, 3: 1, 7: 2}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("categories"), r"missing field\(s\) \['categories'\]"),
    (lambda d: d["images"][1].pop("width"), r"images\[1\]: missing field\(s\) \['width'\]"),
    (lambda d: d["annotations"][2].pop("bbox"), r"annotations\[2\]: missing field\(s\) \['bbox'\]"),
    (lambda d: d["annotations"][0].update(image_id=999), r"annotations\[0\]: image_id 999 is not among the file's"),
    (lambda d: d["annotations"][1].update(category_id=12), r"annotations\[1\]: category_id 12 is not among"),
    (lambda d: d["annotations"][1].update(bbox=[1, 2, -3, 4]), r"bbox must be \[x, y, w, h\] with w, h >= 0"),
    (lambda d: d["annotations"][1].update(id=100), r"annotation id 100 is used twice"),
    (lambda d: d["images"].append(dict(d["images"][0])), r"image id 7 is listed twice"),
    (lambda d: d["categories"].append({"id": 91, "name": "class1"}), r"name 'class1' is listed twice"),
    (lambda d: d.update(categories=[]), r"'categories' is empty"),
])
def test_bad_annotation_files(tmp_path, mutate, message):
    data = _coco_like(tmp_path)
    mutate(data)
    (tmp_path / "instances.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as e:
        READER.load(_cfg(tmp_path))
    assert "instances.json" in str(e.value)


def test_listed_image_absent_and_missing_files(tmp_path):
    _coco_like(tmp_path)
    (tmp_path / "img" / "1.png").unlink()
    with pytest.raises(DataError, match=r"1 image file\(s\) missing: .*img/1\.png"):
        READER.load(_cfg(tmp_path))
    with pytest.raises(DataError, match="annotation file .*nothing.json is missing"):
        READER.load(_cfg(tmp_path, ann="nothing.json"))
    (tmp_path / "broken.json").write_text("{\"images\": [")
    with pytest.raises(DataError, match="broken.json: malformed JSON"):
        READER.load(_cfg(tmp_path, ann="broken.json"))


def test_train_split_must_share_categories(tmp_path):
    _coco_like(tmp_path)
    shutil.copy(tmp_path / "instances.json", tmp_path / "train.json")
    data = json.loads((tmp_path / "train.json").read_text())
    data["categories"] = data["categories"][::-1]
    (tmp_path / "train.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="categories differ"):
        READER.load(_cfg(tmp_path, train_annotations="train.json", train_images="img"))
    with pytest.raises(DataError, match="train_images: needed"):
        READER.load(_cfg(tmp_path, train_annotations="instances.json"))
