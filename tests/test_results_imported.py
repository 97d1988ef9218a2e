"""CLIP_benchmark result JSONs, written by CLIP_benchmark 1.6.2's own ``eval`` code path, imported as results.

The JSONs come from ``clip_benchmark.cli.main_eval`` run in-process (so the tiny architecture registered by
sparc-eval loads) on shapes-world exports in CLIP_benchmark's layouts, with a weights file as --pretrained.
The imported numbers must equal sparc-eval's own evaluation of the same weights on the task of the same
CLIP_benchmark name: that pins the key mapping (CLIP_benchmark's image_retrieval is our t2i) and the units.
"""
from __future__ import annotations

import json
import math
import sys

import pytest
import yaml
from cb_layouts import export_mscoco, export_wds_classification
from conftest import TINY_OPEN_CLIP

from sparc_eval.clip_benchmark_names import task_config
from sparc_eval.errors import ResultsError
from sparc_eval.results.imported import import_clip_benchmark, looks_like_clip_benchmark


@pytest.fixture(scope="module")
def cb_results(small_world, tmp_path_factory):
    """{dataset name: path of the JSON clip_benchmark eval wrote}, and the weights file it evaluated."""
    import torch
    from clip_benchmark.cli import get_parser_args, main_eval
    from safetensors.torch import save_file

    from sparc_eval.open_clip_configs import open_clip_module

    base = tmp_path_factory.mktemp("cb-results")
    export_mscoco(small_world, base / "data" / "mscoco_captions")
    export_wds_classification(small_world, base / "data" / "shapes")
    open_clip = open_clip_module()
    torch.manual_seed(0)
    weights = base / "tiny-shapes.safetensors"
    save_file({k: v.contiguous() for k, v in open_clip.create_model("ViT-Tiny-8-64").state_dict().items()}, str(weights))
    argv = ["clip_benchmark", "eval", "--dataset", "mscoco_captions", "wds/shapes", "--dataset_root",
            str(base / "data" / "{dataset_cleaned}"), "--model", "ViT-Tiny-8-64", "--pretrained", str(weights),
            "--recall_k", "1", "5", "10", "--batch_size", "16", "--num_workers", "0", "--no_amp", "--quiet",
            "--output", str(base / "{dataset}_{pretrained}_{model}_{language}_{task}.json")]
    old = sys.argv
    sys.argv = argv
    try:
        _, args = get_parser_args()
    finally:
        sys.argv = old
    main_eval(args)
    return {"mscoco_captions": base / "mscoco_captions_tiny-shapes.safetensors_ViT-Tiny-8-64_en_zeroshot_retrieval.json",
            "wds/shapes": base / "shapes_tiny-shapes.safetensors_ViT-Tiny-8-64_en_zeroshot_classification.json",
            "weights": weights, "data": base / "data"}


def test_imported_results_equal_our_evaluation(cb_results, tmp_path, one_thread):
    from sparc_eval.api import evaluate

    for name, keys in [("mscoco_captions", ["t2i_R@1", "t2i_R@5", "i2t_R@1", "i2t_R@10", "mean_R@1"]),
                       ("wds/shapes", ["top1", "top5", "mean_per_class_recall"])]:
        raw = json.loads(cb_results[name].read_text())
        imported = import_clip_benchmark(cb_results[name])
        assert looks_like_clip_benchmark(raw) and imported["kind"] == "imported"
        assert imported["task"]["name"] == name and imported["samples"] is None and imported["intervals"] == {}
        assert imported["model"]["spec"] == TINY_OPEN_CLIP and imported["model"]["pretrained"] == str(cb_results["weights"])
        assert imported["model"]["name"] == "open_clip-vit-tiny-8-64-tiny-shapes"
        assert imported["source"]["sha256"] and imported["dataset"]["fingerprint"] is None

        cfg = task_config(name, str(cb_results["data"] / "{dataset_cleaned}"))
        cfg["name"] = name.replace("/", "_")
        path = tmp_path / f"{cfg['name']}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        ours = evaluate(TINY_OPEN_CLIP, [str(path)], pretrained=str(cb_results["weights"]), write=False,
                        progress=False, log=lambda m: None)[0]
        assert imported["main_metric"] == cfg["main_metric"] == ours.result["main_metric"]
        for key in keys:
            assert imported["metrics"][key] == pytest.approx(ours.metrics[key], abs=1e-3), (name, key)
        assert 0 < imported["metrics"][imported["main_metric"]] < 100


def test_mapping_units_and_leftovers(cb_results, tmp_path):
    raw = json.loads(cb_results["mscoco_captions"].read_text())
    imported = import_clip_benchmark(cb_results["mscoco_captions"])
    for k in (1, 5, 10):  # CLIP_benchmark's image_retrieval is text->image
        assert imported["metrics"][f"t2i_R@{k}"] == pytest.approx(100 * raw["metrics"][f"image_retrieval_recall@{k}"])
        assert imported["metrics"][f"i2t_R@{k}"] == pytest.approx(100 * raw["metrics"][f"text_retrieval_recall@{k}"])
    # a classifier of fewer than 5 classes: CLIP_benchmark writes acc5 = NaN, which is dropped, not imported
    raw = json.loads(cb_results["wds/shapes"].read_text())
    raw["metrics"]["acc5"] = float("nan")
    raw["metrics"]["mean_average_precision"] = 0.5
    raw["language"] = "it"
    path = tmp_path / "it.json"
    path.write_text(json.dumps(raw))
    imported = import_clip_benchmark(path, model_name="mine")
    assert "top5" not in imported["metrics"] and imported["dropped"] == {"acc5": "nan"}
    assert imported["unmapped"] == {"mean_average_precision": 0.5}
    assert imported["task"]["name"] == "wds/shapes-it" and imported["model"]["name"] == "mine"


def test_caption_selection_and_winoground_results(tmp_path):
    def write(name, metrics):
        path = tmp_path / f"{name.replace('/', '_')}.json"
        path.write_text(json.dumps({"dataset": name, "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k",
                                    "task": "image_caption_selection", "metrics": metrics, "language": "en"}))
        return import_clip_benchmark(path)

    wino = write("winoground", {"image_acc": 0.1, "text_acc": 0.3, "acc": 0.075})
    assert wino["metrics"] == pytest.approx({"image_score": 10.0, "text_score": 30.0, "group_score": 7.5})
    assert wino["main_metric"] == "group_score" and wino["task"]["type"] == "winoground"
    assert wino["model"]["name"] == "open_clip-vit-b-32-laion2b_s34b_b79k"
    sugar = write("sugar_crepe/swap_att", {"image_acc": 1.0, "text_acc": 0.7, "acc": 0.7})
    assert sugar["metrics"] == {"acc": pytest.approx(70.0)} and sugar["task"]["type"] == "caption_selection"
    assert set(sugar["unmapped"]) == {"image_acc", "text_acc"}


@pytest.mark.parametrize("content, match", [
    ("{not json", "not a JSON file"),
    (json.dumps({"dataset": "cifar10", "model": "m", "task": "zeroshot_classification", "metrics": {}}),
     r"missing field\(s\) \['pretrained'\]"),
    (json.dumps({"schema": "sparc-eval/result/v1", "dataset": 1, "model": 1, "pretrained": 1, "task": 1, "metrics": 1}),
     "not a CLIP_benchmark result"),
    (json.dumps({"dataset": "cifar10", "model": "m", "pretrained": "p", "task": "zeroshot_magic", "metrics": {}}),
     "zeroshot_magic"),
    (json.dumps({"dataset": "cifar10", "model": "m", "pretrained": "p", "task": "zeroshot_classification",
                 "metrics": {"acc1": math.inf}}), "no usable main metric"),
])
def test_bad_files_are_named(tmp_path, content, match):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ResultsError, match=match) as e:
        import_clip_benchmark(path)
    assert str(path) in str(e.value) and e.value.exit_code == 2
