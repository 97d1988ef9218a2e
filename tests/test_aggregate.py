"""Metrics recomputed from per-sample records: aggregation kinds, cluster bootstrap, paired differences."""
from __future__ import annotations

import numpy as np
import pytest

from sparc_eval.results.aggregate import ClusterSums, bootstrap_weights, intervals, paired_differences


def test_aggregation_kinds_hand_computed():
    records = [
        {"cluster": "a", "x": 1.0, "hit": 1, "seen": 2, "I": [1, 0], "U": [2, 0]},
        {"cluster": "a", "x": 0.0, "hit": 0, "seen": 1, "I": [0, 1], "U": [1, 1]},
        {"cluster": "b", "x": 1.0, "hit": 1, "seen": 1, "I": [3, 0], "U": [3, 4]},
    ]
    aggs = {"m": {"kind": "mean", "field": "x", "scale": 100}, "r": {"kind": "ratio", "num": "hit", "den": "seen"},
            "iou": {"kind": "classwise_ratio", "num": "I", "den": "U", "scale": 100},
            "avg": {"kind": "mean_of", "metrics": ["m", "iou"]}}
    out = {k: v[0] for k, v in ClusterSums(records, aggs).compute().items()}
    assert out["m"] == pytest.approx(100 * 2 / 3)
    assert out["r"] == pytest.approx(2 / 4)
    assert out["iou"] == pytest.approx(100 * (4 / 6 + 1 / 5) / 2)
    assert out["avg"] == pytest.approx((out["m"] + out["iou"]) / 2)
    # weights: cluster b twice, cluster a dropped
    w = np.array([[0.0, 2.0]])
    assert ClusterSums(records, aggs).compute(w)["m"][0] == pytest.approx(100.0)


def test_classes_absent_everywhere_are_left_out():
    records = [{"cluster": 1, "I": [2, 0, 0], "U": [4, 0, 2]}]
    out = ClusterSums(records, {"iou": {"kind": "classwise_ratio", "num": "I", "den": "U"}}).compute()
    assert out["iou"][0] == pytest.approx((0.5 + 0.0) / 2)  # class 1 has no union: NaN, excluded


def test_bootstrap_is_seeded_and_resamples_clusters():
    rng = np.random.default_rng(0)
    records = [{"cluster": i // 5, "x": float(rng.random() < 0.3)} for i in range(500)]
    aggs = {"m": {"kind": "mean", "field": "x", "scale": 100}}
    a, b = intervals(records, aggs, seed=1), intervals(records, aggs, seed=1)
    assert a == b
    assert intervals(records, aggs, seed=2) != a
    lo, hi = a["m"]
    point = ClusterSums(records, aggs).compute()["m"][0]
    assert lo < point < hi and 3 < hi - lo < 20
    w = bootstrap_weights(7, n=4, seed=0)
    assert w.shape == (4, 7) and (w.sum(1) == 7).all()


def test_paired_differences_detect_real_change_and_not_noise():
    rng = np.random.default_rng(3)
    base = [{"cluster": i, "x": float(v)} for i, v in enumerate(rng.random(400) < 0.5)]
    same = [dict(r) for r in base]
    better = [{"cluster": r["cluster"], "x": 1.0 if i % 4 == 0 else r["x"]} for i, r in enumerate(base)]
    aggs = {"m": {"kind": "mean", "field": "x", "scale": 100}}
    none = paired_differences(base, aggs, same, aggs)["m"]
    assert none["diff"] == 0 and none["p_value"] == 1.0
    up = paired_differences(base, aggs, better, aggs)["m"]
    assert up["diff"] > 0 and up["lo"] > 0 and up["p_value"] < 0.01 and up["n_clusters"] == 400
