"""`sparc-eval run` end to end on the shapes world: real readers, models, results, cache and errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_OPEN_CLIP

from sparc_eval.data.synthetic import load_world

ORACLE = "py:sparc_eval.models.oracle:shapes_oracle"
PERMUTED = "py:sparc_eval.models.oracle:shapes_oracle_permuted"


def run(runner, cli, *args):
    result = runner.invoke(cli, ["run", "-q", *map(str, args)], catch_exceptions=False)
    return result


def read(out: Path, model: str, task: str = "shapes-retrieval"):
    path = out / model / f"{task}.json"
    result = json.loads(path.read_text())
    samples = [json.loads(line) for line in path.with_name(f"{task}.samples.jsonl").read_text().splitlines()]
    return result, samples


def test_tiny_open_clip_end_to_end(runner, cli, small_world, tmp_path):
    out = tmp_path / "res"
    r = run(runner, cli, "--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--param", f"root={small_world}",
            "-o", out, "--batch-size", "16")
    assert r.exit_code == 0, r.output
    assert "shapes-retrieval" in r.output and "mean_R@1" in r.output
    res, samples = read(out, "open_clip-vit-tiny-8-64")
    world = load_world(small_world)
    test = [s for s in world["scenes"] if s["split"] == "test"]
    n_caps = sum(len(s["captions"]) for s in test)
    assert res["dataset"]["n_used"] == len(test) and res["dataset"]["partial"] is False
    assert len(samples) == len(test) + n_caps
    assert {s["direction"] for s in samples} == {"i2t", "t2i"}
    assert set(res["metrics"]) == {f"{d}_R@{k}" for d in ("i2t", "t2i", "mean") for k in (1, 5, 10)}
    for key, (lo, hi) in res["intervals"].items():
        assert lo <= res["metrics"][key] <= hi
    assert res["chance"]["t2i_R@5"] == pytest.approx(100 * 5 / len(test))
    assert res["model"]["spec"] == TINY_OPEN_CLIP and len(res["model"]["weights_sha256"]) == 64
    assert res["preprocessing"]["resolution"] == 64 and res["preprocessing"]["context_length"] == 32
    assert res["provenance"]["batch_size"] == 16 and res["provenance"]["torch"] == torch.__version__
    assert res["task"]["version"] == 1 and len(res["task"]["config_sha256"]) == 64
    # recomputing the metrics from the per-sample records gives the reported values
    for k in (1, 5, 10):
        i2t = np.mean([s[f"i2t_R@{k}"] for s in samples if s["direction"] == "i2t"]) * 100
        assert i2t == pytest.approx(res["metrics"][f"i2t_R@{k}"])


def test_hf_clip_through_the_cli(runner, cli, small_world, hf_clip_dir, tmp_path):
    r = run(runner, cli, "--task", "shapes-retrieval", "--model", f"hf:{hf_clip_dir}", "--param",
            f"root={small_world}", "-o", tmp_path, "--model-name", "hf-tiny")
    assert r.exit_code == 0, r.output
    res, _ = read(tmp_path, "hf-tiny")
    assert res["preprocessing"]["image_pipeline"] == "hf_processor"
    assert 0 <= res["metrics"]["mean_R@1"] <= 100


def test_oracle_scores_exactly_100(runner, cli, small_world, tmp_path):
    r = run(runner, cli, "--task", "shapes-retrieval", "--model", ORACLE, "--pretrained", small_world,
            "--param", f"root={small_world}", "-o", tmp_path, "--model-name", "oracle")
    assert r.exit_code == 0, r.output
    res, _ = read(tmp_path, "oracle")
    assert all(v == 100.0 for v in res["metrics"].values()), res["metrics"]


def test_permuted_oracle_scores_chance(runner, cli, small_world, tmp_path):
    r = run(runner, cli, "--task", "shapes-retrieval", "--model", PERMUTED, "--pretrained", small_world,
            "--param", f"root={small_world}", "-o", tmp_path, "--model-name", "permuted", "--seed", "3")
    assert r.exit_code == 0, r.output
    res, _ = read(tmp_path, "permuted")
    world = load_world(small_world)
    test_ids = {s["id"] for s in world["scenes"] if s["split"] == "test"}
    n = len(test_ids)
    sigma = np.random.default_rng(3).permutation(len(world["scenes"]))
    targets: dict[str, set[int]] = {}
    for scene in world["scenes"]:
        for cap in scene["captions"]:
            targets.setdefault(cap, set()).add(int(sigma[scene["id"]]))
    # Analytic value given the permutation: a caption is embedded at the permuted ids of every scene that has
    # it (train captions may repeat a test caption). The t pool images among those tie at the top; the rest
    # tie at zero. Its own image hits with probability min(k, t)/t if it is among the t, else (k - t)/(n - t).
    for k in (1, 5, 10):
        expect = []
        for scene in (s for s in world["scenes"] if s["split"] == "test"):
            for cap in scene["captions"]:
                top = targets[cap] & test_ids
                t = len(top)
                p = min(k, t) / t if scene["id"] in top else min(max((k - t) / (n - t), 0.0), 1.0)
                expect.append(p)
        assert res["metrics"][f"t2i_R@{k}"] == pytest.approx(100 * np.mean(expect))
        assert abs(res["metrics"][f"t2i_R@{k}"] - res["chance"][f"t2i_R@{k}"]) < 100 * 3 / n


def test_rerun_skips_overwrite_uses_cache_and_changes_miss(runner, cli, small_world, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARC_EVAL_CACHE", str(tmp_path / "cache"))
    base = ["--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--param", f"root={small_world}", "-o",
            tmp_path / "res"]
    assert run(runner, cli, *base).exit_code == 0
    first, _ = read(tmp_path / "res", "open_clip-vit-tiny-8-64")
    assert first["provenance"]["engine"]["images_encoded"] > 0

    again = runner.invoke(cli, ["run", *map(str, base)])
    assert again.exit_code == 0 and "identical result exists" in again.output and "skipped" in again.output

    assert run(runner, cli, *base, "--overwrite").exit_code == 0
    cached, _ = read(tmp_path / "res", "open_clip-vit-tiny-8-64")
    eng = cached["provenance"]["engine"]
    assert eng["images_encoded"] == 0 and eng["texts_encoded"] == 0 and eng["forward_batches"] == 0
    assert cached["metrics"] == first["metrics"]

    # a changed transform misses the image cache (texts are unaffected by image preprocessing)
    assert run(runner, cli, *base, "--resolution", "48", "--model-name", "res48").exit_code == 0
    eng48 = read(tmp_path / "res", "res48")[0]["provenance"]["engine"]
    assert eng48["images_encoded"] > 0 and eng48["texts_encoded"] == 0

    # a changed weight file misses everything
    from sparc_eval.models import load_model

    m = load_model(TINY_OPEN_CLIP, seed=5)
    torch.save(m.model.state_dict(), tmp_path / "w.pt")
    assert run(runner, cli, *base, "--pretrained", tmp_path / "w.pt", "--model-name", "w").exit_code == 0
    engw = read(tmp_path / "res", "w")[0]["provenance"]["engine"]
    assert engw["images_encoded"] > 0 and engw["texts_encoded"] > 0


def test_limit_marks_partial(runner, cli, small_world, tmp_path):
    r = run(runner, cli, "--task", "shapes-retrieval", "--model", ORACLE, "--pretrained", small_world,
            "--param", f"root={small_world}", "-o", tmp_path, "--model-name", "o", "--limit", "7")
    assert r.exit_code == 0, r.output
    res, samples = read(tmp_path, "o")
    assert res["dataset"]["partial"] is True and res["dataset"]["n_used"] == 7 and res["dataset"]["limit"] == 7
    assert sum(s["direction"] == "i2t" for s in samples) == 7


def _err(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in result.output, result.output


def test_bad_inputs_give_clear_errors(runner, cli, small_world, tmp_path, monkeypatch):
    monkeypatch.delenv("SPARC_EVAL_DATA", raising=False)
    _err(runner.invoke(cli, ["run", "--task", "shapes-retreival", "--model", TINY_OPEN_CLIP]),
         "Unknown task 'shapes-retreival'", "Did you mean: shapes-retrieval")
    _err(runner.invoke(cli, ["run", "--task", "coco-retrieval", "--model", TINY_OPEN_CLIP]),
         "needs a data root", "--data-root")
    _err(runner.invoke(cli, ["run", "--task", "coco-retrieval", "--model", TINY_OPEN_CLIP, "--data-root",
                             tmp_path / "nowhere"]), "does not exist")
    _err(runner.invoke(cli, ["run", "--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--param", "nope=1"]),
         "--param nope", "recall_at")
    _err(runner.invoke(cli, ["run", "--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--param",
                             "recall_at=abc"]), "recall_at", "expected int")

    world = tmp_path / "world"
    shutil.copytree(small_world, world)
    ann = world / "dataset_shapes.json"
    good = ann.read_text()
    ann.write_text(good[:200])
    _err(runner.invoke(cli, ["run", "--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--param",
                             f"root={world}", "-o", tmp_path / "r"]), "dataset_shapes.json", "malformed JSON")
    ann.write_text(good)
    test_img = next(s for s in load_world(world)["scenes"] if s["split"] == "test")["file"]
    (world / test_img).write_bytes(b"not an image at all")
    _err(runner.invoke(cli, ["run", "--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--param",
                             f"root={world}", "-o", tmp_path / "r", "--no-cache"]), test_img, "not a readable image")
    (world / test_img).unlink()
    _err(runner.invoke(cli, ["run", "--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--param",
                             f"root={world}", "-o", tmp_path / "r"]), "image file(s) missing", Path(test_img).name)
    assert not list((tmp_path / "r").rglob("*.json"))  # nothing half-written

    from sparc_eval.models import load_model

    torch.save(load_model("open_clip:ViT-Small-16-224").model.state_dict(), tmp_path / "small.pt")
    _err(runner.invoke(cli, ["run", "--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--pretrained",
                             tmp_path / "small.pt", "--param", f"root={small_world}"]),
         "weights do not fit open_clip:ViT-Tiny-8-64", "shape mismatches")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "small.pt").read_bytes()[:1000])
    _err(runner.invoke(cli, ["run", "--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--pretrained",
                             tmp_path / "cut.pt", "--param", f"root={small_world}"]), "cut.pt", "truncated")


def test_data_verify(runner, cli, small_world, tmp_path):
    ok = runner.invoke(cli, ["data", "verify", "shapes-retrieval", "--param", f"root={small_world}"])
    assert ok.exit_code == 0 and "OK" in ok.output
    world = tmp_path / "world"
    shutil.copytree(small_world, world)
    victim = next(s for s in load_world(world)["scenes"] if s["split"] == "test")["file"]
    (world / victim).unlink()
    bad = runner.invoke(cli, ["data", "verify", "shapes", "--param", f"root={world}"])
    assert bad.exit_code == 1 and Path(victim).name in bad.output and "expected layout" in bad.output
    missing = runner.invoke(cli, ["data", "verify", "coco", "--data-root", tmp_path / "none"])
    assert missing.exit_code == 1 and "does not exist" in missing.output and "dataset_coco.json" in missing.output


def test_listings(runner, cli):
    tasks = runner.invoke(cli, ["list", "tasks"])
    assert tasks.exit_code == 0 and "coco-retrieval" in tasks.output and "flickr30k-retrieval" in tasks.output
    assert "demo" in runner.invoke(cli, ["list", "suites"]).output
    models = runner.invoke(cli, ["list", "models"]).output
    assert "open_clip" in models and "hf" in models and "py" in models
    assert "CHAIR_i" in runner.invoke(cli, ["list", "metrics"]).output
    assert "karpathy" in runner.invoke(cli, ["list", "formats"]).output


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "sparc_eval", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "run" in out.stdout and "data" in out.stdout
