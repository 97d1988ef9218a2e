"""Probe readers on the shapes world's SugarCrepe files and on fixtures written here in the real
layouts (ARO's JSON, BLIP's Karpathy JSON, Winoground's jsonl + images / images.zip / parquet)."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from sparc_eval.data.aro import EXCLUDED_RELATIONS
from sparc_eval.data.base import get_reader
from sparc_eval.data.synthetic import load_world
from sparc_eval.errors import DataError


def two_shape_scenes(world: Path, split: str = "test") -> list[dict]:
    return [s for s in load_world(world)["scenes"] if s["split"] == split and len(s["objects"]) == 2]


def _phrase(o: dict) -> str:
    return f"{o['colour']} {o['kind']}"


def write_winoground(world: Path, root: Path, n: int = 12, layout: str = "folder") -> Path:
    """Winoground files from pairs of two-shape scenes (caption k = the first caption of image k)."""
    scenes = two_shape_scenes(world)[: 2 * n]
    data = root / "data"
    data.mkdir(parents=True)
    rows = []
    for k in range(n):
        a, b = scenes[2 * k], scenes[2 * k + 1]
        rows.append({"id": k, "image_0": f"ex_{k}_img_0", "image_1": f"ex_{k}_img_1", "caption_0": a["captions"][0],
                     "caption_1": b["captions"][0], "tag": "Object", "secondary_tag": "",
                     "num_main_preds": 1, "collapsed_tag": "Object" if k % 2 else "Relation"})
    files = {f"ex_{r['id']}_img_{j}.png": world / s["file"] for r, pair in
             zip(rows, zip(scenes[0::2], scenes[1::2])) for j, s in enumerate(pair)}
    if layout == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = [{**r, **{f"image_{j}": {"bytes": files[f"ex_{r['id']}_img_{j}.png"].read_bytes(),
                                          "path": f"ex_{r['id']}_img_{j}.png"} for j in (0, 1)}} for r in rows]
        (data / "test").mkdir()
        pq.write_table(pa.Table.from_pylist(table), data / "test" / "0000.parquet")
        return root
    (data / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if layout == "zip":
        with zipfile.ZipFile(data / "images.zip", "w") as zf:
            for name, src in files.items():
                zf.write(src, f"images/{name}")
    else:
        (data / "images").mkdir()
        for name, src in files.items():
            shutil.copyfile(src, data / "images" / name)
    return root


def write_aro_vg(world: Path, root: Path, box=None) -> Path:
    """VG-Relation and VG-Attribution files over two-shape scenes (box: the whole image by default)."""
    (root / "images").mkdir(parents=True)
    rel, att = [], []
    size = load_world(world)["image_size"]
    for n, s in enumerate(two_shape_scenes(world)):
        a, b = s["objects"]
        if _phrase(a) == _phrase(b):
            continue
        shutil.copyfile(world / s["file"], root / "images" / Path(s["file"]).name)
        true = s["captions"][0]
        relation = true[len(f"a {_phrase(a)} "):-len(f" a {_phrase(b)}")].strip()
        relation = relation.replace("an ", "").replace("a ", "")
        bx = box or (0, 0, size, size)
        common = {"image_path": Path(s["file"]).name, "bbox_x": bx[0], "bbox_y": bx[1], "bbox_w": bx[2],
                  "bbox_h": bx[3], "true_caption": true}
        rel.append({**common, "false_caption": true.replace(_phrase(a), "@").replace(_phrase(b), _phrase(a))
                    .replace("@", _phrase(b)), "relation_name": "next to" if n % 5 == 0 else relation})
        if a["colour"] != b["colour"]:
            item = {**common, "false_caption": true.replace(a["colour"], "@").replace(b["colour"], a["colour"])
                    .replace("@", b["colour"]), "attributes": [a["colour"], b["colour"]]}
            att += [item, item] if n % 3 == 0 else [item]
    (root / "visual_genome_relation.json").write_text(json.dumps(rel))
    (root / "visual_genome_attribution.json").write_text(json.dumps(att))
    return root


def write_aro_order(world: Path, root: Path, n: int = 15) -> Path:
    scenes = [s for s in load_world(world)["scenes"] if s["split"] == "test"][:n]
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").symlink_to(world / "images")
    (root / "coco_karpathy_test.json").write_text(json.dumps([{"image": s["file"], "caption": s["captions"]}
                                                              for s in scenes]))
    return root


def test_sugarcrepe_reader_on_the_shapes_world(small_world, tmp_path):
    reader = get_reader("sugarcrepe")
    cfg = {"root": str(small_world), "annotations": "sugarcrepe", "image_dir": "images",
           "categories": ["swap_att", "replace_rel"]}
    data = reader.load(cfg)
    files = {c: json.loads((small_world / "sugarcrepe" / f"{c}.json").read_text()) for c in cfg["categories"]}
    assert len(data.items) == sum(len(v) for v in files.values())
    first_key, first = next(iter(files["swap_att"].items()))
    item = data.items[0]
    assert item.id == f"swap_att/{first_key}" and item.options == [first["caption"], first["negative_caption"]]
    assert data.images.paths[item.image] == small_world / "images" / first["filename"]
    assert len(data.images) == len({e["filename"] for v in files.values() for e in v.values()})
    lim = data.limit(3)
    assert len(lim.items) == 3 and all(0 <= it.image < len(lim.images) for it in lim.items)
    # non-contiguous string keys are kept as ids; a missing field names the file and item
    odd = tmp_path / "sc"
    (odd / "data").mkdir(parents=True)
    (odd / "data" / "swap_obj.json").write_text(json.dumps({"7": first, "12": first}))
    got = reader.load({**cfg, "root": str(odd), "annotations": "data", "image_dir": str(small_world / "images"),
                       "categories": ["swap_obj"]})
    assert [it.id for it in got.items] == ["swap_obj/7", "swap_obj/12"] and len(got.images) == 1
    (odd / "data" / "swap_obj.json").write_text(json.dumps({"3": {"filename": first["filename"], "caption": "x"}}))
    with pytest.raises(DataError, match=r"swap_obj.json: item '3': missing field\(s\) \['negative_caption'\]"):
        reader.load({**cfg, "root": str(odd), "annotations": "data", "image_dir": str(small_world / "images"),
                     "categories": ["swap_obj"]})


def test_aro_vg_readers(small_world, tmp_path):
    root = write_aro_vg(small_world, tmp_path / "aro", box=(8, 4, 40, 30))
    reader = get_reader("aro")
    base = {"root": str(root), "annotations": None, "image_dir": None, "exclude_symmetric": True, "seed": 1,
            "max_words": 30}
    rel = reader.load({**base, "subset": "vg_relation"})
    raw = json.loads((root / "visual_genome_relation.json").read_text())
    assert len(rel.items) == len(raw) and rel.items[0].options == [raw[0]["false_caption"], raw[0]["true_caption"]]
    assert rel.items[0].correct == 1 and rel.images.boxes[0] == (8.0, 4.0, 40.0, 30.0)
    assert "next_to" in rel.excluded_categories and len(rel.excluded_categories) == 157
    assert {it.category for it in rel.items} >= {"next_to", "to_the_left_of"}
    assert EXCLUDED_RELATIONS.read_text().count("\n") == 157 + 3
    assert reader.load({**base, "subset": "vg_relation", "exclude_symmetric": False}).excluded_categories == []
    att = reader.load({**base, "subset": "vg_attribution"})
    a0 = json.loads((root / "visual_genome_attribution.json").read_text())[0]
    assert att.items[0].category == "_".join(a0["attributes"])
    (root / "visual_genome_relation.json").write_text(json.dumps([{"image_path": "x.png"}]))
    with pytest.raises(DataError, match="item 0: missing field"):
        reader.load({**base, "subset": "vg_relation"})


def test_aro_order_reader_with_the_offline_tagger(small_world, tmp_path):
    root = write_aro_order(small_world, tmp_path / "coco")
    cfg = {"root": str(root), "subset": "coco_order", "annotations": None, "image_dir": None,
           "exclude_symmetric": True, "seed": 1, "max_words": 30}
    data = get_reader("aro").load(cfg)
    n_caps = sum(len(e["caption"]) for e in json.loads((root / "coco_karpathy_test.json").read_text()))
    assert len(data.items) + data.info["items_without_distinct_perturbation"] == n_caps
    assert data.info["pos_tagger"]["tagger"] == "spacy" and data.info["seed"] == 1
    assert all(2 <= len(it.options) <= 5 and it.correct == 0 and len(set(it.options[1:]) & {it.options[0]}) == 0
               for it in data.items)
    again = get_reader("aro").load(cfg)
    assert [it.options for it in again.items] == [it.options for it in data.items]
    assert again.fingerprint == data.fingerprint
    other = get_reader("aro").load({**cfg, "seed": 2})
    assert other.fingerprint != data.fingerprint and [it.options for it in other.items] != [it.options for it in
                                                                                            data.items]


@pytest.mark.parametrize("layout", ["folder", "zip", "parquet"])
def test_winoground_reader_layouts(small_world, tmp_path, layout):
    root = write_winoground(small_world, tmp_path / "winoground", n=4, layout=layout)
    data = get_reader("winoground").load({"root": str(root), "source": "auto"})
    assert [it.id for it in data.items] == ["0", "1", "2", "3"] and len(data.images) == 8
    assert data.items[1].tags["collapsed_tag"] == "Object" and data.info["source"] == (
        "parquet" if layout == "parquet" else "jsonl")
    scenes = two_shape_scenes(small_world)
    assert data.items[0].captions == (scenes[0]["captions"][0], scenes[1]["captions"][0])
    assert data.images.paths[data.items[0].images[1]].read_bytes() == (small_world / scenes[1]["file"]).read_bytes()
    assert data.limit(2).items[1].images == (2, 3) and len(data.limit(2).images) == 4


def test_winoground_zip_with_unsafe_member_is_refused(tmp_path):
    data = tmp_path / "w" / "data"
    data.mkdir(parents=True)
    (data / "examples.jsonl").write_text(json.dumps({"id": 0, "image_0": "a", "image_1": "b", "caption_0": "x",
                                                     "caption_1": "y"}) + "\n")
    with zipfile.ZipFile(data / "images.zip", "w") as zf:
        zf.writestr("../evil.png", b"x")
    with pytest.raises(DataError, match="'..' path; refusing"):
        get_reader("winoground").load({"root": str(tmp_path / "w"), "source": "auto"})
    (data / "examples.jsonl").write_text('{"id": 0, "caption_0": "x"}\n')
    with pytest.raises(DataError, match=r"line 1 lacks field\(s\) \['image_0', 'image_1', 'caption_1'\]"):
        get_reader("winoground").load({"root": str(tmp_path / "w"), "source": "jsonl"})
