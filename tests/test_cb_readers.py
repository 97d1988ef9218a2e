"""The CLIP_benchmark folder readers on hand-written files with the real files' quirks and faults."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from sparc_eval.data.base import get_reader
from sparc_eval.errors import DataError
from sparc_eval.params import validate


def _load(fmt, **cfg):
    reader = get_reader(fmt)
    return reader.load(validate(cfg, reader.params, fmt))


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)


def test_flickr_file_quirks(tmp_path):
    for n in (1, 2, 3):
        _image(tmp_path / f"{n}.jpg")
    (tmp_path / "flickr30k_test_karpathy.txt").write_text(
        "image,caption\n2.jpg,A dog, running.\n\n1.jpg, a cat \n2.jpg,two dogs\n3.jpg,x.jpgs are files\n")
    data = _load("cb_flickr", root=str(tmp_path))
    assert [p.name for p in data.images.paths] == ["2.jpg", "1.jpg", "3.jpg"]  # order of first appearance
    assert data.captions == ["A dog, running.", " a cat", "two dogs", "x.jpgs are files"]
    assert data.caption_image.tolist() == [0, 1, 0, 2]
    assert len(set(data.caption_ids)) == 4
    (tmp_path / "flickr8k_val_karpathy.txt").write_text("image,caption\n1.jpg,one\n")
    assert _load("cb_flickr", root=str(tmp_path), split="val", annotations="flickr8k_{split}_karpathy.txt").captions == ["one"]


@pytest.mark.parametrize("text, match", [
    ("1.jpg,no header\n2.jpg,x\n", r":1: .*header"),
    ("image,caption\n1.png,not a jpg\n", r":2: expected '<image>.jpg,<caption>'"),
    ("image,caption\n1.jpg,see 2.jpg,too\n", r":2: .*once"),
    ("image,caption\n1.jpg,\n", r":2:"),
    ("image,caption\n", "no <image>.jpg"),
    ("", "empty file"),
])
def test_flickr_bad_files_name_the_line(tmp_path, text, match):
    _image(tmp_path / "1.jpg")
    (tmp_path / "flickr30k_test_karpathy.txt").write_text(text)
    with pytest.raises(DataError, match=match):
        _load("cb_flickr", root=str(tmp_path))


def test_flickr_missing_files(tmp_path):
    with pytest.raises(DataError, match="flickr30k_test_karpathy.txt is missing"):
        _load("cb_flickr", root=str(tmp_path))
    (tmp_path / "flickr30k_test_karpathy.txt").write_text("image,caption\n9.jpg,gone\n")
    with pytest.raises(DataError, match="9.jpg"):
        _load("cb_flickr", root=str(tmp_path))


def _coco(tmp_path, images, annotations, split="test"):
    (tmp_path / f"coco_{split}_karpathy.json").write_text(json.dumps({"images": images, "annotations": annotations}))


def test_mscoco_order_and_captions(tmp_path):
    for name in ("b.jpg", "a.jpg", "c.jpg"):
        _image(tmp_path / "val2014" / name)
    _coco(tmp_path, [{"id": 20, "file_name": "b.jpg"}, {"id": 3, "file_name": "a.jpg"}, {"id": 7, "file_name": "c.jpg"}],
          [{"id": 1, "image_id": 20, "caption": "b one"}, {"id": 2, "image_id": 3, "caption": " a one "},
           {"id": 9, "image_id": 20, "caption": "b two"}])
    data = _load("cb_mscoco", root=str(tmp_path))
    assert data.images.ids == ["3", "20"]  # ascending ids; image 7 has no caption
    assert data.captions == [" a one ", "b one", "b two"] and data.caption_ids == ["2", "1", "9"]
    assert data.info["images_without_captions"] == 1
    _image(tmp_path / "train2014" / "a.jpg")
    _coco(tmp_path, [{"id": 3, "file_name": "a.jpg"}], [{"id": 1, "image_id": 3, "caption": "x"}], split="train")
    assert _load("cb_mscoco", root=str(tmp_path), split="train").images.paths == [tmp_path / "train2014" / "a.jpg"]


@pytest.mark.parametrize("images, annotations, match", [
    ([{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}], [], "repeats image id 1"),
    ([{"id": 1, "file_name": "a.jpg"}], [{"id": 5, "image_id": 1, "caption": "x"}, {"id": 5, "image_id": 1, "caption": "y"}],
     "repeats annotation id 5"),
    ([{"id": 1, "file_name": "a.jpg"}], [{"id": 5, "image_id": 2, "caption": "x"}], "image id 2"),
    ([{"id": 1, "file_name": "a.jpg"}], [{"id": 5, "image_id": 1, "caption": "  "}], "empty"),
    ([{"id": 1, "file_name": "a.jpg"}], [{"image_id": 1, "caption": "x"}], r"missing field\(s\) \['id'\]"),
    ([{"id": 1, "file_name": "a.jpg"}, {"id": "2", "file_name": "a.jpg"}],
     [{"id": 5, "image_id": 1, "caption": "x"}], "mix types"),
    ([{"id": 1, "file_name": "missing.jpg"}], [{"id": 5, "image_id": 1, "caption": "x"}], "missing.jpg"),
])
def test_mscoco_bad_files(tmp_path, images, annotations, match):
    _image(tmp_path / "val2014" / "a.jpg")
    _coco(tmp_path, images, annotations)
    with pytest.raises(DataError, match=match):
        _load("cb_mscoco", root=str(tmp_path))
