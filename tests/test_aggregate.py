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


def test_group_mean_resamples_classes_exactly():
    records = [{"cluster": "a", "label": 0, "hit": 1.0}, {"cluster": "b", "label": 0, "hit": 0.0},
               {"cluster": "c", "label": 1, "hit": 1.0}, {"cluster": "d", "label": 2, "hit": 0.5}]
    sums = ClusterSums(records, {"mpc": {"kind": "group_mean", "field": "hit", "group": "label", "scale": 100}})
    assert sums.compute()["mpc"][0] == pytest.approx(100 * (0.5 + 1.0 + 0.5) / 3)
    # a resample with a twice, c once, no b, no d: class 0 recall 1, class 1 recall 1, class 2 absent
    assert sums.compute(np.array([[2.0, 0.0, 1.0, 0.0]]))["mpc"][0] == pytest.approx(100.0)
    # one cluster holding records of two classes
    mixed = [{"cluster": "a", "label": 0, "hit": 1.0}, {"cluster": "a", "label": 1, "hit": 0.0},
             {"cluster": "b", "label": 1, "hit": 1.0}]
    both = ClusterSums(mixed, {"mpc": {"kind": "group_mean", "field": "hit", "group": "label"}})
    assert both.compute()["mpc"][0] == pytest.approx((1.0 + 0.5) / 2)
    assert both.compute(np.array([[0.0, 1.0]]))["mpc"][0] == pytest.approx(1.0)  # only b: class 1 recall 1


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


def test_group_mean_sums_survive_a_baseline_file_round_trip():
    import json

    from sparc_eval.results.paired import stored_sums, sums_to_json

    rng = np.random.default_rng(4)
    records = [{"cluster": f"img{i // 3}", "label": int(rng.integers(0, 5)), "hit": float(rng.random() < 0.6)}
               for i in range(300)]
    aggs = {"mpc": {"kind": "group_mean", "field": "hit", "group": "label", "scale": 100},
            "top1": {"kind": "mean", "field": "hit", "scale": 100}}
    live = ClusterSums(records, aggs)
    stored = stored_sums(json.loads(json.dumps(sums_to_json(live))), aggs, "baseline.json")
    w = bootstrap_weights(len(live.clusters), n=20, seed=1)
    for key in aggs:
        np.testing.assert_allclose(stored.compute(w)[key], live.compute(w)[key])
