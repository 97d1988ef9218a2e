"""Linear probe: the solver against scikit-learn, the lambda search, splits, and CLI runs on the shapes world."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_OPEN_CLIP
from sklearn.linear_model import LogisticRegression

from sparc_eval.metrics.linear_probe import (
    GRID,
    SWEEP_TOL,
    ProbeProblem,
    fewshot_indices,
    stratified_split,
    sweep,
    top1,
)
from sparc_eval.results.aggregate import ClusterSums
from sparc_eval.results.store import read_samples

ORACLES = Path(__file__).with_name("oracles_classification.py")


def _clusters(n_per_class: int, n_classes: int, dim: int, spread: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=g) * 3
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    x = torch.nn.functional.normalize(centres[y] + spread * torch.randn(len(y), dim, generator=g), dim=1)
    return x, y.numpy()


def test_fit_matches_scikit_learn_at_a_fixed_strength():
    x, y = _clusters(60, 3, 8, 2.0, seed=0)  # overlapping classes: the optimum is interior
    lam = 1e-2
    ours = ProbeProblem(x, y, 3, tol=1e-9).fit(lam)
    ref = LogisticRegression(C=1.0 / (lam * len(y)), tol=1e-10, max_iter=10_000).fit(x.double().numpy(), y)
    p_ours = torch.softmax(ours.scores(x), 1).numpy()
    assert np.abs(p_ours - ref.predict_proba(x.double().numpy())).max() < 2e-4
    assert np.array_equal(p_ours.argmax(1), ref.predict(x.double().numpy()))


def test_separable_features_reach_100_and_shuffled_labels_reach_chance():
    x, y = _clusters(150, 4, 16, 0.3, seed=1)
    xtr, ytr, xva, yva, xte, yte = x[::3], y[::3], x[1::3], y[1::3], x[2::3], y[2::3]
    sw = sweep(ProbeProblem(xtr, ytr, 4), xva, yva)
    assert sw.lam in GRID and sw.val_top1[sw.best] == 100.0
    assert top1(sw.probes[sw.best], xte, yte) == 100.0
    shuffled = np.random.default_rng(0).permutation(ytr)
    sw_s = sweep(ProbeProblem(xtr, shuffled, 4), xva, yva)
    acc = top1(sw_s.probes[sw_s.best], xte, yte)
    assert abs(acc - 25.0) < 15.0, acc  # 200 test images: chance 25 +- 3 standard errors
    assert sw_s.lam in GRID


def test_search_visits_the_coarse_points_then_halves_around_the_best():
    x, y = _clusters(40, 3, 8, 1.5, seed=2)
    sw = sweep(ProbeProblem(x[::2], y[::2], 3), x[1::2], y[1::2])
    visited = sorted(sw.val_top1)
    assert set(range(0, 97, 16)) <= set(visited)
    assert len(visited) <= 7 + 8
    assert all(j in visited for j in (sw.best - 1, sw.best + 1) if 0 <= j < 97)
    best = max(sw.val_top1.values())
    assert sw.val_top1[sw.best] == best
    assert sw.best == max(i for i in visited if sw.val_top1[i] == best)  # ties go to the larger lambda
    table = sw.table()
    assert [r["lambda"] for r in table] == [float(GRID[i]) for i in visited]


def test_deterministic():
    x, y = _clusters(50, 3, 8, 1.5, seed=3)
    runs = [sweep(ProbeProblem(x[::2], y[::2], 3), x[1::2], y[1::2]) for _ in range(2)]
    assert runs[0].best == runs[1].best and runs[0].val_top1 == runs[1].val_top1
    assert torch.equal(runs[0].probes[runs[0].best].weight, runs[1].probes[runs[1].best].weight)


def test_stratified_split_and_fewshot_sampling():
    y = np.array([0] * 10 + [1] * 5 + [2] * 1 + [3] * 2)
    tr, va = stratified_split(y, 0.2, seed=0)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(y)))
    assert np.bincount(y[va], minlength=4).tolist() == [2, 1, 0, 1]
    assert np.array_equal(va, stratified_split(y, 0.2, seed=0)[1])
    assert not np.array_equal(va, stratified_split(y, 0.2, seed=1)[1])
    idx = fewshot_indices(y[:15], 3, seed=0)
    assert np.bincount(y[idx]).tolist() == [3, 3]
    with pytest.raises(ValueError, match="class 2 has 1 training images, fewer than k=2"):
        fewshot_indices(y, 2, seed=0)


def test_cli_probe_with_the_oracle_scores_100_and_permuted_scores_near_chance(runner, cli, shapes_root, tmp_path):
    for builder, out in (("build", "oracle"), ("build_permuted", "permuted")):
        res = runner.invoke(cli, ["run", "--task", "shapes-linear-probe", "--model", f"py:{ORACLES}:{builder}",
                                  "--pretrained", str(shapes_root), "--model-name", out, "-o", str(tmp_path), "-q"])
        assert res.exit_code == 0, res.output
    good = json.loads((tmp_path / "oracle" / "shapes-linear-probe.json").read_text())
    bad = json.loads((tmp_path / "permuted" / "shapes-linear-probe.json").read_text())
    assert good["metrics"]["top1"] == 100.0 and good["metrics"]["mean_per_class_recall"] == 100.0
    assert good["details"]["chosen_lambda"] in GRID.tolist()
    assert good["details"]["validation"] == "dataset split 'val'"
    assert good["chance"]["top1"] == pytest.approx(100 / 6)
    assert bad["metrics"]["top1"] < 45.0


def test_cli_probe_full_and_fewshot_on_a_real_model(runner, cli, shapes_root, tmp_path):
    res = runner.invoke(cli, ["run", "--task", "shapes-linear-probe", "--model", TINY_OPEN_CLIP, "-o", str(tmp_path),
                              "-q", "--param", "fewshot_k=[2]", "--param", "fewshot_seeds=3", "--param", "val_split="])
    assert res.exit_code == 0, res.output
    path = next(tmp_path.glob("*/shapes-linear-probe.json"))
    r = json.loads(path.read_text())
    assert set(r["metrics"]) == {"top1", "top5", "mean_per_class_recall", "top1.2shot", "top5.2shot",
                                 "mean_per_class_recall.2shot"}
    few = r["details"]["fewshot"]["2"]
    assert len(few["top1"]["per_seed"]) == 3 and few["top1"]["mean"] == pytest.approx(r["metrics"]["top1.2shot"])
    assert few["top1"]["std"] == pytest.approx(np.std(few["top1"]["per_seed"], ddof=1))
    assert r["details"]["validation"].startswith("stratified 20% of each training class")
    assert r["details"]["features"].startswith("post_projection")
    assert len(r["details"]["sweep"]) >= 7 and r["details"]["chosen_lambda"] in GRID.tolist()
    # the metrics are recomputed exactly from the per-sample records
    recomputed = ClusterSums(read_samples(path, r), r["aggregations"]).compute()
    for k, v in r["metrics"].items():
        assert recomputed[k][0] == pytest.approx(v), k


def test_cli_probe_on_pre_projection_features(runner, cli, shapes_root, tmp_path):
    res = runner.invoke(cli, ["run", "--task", "shapes-linear-probe", "--model", TINY_OPEN_CLIP, "-o", str(tmp_path),
                              "-q", "--model-name", "pre", "--param", "features=pre_projection"])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "pre" / "shapes-linear-probe.json").read_text())
    assert r["details"]["features"].startswith("pre_projection") and 0 <= r["metrics"]["top1"] <= 100
    assert r["provenance"]["engine"]["images_encoded"] > 0  # its own cache entries, not the embeddings'
    res = runner.invoke(cli, ["run", "--task", "shapes-linear-probe", "--model", f"py:{ORACLES}:build_permuted",
                              "--pretrained", str(shapes_root), "-o", str(tmp_path), "--param",
                              "features=pre_projection"])
    assert res.exit_code == 2 and "features=pre_projection needs pre-projection image features" in res.output


def test_converged_means_the_final_gradient_is_within_the_tolerance():
    x, y = _clusters(60, 3, 8, 2.0, seed=4)
    problem = ProbeProblem(x, y, 3)

    def max_grad(probe):  # the gradient at the returned probe, in the problem's scaled space
        w = probe.weight.to(problem.z) / problem.scale
        b = probe.bias.to(problem.z) + probe.weight.to(problem.z) @ problem.mean
        _, gw, gb = problem.loss_and_grad(w, b, probe.lam * problem.scale ** 2)
        return max(float(gw.abs().max()), float(gb.abs().max()))

    ok = problem.fit(1e-2)
    assert ok.converged and ok.n_iter < problem.max_iter
    # a tolerance float32 cannot reach: L-BFGS stops on a stalled objective before max_iter, not converged
    stalled = problem.fit(1e-2, tol=1e-12)
    assert stalled.n_iter < problem.max_iter and not stalled.converged and max_grad(stalled) > 1e-12
    # L-BFGS's evaluation budget (1.25 x max_iter) ends this fit after 1 of 2 iterations: n_iter < max_iter,
    # yet not converged
    capped = ProbeProblem(x, y, 3, max_iter=2).fit(1e-4)
    assert capped.n_iter == 1 and not capped.converged and max_grad(capped) > SWEEP_TOL


def test_splits_group_each_class_once_and_refuse_k_below_1():
    y = np.random.default_rng(0).integers(0, 50, 5000)
    tr, va = stratified_split(y, 0.2, seed=3)
    for c in range(50):  # the per-class rule, class by class
        n_c = int((y == c).sum())
        assert int((y[va] == c).sum()) == min(max(round(n_c * 0.2), 1), n_c - 1)
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(5000))
    idx = fewshot_indices(y, 4, seed=1)
    assert np.bincount(y[idx], minlength=50).tolist() == [4] * 50 and np.array_equal(idx, np.sort(idx))
    with pytest.raises(ValueError, match="k=0: expected at least 1"):
        fewshot_indices(y, 0, seed=0)


@pytest.mark.parametrize("param,match", [
    ("fewshot_seeds=0", r"fewshot_seeds: 0 is too small; expected a value >= 1"),
    ("fewshot_k=[0]", r"fewshot_k: 0 is too small; expected a value >= 1"),
    ("fewshot_k=[-1]", r"fewshot_k: -1 is too small"),
    ("fewshot_k=[2,2]", r"fewshot_k: \[2\] listed more than once"),
    ("max_iter=0", r"max_iter: 0 is too small"),
    ("val_proportion=0", r"val_proportion: 0.0 leaves no training or no validation images"),
    ("val_proportion=1", r"val_proportion: 1.0 leaves no training or no validation images"),
    ("val_proportion=1.5", r"val_proportion: 1.5 is too large; expected a value <= 1"),
])
def test_bad_probe_params_are_config_errors(runner, cli, tmp_path, param, match):
    res = runner.invoke(cli, ["run", "--task", "shapes-linear-probe", "--model", f"py:{ORACLES}:build", "-o",
                              str(tmp_path), "--param", param])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert re.search(match, res.output), res.output
