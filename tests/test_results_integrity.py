"""Results prove what they claim (``results.integrity``), imported CLIP_benchmark results travel as a marked
kind, and ``run`` binds a results folder to one model.

Results are written with the real store and damaged as a careless user or a faulty disk would; every
reader (leaderboard, compare, check, baseline save) must refuse them with exit 2, naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sparc_eval.errors import IntegrityError
from sparc_eval.results.aggregate import ClusterSums, intervals
from sparc_eval.results.collect import collect
from sparc_eval.results.store import read_result, result_path, samples_path, write_result

ACC = {"acc": {"kind": "mean", "field": "hit", "scale": 100}}


def write(root: Path, model: str, hits: np.ndarray, task: str = "toy-acc") -> Path:
    records = [{"cluster": i, "id": f"img{i}", "hit": int(h)} for i, h in enumerate(hits)]
    metrics = {k: float(v[0]) for k, v in ClusterSums(records, ACC).compute().items()}
    result = {"schema": "sparc-eval/result/v2", "task": {"name": task, "type": "t", "version": 1, "config_sha256": "c"},
              "model": {"spec": "py:x", "pretrained": None, "name": model, "weights_sha256": None},
              "dataset": {"fingerprint": "fp", "n_total": len(records), "n_used": len(records)}, "seed": 0,
              "metrics": metrics, "main_metric": "acc", "intervals": intervals(records, ACC), "aggregations": ACC}
    return write_result(result_path(root, model, task), result, records)


@pytest.fixture
def results_cli(cli):
    from sparc_eval.cli.results import COMMANDS

    for command in COMMANDS:
        cli.commands.setdefault(command.name, command)
    return cli


@pytest.fixture
def two(tmp_path) -> tuple[Path, Path]:
    hits = np.zeros(200, int)
    hits[:123] = 1
    return write(tmp_path / "r", "a", hits), write(tmp_path / "r", "b", np.roll(hits, 7))


def _damage(path: Path, how: str) -> str:
    """Damage the result at ``path`` (or its samples); the file the message must name."""
    sp = samples_path(path)
    lines = sp.read_text().splitlines(keepends=True)
    if how == "half":
        sp.write_text("".join(lines[: len(lines) // 2]))
    elif how == "all-hits":
        sp.write_text("".join(json.dumps({**json.loads(x), "hit": 1}, sort_keys=True) + "\n" for x in lines))
    elif how == "duplicated":
        sp.write_text("".join(lines + lines[:1]))
    elif how == "deleted":
        sp.unlink()
    elif how in ("metric", "infinity", "nan"):
        data = json.loads(path.read_text())
        data["metrics"]["acc"] = {"metric": 99.0, "infinity": float("inf"), "nan": float("nan")}[how]
        path.write_text(json.dumps(data))
        return path.name
    elif how == "v1-metric":  # a file written before the sums: the samples still decide
        data = json.loads(path.read_text())
        data["schema"] = "sparc-eval/result/v1"
        for k in ("samples_sha256", "samples_count"):
            data.pop(k)
        data["metrics"]["acc"] = 61.0
        path.write_text(json.dumps(data))
        return path.name
    return sp.name if how != "deleted" else path.name


@pytest.mark.parametrize("how", ["half", "all-hits", "duplicated", "deleted", "metric", "infinity", "nan", "v1-metric"])
@pytest.mark.parametrize("command", ["leaderboard", "compare", "baseline"])
def test_every_reader_refuses_a_result_that_disagrees_with_its_samples(results_cli, runner, two, tmp_path, how,
                                                                       command):
    a, b = two
    named = _damage(a, how)
    args = {"leaderboard": ["leaderboard", str(tmp_path / "r")],
            "compare": ["compare", str(a.parent), str(b.parent)],
            "baseline": ["baseline", "save", str(tmp_path / "r"), "-o", str(tmp_path / "base.json")]}[command]
    r = runner.invoke(results_cli, args)
    assert r.exit_code == 2, r.output
    assert named in r.output and "Traceback" not in r.output
    assert not (tmp_path / "base.json").exists()
    if how in ("metric", "v1-metric", "infinity", "nan"):
        assert "'acc'" in r.output


def test_check_refuses_a_damaged_current_result(results_cli, runner, two, tmp_path):
    a, _ = two
    r = runner.invoke(results_cli, ["baseline", "save", str(tmp_path / "r"), "-o", str(tmp_path / "base.json")])
    assert r.exit_code == 0, r.output
    _damage(a, "all-hits")
    r = runner.invoke(results_cli, ["check", str(tmp_path / "r"), "--baseline", str(tmp_path / "base.json")])
    assert r.exit_code == 2 and samples_path(a).name in r.output and "sha256" in r.output


def test_clean_results_pass_and_record_their_samples_sum_and_count(two):
    a, _ = two
    rec = read_result(a)
    assert rec.schema == "sparc-eval/result/v2" and rec.samples_count == 200 and len(rec.samples_sha256) == 64
    entries = collect([a.parent.parent]).entries
    assert sorted(e.model for e in entries) == ["a", "b"] and len(entries[0].records()) == 200


def test_non_finite_metrics_are_refused_at_write(tmp_path):
    with pytest.raises(IntegrityError, match=r"metric 'acc' is nan, not a finite number"):
        write_result(tmp_path / "m" / "t.json", {"task": {"name": "t"}, "model": {"name": "m"}, "dataset": {},
                                                  "metrics": {"acc": float("nan")}, "main_metric": "acc"}, None)
    assert not (tmp_path / "m" / "t.json").exists()


# -- imported CLIP_benchmark results ---------------------------------------------------------------------

def _cb_json(path: Path, acc1: float, model: str = "ViT-B-32", pretrained: str = "openai") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dataset": "cifar10", "model": model, "pretrained": pretrained,
                                "task": "zeroshot_classification", "metrics": {"acc1": acc1, "acc5": 0.99,
                                                                               "mean_per_class_recall": acc1},
                                "language": "en"}))
    return path


def test_clip_benchmark_results_join_the_board_marked_imported(results_cli, runner, two, tmp_path):
    cb = _cb_json(tmp_path / "cb" / "cifar10_ViT-B-32_openai.v2.en_zeroshot_classification.json", 0.9012)
    r = runner.invoke(results_cli, ["leaderboard", str(tmp_path / "r"), str(tmp_path / "cb"), "--format", "md"])
    assert r.exit_code == 0, r.output
    assert "90.1" in r.output and "imported from clip" in r.output  # markdown escapes the underscore
    out = tmp_path / "board.csv"
    r = runner.invoke(results_cli, ["leaderboard", str(tmp_path / "r"), str(cb), "-o", str(out), "--long"])
    assert r.exit_code == 0, r.output
    import csv

    rows = list(csv.DictReader(out.open()))
    mine = [x for x in rows if x["model"] == "open_clip-vit-b-32-openai"]
    assert {x["metric"]: float(x["value"]) for x in mine} == pytest.approx(
        {"top1": 90.12, "top5": 99.0, "mean_per_class_recall": 90.12})
    assert {x["kind"] for x in mine} == {"imported"} and all(x["lo"] == "" for x in mine)
    acc = [x for x in rows if x["model"] == "a"]
    assert acc[0]["metric"] == "acc" and acc[0]["kind"] == "measured" and acc[0]["n"] == "200"
    assert float(acc[0]["lo"]) < float(acc[0]["value"]) < float(acc[0]["hi"])


def test_imported_results_are_never_a_baseline_nor_checked(results_cli, runner, two, tmp_path):
    _cb_json(tmp_path / "r" / "cb.json", 0.5)
    r = runner.invoke(results_cli, ["baseline", "save", str(tmp_path / "r"), "-o", str(tmp_path / "base.json")])
    assert r.exit_code == 0 and "1 imported result(s) left out of the baseline" in r.output
    models = {item["result"]["model"]["name"] for item in json.loads((tmp_path / "base.json").read_text())["results"]}
    assert models == {"a", "b"}
    r = runner.invoke(results_cli, ["check", str(tmp_path / "r"), "--baseline", str(tmp_path / "base.json")])
    assert r.exit_code == 0 and "1 imported result(s) not checked" in r.output


def test_compare_of_an_imported_result_says_so_and_marks_nothing_significant(results_cli, runner, tmp_path):
    _cb_json(tmp_path / "a" / "x.json", 0.50)
    _cb_json(tmp_path / "b" / "x.json", 0.60, pretrained="laion2b")
    r = runner.invoke(results_cli, ["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "imported" in r.output and "10.00" in r.output and "0 of 1 difference(s) significant" in r.output
    r = runner.invoke(results_cli, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--metrics", "top9"])
    assert r.exit_code == 2 and "top9" in r.output and "mean_per_class_recall" in r.output
