"""The CLIP_benchmark name catalogue: valid task definitions, CLIP_benchmark's protocol resources, its root
templates and Hub URLs, the refusals with the name to use, and the metric-name mapping."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sparc_eval import clip_benchmark_names as cb
from sparc_eval.errors import ConfigError, UnknownNameError
from sparc_eval.tasks import load_task

CB_DATASETS = Path(__import__("clip_benchmark").__file__).parent / "datasets"
RESOURCES = Path(__file__).resolve().parent.parent / "sparc_eval" / "data" / "resources" / "classification"
ISSUE_NAMES = ["mscoco_captions", "flickr30k", "flickr8k", "imagenet1k", "imagenetv2", "imagenet_sketch", "imagenet-a",
               "imagenet-r", "imagenet-o", "cifar10", "cifar100", "winoground"] + \
    [f"sugar_crepe/{s}" for s in cb.SUGAR_CREPE_SUBSETS]


def _lines(name: str) -> list[str]:
    return [line for line in (RESOURCES / name).read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("name", ISSUE_NAMES + ["wds/cars", "wds/vtab/cifar10", "wds/flickr30k"])
def test_every_name_is_a_valid_task_definition(name, tmp_path):
    cfg = cb.task_config(name, str(tmp_path / "{dataset_cleaned}"))
    cfg["name"] = name.replace("/", "_")
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    task = load_task(path)  # reader, task type, params and main metric all validated
    assert task.type == cb.lookup(name).type and task.main_metric == cfg["main_metric"]
    assert str(tmp_path / cb.short_name(name).replace("/", "-")) in str(task.dataset["root"])
    assert "clip_benchmark" in task.groups and "CLIP_benchmark 1.6.2" in task.description


def test_protocol_resources_are_clip_benchmarks():
    classnames = json.loads((CB_DATASETS / "en_classnames.json").read_text())
    templates = json.loads((CB_DATASETS / "en_zeroshot_classification_templates.json").read_text())
    assert _lines("imagenet1k_classnames.txt") == classnames["imagenet1k"]
    assert _lines("templates_openai_imagenet.txt") == templates["imagenet1k"]
    for name in ("cifar10", "cifar100"):
        assert _lines("templates_cifar.txt") == templates[name]
        assert name not in classnames  # CLIP_benchmark uses torchvision's classes: the batch file's names
        assert cb.lookup(name).dataset["classnames"] == "meta" and cb.lookup(name).params["templates"] == "cifar"
    from clip_benchmark.datasets.builder import all_imagenet_wordnet_ids

    assert _lines("imagenet1k_wnids.txt") == all_imagenet_wordnet_ids  # label order
    for name in ("imagenet1k", "imagenetv2", "imagenet_sketch", "imagenet-a", "imagenet-r", "imagenet-o"):
        assert cb.lookup(name).params == {"templates": "openai_imagenet"}
    from clip_benchmark.datasets.builder import get_dataset_default_task

    for name in ISSUE_NAMES + ["wds/cars", "wds/flickr8k"]:
        assert cb.lookup(name).cb_task == get_dataset_default_task(cb.short_name(name)), name


def test_root_templates_and_hub_urls():
    assert cb.dataset_root("/data/{dataset}", "wds/vtab/cifar10") == "/data/vtab/cifar10"
    assert cb.dataset_root("/data/wds_{dataset_cleaned}", "wds/vtab/cifar10") == "/data/wds_vtab-cifar10"
    assert cb.dataset_root("/data/{dataset}", "sugar_crepe/add_att") == "/data/sugar_crepe/add_att"
    assert cb.dataset_root("/plain", "cifar10") == "/plain"
    with pytest.raises(ConfigError, match=r"\{dataset\}"):
        cb.dataset_root("/data/{name}", "cifar10")
    assert cb.hub_repo("wds/vtab/cifar10") == "clip-benchmark/wds_vtab-cifar10"
    url = cb.default_wds_root("wds/imagenet-a")
    assert url == "https://huggingface.co/datasets/clip-benchmark/wds_imagenet-a/tree/main"
    assert cb.parse_hub_root(url) == ("clip-benchmark/wds_imagenet-a", "main")
    # the same split CLIP_benchmark's build_wds_dataset makes of such a URL
    *head, _, path = url.split("/", 7)
    assert "/".join(head).endswith("/clip-benchmark/wds_imagenet-a") and path == "main"
    assert cb.parse_hub_root("http://127.0.0.1:8000/datasets/org/wds_x/tree/v2/") == ("org/wds_x", "v2")
    assert cb.parse_hub_root("/data/wds_cars") is None
    cfg = cb.task_config("wds/cars")
    assert cfg["dataset"]["root"] == "https://huggingface.co/datasets/clip-benchmark/wds_cars/tree/main"
    assert cb.task_config("imagenetv2", "/d")["dataset"]["root"] == "/d/ImageNetV2-matched-frequency"
    assert cb.task_config("flickr30k", "/d", split="val")["dataset"]["split"] == "val"


def test_wds_dataset_type_decides_the_task(tmp_path):
    (tmp_path / "ret").mkdir()
    (tmp_path / "ret" / "dataset_type.txt").write_text("retrieval\n")
    (tmp_path / "cls").mkdir()
    assert cb.task_config("wds/mine", str(tmp_path / "ret"))["type"] == "retrieval"
    assert cb.task_config("wds/mine", str(tmp_path / "cls"))["type"] == "zeroshot_classification"
    assert cb.task_config("wds/flickr30k")["type"] == "retrieval"  # no local folder: the name decides
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "dataset_type.txt").write_text("multilabel\n")
    with pytest.raises(ConfigError, match="multilabel"):
        cb.task_config("wds/voc2007_multilabel", str(tmp_path / "ml"))


def test_refusals_name_what_to_use():
    with pytest.raises(ConfigError, match="'wds/vtab/cifar10'.*clip-benchmark/wds_vtab-cifar10"):
        cb.lookup("vtab/cifar10")
    with pytest.raises(ConfigError, match="'wds/cars'"):
        cb.lookup("cars")
    with pytest.raises(ConfigError, match="'wds/objectnet'"):
        cb.lookup("objectnet")
    with pytest.raises(ConfigError, match="clip_benchmark_export_wds"):
        cb.lookup("voc2007_multilabel")
    with pytest.raises(UnknownNameError, match="sugar_crepe/swap_att"):
        cb.lookup("sugar_crepe/swap_attr")
    with pytest.raises(UnknownNameError, match="mscoco_captions"):
        cb.lookup("mscoco_caption")
    with pytest.raises(ConfigError, match="--data-root"):
        cb.task_config("mscoco_captions")
    with pytest.raises(ConfigError, match="wds/<name>"):
        cb.lookup("wds/../etc")


def test_aliases_point_at_shipped_tasks():
    aliases = cb.aliases()
    assert aliases["imagenet1k"] == "imagenet-zeroshot" and aliases["mscoco_captions"] == "coco-retrieval"
    assert aliases["wds/imagenet1k"] == "wds-imagenet1k-zeroshot"
    shipped = {p.stem for p in (Path(__file__).resolve().parent.parent / "tasks").glob("*.yaml")}
    assert set(aliases.values()) <= shipped
    assert "coco-captions" not in aliases.values()  # that task scores captioner output, not retrieval
    assert set(ISSUE_NAMES) <= set(cb.names()) and "wds/vtab/svhn" in cb.names()


def test_metric_names():
    m = cb.map_metric
    assert m("mscoco_captions", "zeroshot_retrieval", "image_retrieval_recall@5") == "t2i_R@5"
    assert m("wds/flickr30k", "zeroshot_retrieval", "text_retrieval_recall@1") == "i2t_R@1"
    assert m("cifar10", "zeroshot_classification", "acc1") == "top1"
    assert m("cifar10", "zeroshot_classification", "mean_average_precision") is None
    assert m("cifar10", "linear_probe", "lp_mean_per_class_recall") == "mean_per_class_recall"
    assert m("cifar10", "linear_probe", "weight_decay") is None
    assert m("winoground", "image_caption_selection", "acc") == "group_score"
    assert m("winoground", "image_caption_selection", "text_acc") == "text_score"
    assert m("sugar_crepe/add_att", "image_caption_selection", "acc") == "acc"
    assert m("sugar_crepe/add_att", "image_caption_selection", "image_acc") is None
    assert m("mscoco_captions", "captioning", "Bleu_4") == "BLEU_4"
