"""Compositional probes end to end through the CLI: oracle models score 100 on every category and
their permuted versions the analytic value; agreement with CLIP_benchmark 1.6.2's
image_caption_selection on SugarCrepe and Winoground with the same model and files; ARO's crop."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_OPEN_CLIP
from oracles_finegrained import caption_truth, probe_permutation
from PIL import Image
from test_compositional_readers import (
    two_shape_scenes,
    write_aro_order,
    write_aro_vg,
    write_winoground,
)

from sparc_eval.api import evaluate
from sparc_eval.data.synthetic import SUGARCREPE_CATEGORIES, load_world
from sparc_eval.metrics import registry
from sparc_eval.models import load_model

ORACLES = Path(__file__).with_name("oracles_finegrained.py")


def _run(runner, cli, out: Path, *args) -> dict:
    r = runner.invoke(cli, ["run", "-q", "-o", str(out), *args])
    assert r.exit_code == 0, r.output
    task = args[args.index("--task") + 1]
    name = args[args.index("--model-name") + 1]
    return json.loads((out / name / f"{task}.json").read_text())


def sugarcrepe_items(world: Path) -> dict[str, dict]:
    """The world's SugarCrepe items; no negative may be one of its scene's own captions."""
    scenes = {s["id"]: s for s in load_world(world)["scenes"]}
    items = {}
    for c in SUGARCREPE_CATEGORIES:
        items[c] = json.loads((world / "sugarcrepe" / f"{c}.json").read_text())
        for e in items[c].values():
            assert e["negative_caption"] not in scenes[int(Path(e["filename"]).stem)]["captions"], (c, e)
    return items


def test_sugarcrepe_oracle_100_and_permuted_analytic(runner, cli, small_world, tmp_path):
    kept = sugarcrepe_items(small_world)
    common = ["--task", "shapes-sugarcrepe", "--pretrained", str(small_world), "--param", f"root={small_world}"]
    res = _run(runner, cli, tmp_path, *common, "--model", f"py:{ORACLES}:probe_oracle", "--model-name", "oracle")
    cats = [c for c in SUGARCREPE_CATEGORIES if kept[c]]
    skill = {k: v for k, v in res["metrics"].items() if not registry.get(k).control}
    assert skill == {"acc": 100.0, "macro_acc": 100.0, **{f"acc.{c}": 100.0 for c in cats}}
    assert res["details"]["group_means"] == {"add": 100.0, "replace": 100.0, "swap": 100.0}
    assert res["chance"] == {k: 50.0 for k in res["metrics"]}  # pairs: every metric, controls included

    res = _run(runner, cli, tmp_path, *common, "--model", f"py:{ORACLES}:probe_oracle_permuted", "--model-name", "perm",
               "--seed", "3")
    truth = caption_truth(small_world)
    perm = probe_permutation(len(load_world(small_world)["scenes"]), 3)
    per_cat = {}
    for c in cats:
        hits = []
        for e in kept[c].values():
            s = int(Path(e["filename"]).stem)
            pos = s in {int(perm[t]) for t in truth.get(e["caption"], ())}
            neg = s in {int(perm[t]) for t in truth.get(e["negative_caption"], ())}
            hits.append(pos and not neg)
        per_cat[c] = 100 * float(np.mean(hits))
    assert res["metrics"]["macro_acc"] == pytest.approx(np.mean(list(per_cat.values())))
    for c in cats:
        assert res["metrics"][f"acc.{c}"] == pytest.approx(per_cat[c])


class _Pairs(torch.utils.data.Dataset):
    """Winoground items as CLIP_benchmark's WinoGround dataset yields them: (images [2,3,H,W], [c0, c1])."""

    def __init__(self, items, transform):
        self.items, self.transform = items, transform

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        paths, caps = self.items[i]
        return torch.stack([self.transform(Image.open(p)) for p in paths]), list(caps)


def test_agreement_with_clip_benchmark_on_sugarcrepe_and_winoground(small_world, tmp_path):
    from clip_benchmark.datasets.builder import image_captions_collate_fn
    from clip_benchmark.datasets.sugar_crepe import SugarCrepe
    from clip_benchmark.metrics import image_caption_selection

    model = load_model(TINY_OPEN_CLIP, device="cpu")
    cats = ["swap_att", "replace_rel"]
    ev = evaluate(model, ["shapes-sugarcrepe"], write=False, progress=False, log=lambda m: None,
                  params={"root": str(small_world), "categories": cats})[0]
    for c in cats:
        ds = SugarCrepe(root=str(small_world / "images"), ann_file=str(small_world / "sugarcrepe" / f"{c}.json"),
                        transform=model.image_transform)
        loader = torch.utils.data.DataLoader(ds, batch_size=32, collate_fn=image_captions_collate_fn)
        ref = image_caption_selection.evaluate(model.model, loader, model.tokenizer, "cpu", amp=False)
        assert ev.metrics[f"acc.{c}"] == pytest.approx(100 * ref["text_acc"])
    assert ev.result["details"]["tied_with_right_option"] == 0  # argmax and strict > agree without ties

    root = write_winoground(small_world, tmp_path / "winoground", n=8)
    ev = evaluate(model, ["winoground"], write=False, progress=False, log=lambda m: None,
                  params={"root": str(root)})[0]
    rows = [json.loads(line) for line in (root / "data/examples.jsonl").read_text().splitlines()]
    items = [([root / "data/images" / f"{r['image_0']}.png", root / "data/images" / f"{r['image_1']}.png"],
              (r["caption_0"], r["caption_1"])) for r in rows]
    loader = torch.utils.data.DataLoader(_Pairs(items, model.image_transform), batch_size=8,
                                         collate_fn=image_captions_collate_fn)
    ref = image_caption_selection.evaluate(model.model, loader, model.tokenizer, "cpu", amp=False)
    assert ev.metrics["text_score"] == pytest.approx(100 * ref["text_acc"])
    assert ev.metrics["image_score"] == pytest.approx(100 * ref["image_acc"])
    assert ev.metrics["group_score"] == pytest.approx(100 * ref["acc"])


def test_winoground_oracle_cli(runner, cli, small_world, tmp_path):
    write_winoground(small_world, tmp_path / "winoground", n=8, layout="parquet")
    res = _run(runner, cli, tmp_path / "out", "--task", "winoground", "--data-root", str(tmp_path),
               "--model", f"py:{ORACLES}:probe_oracle", "--pretrained", str(small_world), "--model-name", "oracle")
    assert res["metrics"] == {"text_score": 100.0, "image_score": 100.0, "group_score": 100.0}
    assert res["details"]["by_collapsed_tag"]["Object"]["n"] == 4 and res["dataset"]["n_used"] == 8
    assert res["chance"]["group_score"] == pytest.approx(100 / 6)
    samples = (tmp_path / "out/oracle/winoground.samples.jsonl").read_text().splitlines()
    assert json.loads(samples[0])["scores"] == [[1.0, 0.0], [0.0, 1.0]]

    res = _run(runner, cli, tmp_path / "out", "--task", "winoground", "--data-root", str(tmp_path), "--seed", "5",
               "--model", f"py:{ORACLES}:probe_oracle_permuted", "--pretrained", str(small_world), "--model-name", "p")
    truth = caption_truth(small_world)
    perm = probe_permutation(len(load_world(small_world)["scenes"]), 5)
    scenes = two_shape_scenes(small_world)[:16]  # item k pairs scenes 2k and 2k+1 (write_winoground)
    s = np.array([[[float(img["id"] in {int(perm[t]) for t in truth[cap["captions"][0]]}) for img in pair]
                   for cap in pair] for pair in zip(scenes[0::2], scenes[1::2])])
    text, image = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1]), (s[:, 0, 0] > s[:, 0, 1]) & (
        s[:, 1, 1] > s[:, 1, 0])
    assert res["metrics"] == pytest.approx({"text_score": 100 * text.mean(), "image_score": 100 * image.mean(),
                                            "group_score": 100 * (text & image).mean()})


def test_aro_oracle_cli_exclusions_and_min_count(runner, cli, small_world, tmp_path):
    root = write_aro_vg(small_world, tmp_path / "aro")
    common = ["--pretrained", str(small_world), "--param", f"root={root}", "--model", f"py:{ORACLES}:probe_oracle"]
    res = _run(runner, cli, tmp_path / "out", "--task", "aro-vg-relation", *common, "--model-name", "oracle")
    assert res["metrics"]["macro_acc"] == 100.0 and res["metrics"]["acc"] == 100.0
    assert "acc.next_to" not in res["metrics"] and res["details"]["excluded_categories"] == ["next_to"]
    assert res["details"]["per_category"]["next_to"]["in_macro"] is False
    res = _run(runner, cli, tmp_path / "out", "--task", "aro-vg-attribution", *common, "--model-name", "oracle",
               "--param", "min_category_count=2")
    per = res["details"]["per_category"]
    assert res["metrics"]["macro_acc"] == 100.0
    assert {k[4:] for k in res["metrics"] if k.startswith("acc.")} == {c for c, v in per.items() if v["n"] >= 2}
    order = write_aro_order(small_world, tmp_path / "coco")
    res = _run(runner, cli, tmp_path / "out", "--task", "aro-coco-order", "--data-root", str(tmp_path),
               "--model", f"py:{ORACLES}:probe_oracle", "--pretrained", str(small_world), "--model-name", "oracle")
    assert res["metrics"]["acc"] == 100.0 and res["details"]["seed"] == 1
    assert res["chance"]["acc"] > 20 and order.is_dir()


def test_aro_vg_crops_the_image_to_the_box(small_world, tmp_path):
    root = write_aro_vg(small_world, tmp_path / "aro", box=(8, 4, 40, 30))
    model = load_model(TINY_OPEN_CLIP, device="cpu")
    ev = evaluate(model, ["aro-vg-relation"], output=tmp_path / "out", progress=False, log=lambda m: None,
                  params={"root": str(root)}, limit=4)[0]
    records = [json.loads(line) for line in ev.path.with_name("aro-vg-relation.samples.jsonl").read_text().splitlines()]
    raw = json.loads((root / "visual_genome_relation.json").read_text())[:4]
    crops = torch.stack([model.image_transform(Image.open(root / "images" / r["image_path"]).crop((8, 4, 48, 34)))
                         for r in raw])
    img = model.encode_images(crops)
    for n, r in enumerate(raw):
        txt = model.encode_texts([r["false_caption"], r["true_caption"]])
        assert records[n]["scores"] == pytest.approx((img[n] @ txt.T).tolist(), abs=1e-5)
