"""Datasets are checked before a forward pass: duplicate image entries or sample ids, empty captions, paths
escaping the data root (checked lexically; refused unless allow_outside_root), non-string fields and damaged
archives are a DataIntegrityError from every reader that reads them, and `data verify` exits 2 with it.

Each case writes a small dataset in its real format with one fault; the message must name the file and the
entry/field. Symlinked dataset trees still load."""
from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from PIL import Image

from sparc_eval.data.base import get_reader, safe_join
from sparc_eval.errors import DataIntegrityError
from sparc_eval.params import validate
from sparc_eval.tasks import _DATASET_COMMON, load_task, task_files

WNIDS = ("n01440764", "n01443537")


def _img(path: Path, colour=(10, 20, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def _png_bytes(colour) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def _json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value) if not isinstance(value, str) else value)


# -- one valid dataset per format; `fault` edits its annotation data before it is written ----------------


def karpathy(root: Path, fault: Callable[[dict], None] = lambda d: None) -> dict:
    images = []
    for i in range(3):
        _img(root / "val2014" / f"im{i}.jpg", (i * 60, 0, 0))
        images.append({"split": "test", "filepath": "val2014", "filename": f"im{i}.jpg", "cocoid": 100 + i, "imgid": i,
                       "sentences": [{"raw": f"caption {j} of {i}", "sentid": 10 * i + j} for j in range(2)]})
    data = {"images": images}
    fault(data)
    _json(root / "dataset_coco.json", data)
    return {"format": "karpathy", "root": str(root), "annotations": "dataset_coco.json", "split": "test"}


def coco_captions(root: Path, fault=lambda d: None) -> dict:
    images = [{"id": 7 + i, "file_name": f"{i:012d}.jpg"} for i in range(3)]
    for im in images:
        _img(root / "val2017" / im["file_name"])
    anns = [{"id": 50 + i, "image_id": 7 + i % 3, "caption": f"a caption {i}"} for i in range(6)]
    data = {"images": images, "annotations": anns}
    fault(data)
    _json(root / "annotations" / "captions_val2017.json", data)
    return {"format": "coco_captions", "root": str(root)}


def cb_mscoco(root: Path, fault=lambda d: None) -> dict:
    images = [{"id": 3 + i, "file_name": f"c{i}.jpg"} for i in range(3)]
    for im in images:
        _img(root / "val2014" / im["file_name"])
    anns = [{"id": 1 + i, "image_id": 3 + i % 3, "caption": f"coco caption {i}"} for i in range(6)]
    data = {"images": images, "annotations": anns}
    fault(data)
    _json(root / "coco_test_karpathy.json", data)
    return {"format": "cb_mscoco", "root": str(root)}


def cb_flickr(root: Path, fault=lambda lines: None) -> dict:
    for n in (1, 2):
        _img(root / f"{n}.jpg")
    lines = ["image,caption", "1.jpg,a dog", "2.jpg,a cat", "1.jpg,a dog running"]
    fault(lines)
    root.mkdir(parents=True, exist_ok=True)
    (root / "flickr30k_test_karpathy.txt").write_text("\n".join(lines) + "\n")
    return {"format": "cb_flickr", "root": str(root)}


def csv_retrieval(root: Path, fault=lambda tables: None) -> dict:
    for i in range(3):
        _img(root / "img" / f"{i}.png")
    tables = {"images": [["image_id", "path"], *[[f"i{i}", f"img/{i}.png"] for i in range(3)]],
              "captions": [["image_id", "caption"], ["i0", "red"], ["i1", "green"], ["i2", "blue"]]}
    fault(tables)
    for name, rows in tables.items():
        (root / f"{name}.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    return {"format": "csv_retrieval", "images": str(root / "images.csv"), "captions": str(root / "captions.csv"),
            "root": str(root)}


def csv_classification(root: Path, fault=lambda rows: None) -> dict:
    for i in range(3):
        _img(root / "images" / f"{i}.png")
    rows = ["path,label", "images/0.png,cat", "images/1.png,dog", "images/2.png,cat"]
    fault(rows)
    (root / "test.csv").write_text("\n".join(rows) + "\n")
    return {"format": "csv_classification", "root": str(root), "classnames": ""}


def imagenet_kaggle(root: Path, fault=lambda rows: None) -> dict:
    folder = root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    for i in range(2):
        _img(folder / f"ILSVRC2012_val_{i:08d}.JPEG")
    rows = ["ImageId,PredictionString", *[f"ILSVRC2012_val_{i:08d},{WNIDS[i]} 1 2 3 4" for i in range(2)]]
    fault(rows)
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return {"format": "imagenet", "root": str(root), "variant": "imagenet", "split": "val"}


def coco_instances(root: Path, fault=lambda d: None) -> dict:
    images = [{"id": 1 + i, "file_name": f"{i}.jpg", "width": 8, "height": 8} for i in range(2)]
    for im in images:
        _img(root / "val2017" / im["file_name"])
    data = {"images": images, "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}],
            "annotations": [{"id": 9, "image_id": 1, "category_id": 3, "bbox": [0, 0, 4, 4], "area": 16}]}
    fault(data)
    _json(root / "annotations" / "instances_val2017.json", data)
    return {"format": "coco_instances", "root": str(root)}


def voc(root: Path, fault=lambda ids: None) -> dict:
    ids = ["2007_000001", "2007_000002"]
    for i in ids:
        _img(root / "JPEGImages" / f"{i}.jpg")
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        Image.new("P", (8, 8), 0).save(root / "SegmentationClass" / f"{i}.png")
    fault(ids)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    return {"format": "voc", "root": str(root), "split": "val"}


def sugarcrepe(root: Path, fault=lambda text: text) -> dict:
    for i in range(2):
        _img(root / "val2017" / f"{i}.jpg")
    items = {str(k): {"filename": f"{k % 2}.jpg", "caption": f"a red cat {k}", "negative_caption": f"a cat red {k}"}
             for k in range(3)}
    text = fault(json.dumps(items))
    _json(root / "data" / "add_att.json", text)
    return {"format": "sugarcrepe", "root": str(root), "categories": ["add_att"]}


def aro_vg(root: Path, fault=lambda items: None) -> dict:
    items = []
    for n in range(2):
        _img(root / "images" / f"{n}.jpg")
        items.append({"image_path": f"{n}.jpg", "bbox_x": 0, "bbox_y": 0, "bbox_w": 8, "bbox_h": 8,
                      "true_caption": "the cat is on the mat", "false_caption": "the mat is on the cat",
                      "relation_name": "on"})
    fault(items)
    _json(root / "visual_genome_relation.json", items)
    return {"format": "aro", "root": str(root), "subset": "vg_relation"}


def aro_order(root: Path, fault=lambda items: None) -> dict:
    items = []
    for n in range(2):
        _img(root / "val2014" / f"{n}.jpg")
        items.append({"image": f"val2014/{n}.jpg", "caption": ["a red square left of a blue circle"]})
    fault(items)
    _json(root / "coco_karpathy_test.json", items)
    return {"format": "aro", "root": str(root), "subset": "coco_order"}


def winoground(root: Path, fault=lambda rows: None) -> dict:
    data = root / "data"
    rows = [{"id": k, "image_0": f"ex_{k}_img_0", "image_1": f"ex_{k}_img_1", "caption_0": f"a {k} b",
             "caption_1": f"b {k} a", "tag": "Object", "secondary_tag": "", "num_main_preds": 1,
             "collapsed_tag": "Object"} for k in range(2)]
    for r in rows:
        for j in (0, 1):
            _img(data / "images" / f"{r[f'image_{j}']}.png", (j * 200, r["id"] * 100, 0))
    fault(rows)
    (data / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"format": "winoground", "root": str(root)}


def winoground_zip(root: Path, damage: str) -> dict:
    """images.zip (stored members) instead of the folder, then cut short or with one data byte flipped."""
    cfg = winoground(root)
    data = root / "data"
    with zipfile.ZipFile(data / "images.zip", "w", zipfile.ZIP_STORED) as zf:
        for p in sorted((data / "images").iterdir()):
            zf.write(p, f"images/{p.name}")
            p.unlink()
    (data / "images").rmdir()
    raw = bytearray((data / "images.zip").read_bytes())
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    else:
        raw[60] ^= 0xFF  # inside the first member's data: its CRC-32 no longer matches
    (data / "images.zip").write_bytes(bytes(raw))
    return cfg


def winoground_parquet_truncated(root: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": k, "caption_0": f"a {k} b", "caption_1": f"b {k} a",
             **{f"image_{j}": {"bytes": _png_bytes((j, k, 0)), "path": f"ex_{k}_img_{j}.png"} for j in (0, 1)}}
            for k in range(2)]
    path = root / "data" / "test-00000.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    path.write_bytes(path.read_bytes()[:-40])
    return {"format": "winoground", "root": str(root), "source": "parquet"}


# -- the table ------------------------------------------------------------------------------------------


def _set(path: str, value):
    """A fault that sets ``data[...]`` along ``path`` ("images.0.filename") to ``value``."""
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]

    def fault(data):
        target = data
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return fault


def _append(path: str, index: int, **changes):
    """A fault that appends a copy of ``data[path][index]`` with ``changes``."""
    def fault(data):
        seq = data[path] if path else data
        seq.append({**seq[index], **changes})
    return fault


@dataclass
class Case:
    id: str
    build: Callable[[Path], dict]
    expected: tuple[str, ...]  # substrings of the message: the file, the entry/field, what was found


def _case(id, build, *expected):
    return pytest.param(Case(id, build, expected), id=id)


CASES = [
    # Karpathy split JSON
    _case("karpathy-same-image-twice", lambda r: karpathy(r, _append("images", 0, cocoid=999, imgid=99)),
          "dataset_coco.json", "image file", "images[0] and images[3]"),
    _case("karpathy-cocoid-twice", lambda r: karpathy(r, _set("images.2.cocoid", 100)),
          "dataset_coco.json", "image id", "100", "images[0] and images[2]"),
    _case("karpathy-imgid-twice", lambda r: karpathy(r, lambda d: [(e.pop("cocoid"), e.update(imgid=5))
                                                                   for e in d["images"][:2]]),
          "dataset_coco.json", "image id", "'5'", "images[0] and images[1]"),
    _case("karpathy-sentid-twice", lambda r: karpathy(r, _set("images.1.sentences.0.sentid", 0)),
          "dataset_coco.json", "sentence id", "images[0].sentences[0] and images[1].sentences[0]"),
    _case("karpathy-empty-caption", lambda r: karpathy(r, _set("images.1.sentences.1.raw", "  \t ")),
          "dataset_coco.json", "images[1].sentences[1].raw", "empty caption"),
    _case("karpathy-caption-not-text", lambda r: karpathy(r, _set("images.0.sentences.0.raw", 17)),
          "dataset_coco.json", "images[0].sentences[0].raw", "must be a string, found int"),
    _case("karpathy-int-filename", lambda r: karpathy(r, _set("images.1.filename", 12)),
          "dataset_coco.json", "images[1].filename", "found int 12"),
    _case("karpathy-dotdot-filename", lambda r: karpathy(r, _set("images.0.filename", "../../secret.jpg")),
          "dataset_coco.json", "images[0].filename", "'../../secret.jpg'", "through '..'"),
    _case("karpathy-dotdot-filepath", lambda r: karpathy(r, _set("images.1.filepath", "val2014/../..")),
          "dataset_coco.json", "images[1].filepath", "'val2014/../..'", "through '..'"),
    _case("karpathy-absolute-filepath", lambda r: karpathy(r, _set("images.2.filepath", "/etc")),
          "dataset_coco.json", "images[2].filepath", "'/etc' is absolute"),
    _case("karpathy-absolute-filename", lambda r: karpathy(r, _set("images.0.filename", "/etc/passwd")),
          "dataset_coco.json", "images[0].filename", "'/etc/passwd' is absolute"),
    _case("karpathy-null-cocoid", lambda r: karpathy(r, _set("images.0.cocoid", None)),
          "dataset_coco.json", "images[0].cocoid", "expected an id"),
    # COCO captions JSON
    _case("coco-captions-image-id-twice", lambda r: coco_captions(r, _set("images.1.id", 7)),
          "captions_val2017.json", "image id", "images[0] and images[1]"),
    _case("coco-captions-file-twice", lambda r: coco_captions(r, _set("images.2.file_name", "./000000000000.jpg")),
          "captions_val2017.json", "image file", "images[0] and images[2]"),
    _case("coco-captions-annotation-id-twice", lambda r: coco_captions(r, _set("annotations.3.id", 50)),
          "captions_val2017.json", "annotation id", "annotations[0] and annotations[3]"),
    _case("coco-captions-empty-caption", lambda r: coco_captions(r, _set("annotations.4.caption", "")),
          "captions_val2017.json", "annotations[4].caption", "empty caption"),
    _case("coco-captions-int-file-name", lambda r: coco_captions(r, _set("images.0.file_name", 139)),
          "captions_val2017.json", "images[0].file_name", "found int 139"),
    _case("coco-captions-dotdot", lambda r: coco_captions(r, _set("images.1.file_name", "../../x.jpg")),
          "captions_val2017.json", "images[1].file_name", "through '..'"),
    _case("coco-captions-float-image-id", lambda r: coco_captions(r, _set("annotations.0.image_id", 7.0)),
          "captions_val2017.json", "annotations[0].image_id", "found float"),
    # CLIP_benchmark mscoco_captions
    _case("cb-mscoco-image-id-twice", lambda r: cb_mscoco(r, _set("images.1.id", 3)),
          "coco_test_karpathy.json", "images[1] repeats image id 3"),
    _case("cb-mscoco-file-twice", lambda r: cb_mscoco(r, _set("images.1.file_name", "c0.jpg")),
          "coco_test_karpathy.json", "image file", "images[0] and images[1]"),
    _case("cb-mscoco-annotation-id-twice", lambda r: cb_mscoco(r, _set("annotations.2.id", 1)),
          "coco_test_karpathy.json", "annotations[2] repeats annotation id 1"),
    _case("cb-mscoco-blank-caption", lambda r: cb_mscoco(r, _set("annotations.5.caption", " \n")),
          "coco_test_karpathy.json", "annotations[5].caption", "empty caption"),
    _case("cb-mscoco-absolute-file", lambda r: cb_mscoco(r, _set("images.0.file_name", "/etc/passwd")),
          "coco_test_karpathy.json", "images[0].file_name", "is absolute"),
    _case("cb-mscoco-list-file-name", lambda r: cb_mscoco(r, _set("images.2.file_name", ["c2.jpg"])),
          "coco_test_karpathy.json", "images[2].file_name", "found list"),
    # CLIP_benchmark flickr
    _case("cb-flickr-dotdot", lambda r: cb_flickr(r, lambda lines: lines.append("../up.jpg,escaped")),
          "flickr30k_test_karpathy.txt:5", "'../up.jpg'", "through '..'"),
    _case("cb-flickr-absolute", lambda r: cb_flickr(r, lambda lines: lines.insert(1, "/tmp/x.jpg,abs")),
          "flickr30k_test_karpathy.txt:2", "'/tmp/x.jpg' is absolute"),
    _case("cb-flickr-two-spellings", lambda r: cb_flickr(r, lambda lines: lines.append("./2.jpg,again")),
          "flickr30k_test_karpathy.txt", "image file", "line 3 '2.jpg' and line 5 './2.jpg'"),
    _case("cb-flickr-blank-caption", lambda r: cb_flickr(r, lambda lines: lines.append("2.jpg,   ")),
          "flickr30k_test_karpathy.txt:5", "empty caption for 2.jpg"),
    # custom CSV retrieval
    _case("csv-retrieval-image-id-twice", lambda r: csv_retrieval(r, lambda t: t["images"].append(["i1", "img/9.png"])),
          "images.csv:5", "duplicate image_id 'i1'", "first on line 3"),
    _case("csv-retrieval-path-twice", lambda r: csv_retrieval(r, lambda t: t["images"].append(["i9", "img/./0.png"])),
          "images.csv", "image file", "line 2 and line 5"),
    _case("csv-retrieval-dotdot", lambda r: csv_retrieval(r, _set("images.1.1", "../elsewhere/0.png")),
          "images.csv:2: path", "through '..'"),
    _case("csv-retrieval-absolute", lambda r: csv_retrieval(r, _set("images.3.1", "/etc/hosts")),
          "images.csv:4: path", "is absolute"),
    _case("csv-retrieval-empty-caption", lambda r: csv_retrieval(r, _set("captions.2.1", " ")),
          "captions.csv:3: caption of image_id 'i1'", "empty caption"),
    _case("csv-retrieval-empty-id", lambda r: csv_retrieval(r, _set("images.2.0", "")),
          "images.csv:3: image_id", "empty string"),
    # CSV classification
    _case("csv-classification-image-twice", lambda r: csv_classification(r, lambda rows: rows.append("images/1.png,cat")),
          "test.csv", "image", "line 3 and line 5"),
    _case("csv-classification-dotdot", lambda r: csv_classification(r, lambda rows: rows.append("../x.png,cat")),
          "test.csv:5: image path", "through '..'"),
    _case("csv-classification-absolute", lambda r: csv_classification(r, lambda rows: rows.append("/x.png,dog")),
          "test.csv:5: image path", "is absolute"),
    # ImageNet, Kaggle CSV layout
    _case("imagenet-csv-image-twice", lambda r: imagenet_kaggle(r, lambda rows: rows.append(rows[1])),
          "LOC_val_solution.csv:4: ImageId", "listed twice (lines 2 and 4)"),
    _case("imagenet-csv-dotdot", lambda r: imagenet_kaggle(r, lambda rows: rows.append(f"../../x,{WNIDS[0]} 1 2 3 4")),
          "LOC_val_solution.csv:4: ImageId", "through '..'"),
    # COCO instances
    _case("coco-instances-dotdot", lambda r: coco_instances(r, _set("images.0.file_name", "../train2017/0.jpg")),
          "instances_val2017.json", "images[0].file_name", "through '..'"),
    _case("coco-instances-file-twice", lambda r: coco_instances(r, _set("images.1.file_name", "0.jpg")),
          "instances_val2017.json", "image file", "images[0] and images[1]"),
    _case("coco-instances-int-category-name", lambda r: coco_instances(r, _set("categories.1.name", 3)),
          "instances_val2017.json", "categories[1].name", "found int"),
    _case("coco-instances-string-image-id", lambda r: coco_instances(r, _set("images.0.id", "1")),
          "instances_val2017.json", "images[0]", "id must be an integer"),
    # VOC-style split list
    _case("voc-dotdot-id", lambda r: voc(r, lambda ids: ids.append("../../x")),
          "val.txt:3: id", "'../../x.jpg'", "through '..'"),
    _case("voc-absolute-id", lambda r: voc(r, lambda ids: ids.insert(0, "/etc/x")),
          "val.txt:1: id", "is absolute"),
    _case("voc-id-twice", lambda r: voc(r, lambda ids: ids.append(ids[0])),
          "val.txt", "id '2007_000001'", "line 1 and line 3"),
    # SugarCrepe
    _case("sugarcrepe-dotdot", lambda r: sugarcrepe(r, lambda t: t.replace('"1.jpg"', '"../../1.jpg"', 1)),
          "add_att.json: item '1'.filename", "through '..'"),
    _case("sugarcrepe-empty-caption", lambda r: sugarcrepe(r, lambda t: t.replace('"a red cat 2"', '""')),
          "add_att.json: item '2'.caption", "empty caption"),
    _case("sugarcrepe-int-negative", lambda r: sugarcrepe(r, lambda t: t.replace('"a cat red 0"', "0")),
          "add_att.json: item '0'.negative_caption", "must be a string, found int"),
    _case("sugarcrepe-index-twice", lambda r: sugarcrepe(r, lambda t: t.replace('"2": {', '"1": {')),
          "add_att.json", "key '1' appears twice"),
    # ARO
    _case("aro-vg-absolute", lambda r: aro_vg(r, _set("1.image_path", "/data/vg/1.jpg")),
          "visual_genome_relation.json: item 1: image_path", "is absolute"),
    _case("aro-vg-empty-caption", lambda r: aro_vg(r, _set("0.true_caption", "")),
          "visual_genome_relation.json: item 0: true_caption", "empty caption"),
    _case("aro-order-image-twice", lambda r: aro_order(r, _append("", 0)),
          "coco_karpathy_test.json", "image 'val2014/0.jpg'", "item 0 and item 2"),
    _case("aro-order-blank-caption", lambda r: aro_order(r, lambda items: items[1]["caption"].append("   ")),
          "coco_karpathy_test.json: item 1: caption[1]", "empty caption"),
    _case("aro-order-dotdot", lambda r: aro_order(r, _set("0.image", "val2014/../../0.jpg")),
          "coco_karpathy_test.json: item 0: image", "through '..'"),
    # Winoground
    _case("winoground-id-twice", lambda r: winoground(r, _set("1.id", 0)),
          "examples.jsonl", "item id '0'", "item 0 and item 1"),
    _case("winoground-image-twice", lambda r: winoground(r, _set("1.image_1", "ex_0_img_0")),
          "examples.jsonl", "image 'ex_0_img_0'", "item 0 image_0 and item 1 image_1"),
    _case("winoground-empty-caption", lambda r: winoground(r, _set("0.caption_1", "")),
          "examples.jsonl: item 0: caption_1", "empty caption"),
    _case("winoground-zip-truncated", lambda r: winoground_zip(r, "truncated"),
          "images.zip: damaged zip archive", "BadZipFile"),
    _case("winoground-zip-bad-crc", lambda r: winoground_zip(r, "crc"),
          "images.zip: damaged zip archive", "CRC"),
    _case("winoground-parquet-truncated", winoground_parquet_truncated,
          "test-00000.parquet: damaged parquet file"),
]


def karpathy_cfg(root: Path) -> dict:
    return {"format": "karpathy", "root": str(root), "annotations": "dataset_coco.json", "split": "test"}


def _validated(cfg: dict) -> dict:
    reader = get_reader(cfg["format"])
    return validate(cfg, {**_DATASET_COMMON, **reader.params}, "test")


TEMPLATES = {"karpathy": "coco-retrieval", "coco_captions": "coco2017-retrieval", "cb_mscoco": "coco-retrieval",
             "cb_flickr": "coco-retrieval", "csv_retrieval": "coco-retrieval", "csv_classification": "csv-zeroshot",
             "imagenet": "imagenet-zeroshot", "coco_instances": "coco-det-transfer", "voc": "voc-zeroshot-seg",
             "sugarcrepe": "sugarcrepe", "aro": "aro-vg-relation", "winoground": "winoground"}


def _task(folder: Path, name: str, cfg: dict) -> Path:
    """A task YAML for ``cfg`` in ``folder``: a shipped task of the same kind with this dataset."""
    raw = yaml.safe_load(task_files()[TEMPLATES[cfg["format"]]].read_text())
    raw.update(name=name, dataset={**cfg, "name": name})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARC_EVAL_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("case", CASES)
def test_reader_refuses_the_fault_and_names_file_and_entry(tmp_path, cache, case):
    cfg = case.build(tmp_path / "data")
    with pytest.raises(DataIntegrityError) as err:
        get_reader(cfg["format"]).load(_validated(cfg))
    for part in case.expected:
        assert part in str(err.value), (part, str(err.value))


@pytest.mark.parametrize("case", CASES)
def test_data_verify_reports_it_with_exit_2(runner, cli, tmp_path, cache, case):
    cfg = case.build(tmp_path / "data")
    tasks = _task(tmp_path / "tasks", "check-me", cfg)
    r = runner.invoke(cli, ["data", "verify", "check-me", "--include-path", str(tasks)])
    assert r.exit_code == 2, r.output
    assert "OK" not in r.output and "dataset refused" in r.output
    flat = " ".join(r.output.split())
    for part in case.expected:
        assert " ".join(part.split()) in flat, (part, r.output)


VALID = [karpathy, coco_captions, cb_mscoco, cb_flickr, csv_retrieval, csv_classification, imagenet_kaggle,
         coco_instances, voc, sugarcrepe, aro_vg, winoground]


@pytest.mark.parametrize("build", VALID, ids=[b.__name__ for b in VALID])
def test_unfaulted_fixtures_load_and_verify_ok(runner, cli, tmp_path, cache, build):
    """The base fixtures of the table are valid, so each case's error comes from its one fault."""
    cfg = build(tmp_path / "data")
    get_reader(cfg["format"]).load(_validated(cfg))
    if cfg["format"] == "imagenet":
        return  # verify also wants every one of the 1000 classes
    r = runner.invoke(cli, ["data", "verify", "check-me", "--include-path", str(_task(tmp_path / "tasks", "check-me",
                                                                                          cfg))])
    assert r.exit_code == 0 and "OK" in r.output, r.output


# -- allow_outside_root, symlinked trees, the lexical rule ---------------------------------------------------


def test_allow_outside_root_reads_paths_outside_and_keeps_the_config_hash(runner, cli, tmp_path):
    _img(tmp_path / "elsewhere" / "far.jpg")
    cfg = karpathy(tmp_path / "data", _set("images.0.filename", "../../elsewhere/far.jpg"))
    with pytest.raises(DataIntegrityError, match="through '..'"):
        get_reader("karpathy").load(_validated(cfg))
    data = get_reader("karpathy").load(_validated({**cfg, "allow_outside_root": True}))
    assert data.images.paths[0].resolve() == (tmp_path / "elsewhere" / "far.jpg").resolve()
    tasks = _task(tmp_path / "tasks", "check-me", cfg)
    refused = runner.invoke(cli, ["data", "verify", "check-me", "--include-path", str(tasks)])
    assert refused.exit_code == 2 and "allow_outside_root=true" in refused.output
    ok = runner.invoke(cli, ["data", "verify", "check-me", "--include-path", str(tasks), "--param",
                             "allow_outside_root=true"])
    assert ok.exit_code == 0 and "OK" in ok.output, ok.output
    # a refusal switch changes no numbers: it stays out of the task's identity
    base = load_task("coco-retrieval", data_root="/d")
    assert load_task("coco-retrieval", data_root="/d", overrides=["allow_outside_root=true"]).config_sha256 == \
        base.config_sha256
    assert base.dataset["allow_outside_root"] is False


def test_symlinked_dataset_trees_still_load(tmp_path):
    """A root that is a link, and an image folder that links elsewhere, are inside the root lexically."""
    real = tmp_path / "disk" / "coco"
    karpathy(real)
    (tmp_path / "mnt").mkdir()
    os.symlink(real, tmp_path / "mnt" / "coco")
    via_root = get_reader("karpathy").load(_validated(karpathy_cfg(tmp_path / "mnt" / "coco")))
    assert via_root.images.paths[0] == tmp_path / "mnt" / "coco" / "val2014" / "im0.jpg"

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "dataset_coco.json").write_text((real / "dataset_coco.json").read_text())
    os.symlink(real / "val2014", tree / "val2014")  # the image folder lives on another disk
    data = get_reader("karpathy").load(_validated(karpathy_cfg(tree)))
    assert data.images.paths[2] == tree / "val2014" / "im2.jpg" and data.images.paths[2].is_file()

    # per-image links pointing out of the tree are fine too (csv_retrieval, cb_flickr, winoground folders)
    flat = tmp_path / "flat"
    cb_flickr(flat)
    target = tmp_path / "store" / "1.jpg"
    _img(target)
    (flat / "1.jpg").unlink()
    os.symlink(target, flat / "1.jpg")
    assert get_reader("cb_flickr").load(_validated({"format": "cb_flickr", "root": str(flat)})).images.paths[0] == \
        flat / "1.jpg"


def test_dotdot_through_a_linked_folder_is_judged_and_opened_lexically(tmp_path):
    """``link/../im0.jpg`` with ``link`` a link elsewhere: checked and opened as ``<image folder>/im0.jpg``,
    never as the link target's sibling (which the OS would reach by following the link)."""
    root = tmp_path / "data"
    karpathy(root, _set("images.0.filename", "link/../im0.jpg"))
    (tmp_path / "far" / "deep").mkdir(parents=True)
    os.symlink(tmp_path / "far" / "deep", root / "val2014" / "link")
    _img(tmp_path / "far" / "im0.jpg", (255, 255, 255))  # what the OS would open through the link
    data = get_reader("karpathy").load(_validated(karpathy_cfg(root)))
    assert data.images.paths[0] == root / "val2014" / "im0.jpg"
    assert (root / "val2014" / "link" / ".." / "im0.jpg").resolve() == (tmp_path / "far" / "im0.jpg").resolve()


@pytest.mark.parametrize("rel, problem", [
    ("../x.jpg", "through '..'"), ("a/../../x.jpg", "through '..'"), ("..", "through '..'"),
    ("..\\x.jpg", "through '..'"), ("/abs/x.jpg", "is absolute"), ("C:\\x.jpg", "is absolute"),
    ("\\\\host\\share\\x.jpg", "is absolute"), ("a\x00.jpg", "NUL character"),
])
def test_safe_join_refuses(rel, problem):
    with pytest.raises(DataIntegrityError, match=problem) as err:
        safe_join(Path("/data/root"), rel, "ann.json: images[4].filename")
    assert str(err.value).startswith("ann.json: images[4].filename: path ")


@pytest.mark.parametrize("rel, joined", [
    ("x.jpg", "/data/root/x.jpg"), ("a/b/x.jpg", "/data/root/a/b/x.jpg"), ("a/../x.jpg", "/data/root/x.jpg"),
    ("./a//x.jpg", "/data/root/a/x.jpg"), ("..x.jpg", "/data/root/..x.jpg"), ("a/..b/x.jpg", "/data/root/a/..b/x.jpg"),
])
def test_safe_join_accepts_paths_that_stay_inside(rel, joined):
    assert safe_join(Path("/data/root"), rel, "w") == Path(joined)
    assert safe_join(Path("/data/root"), "/abs/x.jpg", "w", allow_outside=True) == Path("/abs/x.jpg")


def test_coco_objects_refuses_an_image_id_twice(tmp_path):
    from sparc_eval.data.coco_objects import image_objects

    path = tmp_path / "instances_val2014.json"
    _json(path, {"images": [{"id": 1}, {"id": 2}, {"id": 1}], "annotations": [],
                 "categories": [{"id": 1, "name": "cat"}]})
    with pytest.raises(DataIntegrityError, match=r"instances_val2014.json: image id '1' is listed twice "
                                                  r"\(images\[0\] and images\[2\]\)"):
        image_objects(path)
