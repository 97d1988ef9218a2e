"""Zero-shot classification end to end through the CLI on the shapes world: oracle, agreement with
CLIP_benchmark 1.6.2 and a brute force, caching, the WebDataset path, bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_OPEN_CLIP
from oracles_classification import permuted_kinds, single_shape_scenes
from PIL import Image

from sparc_eval.data.synthetic import KINDS
from sparc_eval.results.aggregate import ClusterSums
from sparc_eval.results.store import read_samples

ORACLES = Path(__file__).with_name("oracles_classification.py")


def run(runner, cli, *args):
    res = runner.invoke(cli, ["run", *args, "-q"])
    assert res.exit_code == 0, res.output
    return res


def result(out: Path, model: str, task: str) -> tuple[dict, list[dict]]:
    path = out / model / f"{task}.json"
    r = json.loads(path.read_text())
    return r, read_samples(path, r)


def test_oracle_scores_100_and_permuted_oracle_scores_chance(runner, cli, shapes_root, tmp_path):
    for builder in ("build", "build_permuted"):
        run(runner, cli, "--task", "shapes-zeroshot", "--model", f"py:{ORACLES}:{builder}", "--pretrained",
            str(shapes_root), "--model-name", builder, "-o", str(tmp_path))
    good, _ = result(tmp_path, "build", "shapes-zeroshot")
    assert good["metrics"] == {"top1": 100.0, "top5": 100.0, "mean_per_class_recall": 100.0}
    bad, records = result(tmp_path, "build_permuted", "shapes-zeroshot")
    # the permuted oracle's exact score, from the ground truth: its kind equals the true kind
    truth, given = single_shape_scenes(shapes_root), permuted_kinds(shapes_root)
    scene = [int(Path(r["id"]).stem.lstrip("c")) for r in records]  # ids: <kind>/c<id>.png
    hits = np.array([truth[s] == given[s] for s in scene], dtype=float)
    assert bad["metrics"]["top1"] == pytest.approx(100 * hits.mean())
    assert bad["chance"]["top1"] == pytest.approx(100 / 6)
    n = len(records)
    assert abs(bad["metrics"]["top1"] - 100 / 6) < 3 * 100 * np.sqrt((1 / 6) * (5 / 6) / n) + 1e-9
    assert good["details"]["prompts"]["templates"] == "shapes" and good["details"]["n_classes"] == 6


@pytest.mark.parametrize("model,split", [("pixel", "train"), ("tiny", "test")])
def test_agreement_with_clip_benchmark_and_brute_force(runner, cli, shapes_root, tmp_path, model, split):
    from clip_benchmark.metrics.zeroshot_classification import evaluate as cb_evaluate
    from torchvision.datasets import ImageFolder

    from sparc_eval.api import load_model

    spec = f"py:{ORACLES}:build_pixel" if model == "pixel" else TINY_OPEN_CLIP
    run(runner, cli, "--task", "shapes-zeroshot", "--model", spec, "--model-name", model, "-o", str(tmp_path),
        "--param", f"split={split}", "--param", "templates=openai_imagenet")
    ours, records = result(tmp_path, model, "shapes-zeroshot")

    adapter = load_model(spec, device="cpu")
    net = adapter.module if model == "pixel" else adapter.model
    ds = ImageFolder(str(shapes_root / "imagefolder" / split), transform=adapter.image_transform)
    loader = torch.utils.data.DataLoader(ds, batch_size=64)
    templates = (Path(__file__).parents[1] / "sparc_eval/data/resources/classification/templates_openai_imagenet.txt"
                 ).read_text().splitlines()
    ref = cb_evaluate(net, loader, adapter.tokenizer, ds.classes, templates, "cpu", amp=False)
    for ours_key, ref_key in (("top1", "acc1"), ("top5", "acc5"), ("mean_per_class_recall", "mean_per_class_recall")):
        assert ours["metrics"][ours_key] == pytest.approx(100 * ref[ref_key], abs=1e-9), ours_key

    # brute force on the fixed embeddings: sort every image's class scores
    names = (shapes_root / "imagefolder" / "classnames.txt").read_text().split()
    with torch.no_grad():
        text = adapter.encode_texts([t.replace("{c}", n) for n in names for t in templates]).view(6, 80, -1)
        classes = torch.nn.functional.normalize(text.mean(1), dim=-1)
        paths = [shapes_root / "imagefolder" / split / r["id"] for r in records]
        img = adapter.encode_images(torch.stack([adapter.image_transform(Image.open(p)) for p in paths]))
    order = (img @ classes.T).argsort(1, descending=True).numpy()
    labels = np.array([r["label"] for r in records])
    assert [names[y] for y in labels] == [Path(r["id"]).parent.name for r in records]
    for k in (1, 5):
        assert ours["metrics"][f"top{k}"] == pytest.approx(100 * (order[:, :k] == labels[:, None]).any(1).mean())
    assert [r["pred"] for r in records] == order[:, 0].tolist()
    recomputed = ClusterSums(records, ours["aggregations"]).compute()
    assert {k: recomputed[k][0] for k in ours["metrics"]} == pytest.approx(ours["metrics"])


def test_prompts_are_recorded_and_cached_and_images_shared_with_the_probe(runner, cli, tmp_path):
    cache = tmp_path / "cache"
    common = ["--model", TINY_OPEN_CLIP, "-o", str(tmp_path / "out"), "--cache-dir", str(cache)]
    run(runner, cli, "--task", "shapes-zeroshot", "--param", "templates=openai_imagenet", *common)
    first, _ = result(tmp_path / "out", "open_clip-vit-tiny-8-64", "shapes-zeroshot")
    prompts = first["details"]["prompts"]
    assert prompts["n_templates"] == 80 and prompts["n_prompts"] == 480 and len(prompts["prompts_sha256"]) == 64
    assert first["provenance"]["engine"]["texts_encoded"] == 480
    run(runner, cli, "--task", "shapes-zeroshot", "--param", "templates=openai_imagenet", "--overwrite", *common)
    again, _ = result(tmp_path / "out", "open_clip-vit-tiny-8-64", "shapes-zeroshot")
    assert again["provenance"]["engine"]["texts_cached"] == 480 and again["provenance"]["engine"]["texts_encoded"] == 0
    assert again["metrics"] == first["metrics"]
    run(runner, cli, "--task", "shapes-linear-probe", *common)
    probe, _ = result(tmp_path / "out", "open_clip-vit-tiny-8-64", "shapes-linear-probe")
    assert probe["provenance"]["engine"]["images_cached"] == first["dataset"]["n_used"]  # the shared test images
    run(runner, cli, "--task", "shapes-zeroshot", "--param", "templates=classname", "--model-name", "cn", *common)
    r, _ = result(tmp_path / "out", "cn", "shapes-zeroshot")
    assert r["details"]["prompts"]["template_list"] == ["{c}"] and r["details"]["prompts"]["n_prompts"] == 6


def test_webdataset_copy_scores_like_the_image_folder(runner, cli, shapes_root, tmp_path):
    from clip_benchmark.webdataset_builder import convert_dataset
    from torchvision.datasets import ImageFolder

    src = ImageFolder(str(shapes_root / "imagefolder" / "test"))
    names = (shapes_root / "imagefolder" / "classnames.txt").read_text().split()

    class DS(list):
        classes = names
        templates = (Path(__file__).parents[1] / "sparc_eval/data/resources/classification/templates_shapes.txt"
                     ).read_text().splitlines()

    ds = DS((Image.open(p).convert("RGB"), names.index(src.classes[y])) for p, y in src.samples)
    convert_dataset(ds, "test", str(tmp_path / "wds_shapes"), image_format="png", verbose=False)
    spec = f"py:{ORACLES}:build_pixel"
    run(runner, cli, "--task", "shapes-zeroshot", "--model", spec, "--model-name", "folder", "-o", str(tmp_path))
    run(runner, cli, "--task", "wds-cifar10-zeroshot", "--model", spec, "--model-name", "wds", "-o", str(tmp_path),
        "--param", f"root={tmp_path / 'wds_shapes'}")
    folder, _ = result(tmp_path, "folder", "shapes-zeroshot")
    wds, _ = result(tmp_path, "wds", "wds-cifar10-zeroshot")
    assert wds["metrics"] == pytest.approx(folder["metrics"])
    assert wds["details"]["prompts"]["templates"] == "dataset" and wds["details"]["prompts"]["n_templates"] == 5


def test_imagefolder_task_with_user_classnames_and_bad_inputs(runner, cli, shapes_root, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("".join(f"{k}\n" for k in KINDS))
    run(runner, cli, "--task", "imagefolder-zeroshot", "--model", f"py:{ORACLES}:build", "--pretrained",
        str(shapes_root), "--model-name", "oracle", "-o", str(tmp_path), "--param", f"root={shapes_root / 'imagefolder'}",
        "--param", "split=val", "--param", f"classnames={names}", "--param", "templates=classname")
    r, _ = result(tmp_path, "oracle", "imagefolder-zeroshot")
    assert r["metrics"]["top1"] == 100.0 and r["dataset"]["n_used"] > 0

    def fails(*args):
        res = runner.invoke(cli, ["run", "--model", TINY_OPEN_CLIP, "-o", str(tmp_path / "bad"), "-q", *args])
        assert res.exit_code == 2, res.output
        return res.output

    assert "no such template file" in fails("--task", "shapes-zeroshot", "--param", "templates=/nonexistent/t.txt")
    names.write_text("round thing\nbox\n")
    assert "lists 2 class names but the dataset has 6 class folders" in fails(
        "--task", "imagefolder-zeroshot", "--param", f"root={shapes_root / 'imagefolder'}", "--param", "split=test",
        "--param", f"classnames={names}")
    assert "ships no prompt templates" in fails("--task", "shapes-zeroshot", "--param", "templates=dataset")
    bad_template = tmp_path / "t.txt"
    bad_template.write_text("a photo of something\n")
    assert "has no class-name placeholder" in fails("--task", "shapes-zeroshot", "--param", f"templates={bad_template}")
    assert "block: 0 is too small; expected a value >= 1" in fails("--task", "shapes-zeroshot", "--param", "block=0")


def test_suite_and_data_verify(runner, cli, tmp_path):
    from sparc_eval.tasks import load_suite

    suite = load_suite("imagenet-robustness")
    assert suite.tasks[0] == "imagenet-zeroshot" and len(suite.tasks) == 7
    res = runner.invoke(cli, ["data", "verify", "imagenet-v2-matched-frequency", "--data-root", str(tmp_path)])
    assert res.exit_code == 1 and "<root>/<0..999>/*.jpeg" in res.output


def test_imagenet_c_reports_per_corruption_and_severity(runner, cli, tmp_path):
    rng = np.random.default_rng(0)
    for corruption in ("fog", "snow"):
        for severity in (1, 2):
            for w in ("n01440764", "n01443537", "n01484850"):
                for stem in ("ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002"):
                    path = tmp_path / "inc" / corruption / str(severity) / w / f"{stem}.JPEG"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
    run(runner, cli, "--task", "imagenet-c-classname", "--model", f"py:{ORACLES}:build_pixel", "--model-name", "px",
        "-o", str(tmp_path), "--param", f"root={tmp_path / 'inc'}", "--param", "corruptions=[fog, snow]",
        "--param", "severities=[1, 2]")
    r, records = result(tmp_path, "px", "imagenet-c-classname")
    assert r["dataset"]["n_used"] == 24 and r["details"]["prompts"]["n_prompts"] == 1000
    top1 = np.array([rec["top1"] for rec in records])
    ids = [rec["id"] for rec in records]
    for subset, prefix in (("fog", "fog/"), ("snow", "snow/")):
        assert r["metrics"][f"top1.{subset}"] == pytest.approx(100 * top1[[i.startswith(prefix) for i in ids]].mean())
    for s in (1, 2):
        mask = [i.split("/")[1] == str(s) for i in ids]
        assert r["metrics"][f"top1.severity_{s}"] == pytest.approx(100 * top1[mask].mean())
    assert r["metrics"]["top1"] == pytest.approx(100 * top1.mean())
    assert "gaussian_noise" in r["details"]["subsets_without_images"]
    assert len({rec["cluster"] for rec in records}) == 2  # the corrupted copies of one image form one cluster
    recomputed = ClusterSums(records, r["aggregations"]).compute()
    assert {k: recomputed[k][0] for k in r["metrics"]} == pytest.approx(r["metrics"])
