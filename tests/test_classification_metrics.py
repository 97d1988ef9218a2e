"""Top-k accuracy and mean per-class recall: hand-computed cases, ties, brute force, scikit-learn."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, top_k_accuracy_score

from sparc_eval.metrics.classification import (
    chance,
    classification_metrics,
    embedding_counts,
    hit_probability,
    mean_per_class_recall,
    score_counts,
)

SCORES = torch.tensor([[0.9, 0.05, 0.05],   # label 0: best -> top-1 hit
                       [0.2, 0.5, 0.3],     # label 2: one class above -> top-2 hit only
                       [0.1, 0.3, 0.6],     # label 2: hit
                       [0.5, 0.2, 0.3],     # label 1: two classes above -> miss at 1 and 2
                       [0.1, 0.2, 0.7]])    # label 2: hit
LABELS = np.array([0, 2, 2, 1, 2])


def test_hand_computed_accuracy_and_mean_per_class_recall():
    counts = score_counts(SCORES, LABELS)
    assert counts.above.tolist() == [0, 1, 0, 2, 0]
    assert counts.tied.tolist() == [0, 0, 0, 0, 0]
    assert counts.pred.tolist() == [0, 1, 2, 0, 2]
    m = classification_metrics(counts, LABELS, 3, ks=(1, 2))
    assert m["top1"] == pytest.approx(60.0)          # 3 of 5
    assert m["top2"] == pytest.approx(80.0)          # 4 of 5
    # per class: class 0 1/1, class 1 0/1, class 2 2/3
    assert m["mean_per_class_recall"] == pytest.approx(100 * (1 + 0 + 2 / 3) / 3)
    assert m["mean_per_class_recall"] == pytest.approx(100 * balanced_accuracy_score(LABELS, counts.pred))


def test_ties_are_resolved_by_expectation():
    # all scores equal: exactly chance at every k
    counts = score_counts(torch.zeros(7, 4), np.array([0, 1, 2, 3, 0, 1, 2]))
    assert counts.tied.tolist() == [3] * 7
    m = classification_metrics(counts, np.array([0, 1, 2, 3, 0, 1, 2]), 4, ks=(1, 2, 5))
    assert m == {"top1": 25.0, "top2": 50.0, "top5": 100.0, "mean_per_class_recall": 25.0}
    assert m == chance(4, (1, 2, 5))
    # true class tied with one other at the top: half a hit at k=1, a full hit at k=2
    c = score_counts(torch.tensor([[0.5, 0.5, 0.1]]), np.array([1]))
    assert hit_probability(c, 1).tolist() == [0.5] and hit_probability(c, 2).tolist() == [1.0]
    # one class above, true class tied with two others: P(hit@2) = 1/3
    c = score_counts(torch.tensor([[0.9, 0.4, 0.4, 0.4]]), np.array([2]))
    assert (c.above[0], c.tied[0]) == (1, 2)
    assert hit_probability(c, 2)[0] == pytest.approx(1 / 3)


def test_tie_rule_equals_the_mean_over_all_tie_orders():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.integers(0, 3, size=(60, 5)).astype(np.float32))  # many ties
    labels = rng.integers(0, 5, size=60)
    counts = score_counts(scores, labels)
    for k in (1, 2, 3):
        hits = []
        for order in itertools.permutations(range(5)):  # a tie-break order of the classes
            rank = np.asarray(order)
            keyed = scores.numpy() * 10 + (4 - rank)[None, :] * 1e-3  # higher score first, then the order
            top = np.argsort(-keyed, axis=1, kind="stable")[:, :k]
            hits.append((top == labels[:, None]).any(1))
        assert hit_probability(counts, k) == pytest.approx(np.mean(hits, axis=0))


def test_agreement_with_brute_force_and_sklearn_on_fixed_embeddings():
    g = torch.Generator().manual_seed(3)
    img = torch.nn.functional.normalize(torch.randn(500, 16, generator=g), dim=1)
    cls = torch.nn.functional.normalize(torch.randn(37, 16, generator=g), dim=1)
    labels = torch.randint(0, 37, (500,), generator=g).numpy()
    counts = embedding_counts(img, cls, labels, block=64)  # chunked
    scores = (img @ cls.T).numpy()
    order = np.argsort(-scores, axis=1)
    for k in (1, 5):
        brute = 100 * float((order[:, :k] == labels[:, None]).any(1).mean())
        ours = classification_metrics(counts, labels, 37)[f"top{k}"]
        assert ours == pytest.approx(brute, abs=1e-9)
        assert ours == pytest.approx(100 * top_k_accuracy_score(labels, scores, k=k, labels=np.arange(37)))
    assert mean_per_class_recall(hit_probability(counts, 1), labels, 37) == pytest.approx(
        100 * balanced_accuracy_score(labels, order[:, 0]))
    assert np.array_equal(counts.pred, order[:, 0])
    full = score_counts(img @ cls.T, labels)
    assert np.array_equal(full.above, counts.above) and np.array_equal(full.tied, counts.tied)
    # scored on the model's device (GPU float32 may order near-equal scores differently), counts back on the CPU
    on_device = embedding_counts(img, cls, labels, block=100, device="cuda" if torch.cuda.is_available() else "cpu")
    assert isinstance(on_device.above, np.ndarray) and (on_device.pred == counts.pred).mean() >= 0.99


def test_group_mean_aggregation_is_mean_per_class_recall():
    from sparc_eval.results.aggregate import ClusterSums

    hit = hit_probability(score_counts(SCORES, LABELS), 1)
    records = [{"cluster": i, "label": int(y), "top1": float(h)} for i, (y, h) in enumerate(zip(LABELS, hit))]
    agg = {"m": {"kind": "group_mean", "field": "top1", "group": "label", "scale": 100}}
    got = ClusterSums(records, agg).compute()["m"][0]  # class 3 absent: left out, as scikit-learn does
    assert got == pytest.approx(mean_per_class_recall(hit, LABELS, 4))


def test_nan_true_score_is_a_miss():
    c = score_counts(torch.tensor([[float("nan"), 0.1, 0.2]]), np.array([0]))
    assert hit_probability(c, 1)[0] == 0.0 and hit_probability(c, 5)[0] == 0.0


def test_prompt_sets_and_ensembling(tmp_path):
    import json

    from sparc_eval.data.base import ImageSet
    from sparc_eval.data.classification import ClassificationSet
    from sparc_eval.errors import ConfigError
    from sparc_eval.task_types.zeroshot_classification import build_prompts, class_embeddings

    data = ClassificationSet(ImageSet([], [], "fp"), np.zeros(0), ["cat", "dog"], "fp", templates=["art of a {c}"])
    assert build_prompts("classname", data).texts == ["cat", "dog"]
    assert build_prompts("dataset", data).texts == ["art of a cat", "art of a dog"]
    p = build_prompts("openai_imagenet", data)
    assert len(p.texts) == 160 and p.texts[0] == "a bad photo of a cat." and p.owner.tolist() == [0] * 80 + [1] * 80
    (tmp_path / "t.txt").write_text("a {} here\n\nthe {c} there\n")
    assert build_prompts(str(tmp_path / "t.txt"), data).texts == ["a cat here", "the cat there", "a dog here",
                                                                  "the dog there"]
    (tmp_path / "cupl.json").write_text(json.dumps({"cat": ["a furry cat", "a cat sleeping"], "dog": ["a dog"]}))
    cupl = build_prompts(str(tmp_path / "cupl.json"), data)
    assert cupl.texts == ["a furry cat", "a cat sleeping", "a dog"] and cupl.owner.tolist() == [0, 0, 1]
    (tmp_path / "partial.json").write_text(json.dumps({"cat": ["a cat"]}))
    with pytest.raises(ConfigError, match=r"no prompt list for class\(es\) \['dog'\]"):
        build_prompts(str(tmp_path / "partial.json"), data)
    with pytest.raises(ConfigError, match="not a shipped template set"):
        build_prompts("openai", data)
    # CLIP's ensembling: mean of the normalised prompt embeddings, re-normalised
    emb = torch.nn.functional.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    w = class_embeddings(emb, cupl.owner, 2)
    assert torch.allclose(w[0], torch.nn.functional.normalize(emb[:2].mean(0), dim=0), atol=1e-6)
    assert torch.allclose(w[1], emb[2], atol=1e-6)
