"""Segmentation readers on small fixtures in each dataset's real layout, label decoding checked
against mmsegmentation's LoadAnnotations and dataset classes, class tables against mmseg's
METAINFO, and the bad inputs users make (size mismatch, ids out of range, missing class table)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sparc_eval.data.base import get_reader
from sparc_eval.data.segmentation import load_class_table, read_label_map
from sparc_eval.data.synthetic import KINDS, VOC_PALETTE
from sparc_eval.errors import DataError


def _palette_png(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(label.astype(np.uint8), mode="P")
    im.putpalette(VOC_PALETTE)
    im.save(path)


def _grey_png(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint8), mode="L").save(path)


def _image(path: Path, w: int, h: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def _label(h: int, w: int, high: int, seed: int = 0) -> np.ndarray:
    lab = np.random.default_rng(seed).integers(0, high, (h, w))
    lab[0, :] = 255
    return lab


def _voc(root: Path, ids=("2007_000032", "2007_000039"), high=21) -> Path:
    for k, i in enumerate(ids):
        _image(root / "JPEGImages" / f"{i}.jpg", 12 + k, 9, k)
        _palette_png(root / "SegmentationClass" / f"{i}.png", _label(9, 12 + k, high, k))
    (root / "ImageSets/Segmentation").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/Segmentation/val.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.mark.filterwarnings("ignore:`reduce_zero_label` will be deprecated")
def test_palette_png_decodes_to_indices_and_reduce_zero_label_matches_mmseg(tmp_path):
    from mmseg.datasets.transforms import LoadAnnotations

    label = np.array([[0, 1, 2], [15, 20, 255]])
    path = tmp_path / "a.png"
    _palette_png(path, label)
    with Image.open(path) as im:
        assert im.mode == "P" and im.convert("RGB").getpixel((1, 0)) == (128, 0, 0)  # a colour, not the index
    assert read_label_map(path).tolist() == label.tolist()
    reduced = read_label_map(path, reduce=True)
    assert reduced.tolist() == [[255, 0, 1], [14, 19, 255]]
    for reduce in (False, True):
        res = LoadAnnotations(reduce_zero_label=reduce)({"seg_map_path": str(path), "reduce_zero_label": reduce,
                                                         "seg_fields": []})
        assert res["gt_seg_map"].tolist() == read_label_map(path, reduce).tolist()
    rgb = tmp_path / "colour.png"
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(rgb)
    with pytest.raises(DataError, match="mode 'RGB'.*class indices"):
        read_label_map(rgb)


@pytest.mark.parametrize("table,cls", [("voc", "PascalVOCDataset"), ("pascal_context", "PascalContextDataset"),
                                       ("ade20k", "ADE20KDataset"), ("coco_stuff", "COCOStuffDataset"),
                                       ("cityscapes", "CityscapesDataset")])
def test_class_tables_match_mmseg(table, cls):
    import mmseg.datasets as mds

    t = load_class_table(table)
    assert t.names == list(getattr(mds, cls).METAINFO["classes"])
    assert all(p and p == p.strip() for p in t.prompts)


def test_context59_and_shapes_tables():
    from mmseg.datasets import PascalContextDataset59

    assert load_class_table("pascal_context").names[1:] == list(PascalContextDataset59.METAINFO["classes"])
    assert load_class_table("shapes").names == ["background", *KINDS]
    voc = load_class_table("voc")
    assert voc.prompts[voc.names.index("tvmonitor")] == "monitor"


def test_voc_reader_21_and_20_classes_agree_with_mmseg_dataset(tmp_path):
    from mmseg.datasets import PascalVOCDataset

    root = _voc(tmp_path / "VOC2012")
    reader = get_reader("voc")
    cfg = {"root": str(root), "split": "val", "class_table": None, "reduce_zero_label": False,
           "image_dir": "JPEGImages", "label_dir": "SegmentationClass", "split_dir": "ImageSets/Segmentation"}
    d21 = reader.load(cfg)
    assert d21.num_classes == 21 and d21.background_index == 0 and d21.prompts[11] == "table"
    d20 = reader.load({**cfg, "reduce_zero_label": True})
    assert d20.num_classes == 20 and d20.background_index is None and d20.classes[0] == "aeroplane"
    assert d20.fingerprint != d21.fingerprint
    raw = read_label_map(d21.labels[0])
    assert d20.read_label(0).tolist() == np.where((raw == 0) | (raw == 255), 255, raw - 1).tolist()
    ds = PascalVOCDataset(data_root=str(root), data_prefix={"img_path": "JPEGImages", "seg_map_path": "SegmentationClass"},
                          ann_file="ImageSets/Segmentation/val.txt", pipeline=[], serialize_data=False)
    assert [(Path(x["img_path"]), Path(x["seg_map_path"])) for x in ds.data_list] == list(zip(d21.images.paths,
                                                                                             d21.labels))
    assert d21.limit(1).labels == d21.labels[:1]


def test_pascal_context_ade_cocostuff_cityscapes_layouts(tmp_path):
    ctx = tmp_path / "VOC2010"
    _image(ctx / "JPEGImages/2008_000002.jpg", 10, 8)
    _palette_png(ctx / "SegmentationClassContext/2008_000002.png", _label(8, 10, 60))
    (ctx / "ImageSets/SegmentationContext").mkdir(parents=True)
    (ctx / "ImageSets/SegmentationContext/val.txt").write_text("2008_000002\n")
    r = get_reader("pascal_context")
    base = {"root": str(ctx), "split": "val", "class_table": None, "image_dir": "JPEGImages",
            "label_dir": "SegmentationClassContext", "split_dir": "ImageSets/SegmentationContext"}
    assert r.load({**base, "reduce_zero_label": False}).num_classes == 60
    d59 = r.load({**base, "reduce_zero_label": True})
    assert d59.num_classes == 59 and d59.classes[-1] == "wood" and d59.prompts[39] == "plant"

    ade = tmp_path / "ADEChallengeData2016"
    for k, stem in enumerate(["ADE_val_00000002", "ADE_val_00000001"]):
        _image(ade / f"images/validation/{stem}.jpg", 10, 8, k)
        _grey_png(ade / f"annotations/validation/{stem}.png", np.random.default_rng(k).integers(0, 151, (8, 10)))
    d = get_reader("ade20k").load({"root": str(ade), "split": "validation", "class_table": None})
    assert d.num_classes == 150 and d.images.ids == ["ADE_val_00000001", "ADE_val_00000002"]
    assert d.reduce_zero_label and d.classes[7] == "bed " and d.prompts[7] == "bed"
    from mmseg.datasets import ADE20KDataset

    mm = ADE20KDataset(data_root=str(ade), data_prefix={"img_path": "images/validation",
                                                             "seg_map_path": "annotations/validation"},
                       pipeline=[], serialize_data=False)
    assert [Path(x["seg_map_path"]) for x in mm.data_list] == d.labels

    cs = tmp_path / "coco_stuff164k"
    _image(cs / "images/val2017/000000000139.jpg", 10, 8)
    _grey_png(cs / "annotations/val2017/000000000139_labelTrainIds.png", _label(8, 10, 171))
    d = get_reader("coco_stuff").load({"root": str(cs), "split": "val2017", "class_table": None})
    assert d.num_classes == 171 and d.prompts[84] == "building" and d.read_label(0).shape == (8, 10)

    cty = tmp_path / "cityscapes"
    _image(cty / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png", 16, 8)
    _grey_png(cty / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png", _label(8, 16, 19))
    d = get_reader("cityscapes").load({"root": str(cty), "split": "val", "class_table": None})
    assert d.num_classes == 19 and d.images.ids == ["frankfurt/frankfurt_000000_000294"]
    assert d.read_label(0, (16, 8)).shape == (8, 16)


def test_bad_inputs(tmp_path):
    root = _voc(tmp_path / "VOC2012")
    reader = get_reader("voc")
    cfg = {"root": str(root), "split": "val", "class_table": None, "reduce_zero_label": False,
           "image_dir": "JPEGImages", "label_dir": "SegmentationClass", "split_dir": "ImageSets/Segmentation"}
    data = reader.load(cfg)
    with pytest.raises(DataError, match=r"label map is 12x9 \(w x h\) but its image is 13x9"):
        data.read_label(0, (13, 9))
    _palette_png(data.labels[1], np.full((9, 13), 21))
    with pytest.raises(DataError, match=r"label ids \[21\] out of range; expected 0..20 or 255"):
        data.read_label(1)
    problems = reader.verify(cfg)
    assert len(problems) == 1 and "out of range" in problems[0]
    with pytest.raises(DataError, match=r"label ids \[20\] out of range after reduce_zero_label"):
        reader.load({**cfg, "reduce_zero_label": True}).read_label(1)
    with pytest.raises(DataError, match="class table 'no_such_table': no such file"):
        reader.load({**cfg, "class_table": "no_such_table"})
    bad = tmp_path / "classes.tsv"
    bad.write_text("id\tname\tprompt\n0\tbackground\tbackground\n2\tcat\tcat\n")
    with pytest.raises(DataError, match="data line 2"):
        reader.load({**cfg, "class_table": str(bad)})
    (root / "ImageSets/Segmentation/val.txt").write_text("2007_000032\nmissing_id\n")
    with pytest.raises(DataError, match="missing"):
        reader.load(cfg)
    with pytest.raises(DataError, match="split list"):
        reader.load({**cfg, "split": "test"})
