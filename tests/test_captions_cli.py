"""End-to-end CLI runs of the three caption task types on the shapes world (real readers, models, CLI).

- shapes-captions scores a predictions file with no model: ground-truth predictions reach K-P 100 and
  CHAIR 0, and every caption metric equals pycocoevalcap's COCOEvalCap run on the world's own COCO
  captions file and the same predictions file (ids, tokenisation, multiple references);
- shapes-faithfulness with the shapes oracle scores K-P = K-Pna = 100, CHAIR 0; with permuted ids it
  scores the analytic chance (expected K-P of a random pool caption) within sampling error;
- shapes-caption-transfer trains a tiny decoder on a tiny open_clip's patches and writes a captions
  file that shapes-captions rescores to the same numbers.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import TINY_OPEN_CLIP
from test_captions_cocoeval import patch_cocoevalcap

ORACLE = "py:sparc_eval.models.oracle:shapes_oracle"
CAPTION_KEYS = ["BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr"]
TINY_DECODER = ["steps=20", "batch_size=16", "d_model=32", "heads=2", "layers=1", "latents=4", "warmup_steps=5",
                "resampler_layers=1", "decode=beam", "beam_size=2", "train_split=train"]


def _run(runner, cli, *args):
    result = runner.invoke(cli, ["run", "-q", *args], catch_exceptions=False)
    return result


def _result(out: Path, task: str) -> dict:
    (path,) = out.rglob(f"{task}.json")
    return json.loads(path.read_text())


def _test_scenes(root: Path) -> list[dict]:
    world = json.loads((root / "world.json").read_text())
    return [s for s in world["scenes"] if s["split"] == "test"]


def _params(*kv: str) -> list[str]:
    return [a for p in kv for a in ("--param", p)]


def test_shapes_captions_ground_truth_predictions_agree_with_cocoevalcap(runner, cli, small_world, tmp_path,
                                                                          monkeypatch):
    from pycocotools.coco import COCO

    scenes = _test_scenes(small_world)
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"image_id": s["id"], "caption": s["captions"][0]} for s in scenes]))
    out = tmp_path / "out"
    res = _run(runner, cli, "--task", "shapes-captions", "--predictions", str(preds), "-o", str(out),
               *_params(f"root={small_world}"))
    assert res.exit_code == 0, res.output
    r = _result(out, "shapes-captions")
    m = r["metrics"]
    assert m["K-P"] == 100.0 and m["K-Pna"] == 100.0 and m["CHAIR_i"] == 0.0 and m["CHAIR_s"] == 0.0
    assert r["model"]["spec"] == "none" and r["dataset"]["n_used"] == len(scenes)
    assert r["details"]["caption_metrics"]["spice"].startswith("SPICE unavailable")

    ev = patch_cocoevalcap(monkeypatch)
    coco = COCO(str(small_world / "annotations" / "captions_test.json"))
    e = ev.COCOEvalCap(coco, coco.loadRes(str(preds)))
    e.params["image_id"] = [s["id"] for s in scenes]
    e.evaluate()
    for key, coco_key in zip(CAPTION_KEYS, ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]):
        assert m[key] == pytest.approx(100 * e.eval[coco_key], rel=1e-12), key


def test_shapes_captions_wrong_predictions_hallucinate_and_errors_are_clear(runner, cli, small_world, tmp_path):
    scenes = _test_scenes(small_world)
    shifted = [{"image_id": s["id"], "caption": scenes[(i + 1) % len(scenes)]["captions"][0]} for i, s in enumerate(scenes)]
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(shifted))
    out = tmp_path / "out"
    res = _run(runner, cli, "--task", "shapes-captions", "--predictions", str(preds), "-o", str(out),
               *_params(f"root={small_world}"), "--limit", "10")
    assert res.exit_code == 0, res.output
    r = _result(out, "shapes-captions")
    assert r["dataset"]["n_used"] == 10 and r["dataset"]["partial"]
    assert r["details"]["predictions_outside_evaluated_images"] == len(scenes) - 10
    assert r["metrics"]["CHAIR_s"] > 0 and r["metrics"]["K-P"] < 100
    records = [json.loads(ln) for ln in (out / r["model"]["name"] / "shapes-captions.samples.jsonl").read_text().splitlines()]
    halluc = sum(rec["chair_hallucinated"] for rec in records)
    assert r["metrics"]["CHAIR_i"] == pytest.approx(100 * halluc / sum(rec["chair_mentions"] for rec in records))

    preds.write_text(json.dumps(shifted[:-1]))
    res = _run(runner, cli, "--task", "shapes-captions", "--predictions", str(preds), "-o", str(out),
               *_params(f"root={small_world}"), "--overwrite")
    assert res.exit_code == 2 and "no caption for 1 of" in res.output and str(preds) in res.output
    res = _run(runner, cli, "--task", "shapes-captions", "--predictions", str(preds), "-o", str(out),
               *_params(f"root={small_world}", "allow_missing=true"), "--overwrite")
    assert res.exit_code == 0 and _result(out, "shapes-captions")["dataset"]["n_used"] == len(scenes) - 1
    preds.write_text(json.dumps(shifted + [{"image_id": 123456, "caption": "a red star"}]))
    res = _run(runner, cli, "--task", "shapes-captions", "--predictions", str(preds), "-o", str(out),
               *_params(f"root={small_world}"), "--overwrite")
    assert res.exit_code == 2 and "not in the dataset, e.g. ['123456']" in res.output
    res = _run(runner, cli, "--task", "shapes-captions", "-o", str(out), "--model", TINY_OPEN_CLIP,
               *_params(f"root={small_world}"))
    assert res.exit_code == 2 and "pass --predictions FILE" in res.output


def test_shapes_faithfulness_oracle_scores_best_and_permuted_scores_chance(runner, cli, shapes_root, tmp_path):
    out = tmp_path / "out"
    res = _run(runner, cli, "--task", "shapes-faithfulness", "--model", ORACLE, "--pretrained", str(shapes_root),
               "-o", str(out), "--model-name", "oracle")
    assert res.exit_code == 0, res.output
    r = _result(out / "oracle", "shapes-faithfulness")
    assert r["metrics"] == {"K-P": 100.0, "K-Pna": 100.0, "CHAIR_i": 0.0, "CHAIR_s": 0.0}
    assert r["details"]["own_caption_retrieved"] == r["dataset"]["n_used"] == 1000
    chance = r["chance"]
    assert 20 < chance["K-Pna"] < chance["K-P"] < 60

    res = _run(runner, cli, "--task", "shapes-faithfulness", "--model", ORACLE + "_permuted", "--pretrained",
               str(shapes_root), "-o", str(out), "--model-name", "permuted", *_params("chance=false"))
    assert res.exit_code == 0, res.output
    p = _result(out / "permuted", "shapes-faithfulness")
    assert p["chance"] == {}
    for key in ("K-P", "K-Pna"):
        lo, hi = p["intervals"][key]
        half = (hi - lo) / 2
        assert abs(p["metrics"][key] - chance[key]) < 2 * half, (key, p["metrics"][key], chance[key], half)
    assert p["metrics"]["CHAIR_s"] > 50


def test_shapes_faithfulness_with_a_real_model(runner, cli, small_world, tmp_path):
    out = tmp_path / "out"
    res = _run(runner, cli, "--task", "shapes-faithfulness", "--model", TINY_OPEN_CLIP, "-o", str(out),
               *_params(f"root={small_world}", "kp_references=union"))
    assert res.exit_code == 0, res.output
    r = _result(out, "shapes-faithfulness")
    assert r["task"]["config"]["params"]["kp_references"] == "union"
    assert all(0 <= r["metrics"][k] <= 100 for k in r["metrics"]) and set(r["intervals"]) == set(r["metrics"])
    records = [json.loads(ln) for ln in next(out.rglob("*.samples.jsonl")).read_text().splitlines()]
    assert len(records) == r["dataset"]["n_used"] == 40
    assert r["metrics"]["K-P"] == pytest.approx(100 * sum(x["kp"] for x in records) / 40)
    assert {"retrieved_caption_id", "own_caption", "ties", "caption"} <= set(records[0])


def test_shapes_caption_transfer_trains_decodes_and_rescores(runner, cli, small_world, tmp_path):
    out = tmp_path / "out"
    res = _run(runner, cli, "--task", "shapes-caption-transfer", "--model", TINY_OPEN_CLIP, "-o", str(out),
               "--limit", "16", *_params(f"root={small_world}", *TINY_DECODER))
    assert res.exit_code == 0, res.output
    r = _result(out, "shapes-caption-transfer")
    m = r["metrics"]
    assert set(m) == {"K-P", "K-Pna", "CHAIR_i", "CHAIR_s", *CAPTION_KEYS}
    assert all(math.isfinite(v) and v >= 0 for v in m.values())
    t = r["details"]["training"]
    assert t["steps"] == 20 and t["images"] == 48 and t["final_loss"] < t["first_loss"]
    captions_file = Path(r["details"]["captions_file"])
    rows = json.loads(captions_file.read_text())
    assert len(rows) == r["dataset"]["n_used"] == 16 and all(isinstance(x["image_id"], int) for x in rows)

    res = _run(runner, cli, "--task", "shapes-captions", "--predictions", str(captions_file), "-o", str(out),
               "--limit", "16", *_params(f"root={small_world}"))
    assert res.exit_code == 0, res.output
    again = _result(out, "shapes-captions")["metrics"]
    assert again == pytest.approx(m, rel=1e-12)
