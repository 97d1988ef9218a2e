"""Karpathy and COCO-captions readers on hand-written fixtures with the real files' quirks, and bad inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sparc_eval.data.base import get_reader
from sparc_eval.errors import DataError


def _img(path, colour=(10, 20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


@pytest.fixture
def karpathy_root(tmp_path):
    """A COCO-like Karpathy file: filepath folders, restval split, an image with 7 captions."""
    images = []
    for i, (split, n_caps) in enumerate([("test", 5), ("test", 7), ("restval", 5), ("train", 5), ("val", 5),
                                         ("test", 5)]):
        folder = "val2014" if split != "train" else "train2014"
        name = f"COCO_{folder}_{i:012d}.jpg"
        _img(tmp_path / "coco" / folder / name, (i * 30, 0, 0))
        images.append({"split": split, "filepath": folder, "filename": name, "cocoid": 1000 + i, "imgid": i,
                       "sentences": [{"raw": f" caption {j} of image {i}. ", "sentid": i * 10 + j}
                                     for j in range(n_caps)]})
    (tmp_path / "coco" / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": images}))
    return tmp_path / "coco"


def _cfg(root, **kw):
    cfg = {"root": str(root), "annotations": "dataset_coco.json", "split": "test", "image_dir": ""}
    cfg.update(kw)
    return cfg


def test_karpathy_keeps_every_caption_raw(karpathy_root):
    data = get_reader("karpathy").load(_cfg(karpathy_root))
    assert data.images.ids == ["1000", "1001", "1005"]
    assert np.bincount(data.caption_image).tolist() == [5, 7, 5]  # the 7-caption image keeps all 7
    assert data.captions[0] == "caption 0 of image 0."  # raw text, only surrounding whitespace stripped
    assert data.images.paths[1].parts[-2:] == ("val2014", "COCO_val2014_000000000001.jpg")


def test_karpathy_restval_and_joined_splits(karpathy_root):
    assert get_reader("karpathy").load(_cfg(karpathy_root, split="restval")).images.ids == ["1002"]
    joined = get_reader("karpathy").load(_cfg(karpathy_root, split="train+restval"))
    assert joined.images.ids == ["1002", "1003"]


def test_karpathy_fingerprint_tracks_content(karpathy_root):
    r = get_reader("karpathy")
    a = r.load(_cfg(karpathy_root)).fingerprint
    assert a == r.load(_cfg(karpathy_root)).fingerprint
    assert a != r.load(_cfg(karpathy_root, split="val")).fingerprint
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(karpathy_root / "val2014" / "COCO_val2014_000000000000.jpg")
    assert a != r.load(_cfg(karpathy_root)).fingerprint  # an image file of another size


def test_karpathy_limit_keeps_captions_with_their_images(karpathy_root):
    data = get_reader("karpathy").load(_cfg(karpathy_root)).limit(2)
    assert len(data.images) == 2 and len(data.captions) == 12


def test_coco_captions_gapped_ids_and_images_without_captions(tmp_path):
    root = tmp_path / "coco"
    images = [{"id": 139, "file_name": "000000000139.jpg"}, {"id": 5, "file_name": "000000000005.jpg"},
              {"id": 90000, "file_name": "000000090000.jpg"}]
    for im in images:
        _img(root / "val2017" / im["file_name"])
    anns = [{"id": 7, "image_id": 5, "caption": "a dog"}, {"id": 3, "image_id": 139, "caption": "a cat"},
            {"id": 9, "image_id": 139, "caption": "a cat on a mat"}]
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps({"images": images, "annotations": anns}))
    data = get_reader("coco_captions").load({"root": str(root), "annotations": "annotations/captions_val2017.json",
                                             "image_dir": "val2017"})
    assert data.images.ids == ["139", "5"]
    assert data.captions == ["a cat", "a cat on a mat", "a dog"]
    assert data.caption_image.tolist() == [0, 0, 1]
    assert data.info["images_without_captions"] == 1


@pytest.mark.parametrize("case, match", [
    ("no_root", "data folder .* does not exist"),
    ("no_annotation", "annotation file .* is missing"),
    ("malformed", r"malformed JSON at line 1, column"),
    ("missing_field", r"images\[0\]: missing field\(s\) \['sentences'\]"),
    ("missing_image", r"1 image file\(s\) missing: .*COCO_val2014_000000000001.jpg"),
    ("bad_split", "unknown split 'testing'"),
])
def test_karpathy_bad_inputs(karpathy_root, case, match):
    cfg = _cfg(karpathy_root)
    if case == "no_root":
        cfg["root"] = str(karpathy_root / "nowhere")
    elif case == "no_annotation":
        cfg["annotations"] = "dataset_flickr30k.json"
    elif case == "malformed":
        (karpathy_root / "dataset_coco.json").write_text('{"images": [')
    elif case == "missing_field":
        (karpathy_root / "dataset_coco.json").write_text(json.dumps({"images": [{"split": "test", "filename": "x"}]}))
    elif case == "missing_image":
        (karpathy_root / "val2014" / "COCO_val2014_000000000001.jpg").unlink()
    elif case == "bad_split":
        cfg["split"] = "testing"
    with pytest.raises(DataError, match=match):
        get_reader("karpathy").load(cfg)


def _csv_set(tmp_path, captions_text: str):
    for i in range(3):
        _img(tmp_path / f"{i}.png")
    (tmp_path / "images.csv").write_text("image_id,path\na,0.png\nb,1.png\nc,2.png\n")
    (tmp_path / "captions.csv").write_bytes(captions_text.encode("latin-1"))
    return {"images": str(tmp_path / "images.csv"), "captions": str(tmp_path / "captions.csv"), "root": ""}


def test_csv_retrieval_counts_captioned_images_and_rejects_bad_rows(tmp_path):
    reader = get_reader("csv_retrieval")
    data = reader.load(_csv_set(tmp_path, 'image_id,caption\nc,"a cat, sitting"\na,a dog\nc,a cat\n'))
    assert data.images.ids == ["a", "c"] and data.captions == ["a dog", "a cat, sitting", "a cat"]
    assert data.n_total_images == 2 and data.info["images_without_captions"] == 1  # a full run is not partial
    with pytest.raises(DataError, match=r"captions.csv:3: row has no value for column\(s\) \['caption'\]"):
        reader.load(_csv_set(tmp_path, "image_id,caption\na,a dog\nc\n"))
    with pytest.raises(DataError, match=r"captions.csv: not a UTF-8 text file"):
        reader.load(_csv_set(tmp_path, "image_id,caption\na,un caf\xe9\n"))


def test_images_need_not_exist_for_tasks_without_a_model(karpathy_root):
    """Scoring a captions file reads only the annotations; tasks that encode images still check them."""
    from sparc_eval.task_types import get_task_type
    from sparc_eval.tasks import TaskConfig

    (karpathy_root / "val2014" / "COCO_val2014_000000000001.jpg").unlink()
    data = get_reader("karpathy").load(_cfg(karpathy_root), check_images=False)
    assert data.images.ids == ["1000", "1001", "1005"]

    def task(kind: str, params: dict):
        cfg = TaskConfig("t", kind, 1, {"format": "karpathy", **_cfg(karpathy_root)}, params, "CIDEr")
        return get_task_type(kind).from_config(cfg)

    assert len(task("captioning", {}).load_data().images) == 3
    with pytest.raises(DataError, match=r"1 image file\(s\) missing"):
        task("retrieval", {}).load_data()
