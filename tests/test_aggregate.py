"""Metrics recomputed from per-sample records: aggregation kinds, cluster bootstrap, paired differences."""
from __future__ import annotations

import numpy as np
import pytest

from sparc_eval.results.aggregate import ClusterSums, bootstrap_weights, intervals
from sparc_eval.results.paired import paired_shared


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
    none = paired_shared(base, aggs, same, aggs)["m"]
    assert none.diff == 0 and none.p_value == 1.0 and none.method == "paired"
    up = paired_shared(base, aggs, better, aggs)["m"]
    assert up.diff > 0 and up.lo > 0 and up.p_value < 0.01 and up.n_clusters == 400


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


def _loop_sums(records, aggs, clusters=None):
    """The per-record loop that ``ClusterSums`` replaced (reference for exact agreement)."""
    key = lambda r: tuple(r["cluster"]) if isinstance(r["cluster"], list) else r["cluster"]  # noqa: E731
    clusters = list(dict.fromkeys(key(r) for r in records)) if clusters is None else clusters
    index = {c: i for i, c in enumerate(clusters)}
    sums, counts, cells = {}, {}, {}
    for spec in aggs.values():
        fields = [spec["field"]] if spec["kind"] in ("mean", "group_mean") else [spec["num"], spec["den"]]
        for f in fields:
            width = next((len(r[f]) for r in records if isinstance(r.get(f), list)), None)
            sums[f] = np.zeros((len(clusters), width) if width else len(clusters))
            counts[f] = np.zeros(len(clusters))
    for r in records:
        c = index.get(key(r))
        if c is None:
            continue
        for f in sums:
            if r.get(f) is not None:
                sums[f][c] += np.asarray(r[f], dtype=np.float64)
                counts[f][c] += 1
        for spec in aggs.values():
            if spec["kind"] == "group_mean" and r.get(spec["field"]) is not None and r.get(spec["group"]) is not None:
                cell = cells.setdefault((spec["field"], spec["group"]), {}).setdefault((c, r[spec["group"]]), [0.0, 0])
                cell[0] += float(r[spec["field"]])
                cell[1] += 1
    return sums, counts, cells


def test_cluster_sums_equal_the_record_by_record_loop_exactly():
    rng = np.random.default_rng(5)
    records = []
    for i in range(3000):
        r = {"cluster": [i // 4, "x"] if i % 9 == 0 else i // 4, "p": float(rng.choice([0, 1 / 3, 0.5, 1, 0.1])),
             "label": int(rng.integers(0, 9)), "I": rng.random(5).tolist(), "U": (1 + rng.random(5)).tolist()}
        if i % 7 == 0:
            r["p"] = None          # present but None: not counted
        if i % 11 == 0:
            del r["label"]         # no group: left out of group_mean only
        records.append(r)
    aggs = {"m": {"kind": "mean", "field": "p"}, "g": {"kind": "group_mean", "field": "p", "group": "label"},
            "iou": {"kind": "classwise_ratio", "num": "I", "den": "U"}}
    some = [c for c in dict.fromkeys(ClusterSums(records, aggs).clusters)][::3][::-1] + ["absent"]
    for clusters in (None, some):
        got = ClusterSums(records, aggs, clusters)
        sums, counts, cells = _loop_sums(records, aggs, clusters)
        for f in sums:
            assert np.array_equal(got.sums[f], sums[f]) and np.array_equal(got.counts[f], counts[f]), f
        g_sums, g_counts = got.grouped[("p", "label")]
        table = cells[("p", "label")]
        assert g_sums.nnz == len(table)
        codes = {g: j for j, g in enumerate(dict.fromkeys(g for _, g in table))}  # first-seen group order
        for (c, g), (s, n) in table.items():
            assert g_sums[c, codes[g]] == s and g_counts[c, codes[g]] == n


def test_bootstrap_blocks_are_one_stream_and_intervals_are_unchanged():
    from sparc_eval.results.aggregate import bootstrap_blocks, paired_bootstrap

    blocks = list(bootstrap_blocks(13, n=50, seed=3, block=7))
    assert [len(b) for b in blocks] == [7] * 7 + [1]
    assert np.array_equal(np.concatenate(blocks), bootstrap_weights(13, n=50, seed=3))

    def records(seed):
        rng = np.random.default_rng(seed)
        return [{"cluster": f"img{i // 3}", "label": int(rng.integers(0, 7)), "top1": float(rng.choice([0, 1 / 3, 0.5, 1])),
                 "num": int(rng.integers(0, 3)), "den": 2} for i in range(600)]

    aggs = {"top1": {"kind": "mean", "field": "top1", "scale": 100},
            "mpcr": {"kind": "group_mean", "field": "top1", "group": "label", "scale": 100},
            "r": {"kind": "ratio", "num": "num", "den": "den", "scale": 100}}
    a, b = records(0), records(1)
    # the values of the implementation that built the whole [1000, n_clusters] weight matrix at once
    assert intervals(a, aggs, seed=0) == {"top1": [45.13888888888889, 51.16666666666667],
                                          "mpcr": [44.90370192819413, 50.954096101092155],
                                          "r": [47.5, 54.166666666666664]}
    paired = paired_bootstrap(ClusterSums(a, aggs), ClusterSums(b, aggs), seed=0)
    assert {k: (v["lo"], v["hi"], v["p_value"]) for k, v in paired.items()} == {
        "top1": (-6.222222222222207, 1.8055555555555434, 0.346), "mpcr": (-5.986941778981184, 2.0753886562531325, 0.4),
        "r": (-2.9166666666666714, 6.249999999999993, 0.516)}


def test_malformed_grouped_sums_are_a_results_error():
    from sparc_eval.errors import ResultsError
    from sparc_eval.results.paired import stored_sums

    good = {"ids": ["a", "b"], "count": [1, 1], "fields": {},
            "grouped": [{"field": "hit", "group": "label", "rows": [0, 1], "cols": [0, 1], "sum": [1, 0], "count": [1, 1]}]}
    aggs = {"mpc": {"kind": "group_mean", "field": "hit", "group": "label", "scale": 100}}
    assert stored_sums(good, aggs, "b.json").compute()["mpc"][0] == 50.0
    bad_items = [{"field": "hit", "group": "label", "rows": [0, 1], "sum": [1, 0], "count": [1, 1]},          # no cols
                 {"field": "hit", "group": "label", "rows": [0, 5], "cols": [0, 1], "sum": [1, 0], "count": [1, 1]},
                 {"field": "hit", "group": "label", "rows": [0], "cols": [0, 1], "sum": [1, 0], "count": [1, 1]},
                 {"field": "hit", "group": "label", "rows": ["x"], "cols": [0], "sum": [1], "count": [1]}, "nonsense"]
    for item in bad_items:
        with pytest.raises(ResultsError, match=r"b.json: per-cluster sums are malformed"):
            stored_sums({**good, "grouped": [item]}, aggs, "b.json")
    with pytest.raises(ResultsError, match="malformed"):
        stored_sums({**good, "grouped": {"field": "hit"}}, aggs, "b.json")
