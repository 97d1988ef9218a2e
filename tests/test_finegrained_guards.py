"""Guards added after the fine-grained review (reviews/finegrained.md): each test feeds the real reader,
task or CLI the input that used to go wrong and checks the error (or the corrected value).

- PTB tokenisation: a caption holding a line-break character no longer shifts later captions, and
  ordinary captions tokenise exactly as pycocoevalcap's ``PTBTokenizer``; no ``java`` -> ConfigError;
- Winoground: untrusted ids, stems and suffixes cannot write outside the cache; duplicate zip member
  names are refused before extraction; identical parquet copies are read once, conflicting ones refused;
- segmentation: empty prompt lists and non-positive sizes are refused by the params; a VOC class table
  whose row 0 is not background is refused; ``SlideWindows`` equals cropping the once-resized image
  (zero padding where the image is smaller than the window); the slide path scores the oracle 100;
- CHAIR: an instances file listing none of the evaluated images is an error, a partial one is logged;
- ARO: VG items are clustered by image; empty files, null boxes and Order files with no usable item
  are errors naming the file;
- caption_transfer: ``batch_size: 0`` and ``max_len: 1`` are refused.
"""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_captions_cocoeval import PREDS, REFS
from test_compositional_readers import write_aro_vg

from sparc_eval.data.base import get_reader
from sparc_eval.errors import ConfigError, DataError
from sparc_eval.params import validate
from sparc_eval.tasks import load_task

ORACLES = Path(__file__).with_name("oracles_finegrained.py")


def _params(*kv: str) -> list[str]:
    return [a for p in kv for a in ("--param", p)]


def _png(colour: tuple[int, int, int], size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# -- PTB tokenisation (items 1, 8) ------------------------------------------------------------------------


@pytest.mark.parametrize("brk", ["\r", "\u2028", "\u2029", "\x85", "\x0c"])
def test_a_line_break_inside_a_prediction_does_not_shift_later_captions(brk):
    from sparc_eval.metrics.captioning import ptb_tokenize

    refs = {1: ["A cat sits on a mat."], 2: ["A dog runs!"], 3: ["Two birds, flying."]}
    preds = {1: f"a cat{brk}on a mat", 2: "a dog", 3: "two birds"}
    ref_tok, pred_tok = ptb_tokenize(refs, preds)
    assert pred_tok == {1: ["a cat on a mat"], 2: ["a dog"], 3: ["two birds"]}
    assert ref_tok == {1: ["a cat sits on a mat"], 2: ["a dog runs"], 3: ["two birds flying"]}
    # the same break inside a reference shifts nothing either
    ref_tok, pred_tok = ptb_tokenize({1: [f"A cat{brk}sits."], 2: ["A dog."]}, {1: "a cat", 2: "a dog"})
    assert ref_tok == {1: ["a cat sits"], 2: ["a dog"]} and pred_tok == {1: ["a cat"], 2: ["a dog"]}


def test_ptb_tokenize_equals_pycocoevalcap_on_ordinary_captions():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from sparc_eval.metrics.captioning import ptb_tokenize

    refs = {**REFS, 7: ["Mr. Smith's car -- a 1960s Ford (red)?", "It's 5 o'clock; \"time\" to go..."]}
    preds = {**PREDS, 7: "A man's RED car, parked!"}
    ours_refs, ours_preds = ptb_tokenize(refs, preds)
    theirs_refs = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    theirs_preds = PTBTokenizer().tokenize({k: [{"caption": c}] for k, c in preds.items()})
    assert ours_refs == theirs_refs and ours_preds == theirs_preds
    assert ours_preds[7] == ["a man 's red car parked"]


def test_missing_java_is_a_config_error(tmp_path, monkeypatch):
    from sparc_eval.metrics.captioning import ptb_tokenize, require_java

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="no 'java' is on PATH"):
        require_java()
    with pytest.raises(ConfigError, match="need Java"):
        ptb_tokenize({1: ["a cat"]}, {1: "a cat"})


# -- Winoground (items 6, 7, 17) --------------------------------------------------------------------------


def _winoground_rows(n: int = 2, **override) -> list[dict]:
    rows = []
    for k in range(n):
        rows.append({"id": k, "caption_0": f"caption {k} a", "caption_1": f"caption {k} b", "tag": "Object",
                     "secondary_tag": "", "num_main_preds": 1, "collapsed_tag": "Object",
                     **{f"image_{j}": {"bytes": _png((40 * k, 100 * j, 7)), "path": f"ex_{k}_img_{j}.png"}
                        for j in (0, 1)}})
    rows[0].update(override)
    return rows


def _write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _load_winoground(root: Path, source: str = "auto"):
    return get_reader("winoground").load({"root": str(root), "source": source})


def test_winoground_parquet_id_cannot_escape_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "a" / "b" / "c" / "cache"
    monkeypatch.setenv("SPARC_EVAL_CACHE", str(cache))
    root = tmp_path / "w"
    _write_parquet(root / "data" / "test.parquet", _winoground_rows(1, id="/../../../../escaped"))
    with pytest.raises(DataError, match=r"item id: '/\.\./\.\./\.\./\.\./escaped' is not a safe name"):
        _load_winoground(root)
    assert not [p for p in tmp_path.rglob("*escaped*")]
    assert [p for p in _files_under(tmp_path) if not p.is_relative_to(cache)] == [root / "data" / "test.parquet"]
    # a string id of safe characters is accepted and its images land in the cache
    rows = _winoground_rows(2, id="item-A_1")
    rows[1]["id"] = "7"
    _write_parquet(root / "data" / "test.parquet", rows)
    data = _load_winoground(root)
    assert [it.id for it in data.items] == ["item-A_1", "7"]
    assert all(p.is_relative_to(cache) and p.is_file() for p in data.images.paths)
    assert data.images.paths[0].name == "ex_item-A_1_img_0.png"


def test_winoground_parquet_image_suffix_must_be_an_image(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPARC_EVAL_CACHE", str(cache))
    root = tmp_path / "w"
    rows = _winoground_rows(1)
    rows[0]["image_1"] = {"bytes": _png((1, 2, 3)), "path": "ex_0_img_1.exe"}
    _write_parquet(root / "data" / "test.parquet", rows)
    with pytest.raises(DataError, match=r"item 0: image_1 path 'ex_0_img_1.exe' has suffix '\.exe'"):
        _load_winoground(root)
    assert not [p for p in _files_under(cache) if p.suffix == ".exe"]


@pytest.mark.parametrize("stem", ["../x", "a/b", "x.png", ""])
def test_winoground_jsonl_image_stem_must_be_a_safe_name(tmp_path, stem):
    data = tmp_path / "w" / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "ok.png").write_bytes(_png((0, 0, 0)))
    (data / "examples.jsonl").write_text(json.dumps({"id": 0, "image_0": "ok", "image_1": stem, "caption_0": "x",
                                                     "caption_1": "y"}) + "\n")
    with pytest.raises(DataError, match=r"examples.jsonl: item 0: image_1: .* is not a safe name"):
        _load_winoground(tmp_path / "w")


def test_winoground_zip_with_two_members_of_one_name_is_refused_before_extraction(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPARC_EVAL_CACHE", str(cache))
    data = tmp_path / "w" / "data"
    data.mkdir(parents=True)
    (data / "examples.jsonl").write_text(json.dumps({"id": 0, "image_0": "ex_0_img_0", "image_1": "ex_0_img_1",
                                                     "caption_0": "x", "caption_1": "y"}) + "\n")
    with zipfile.ZipFile(data / "images.zip", "w") as zf:
        zf.writestr("images/ex_0_img_0.png", _png((255, 0, 0)))
        zf.writestr("images/ex_0_img_1.png", _png((0, 255, 0)))
        zf.writestr("other/ex_0_img_0.png", _png((0, 0, 255)))
    with pytest.raises(DataError, match=r"members 'images/ex_0_img_0.png' and 'other/ex_0_img_0.png' have the "
                                        r"same file name"):
        _load_winoground(tmp_path / "w")
    assert _files_under(cache / "winoground") == []
    # without the duplicate the same archive extracts and reads
    with zipfile.ZipFile(data / "images.zip", "w") as zf:
        zf.writestr("images/ex_0_img_0.png", _png((255, 0, 0)))
        zf.writestr("images/ex_0_img_1.png", _png((0, 255, 0)))
    got = _load_winoground(tmp_path / "w")
    assert [p.read_bytes() for p in got.images.paths] == [_png((255, 0, 0)), _png((0, 255, 0))]


def test_winoground_identical_parquet_snapshots_are_read_once_and_conflicts_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARC_EVAL_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "hub"
    rows = _winoground_rows(3)
    first = _write_parquet(root / "snapshots" / "aaa" / "data" / "test-00000.parquet", rows)
    (root / "snapshots" / "bbb" / "data").mkdir(parents=True)
    shutil.copyfile(first, root / "snapshots" / "bbb" / "data" / "test-00000.parquet")
    data = _load_winoground(root)
    assert [it.id for it in data.items] == ["0", "1", "2"] and len(data.images) == 6
    assert data.info["files"] == [str(first)]
    changed = [dict(r) for r in rows]
    changed[1]["caption_0"] = "another caption"
    _write_parquet(root / "snapshots" / "bbb" / "data" / "test-00000.parquet", changed)
    with pytest.raises(DataError, match=r"item id 0 is also in .*aaa.*point root at one of them"):
        _load_winoground(root)


# -- segmentation (items 3, 9, 10, 12, 13, 17) ------------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ({"templates": []}, r"params\.templates: expected at least one value"),
    ({"background_prompts": [], "background": "prompt"}, r"params\.background_prompts: expected at least one value"),
    ({"short_side": 0}, r"params\.short_side: 0 is too small"),
    ({"max_long_side": -5}, r"params\.max_long_side: -5 is too small"),
    ({"stride": 0}, r"params\.stride: 0 is too small"),
])
def test_segmentation_params_refuse_empty_lists_and_non_positive_sizes(override, message):
    with pytest.raises(ConfigError, match=message):
        load_task("shapes-zeroshot-seg", overrides=override)


def test_empty_templates_through_the_cli(runner, cli, small_world, tmp_path):
    r = runner.invoke(cli, ["run", "-q", "--task", "shapes-zeroshot-seg", "--model", f"py:{ORACLES}:seg_oracle",
                            "--pretrained", str(small_world), "-o", str(tmp_path / "o"),
                            *_params(f"root={small_world}/VOCdevkit/VOC2012", "templates=[]")])
    assert r.exit_code == 2 and "params.templates: expected at least one value" in r.output
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.json"))


def test_voc_class_table_row_0_must_be_background(small_world, tmp_path):
    reader = get_reader("voc")
    table = tmp_path / "mine.tsv"
    rows = ["id\tname\tprompt", "0\tsky\tsky", *[f"{i}\tkind{i}\tkind {i}" for i in range(1, 7)]]
    table.write_text("\n".join(rows) + "\n")
    cfg = validate({"root": f"{small_world}/VOCdevkit/VOC2012", "split": "val", "class_table": str(table),
                    "reduce_zero_label": True}, reader.params, "test")
    with pytest.raises(DataError, match=r"mine\.tsv: row 0 is 'sky', but voc label maps use id 0 for background"):
        reader.load(cfg)
    table.write_text("\n".join(["id\tname\tprompt", "0\tbackground\tbackground", *rows[2:]]) + "\n")
    data = reader.load(cfg)
    assert data.classes == [f"kind{i}" for i in range(1, 7)] and data.background_index is None


def _slide_reference(img: Image.Image, hw: tuple[int, int], mean, std) -> torch.Tensor:
    """The image resized once with PIL (bicubic) and normalised by hand, [3, h, w]."""
    arr = np.asarray(img.resize((hw[1], hw[0]), Image.BICUBIC), dtype=np.float32) / 255
    return (torch.from_numpy(arr).permute(2, 0, 1) - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None,
                                                                                                             None]


def test_slide_windows_are_crops_of_the_once_resized_image():
    from sparc_eval.task_common.windows import SlideWindows

    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))  # w 40, h 30
    sw = SlideWindows(short_side=60, max_long_side=200, crop=32, stride=20, interpolation="bicubic", mean=mean,
                      std=std)
    assert sw.resized_hw(img.size) == (60, 80)
    # rows start at 0, 20 and 28 (flush with the bottom), columns at 0, 20, 40 and 48 (flush with the right)
    expected_windows = [(y, y + 32, x, x + 32) for y in (0, 20, 28) for x in (0, 20, 40, 48)]
    assert sw.windows(img.size) == expected_windows
    out = sw(img)
    assert out.shape == (12, 3, 32, 32) and out.dtype == torch.float32
    ref = _slide_reference(img, (60, 80), mean, std)
    for n, (y1, y2, x1, x2) in enumerate(expected_windows):
        assert torch.allclose(out[n], ref[:, y1:y2, x1:x2], atol=1e-5), n
    assert torch.equal(out[7], out[7].clone()) and torch.allclose(out[7][:, -1, -1], ref[:, 51, 79], atol=1e-5)

    # a resized image smaller than the window: one window, the image top-left, zeros bottom/right
    small = Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)).convert("L")  # w 10, h 8, grey
    sw = SlideWindows(short_side=16, max_long_side=200, crop=32, stride=16, interpolation="bicubic", mean=mean,
                      std=std)
    assert sw.windows(small.size) == [(0, 16, 0, 20)]
    (win,) = sw(small)
    assert torch.allclose(win[:, :16, :20], _slide_reference(small.convert("RGB"), (16, 20), mean, std), atol=1e-5)
    assert torch.count_nonzero(win[:, 16:, :]) == 0 and torch.count_nonzero(win[:, :, 20:]) == 0


def test_slide_mode_scores_the_oracle_100(runner, cli, small_world, tmp_path):
    """One window per image (short side = window = the world's image size): the window holds the image's
    exact pixels, so the oracle recognises it; a window given to the wrong image would cost IoU."""
    size = json.loads((small_world / "world.json").read_text())["image_size"]
    out = tmp_path / "out"
    r = runner.invoke(cli, ["run", "-q", "--task", "shapes-zeroshot-seg", "--model", f"py:{ORACLES}:seg_oracle",
                            "--pretrained", str(small_world), "--model-name", "oracle", "-o", str(out),
                            "--batch-size", "3",
                            *_params(f"root={small_world}/VOCdevkit/VOC2012", "mode=slide", "upsample=bilinear",
                                     f"short_side={size}", f"max_long_side={size}", "reduce_zero_label=false",
                                     "background=prompt", "protocol=standard")])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "oracle" / "shapes-zeroshot-seg.json").read_text())
    assert res["metrics"] == {"mIoU": 100.0, "mAcc": 100.0, "aAcc": 100.0}
    assert res["details"]["inference"]["mode"] == "slide" and res["dataset"]["n_used"] == 40


# -- CHAIR ground truth (item 2) --------------------------------------------------------------------------


def test_chair_instances_of_another_split_is_an_error(runner, cli, small_world, tmp_path):
    scenes = [s for s in json.loads((small_world / "world.json").read_text())["scenes"] if s["split"] == "test"]
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"image_id": s["id"], "caption": s["captions"][0]} for s in scenes]))
    r = runner.invoke(cli, ["run", "-q", "--task", "shapes-captions", "--predictions", str(preds), "-o",
                            str(tmp_path / "out"),
                            *_params(f"root={small_world}", "instances=annotations/instances_train.json")])
    assert r.exit_code == 2, r.output
    assert "instances_train.json: none of the 40 evaluated images is in this instances file" in r.output


def test_chair_instances_missing_some_images_is_logged(small_world, tmp_path):
    from sparc_eval.task_common.captions import ground_truth_objects
    from sparc_eval.text.objects import load_vocabulary

    inst = json.loads((small_world / "annotations" / "instances_test.json").read_text())
    ids = [str(im["id"]) for im in inst["images"]]
    gone = inst["images"][0]["id"]
    inst["images"] = inst["images"][1:]
    inst["annotations"] = [a for a in inst["annotations"] if a["image_id"] != gone]
    (tmp_path / "partial.json").write_text(json.dumps(inst))
    logged: list[str] = []
    params = {"instances": "partial.json"}
    gt, info = ground_truth_objects(params, str(tmp_path), ids, [[] for _ in ids], load_vocabulary("shapes"),
                                     logged.append)
    assert info["images_without_instances"] == 1 and len(logged) == 1
    assert f"1 of {len(ids)} evaluated images have no entry (e.g. image id '{gone}')" in logged[0]
    assert gt[0] == set() and all(gt[1:])  # the others get their annotated objects


# -- ARO (items 4, 5, 11) ---------------------------------------------------------------------------------


def _aro_cfg(root: Path, subset: str) -> dict:
    return validate({"root": str(root), "subset": subset}, get_reader("aro").params, "test")


def test_aro_vg_items_are_clustered_by_image_through_the_task(runner, cli, small_world, tmp_path):
    root = write_aro_vg(small_world, tmp_path / "aro")
    data = get_reader("aro").load(_aro_cfg(root, "vg_attribution"))
    raw = json.loads((root / "visual_genome_attribution.json").read_text())
    assert [it.cluster for it in data.items] == [e["image_path"] for e in raw]
    assert len({it.cluster for it in data.items}) < len(data.items)  # the fixture repeats some images
    out = tmp_path / "out"
    r = runner.invoke(cli, ["run", "-q", "--task", "aro-vg-attribution", "--model", f"py:{ORACLES}:probe_oracle",
                            "--pretrained", str(small_world), "--model-name", "oracle", "-o", str(out),
                            *_params(f"root={root}", "min_category_count=0")])
    assert r.exit_code == 0, r.output
    records = [json.loads(x) for x in (out / "oracle" / "aro-vg-attribution.samples.jsonl").read_text().splitlines()]
    assert [rec["cluster"] for rec in records] == [e["image_path"] for e in raw]
    by_image: dict[str, set] = {}
    for rec, e in zip(records, raw):
        by_image.setdefault(e["image_path"], set()).add(rec["cluster"])
    assert all(len(c) == 1 for c in by_image.values()) and any(
        sum(e["image_path"] == p for e in raw) > 1 for p in by_image)


@pytest.mark.parametrize("subset, file", [("vg_relation", "visual_genome_relation.json"),
                                          ("coco_order", "coco_karpathy_test.json")])
def test_aro_empty_annotation_file_is_a_data_error(tmp_path, subset, file):
    (tmp_path / "images").mkdir()
    (tmp_path / file).write_text("[]")
    with pytest.raises(DataError, match=rf"{file}: the annotation list is empty"):
        get_reader("aro").load(_aro_cfg(tmp_path, subset))


@pytest.mark.parametrize("value, shown", [(None, "None"), ("left", "'left'"), (True, "True"), ([1], r"\[1\]")])
def test_aro_bad_box_value_names_file_item_and_field(small_world, tmp_path, value, shown):
    root = write_aro_vg(small_world, tmp_path / "aro")
    ann = root / "visual_genome_relation.json"
    raw = json.loads(ann.read_text())
    raw[2]["bbox_w"] = value
    ann.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=rf"visual_genome_relation.json: item 2: bbox_w is {shown}; expected a number"):
        get_reader("aro").load(_aro_cfg(root, "vg_relation"))


def test_aro_order_with_no_distinct_perturbation_is_a_data_error(small_world, tmp_path):
    scenes = [s for s in json.loads((small_world / "world.json").read_text())["scenes"] if s["split"] == "test"][:2]
    root = tmp_path / "coco"
    root.mkdir()
    (root / "images").symlink_to(small_world / "images")
    ann = root / "coco_karpathy_test.json"
    ann.write_text(json.dumps([{"image": s["file"], "caption": ["Cat.", "dog"]} for s in scenes]))
    with pytest.raises(DataError, match=r"coco_karpathy_test.json: none of the 4 caption\(s\) has a perturbation"):
        get_reader("aro").load(_aro_cfg(root, "coco_order"))
    # one caption with distinct perturbations is enough; the others are counted as dropped
    ann.write_text(json.dumps([{"image": scenes[0]["file"], "caption": ["Cat.", "a red square left of a blue circle"]},
                               {"image": scenes[1]["file"], "caption": "dog"}]))
    data = get_reader("aro").load(_aro_cfg(root, "coco_order"))
    assert len(data.items) == 1 and data.info["items_without_distinct_perturbation"] == 2
    assert data.items[0].options[0] == "a red square left of a blue circle"


def test_aro_order_task_descriptions_state_the_dropped_items():
    for name in ("aro-coco-order", "aro-flickr-order"):
        cfg = load_task(name, data_root="/nonexistent")
        assert "Perturbations equal to the caption are dropped" in cfg.description, name


# -- caption_transfer bounds (item 10) ----------------------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ({"batch_size": 0}, r"params\.batch_size: 0 is too small; expected a value >= 1"),
    ({"max_len": 1}, r"params\.max_len: 1 is too small; expected a value >= 2"),
    ({"beam_size": 0}, r"params\.beam_size: 0 is too small"),
])
def test_caption_transfer_params_are_bounded(override, message):
    with pytest.raises(ConfigError, match=message):
        load_task("shapes-caption-transfer", overrides=override)
