"""Controls (sparc_eval.metrics.controls): hand-computed cases, oracle and permutation checks.

- segmentation chance: hand-computed priors; a permuted-label predictor (every pixel predicted as the
  label of a random pixel) lands on the prior-sampling chance within its bootstrap interval, the
  majority predictor on its value exactly;
- artifact_acc: a constructed artifact (positive always shorter) gives ~100, the shapes world's
  SugarCrepe files (v5) give no flagged category, swapped words give exactly 50;
- faithfulness chance, *_miss metrics, blind scores, Holm, seed statistics.
"""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from sparc_eval.metrics import registry
from sparc_eval.metrics.compositional import selection_correct
from sparc_eval.metrics.controls import (
    MISS_AGGREGATIONS,
    artifact_accuracy,
    blind_scores,
    bootstrap_p_value,
    covers,
    faithfulness_chance,
    holm,
    method_difference,
    miss_fields,
    miss_metrics,
    seed_summary,
    seed_t_interval,
    segmentation_chance,
    significant,
    two_way_bootstrap,
)
from sparc_eval.metrics.kprecision import chance_k_precision, k_precision_refs
from sparc_eval.metrics.segmentation import dataset_metrics, intersect_and_union, present_class_scores, zero_counts


def test_segmentation_chance_hand_computed_standard():
    # two images, 3 classes; dataset areas 60 / 30 / 10 -> p = .6 .3 .1
    area = np.array([[40, 20, 0], [20, 10, 10]])
    ch = segmentation_chance(area)
    p = np.array([0.6, 0.3, 0.1])
    prior_miou = np.mean(p / (2 - p))  # 0.2920...
    majority_miou = 0.6 / 3
    assert ch.values["mIoU"] == pytest.approx(100 * max(prior_miou, majority_miou))
    assert ch.values["mAcc"] == pytest.approx(100 / 3)  # prior: mean p = 1/3; majority: 1/3 too
    assert ch.values["aAcc"] == pytest.approx(60.0)  # majority 0.6 > prior sum p^2 = 0.46
    assert ch.method["aAcc"].startswith("majority class") and ch.method["mIoU"].startswith("prior sampling")


def test_segmentation_chance_hand_computed_sparc_paper():
    # classes 0 (background, excluded), 1, 2; image 0: f1 = 1 ; image 1: f1 = f2 = 1/2 ; prior q1 = 3/4, q2 = 1/4
    area = np.array([[0, 20, 0], [0, 10, 10]])
    ch = segmentation_chance(area, "sparc-paper", exclude=[0])
    iou = lambda q, f: q * f / (q + f - q * f)  # noqa: E731
    prior = np.mean([iou(0.75, 1.0), (iou(0.75, 0.5) + iou(0.25, 0.5)) / 2])
    majority = np.mean([1.0, 0.5 / 2])  # class 1 everywhere: IoU_1 = f1, class 2 IoU 0
    assert ch.values["mIoU"] == pytest.approx(100 * max(prior, majority))
    assert ch.values["mAcc"] == pytest.approx(100 * max(np.mean([0.75, (0.75 + 0.25) / 2]), np.mean([1, 0.5])))
    with pytest.raises(ValueError, match="protocol"):
        segmentation_chance(area, "nope")


def _bootstrap(values: np.ndarray, stat, n=300, seed=0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    draws = [stat(rng.integers(0, len(values), len(values))) for _ in range(n)]
    return float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def test_permuted_label_predictor_lands_on_segmentation_chance():
    rng = np.random.default_rng(0)
    labels = [rng.choice(4, size=(16, 16), p=[0.5, 0.25, 0.15, 0.1]) for _ in range(60)]
    flat = np.concatenate([lab.ravel() for lab in labels])
    shuffled = rng.permutation(flat)
    preds, start = [], 0
    for lab in labels:
        preds.append(shuffled[start:start + lab.size].reshape(lab.shape))
        start += lab.size
    counts = [intersect_and_union(p, lab, 4) for p, lab in zip(preds, labels)]
    area = np.array([c.label_area for c in counts])
    ch = segmentation_chance(area)

    def miou(idx):
        total = zero_counts(4)
        for i in idx:
            total = total + counts[i]
        return 100 * dataset_metrics(total)["mIoU"]

    lo, hi = _bootstrap(np.arange(len(counts)), miou)
    assert lo <= ch.values["mIoU"] <= hi
    # the majority predictor scores exactly its stated value (here majority beats prior sampling on aAcc)
    total = zero_counts(4)
    for lab in labels:
        total = total + intersect_and_union(np.zeros_like(lab), lab, 4)
    assert 100 * dataset_metrics(total)["aAcc"] == pytest.approx(ch.values["aAcc"])
    # sparc-paper protocol: per-image means over present classes (0 = background excluded)
    ch2 = segmentation_chance(area, "sparc-paper", exclude=[0])
    per_image = np.array([present_class_scores(c, exclude=[0])[0] for c in counts])
    lo, hi = _bootstrap(per_image, lambda idx: 100 * per_image[idx].mean())
    assert lo <= ch2.values["mIoU"] <= hi


def test_artifact_accuracy_finds_a_constructed_artifact_and_not_a_swap():
    rng = random.Random(0)
    colours, kinds = ["red", "blue", "green", "white"], ["circle", "square", "star"]
    options, groups = [], []
    for i in range(300):
        a, b = f"{rng.choice(colours)} {rng.choice(kinds)}", f"{rng.choice(colours)} {rng.choice(kinds)}"
        options.append([f"a {a} and a {b}", f"a {a}, a {b} and a {rng.choice(colours)} {rng.choice(kinds)}"])
        groups.append(f"img{i // 2}")  # two items per image: folds must keep them together
    res = artifact_accuracy(options, [0] * len(options), groups)["all"]
    assert res.acc > 99 and res.flagged and res.n == 300
    swapped = [[f"a {c} {k} left of a {d} {m}", f"a {d} {k} left of a {c} {m}"]
               for c, d, k, m in ((rng.choice(colours), rng.choice(colours), rng.choice(kinds), rng.choice(kinds))
                                  for _ in range(200))]
    res = artifact_accuracy(swapped, [rng.randint(0, 1) for _ in swapped], [f"i{i}" for i in range(200)],
                            ["swap"] * 200)
    assert set(res) == {"swap"}
    # unigram counts are equal; bigrams are symmetric in expectation: no flag
    assert not res["swap"].flagged and res["swap"].interval[0] <= 60


def test_artifact_accuracy_of_the_shapes_world_probe_is_at_chance(shapes_root):
    options, correct, groups, cats = [], [], [], []
    for f in sorted((shapes_root / "sugarcrepe").glob("*.json")):
        for item in json.loads(f.read_text()).values():
            options.append([item["caption"], item["negative_caption"]])
            correct.append(0)
            groups.append(item["filename"])
            cats.append(f.stem)
    res = artifact_accuracy(options, correct, groups, cats)
    assert len(res) == 7
    for cat, r in res.items():
        assert r.acc <= 60 and not r.flagged, (cat, r)


def test_faithfulness_chance_and_miss_metrics():
    # K-P chance is the mean of the per-image expected values
    pool = [["red", "circle"], ["blue", "square"], ["red", "square"]]
    refs = [[["red", "circle"]], [["blue", "square"]]]
    kp = chance_k_precision(pool, refs)
    want = [np.mean([k_precision_refs(r, rf) for r in pool]) for rf in refs]
    np.testing.assert_allclose(kp, want)
    # CHAIR: objects (circle, square); pool captions mention [circle], [square], [circle, square]
    pool_objects = np.array([[1, 0], [0, 1], [1, 1]])
    image_objects = np.array([[1, 0], [0, 1]])  # image 0 has a circle, image 1 a square
    ch = faithfulness_chance(kp, None, pool_objects, image_objects)
    assert ch.values["K-P"] == pytest.approx(100 * np.mean(want)) and "K-Pna" not in ch.values
    # hallucinated mentions: image 0 -> 0 + 1 + 1, image 1 -> 1 + 0 + 1 = 4 of 2 * 4 mentions
    assert ch.values["CHAIR_i"] == pytest.approx(50.0)
    # captions with a hallucination: image 0 -> 2 of 3, image 1 -> 2 of 3
    assert ch.values["CHAIR_s"] == pytest.approx(100 * 4 / 6)

    records = [{"kp": 1.0, "kpna": 1.0, "chair_any": 0, "chair_hallucinated": 0, "chair_mentions": 2},
               {"kp": 0.5, "kpna": 0.25, "chair_any": 1, "chair_hallucinated": 1, "chair_mentions": 2},
               {"kp": 0.0, "kpna": 0.0, "chair_any": 1, "chair_hallucinated": 2, "chair_mentions": 2}]
    own = [True, False, False]
    recs = [{**r, **miss_fields(r, o)} for r, o in zip(records, own)]
    m = miss_metrics(recs)
    assert m == {"K-P_miss": pytest.approx(25.0), "K-Pna_miss": pytest.approx(12.5), "CHAIR_i_miss": pytest.approx(75.0),
                 "CHAIR_s_miss": pytest.approx(100.0)}
    assert set(MISS_AGGREGATIONS) == set(m)
    assert miss_metrics([{**r, **miss_fields(r, True)} for r in records]) == {}
    for key in m:
        assert registry.is_registered(key)
    assert not registry.get("CHAIR_i_miss").higher_is_better and registry.get("K-P_miss").higher_is_better


def test_blind_scores_use_the_mean_image():
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    imgs = torch.tensor([[1.0, 0.0], [0.8, 0.6]])
    s = blind_scores(txt, np.array([[0, 1], [1, 2], [2, -1]]), imgs)
    mean = np.array([0.9, 0.3]) / np.linalg.norm([0.9, 0.3])
    np.testing.assert_allclose(s[:, :1].ravel(), [mean[0], mean[1], 0.6 * mean[0] + 0.8 * mean[1]], rtol=1e-6)
    assert np.isnan(s[2, 1])
    assert selection_correct(s[:2], np.array([0, 1])).tolist() == [True, True]
    for key in ("blind_acc", "blind_acc.add_att", "artifact_acc", "artifact_acc.swap_obj"):
        assert registry.is_registered(key) and registry.get(key).control


def test_holm_hand_computed():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm({"a": 0.02, "b": 0.02}) == {"a": pytest.approx(0.04), "b": pytest.approx(0.04)}
    assert holm([0.6, 0.9]) == [1.0, 1.0]
    assert bootstrap_p_value(np.array([1.0, 2.0, 3.0, -1.0])) == pytest.approx(0.5)
    assert bootstrap_p_value(np.array([1.0, 2.0])) == 0.0


def test_at_chance_and_significance_marks():
    assert covers([10.0, 20.0], 16.7) and not covers([17.0, 20.0], 16.7) and not covers(None, 1.0)
    assert significant([0.5, 2.0]) and not significant([-0.5, 2.0])
    assert not significant([0.5, 2.0], a_at_chance=True, b_at_chance=True)
    assert significant([0.5, 2.0], a_at_chance=True)


def test_seed_statistics_hand_computed():
    assert seed_summary([1.0, 3.0]) == (2.0, pytest.approx(np.sqrt(2)))
    assert seed_summary([5.0]) == (5.0, 0.0)
    mean, (lo, hi) = seed_t_interval([10.0, 11.0, 12.0], [12.0, 14.0, 13.0])
    # differences 2, 3, 1: mean 2, sd 1, t(0.975, 2) = 4.3027
    assert mean == pytest.approx(2.0)
    assert (lo, hi) == (pytest.approx(2 - 4.302653 / np.sqrt(3), abs=1e-5), pytest.approx(2 + 4.302653 / np.sqrt(3), abs=1e-5))
    with pytest.raises(ValueError, match="same number"):
        seed_t_interval([1.0], [2.0])


def test_two_way_bootstrap_covers_seed_and_image_variance():
    rng = np.random.default_rng(1)
    n = 400
    base = rng.random(n)
    a = np.stack([(base + rng.normal(0, 0.3, n) > 0.5).astype(float) for _ in range(3)])
    b = np.stack([(base + 0.2 + rng.normal(0, 0.3, n) > 0.5).astype(float) for _ in range(3)])
    diff = two_way_bootstrap(a, b, n_boot=400)
    assert diff.point == pytest.approx(100 * (b.mean() - a.mean()))
    assert diff.interval[0] < diff.point < diff.interval[1] and diff.interval[0] > 0
    same = two_way_bootstrap(a, a[::-1], n_boot=400)
    assert covers(same.interval, 0.0)
    # ratio metric with per-class areas: [S, N, C]
    num = rng.integers(0, 5, size=(2, 50, 3)).astype(float)
    den = num + rng.integers(1, 5, size=(2, 50, 3))
    r = two_way_bootstrap(num, num, den, den, n_boot=200)
    assert r.point == pytest.approx(0.0) and covers(r.interval, 0.0)
    md = method_difference(a, b, n_boot=400)
    assert md.seeds == (3, 3) and md.t is not None and md.shown in ("t", "bootstrap")
    assert md.interval == (md.t if md.shown == "t" else md.bootstrap)
