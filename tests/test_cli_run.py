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
from conftest import TINY_OPEN_CLIP, tasks_on

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


RN_TINY = "open_clip:RN-Tiny-test"
NO_PATCHES_AT_RUNTIME = '''
from sparc_eval.models import load_model
from sparc_eval.models.base import UnsupportedCapability
from sparc_eval.models.open_clip_adapter import OpenClipAdapter


class NoPatchesAtRuntime(OpenClipAdapter):
    def _encode_image_patches(self, images):
        raise UnsupportedCapability("this checkpoint's patch tokens are not in the joint space")


def build(seed=0):
    m = load_model("open_clip:ViT-Tiny-8-64", seed=seed)
    return NoPatchesAtRuntime(m.model, m.tokenizer, identity=m.identity, image_transform=m.image_transform,
                              preprocessing=m.preprocessing)
'''


@pytest.fixture(scope="module")
def rn_tiny(tmp_path_factory):
    """A tiny random-init open_clip ModifiedResNet (a ConvNet: no patch tokens) registered as RN-Tiny-test."""
    import open_clip

    cfg = tmp_path_factory.mktemp("rn") / "RN-Tiny-test.json"
    cfg.write_text(json.dumps({"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16,
                                                               "patch_size": None},
                               "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                                            "layers": 1}}))
    open_clip.add_model_config(cfg)
    return RN_TINY


def test_dense_task_the_model_cannot_serve_is_unsupported_in_a_suite(runner, cli, rn_tiny, small_world, tmp_path):
    """A ConvNet (told by ``supports``) or a model that finds out mid-task (UnsupportedCapability) does not
    stop a multi-task run: the task is recorded as unsupported with the reason; alone, it is an error."""
    from sparc_eval.api import evaluate
    from sparc_eval.models import load_model

    rn = load_model(rn_tiny)
    assert not rn.supports("image_patches") and not rn.supports("image_features") and rn.supports("text_tokens")
    vit = load_model(TINY_OPEN_CLIP)
    assert all(vit.supports(c) for c in ("image_patches", "image_features", "text_tokens"))

    inc = tasks_on(small_world, tmp_path / "tasks", ("shapes-retrieval", "shapes-zeroshot-seg"))
    two = ["--task", "shapes-retrieval", "--task", "shapes-zeroshot-seg", "--include-path", inc]
    r = run(runner, cli, *two, "--model", rn_tiny, "-o", tmp_path / "out", "--no-cache")
    assert r.exit_code == 0, r.output
    assert "unsupported" in r.output and "image_patches" in r.output
    assert (tmp_path / "out" / "open_clip-rn-tiny-test" / "shapes-retrieval.json").is_file()
    assert not (tmp_path / "out" / "open_clip-rn-tiny-test" / "shapes-zeroshot-seg.json").exists()
    _err(runner.invoke(cli, ["run", "--task", "shapes-zeroshot-seg", "--include-path", str(inc), "--model", rn_tiny]),
         "needs model outputs ['image_patches']")

    src = tmp_path / "partial.py"
    src.write_text(NO_PATCHES_AT_RUNTIME)
    evals = evaluate(f"py:{src}:build", ["shapes-retrieval", "shapes-zeroshot-seg"], include=[inc], write=False,
                     use_cache=False, progress=False, log=lambda m: None)
    assert [e.status for e in evals] == ["computed", "unsupported"]
    assert "not in the joint space" in evals[1].result["reason"]
    assert evals[1].metrics == {} and evals[1].main_metric is None
    r = runner.invoke(cli, ["run", "--task", "shapes-zeroshot-seg", "--include-path", str(inc), "--model",
                            f"py:{src}:build", "--no-cache"])
    _err(r, "not in the joint space")


def test_results_of_another_model_are_not_replaced_under_the_same_name(runner, cli, small_world, tmp_path):
    """open_clip's log layout (RUN/checkpoints/epoch_1.pt) gives the two runs different default names;
    forcing one name onto both is refused unless --overwrite."""
    from sparc_eval.models import load_model

    files = []
    for i, run_name in enumerate(("runA", "runB")):
        f = tmp_path / "logs" / run_name / "checkpoints" / "epoch_1.pt"
        f.parent.mkdir(parents=True)
        torch.save(load_model(TINY_OPEN_CLIP, seed=i + 1).model.state_dict(), f)
        files.append(f)
    base = ["--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--param", f"root={small_world}",
            "-o", tmp_path / "res", "--no-cache"]
    for f in files:
        assert run(runner, cli, *base, "--pretrained", f).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["open_clip-vit-tiny-8-64-runa-epoch_1",
                                                                    "open_clip-vit-tiny-8-64-runb-epoch_1"]
    clash = ["--pretrained", files[1], "--model-name", "open_clip-vit-tiny-8-64-runa-epoch_1"]
    _err(runner.invoke(cli, ["run", *map(str, base + clash)]), "holds the result of another model",
         "weights_sha256", "--model-name")
    other = [str(a) for a in base]
    other[other.index(TINY_OPEN_CLIP)] = ORACLE  # a second --model would add a model, not replace the first
    _err(runner.invoke(cli, ["run", *other, "--pretrained", str(small_world),
                             "--model-name", "open_clip-vit-tiny-8-64-runa-epoch_1"]), "spec")
    assert run(runner, cli, *base, *clash, "--overwrite").exit_code == 0
    res, _ = read(tmp_path / "res", "open_clip-vit-tiny-8-64-runa-epoch_1")
    assert res["model"]["pretrained"] == str(files[1])


def test_cli_and_api_runs_share_the_skip_key(runner, cli, small_world, tmp_path):
    """The CLI's unset preprocessing options are the API's empty preprocessing: a rerun from Python skips."""
    from sparc_eval.api import evaluate

    args = ["--task", "shapes-retrieval", "--model", ORACLE, "--pretrained", small_world, "--param",
            f"root={small_world}", "-o", tmp_path, "--model-name", "oracle"]
    assert run(runner, cli, *args).exit_code == 0
    again = evaluate(ORACLE, ["shapes-retrieval"], pretrained=str(small_world), params=[f"root={small_world}"],
                     output=tmp_path, model_name="oracle", progress=False, log=lambda m: None)
    assert again[0].status == "skipped"
    fp16 = evaluate(ORACLE, ["shapes-retrieval"], pretrained=str(small_world), params=[f"root={small_world}"],
                    output=tmp_path, model_name="oracle", progress=False, log=lambda m: None, cache_dtype="fp16")
    assert fp16[0].status == "computed"  # stored precision changes numbers: not the same run
    speed = evaluate(ORACLE, ["shapes-retrieval"], pretrained=str(small_world),
                     params=[f"root={small_world}", "block=3"], output=tmp_path, model_name="oracle",
                     progress=False, log=lambda m: None, cache_dtype="fp16")
    assert speed[0].status == "skipped"  # block size changes speed only


def test_bad_device_and_resolution_options(runner, cli, rn_tiny, small_world, hf_clip_dir, tmp_path):
    base = ["--task", "shapes-retrieval", "--param", f"root={small_world}", "-o", str(tmp_path)]
    _err(runner.invoke(cli, ["run", *base, "--model", TINY_OPEN_CLIP, "--device", "gpu"]),
         "--device 'gpu': not a device")
    _err(runner.invoke(cli, ["run", *base, "--model", rn_tiny, "--resolution", "96"]),
         "--resolution 96 needs a ViT", "ModifiedResNet")
    r = run(runner, cli, *base, "--model", f"hf:{hf_clip_dir}", "--resolution", "96", "--model-name", "hf96",
            "--no-cache")
    assert r.exit_code == 0, r.output
    res, _ = read(tmp_path, "hf96")
    assert res["preprocessing"]["resolution"] == 96 and "interpolated" in res["preprocessing"]["resized"]
