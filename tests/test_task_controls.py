"""Every result carries its controls, checked end to end through the CLI on the small shapes world.

- zero-shot segmentation: the stored chance equals ``segmentation_chance`` of the label areas read from the
  VOC masks themselves, and a predictor that samples each pixel's class from those frequencies (a
  permuted-label predictor) lands on it within its interval;
- caption selection: ``blind_acc`` equals a recomputation from the model's own embeddings (options
  against the mean image), the shapes world's probe is not flagged by ``artifact_acc``, and a constructed
  artifact (the right caption always the shorter) gives ``artifact_acc`` ~100, flagged in the result and
  the run table; chance for every metric;
- caption faithfulness: ``*_miss`` metrics, their chance levels and the shuffled-retrieval control equal
  brute-force recomputations over every (image, pool caption) pair;
- the untrained control: the bundled architecture with seeded random weights; role and seed group
  stored in the results (a ``sparc:`` card's method by default).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sparc_eval.metrics.compositional import selection_correct
from sparc_eval.metrics.controls import covers, segmentation_chance
from sparc_eval.models import load_model
from sparc_eval.tasks import resolve_task

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
ORACLE = "py:sparc_eval.models.oracle:shapes_oracle"
FINE = HERE / "oracles_finegrained.py"
SAMPLER = HERE / "oracles_controls.py"


def _run(runner, cli, out: Path, *args) -> tuple[dict, list[dict], str]:
    r = runner.invoke(cli, ["run", "-q", "-o", str(out), *args])
    assert r.exit_code == 0, r.output
    task = args[args.index("--task") + 1]
    name = args[args.index("--model-name") + 1]
    res = json.loads((out / name / f"{task}.json").read_text())
    samples = [json.loads(x) for x in (out / name / f"{task}.samples.jsonl").read_text().splitlines()]
    return res, samples, r.output


def test_segmentation_chance_and_a_permuted_label_predictor(runner, cli, small_world, tmp_path):
    from oracles_controls import val_label_areas

    common = ["--task", "shapes-zeroshot-seg", "--pretrained", str(small_world),
              "--param", f"root={small_world}/VOCdevkit/VOC2012"]
    res, samples, _ = _run(runner, cli, tmp_path, *common, "--model", ORACLE, "--model-name", "oracle")
    areas = val_label_areas(small_world)  # read from the PNG masks, not from the result
    assert np.array_equal(areas, np.array([r["label_area"] for r in samples]))
    want = segmentation_chance(areas, "sparc-paper")
    assert res["chance"] == pytest.approx(want.values) and set(res["chance"]) == {"mIoU", "mAcc", "aAcc"}
    assert res["details"]["chance_method"] == want.method
    assert res["metrics"]["mIoU"] == 100.0 and not covers(res["intervals"]["mIoU"], res["chance"]["mIoU"])

    res, _, _ = _run(runner, cli, tmp_path, *common, "--model", f"py:{SAMPLER}:seg_prior_sampler",
                     "--model-name", "sampler")
    assert want.method["mIoU"].startswith("prior sampling")  # the predictor scored is the one stated
    assert covers(res["intervals"]["mIoU"], res["chance"]["mIoU"]), (res["metrics"], res["intervals"], res["chance"])
    res, _, _ = _run(runner, cli, tmp_path, *common, "--model", ORACLE, "--model-name", "standard",
                     "--param", "protocol=standard")
    assert res["chance"] == pytest.approx(segmentation_chance(areas, "standard").values)


def test_caption_selection_blind_and_artifact_controls(runner, cli, small_world, tmp_path):
    model = f"py:{FINE}:probe_oracle"
    common = ["--task", "shapes-sugarcrepe", "--pretrained", str(small_world), "--param", f"root={small_world}"]
    res, samples, output = _run(runner, cli, tmp_path, *common, "--model", model, "--model-name", "oracle")
    # blind: the model's text embeddings of every option against the normalised mean of its image embeddings
    data = resolve_task("shapes-sugarcrepe", overrides={"root": str(small_world)}).build().load_data()
    adapter = load_model(model, str(small_world), device="cpu")
    with torch.no_grad():
        imgs = torch.stack([adapter.image_transform(Image.open(p).convert("RGB")) for p in data.images.paths])
        mean = adapter.encode_images(imgs).double().mean(0)
    mean = mean / mean.norm()
    for it, rec in zip(data.items, samples):
        with torch.no_grad():
            want = (adapter.encode_texts(list(it.options)).double() @ mean).numpy()
        np.testing.assert_allclose(rec["blind_scores"], want, atol=2e-6)
    blind = np.array([r["blind_scores"] for r in samples])
    ok = selection_correct(blind, np.array([it.correct for it in data.items]))
    assert res["metrics"]["blind_acc"] == pytest.approx(100 * ok.mean())
    for c in {it.category for it in data.items}:
        mask = np.array([it.category == c for it in data.items])
        assert res["metrics"][f"blind_acc.{c}"] == pytest.approx(100 * ok[mask].mean())
    # the world's negatives keep their positive's length and form: the text alone does not tell them apart
    assert res["details"]["artifact_flagged"] == [] and "flagged:" not in output
    for key in [k for k in res["metrics"] if k.startswith("artifact_acc")]:
        lo, hi = res["intervals"][key]
        assert lo <= res["metrics"][key] <= hi and lo <= 60
    assert set(res["chance"]) == set(res["metrics"]) and set(res["chance"].values()) == {50.0}

    # a constructed artifact: the wrong caption is always the right one plus an object (so always longer)
    root = tmp_path / "artifact"
    (root / "sugarcrepe").mkdir(parents=True)
    (root / "images").symlink_to(small_world / "images")
    items = json.loads((small_world / "sugarcrepe" / "replace_att.json").read_text())
    items = {k: {**v, "negative_caption": v["caption"] + " and a small red star"} for k, v in items.items()}
    (root / "sugarcrepe" / "add_obj.json").write_text(json.dumps(items))
    res, _, output = _run(runner, cli, tmp_path, "--task", "shapes-sugarcrepe", "--param", f"root={root}",
                          "--param", "categories=[add_obj]", "--param", "category_groups={}", "--model",
                          model, "--pretrained", str(small_world), "--model-name", "artifact")
    assert res["metrics"]["artifact_acc.add_obj"] > 95 and res["intervals"]["artifact_acc.add_obj"][0] > 60
    assert res["details"]["artifact_flagged"] == ["add_obj"]
    assert "flagged: shapes-sugarcrepe: probe category add_obj flagged" in " ".join(output.split())


def test_faithfulness_miss_metrics_chance_and_shuffled_control(runner, cli, small_world, tmp_path):
    from sparc_eval.metrics.chair import chair_counts
    from sparc_eval.metrics.kprecision import k_precision_refs
    from sparc_eval.task_common.captions import ground_truth_objects, image_references
    from sparc_eval.text import pos
    from sparc_eval.text.normalize import noun_adj_tokens, tokens
    from sparc_eval.text.objects import load_vocabulary

    res, samples, _ = _run(runner, cli, tmp_path, "--task", "shapes-faithfulness", "--param", f"root={small_world}",
                           "--model", ORACLE + "_permuted", "--pretrained", str(small_world), "--model-name", "perm",
                           "--seed", "2")
    missed = [r for r in samples if not r["own_caption"]]
    assert 0 < len(missed) < len(samples) or len(missed) == len(samples)
    assert res["metrics"]["K-P_miss"] == pytest.approx(100 * np.mean([r["kp"] for r in missed]))
    assert res["metrics"]["CHAIR_s_miss"] == pytest.approx(100 * np.mean([r["chair_any"] for r in missed]))
    assert res["metrics"]["CHAIR_i_miss"] == pytest.approx(
        100 * sum(r["chair_hallucinated"] for r in missed) / sum(r["chair_mentions"] for r in missed))

    # brute force over every (image, pool caption) pair
    task = resolve_task("shapes-faithfulness", overrides={"root": str(small_world)})
    data = task.build().load_data()
    refs = image_references(data)
    ref_tokens = [[tokens(r) for r in rs] for rs in refs]
    pool = data.captions
    content = [noun_adj_tokens(c, t) for c, t in zip(pool, pos.analyse_many(pool))]
    vocab = load_vocabulary("shapes")
    gt, _ = ground_truth_objects(task.config.params, str(small_world), data.images.ids, refs, vocab, lambda m: None)
    kp = np.array([[k_precision_refs(tokens(c), ref_tokens[i]) for c in pool] for i in range(len(refs))])
    kpna = np.array([[k_precision_refs(content[j], ref_tokens[i]) for j in range(len(pool))] for i in range(len(refs))])
    counts = [[chair_counts([o for _, o in vocab.mentions(c)], gt[i]) for c in pool] for i in range(len(refs))]
    own = np.array([[int(data.caption_image[j]) == i for j in range(len(pool))] for i in range(len(refs))])
    ch = res["chance"]
    assert ch["K-P"] == pytest.approx(100 * kp.mean()) and ch["K-Pna"] == pytest.approx(100 * kpna.mean())
    assert ch["K-P_miss"] == pytest.approx(100 * np.mean([kp[i][~own[i]].mean() for i in range(len(refs))]))
    assert ch["K-Pna_miss"] == pytest.approx(100 * np.mean([kpna[i][~own[i]].mean() for i in range(len(refs))]))
    pairs = [(i, j) for i in range(len(refs)) for j in range(len(pool))]
    other = [(i, j) for i, j in pairs if not own[i, j]]
    for key, chosen in (("CHAIR_i", pairs), ("CHAIR_i_miss", other)):
        want = sum(len(counts[i][j].hallucinated) for i, j in chosen) / sum(counts[i][j].mentions for i, j in chosen)
        assert ch[key] == pytest.approx(100 * want)
    for key, chosen in (("CHAIR_s", pairs), ("CHAIR_s_miss", other)):
        assert ch[key] == pytest.approx(100 * np.mean([counts[i][j].any_hallucinated for i, j in chosen]))
    assert set(ch) == set(res["metrics"])
    for key in ("K-P", "K-P_miss", "K-Pna_miss"):  # a permuted retrieval lands on chance (within sampling error)
        lo, hi = res["intervals"][key]
        assert abs(res["metrics"][key] - ch[key]) < hi - lo, (key, res["metrics"][key], ch[key], (lo, hi))
    # shuffled: each image gets the caption retrieved for a uniformly drawn image
    index = {c: j for j, c in enumerate(pool)}
    got = [index[r["caption"]] for r in samples]
    shuffled = res["details"]["controls"]["shuffled"]["metrics"]
    assert shuffled["K-P"] == pytest.approx(100 * kp[:, got].mean())
    assert shuffled["CHAIR_s"] == pytest.approx(100 * np.mean([counts[i][j].any_hallucinated
                                                               for i in range(len(refs)) for j in got]))


def test_the_untrained_control_and_roles_through_the_cli(runner, cli, small_world, tmp_path):
    bundled = sorted(p for p in (REPO / "checkpoints").iterdir() if (p / "config.json").is_file())[0]
    spec = "py:sparc_eval.models.controls:untrained"
    a = load_model(spec, str(bundled), device="cpu", seed=3)
    b = load_model(spec, str(bundled / "config.json"), device="cpu", seed=3)
    c = load_model(spec, str(bundled), device="cpu", seed=4)
    trained = load_model(f"sparc:{bundled}", device="cpu")
    state = {k: v.shape for k, v in trained.model.state_dict().items()}
    assert {k: v.shape for k, v in a.model.state_dict().items()} == state  # the same architecture, heads, pooling
    assert a.preprocessing["resolution"] == trained.preprocessing["resolution"] and a.supports("image_patches")
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])  # seeded
    assert not torch.equal(a.model.g_v.weight, c.model.g_v.weight)
    assert not torch.equal(a.model.g_v.weight, trained.model.g_v.weight)

    out = tmp_path / "out"
    common = ["--task", "shapes-zeroshot", "--param", f"root={small_world}/imagefolder"]
    res, _, _ = _run(runner, cli, out, *common, "--model", spec, "--pretrained", str(bundled),
                     "--model-name", "untrained", "--role", "control")
    assert res["role"] == "control" and res["seed_group"] is None
    # a sparc: checkpoint folder with a card: the card's method is the seed group unless --seed-group says
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for f in ("config.json", "model.safetensors"):
        (ckpt / f).symlink_to(bundled / f)
    shutil.copy(bundled / "card.json", ckpt / "card.json")
    card = json.loads((ckpt / "card.json").read_text())
    (ckpt / "card.json").write_text(json.dumps({**card, "method": "shapes-demo"}))
    res, _, _ = _run(runner, cli, out, *common, "--model", f"sparc:{ckpt}", "--model-name", "seed0")
    assert res["role"] == "model" and res["seed_group"] == "shapes-demo"
    res, _, _ = _run(runner, cli, out, *common, "--model", f"sparc:{ckpt}", "--model-name", "other",
                     "--seed-group", "mine", "--role", "reference")
    assert res["role"] == "reference" and res["seed_group"] == "mine"
    r = runner.invoke(cli, ["run", "-q", "-o", str(out), *common, "--model", spec, "--role", "baseline"])
    assert r.exit_code == 2 and "baseline" in r.output
