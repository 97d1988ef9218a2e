"""Few-iteration detection and segmentation transfer on the shapes world through the CLI.

The runs use the ``quick`` schedule cut to a few iterations and a few evaluation images (``--limit``)
to fit the test budget; they check the plumbing (metrics from pycocotools / mmseg, files, checkpoints,
frozen weights, resume), not what a 4-iteration detector learns.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_OPEN_CLIP

from sparc_eval.models import load_model
from sparc_eval.transfer.towers import tower_from_adapter


def _run(runner, cli, out: Path, task: str, root: Path, *extra: str) -> dict:
    args = ["run", "-q", "--task", task, "--model", TINY_OPEN_CLIP, "--param", f"root={root}", "--param",
            "schedule=quick", "--num-workers", "0", "-o", str(out), *extra]
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "open_clip-vit-tiny-8-64" / f"{task}.json").read_text())


def _backbone_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    return {k[len("backbone.tower."):]: v for k, v in state.items() if k.startswith("backbone.tower.")}


def _check_metrics(res: dict, keys: list[str]) -> None:
    assert set(keys) <= set(res["metrics"])
    for k in keys:
        assert math.isfinite(res["metrics"][k]) and 0.0 <= res["metrics"][k] <= 100.0, (k, res["metrics"][k])


def test_detection_transfer_frozen_writes_ap_config_and_safe_checkpoint(runner, cli, small_world, tmp_path):
    out = tmp_path / "results"
    res = _run(runner, cli, out, "shapes-det-transfer", small_world, "--param", "iters=4", "--limit", "4")
    _check_metrics(res, ["bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APs", "segm_AP", "segm_AP50", "segm_AP75"])
    d = res["details"]
    assert (d["recipe"], d["backbone"], d["iterations"], d["seed"], d["schedule"]["name"]) == (
        "mask_rcnn", "frozen", 4, 0, "quick")
    assert d["category_ids"] == [1, 3, 4, 7, 8, 10] and d["evaluated_images"] == 4
    assert res["dataset"]["n_used"] == 4 and res["dataset"]["partial"]
    model_dir = out / "open_clip-vit-tiny-8-64"
    # the generated config is saved beside the result and loads with mmengine (without the live tower)
    from mmengine.config import Config

    cfg = Config.fromfile(str(model_dir / d["config_file"]))
    assert cfg.model.backbone.tower_key is None and cfg.model.backbone.model == TINY_OPEN_CLIP
    assert cfg.train_cfg.max_iters == 4
    # the checkpoint loads with weights_only=True and its frozen backbone equals the model's own weights
    tower = _backbone_weights(model_dir / d["checkpoint"])
    fresh = tower_from_adapter(load_model(TINY_OPEN_CLIP, device="cpu", seed=0)).state_dict()
    assert tower.keys() == fresh.keys() and all(torch.equal(tower[k], fresh[k]) for k in fresh)
    assert d["backbone_unchanged"] and d["backbone_sha256_before"] == d["backbone_sha256_after"]
    # mmengine's files hold no JSON that results scanners would mistake for a result
    assert [p.name for p in out.rglob("*.json") if not p.name.startswith(".")] == ["shapes-det-transfer.json"]
    # an identical run resumes from the last checkpoint (nothing left to train) and scores the same
    again = _run(runner, cli, out, "shapes-det-transfer", small_world, "--param", "iters=4", "--limit", "4",
                 "--overwrite")
    assert again["details"]["resumed_from"] == d["checkpoint"] and again["metrics"] == res["metrics"]


def test_segmentation_transfer_finetune_changes_the_backbone(runner, cli, small_world, tmp_path):
    res = _run(runner, cli, tmp_path, "shapes-seg-transfer", small_world / "VOCdevkit/VOC2012", "--param", "iters=3",
               "--param", "backbone=finetune", "--limit", "4")
    _check_metrics(res, ["mIoU", "aAcc", "mAcc"])
    d = res["details"]
    assert (d["recipe"], d["backbone"], d["layer_decay"], d["iterations"]) == ("upernet", "finetune", 0.65, 3)
    assert not d["backbone_unchanged"]
    assert set(d["per_class"]["IoU"]) == {"background", "circle", "square", "triangle", "diamond", "star", "cross"}
    assert res["dataset"]["n_used"] == 4 and set(res["intervals"]) == {"mIoU", "aAcc", "mAcc"}
    samples = (tmp_path / "open_clip-vit-tiny-8-64" / "shapes-seg-transfer.samples.jsonl").read_text().splitlines()
    assert len(samples) == 4 and len(json.loads(samples[0])["intersect"]) == 7


def test_linear_segmentation_probe_keeps_the_backbone_frozen(runner, cli, small_world, tmp_path):
    res = _run(runner, cli, tmp_path, "shapes-linear-seg", small_world / "VOCdevkit/VOC2012", "--param", "iters=3",
               "--limit", "4")
    _check_metrics(res, ["mIoU", "aAcc", "mAcc"])
    d = res["details"]
    assert (d["recipe"], d["backbone"], d["backbone_unchanged"]) == ("linear", "frozen", True)
    tower = _backbone_weights(tmp_path / "open_clip-vit-tiny-8-64" / d["checkpoint"])
    fresh = tower_from_adapter(load_model(TINY_OPEN_CLIP, device="cpu", seed=0), final_norm=True).state_dict()
    assert all(torch.equal(tower[k], fresh[k]) for k in fresh) and "norm.weight" in tower
    # chance: the larger of prior sampling and the majority class, from the evaluated masks' class areas
    from sparc_eval.metrics.controls import segmentation_chance

    lines = (tmp_path / "open_clip-vit-tiny-8-64" / "shapes-linear-seg.samples.jsonl").read_text().splitlines()
    want = segmentation_chance([json.loads(x)["label_area"] for x in lines], "standard")
    assert res["chance"] == pytest.approx(want.values) and d["chance_method"] == want.method


def test_linear_probe_refuses_finetuning(runner, cli, small_world, tmp_path):
    args = ["run", "-q", "--task", "shapes-linear-seg", "--model", TINY_OPEN_CLIP, "--param",
            f"root={small_world / 'VOCdevkit/VOC2012'}", "--param", "backbone=finetune", "-o", str(tmp_path)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and "linear head is a probe of frozen features" in result.output


def test_bad_training_split_configs(runner, cli, small_world, tmp_path):
    voc = small_world / "VOCdevkit/VOC2012"
    cases = [("shapes-seg-transfer", voc, "train_dataset={split: val}", "the training split is the evaluation split"),
             ("shapes-seg-transfer", voc, "train_dataset={bogus: 1}", "train_dataset.bogus: not a dataset key"),
             ("shapes-seg-transfer", voc, "batch_size=1", "UperNet's BatchNorm needs at least 2 images per process"),
             ("shapes-det-transfer", small_world, "train_annotations=null", "trains on a training split")]
    for task, root, param, message in cases:
        args = ["run", "-q", "--task", task, "--model", TINY_OPEN_CLIP, "--param", f"root={root}", "--param", param,
                "-o", str(tmp_path)]
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and message in result.output, (param, result.output)


def test_work_folder_follows_the_backbone_weights(runner, cli, small_world, tmp_path):
    """``sparc:RUN`` names the run's latest checkpoint: once the run trains on, a transfer run must start
    afresh in a new work folder instead of resuming (and reporting) the old weights' detector."""
    import yaml

    from sparc_eval.pretrain.config import load_config
    from sparc_eval.pretrain.train import train

    run = tmp_path / "run"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "output_dir": str(run), "steps": 2, "batch_size": 8, "device": "cpu", "checkpoint_every": 1,
        "model": {"arch": "ViT-Tiny-8-64", "embed_dim": 32, "vision_cfg": {"layers": 1, "width": 64, "head_width": 32},
                  "text_cfg": {"layers": 1, "width": 64, "heads": 2, "context_length": 16}},
        "loss": {"name": "sparc"}, "data": {"format": "shapes", "root": str(small_world), "num_workers": 0}}))
    cfg = load_config(tmp_path / "c.yaml")
    voc = small_world / "VOCdevkit/VOC2012"
    args = ["run", "-q", "--task", "shapes-linear-seg", "--model", f"sparc:{run}", "--param", f"root={voc}",
            "--param", "schedule=quick", "--param", "iters=2", "--num-workers", "0", "--limit", "2",
            "-o", str(tmp_path / "results"), "--overwrite"]
    details = []
    for _ in range(2):  # step 1, then step 2 of the same run
        train(cfg, resume=True, stop_after=1, progress=False, log=lambda m: None)
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        details.append(json.loads(next((tmp_path / "results").rglob("shapes-linear-seg.json")).read_text())["details"])
    first, second = details
    assert first["config_sha256"] == second["config_sha256"]  # the same generated config ...
    assert first["backbone_sha256_before"] != second["backbone_sha256_before"]  # ... on other weights
    assert first["work_dir"] != second["work_dir"] and second["resumed_from"] is None


def test_last_checkpoint_is_followed_only_inside_the_work_folder(tmp_path):
    from sparc_eval.transfer.runner import latest_checkpoint, work_key

    work = tmp_path / "work"
    work.mkdir()
    assert latest_checkpoint(work) is None
    (tmp_path / "iter_8.pth").write_bytes(b"elsewhere")
    for named in (tmp_path / "iter_8.pth", "/etc/passwd", work / "notes.txt", work / "iter_9.pth"):
        (work / "last_checkpoint").write_text(str(named))
        assert latest_checkpoint(work) is None, named
    (work / "iter_4.pth").write_bytes(b"ours")
    for named in (work / "iter_4.pth", "/old/place/of/the/results/work/iter_4.pth"):  # a moved results folder
        (work / "last_checkpoint").write_text(str(named))
        assert latest_checkpoint(work) == work / "iter_4.pth", named
    cfg = {"model": {"backbone": {"tower_key": "abc"}}, "log_level": "INFO", "train_cfg": {"max_iters": 4}}
    sha, key = work_key(cfg, "0" * 64)
    live_key_and_log_level_aside = {"model": {"backbone": {"tower_key": "other"}}, "log_level": "WARNING",
                                    "train_cfg": {"max_iters": 4}}
    assert work_key(live_key_and_log_level_aside, "0" * 64) == (sha, key)
    assert work_key(cfg, "1" * 64)[0] == sha and work_key(cfg, "1" * 64)[1] != key


def test_transfer_needs_torch_2_6():
    from sparc_eval.transfer.params import MIN_TORCH, require_stack, torch_release

    assert [torch_release(v) for v in ("2.5.1+cu121", "2.6.0a0+git1234", "2.10.0", "3.0")] == [
        (2, 5), (2, 6), (2, 10), (3, 0)]
    assert torch_release("2.5.1") < MIN_TORCH <= torch_release("2.6.0") < torch_release("2.10.0")
    assert torch_release(torch.__version__) >= MIN_TORCH
    require_stack()  # the installed stack passes


def test_segmentation_transfer_under_cpu_torchrun(small_world, tmp_path):
    """Two gloo processes: no SyncBatchNorm on the CPU (torch's refuses CPU tensors), BatchNorm per process."""
    import os
    import subprocess
    import sys

    from mmengine.config import Config

    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "sparc_eval",
           "run", "-q", "--task", "shapes-seg-transfer", "--model", TINY_OPEN_CLIP, "--param",
           f"root={small_world / 'VOCdevkit/VOC2012'}", "--param", "schedule=quick", "--param", "iters=2", "--param",
           "batch_size=4", "--num-workers", "0", "--limit", "4", "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "open_clip-vit-tiny-8-64" / "shapes-seg-transfer.json").read_text())
    _check_metrics(res, ["mIoU", "aAcc", "mAcc"])
    d = res["details"]
    assert (d["world_size"], d["iterations"], d["schedule"]["batch_per_gpu"]) == (2, 2, 2)
    assert "sync_bn" not in Config.fromfile(str(out / "open_clip-vit-tiny-8-64" / d["config_file"]))
