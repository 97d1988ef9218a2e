"""CLIP_benchmark's own folders, read by our readers, agree with CLIP_benchmark 1.6.2 reading them.

A shapes world is exported in each layout (``cb_layouts``: mscoco and flickr folders, classification and
retrieval shards written by clip_benchmark.webdataset_builder). Our readers must give the same images and
captions in the same order as CLIP_benchmark's dataset classes (built through its ``build_dataset``), and
``sparc-eval run --task <CLIP_benchmark name> --data-root <its --dataset_root>`` must score a model as
CLIP_benchmark's metrics do, to 1e-3 percentage points.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from cb_layouts import export_flickr, export_mscoco, export_wds_classification, export_wds_retrieval
from conftest import TINY_OPEN_CLIP
from PIL import Image

from sparc_eval.clip_benchmark_names import task_config
from sparc_eval.data.base import get_reader


@pytest.fixture(scope="module")
def layouts(small_world, tmp_path_factory):
    """Each layout in ``<root>/<dataset_cleaned>``, so one ``--data-root '<root>/{dataset_cleaned}'`` serves all."""
    root = tmp_path_factory.mktemp("cb-layouts")
    return {"mscoco_captions": export_mscoco(small_world, root / "mscoco_captions"),
            "flickr30k": export_flickr(small_world, root / "flickr30k"),
            "flickr8k": export_flickr(small_world, root / "flickr8k", name="flickr8k", seed=3),
            "wds/shapes": export_wds_classification(small_world, root / "shapes"),
            "wds/shapes_captions": export_wds_retrieval(small_world, root / "shapes_captions")}


def _ours(name, folder):
    cfg = task_config(name, str(folder))
    reader = get_reader(cfg["dataset"]["format"])
    from sparc_eval.params import validate

    return reader.load(validate({k: v for k, v in cfg["dataset"].items() if k not in ("name", "format")}, reader.params, name))


def _theirs(name, folder, task):
    from clip_benchmark.datasets.builder import build_dataset

    return build_dataset(name, root=str(folder), transform=None, split="test", task=task, download=False)


def _captions_per_image(data):
    caps = [[] for _ in data.images.paths]
    for c, i in zip(data.captions, data.caption_image):
        caps[i].append(c)
    return caps


@pytest.mark.parametrize("name", ["mscoco_captions", "flickr30k", "flickr8k"])
def test_folder_readers_list_what_clip_benchmark_lists(layouts, name):
    ours = _ours(name, layouts[name])
    ds = _theirs(name, layouts[name], "zeroshot_retrieval")
    if name == "mscoco_captions":
        theirs = [(os.path.join(ds.root, ds.coco.loadImgs(i)[0]["file_name"]), ds._load_target(i))
                  for i in ds.ids]
    else:
        theirs = [(os.path.join(ds.root, img), caps) for img, caps in ds.data]
    assert [(str(p), c) for p, c in zip(ours.images.paths, _captions_per_image(ours))] == theirs
    assert len(theirs) == 40 and sum(len(c) for _, c in theirs) > 200
    # the exports exercise what matters: CLIP_benchmark's order differs from the file's, captions are kept as written
    if name == "mscoco_captions":
        assert any(c != c.strip() for c in ours.captions)
    else:
        assert any(", on grey" in c for c in ours.captions)


def _pixels(path_or_image):
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(image.convert("RGB"))


def test_wds_readers_list_what_clip_benchmark_streams(layouts):
    ours = _ours("wds/shapes", layouts["wds/shapes"])
    ds = _theirs("wds/shapes", layouts["wds/shapes"], "zeroshot_classification")
    theirs = list(ds)
    assert int((layouts["wds/shapes"] / "test" / "nshards.txt").read_text()) == 3  # shard order matters
    assert ours.labels.tolist() == [int(label) for _, label in theirs]
    assert all(np.array_equal(_pixels(p), _pixels(im)) for p, (im, _) in zip(ours.images.paths, theirs))
    assert ours.classnames == ds.classes and ours.templates == ds.templates

    ours = _ours("wds/shapes_captions", layouts["wds/shapes_captions"])
    ds = _theirs("wds/shapes_captions", layouts["wds/shapes_captions"], "zeroshot_retrieval")
    theirs = list(ds)
    assert _captions_per_image(ours) == [caps for _, caps in theirs]
    assert all(np.array_equal(_pixels(p), _pixels(im)) for p, (im, _) in zip(ours.images.paths, theirs))


class _Texts(list):
    """CLIP_benchmark calls ``tokenizer(texts).to(device)``; our adapters tokenise themselves."""

    def to(self, device):
        return self


def _peer(model):
    class Peer(torch.nn.Module):  # the interface CLIP_benchmark expects: encode_image / encode_text on tokens
        def encode_image(self, x):
            return model.encode_images(x)

        def encode_text(self, texts):
            return model.encode_texts(texts)

    return Peer()


@pytest.mark.parametrize("name", ["mscoco_captions", "flickr30k", "wds/shapes_captions", "wds/shapes"])
def test_numbers_equal_clip_benchmark(layouts, tmp_path, name, one_thread, runner, cli):
    """``sparc-eval run --task NAME --data-root '<root>/{dataset_cleaned}'`` (CLIP_benchmark's name and its
    --dataset_root template) scores what CLIP_benchmark scores, and the result says what was read."""
    from clip_benchmark.datasets.builder import build_dataset, get_dataset_collate_fn
    from clip_benchmark.metrics import zeroshot_classification, zeroshot_retrieval

    from sparc_eval.models import load_model

    cfg = task_config(name, str(layouts[name]))
    template = str(layouts[name].parent / "{dataset_cleaned}")
    res = runner.invoke(cli, ["run", "--task", name, "--data-root", template, "--model", TINY_OPEN_CLIP, "--model-name",
                              "tiny", "-o", str(tmp_path), "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    written = json.loads((tmp_path / "tiny" / f"{name.replace('/', '__')}.json").read_text())
    assert written["task"]["name"] == written["dataset"]["name"] == name
    assert written["dataset"]["format"] == cfg["dataset"]["format"]
    assert written["task"]["config"]["dataset"]["root"] == str(layouts[name])
    ours = written["metrics"]

    model = load_model(TINY_OPEN_CLIP)
    retrieval = cfg["type"] == "retrieval"
    ds = build_dataset(name, root=str(layouts[name]), transform=model.image_transform, split="test",
                       task="zeroshot_retrieval" if retrieval else "zeroshot_classification", download=False)
    if name.startswith("wds/"):
        loader = torch.utils.data.DataLoader(ds.batched(16), batch_size=None, shuffle=False, num_workers=0)
    else:
        loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=False, num_workers=0,
                                             collate_fn=get_dataset_collate_fn(name))
    if retrieval:
        theirs = zeroshot_retrieval.evaluate(_peer(model), loader, _Texts, device="cpu", amp=False,
                                             recall_k_list=[1, 5, 10])
        pairs = [(f"t2i_R@{k}", f"image_retrieval_recall@{k}") for k in (1, 5, 10)]
        pairs += [(f"i2t_R@{k}", f"text_retrieval_recall@{k}") for k in (1, 5, 10)]
    else:
        loader.dataset.classes = ds.classes  # what CLIP_benchmark's evaluate reads for its top-5 rule
        theirs = zeroshot_classification.evaluate(_peer(model), loader, _Texts, ds.classes, ds.templates,
                                                  device="cpu", amp=False)
        pairs = [("top1", "acc1"), ("top5", "acc5"), ("mean_per_class_recall", "mean_per_class_recall")]
    for ours_key, their_key in pairs:
        assert ours[ours_key] == pytest.approx(100 * theirs[their_key], abs=1e-3), ours_key
    main = ours[cfg["main_metric"]]
    assert 0 < main < 100  # a random model: neither degenerate extreme
