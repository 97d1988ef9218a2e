"""Few-iteration detection and segmentation transfer on the shapes world through the CLI.

The runs use the ``quick`` schedule cut to a few iterations and a few evaluation images (``--limit``)
to fit the test budget; they check the plumbing (metrics from pycocotools / mmseg, files, checkpoints,
frozen weights, resume), not what a 4-iteration detector learns.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

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
    assert [p.name for p in out.rglob("*.json")] == ["shapes-det-transfer.json"]
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


def test_linear_probe_refuses_finetuning(runner, cli, small_world, tmp_path):
    args = ["run", "-q", "--task", "shapes-linear-seg", "--model", TINY_OPEN_CLIP, "--param",
            f"root={small_world / 'VOCdevkit/VOC2012'}", "--param", "backbone=finetune", "-o", str(tmp_path)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and "linear head is a probe of frozen features" in result.output


def test_bad_training_split_configs(runner, cli, small_world, tmp_path):
    voc = small_world / "VOCdevkit/VOC2012"
    cases = [("shapes-seg-transfer", voc, "train_dataset={split: val}", "the training split is the evaluation split"),
             ("shapes-seg-transfer", voc, "train_dataset={bogus: 1}", "train_dataset.bogus: not a dataset key"),
             ("shapes-det-transfer", small_world, "train_annotations=null", "trains on a training split")]
    for task, root, param, message in cases:
        args = ["run", "-q", "--task", task, "--model", TINY_OPEN_CLIP, "--param", f"root={root}", "--param", param,
                "-o", str(tmp_path)]
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and message in result.output, (param, result.output)
