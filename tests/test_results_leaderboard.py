"""The leaderboard model (values, ranks, groups, flags) and the ``leaderboard`` command on bad inputs.

Hand-checked inputs: ``tests/golden/results/`` (see test_results_render.py for the layout).
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from sparc_eval.errors import ResultsError
from sparc_eval.results.collect import collect
from sparc_eval.results.leaderboard import build
from sparc_eval.results.render import render
from sparc_eval.tasks import load_suite

GOLDEN = Path(__file__).parent / "golden" / "results"
SCRIPT = "<script>alert(1)</script>"
ODD = "50%_off|v2"


@pytest.fixture
def results_cli(cli):
    """The CLI with the results commands (registered here until cli/__init__ imports cli.results)."""
    from sparc_eval.cli.results import COMMANDS

    for command in COMMANDS:
        cli.commands.setdefault(command.name, command)
    return cli


@pytest.fixture
def results(tmp_path) -> Path:
    """A writable copy of the golden results."""
    return Path(shutil.copytree(GOLDEN, tmp_path / "results"))


def edit(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = data
        for p in parents:
            target = target[p]
        target[leaf] = value
    path.write_text(json.dumps(data))


def test_values_ranks_groups_and_deltas_are_the_hand_computed_ones():
    board = build(collect([GOLDEN]), baseline="clip-base")
    keys = [c.key for c in board.columns]
    assert keys == ["average", "group:coarse", "group:fine", "toy-captions", "toy-classification", "toy-pairs",
                    "toy-retrieval"]
    cols = {c.key: c for c in board.columns}
    assert cols["toy-captions"].higher_is_better is False and cols["toy-captions"].metric == "CHAIR_i"
    # CHAIR (lower is better) is left out of the means that also hold higher-is-better tasks, and ODD has no
    # toy-pairs: Average and rank are over the tasks every model has, for every row alike
    assert cols["average"].members == ["toy-classification", "toy-retrieval"]
    assert cols["group:fine"].members == ["toy-pairs"]                  # no shared task there: the group keeps it
    assert any("toy-captions left out" in n for n in board.notes)
    assert any("different task sets" in n and "toy-pairs (missing for 50%_off|v2)" in n for n in board.notes)
    v = board.full.values
    assert v.at["clip-base", "average"] == pytest.approx((40 + 60) / 2)
    assert v.at[SCRIPT, "group:coarse"] == pytest.approx((50 + 55) / 2)
    assert v.at[ODD, "group:coarse"] == pytest.approx((32 + 50) / 2)   # the later rerun is shown
    assert v.at[ODD, "average"] == pytest.approx((32 + 50) / 2)         # over the shared tasks, as every row
    assert math.isnan(v.at[ODD, "group:fine"])                          # no toy-pairs: no mean of a subset
    assert board.full.models == ["R&D model", SCRIPT, "clip-base", ODD]
    assert list(board.full.rank) == [1, 2, 3, 4]
    best = board.full.best
    assert best.at["R&D model", "average"] and not best.at[SCRIPT, "average"]
    assert best.at[SCRIPT, "toy-captions"] and not best.at[ODD, "toy-captions"]   # 10 < 15 < 20 < 25
    assert board.full.delta.at[SCRIPT, "toy-captions"] == -10.0
    assert board.full.delta.at["R&D model", "toy-classification"] == 10.0
    assert cols["average"].chance == pytest.approx((2 + 10) / 2) and cols["toy-captions"].chance is None
    assert board.full.lo.at["clip-base", "toy-pairs"] == 67.0 and math.isnan(board.full.lo.at["R&D model", "toy-pairs"])


def test_partial_runs_form_their_own_table():
    board = build(collect([GOLDEN]))
    assert board.partial is not None and board.partial.models == ["clip-base"]
    assert board.partial.values.at["clip-base", "toy-retrieval"] == 35.0
    assert board.full.values.at["clip-base", "toy-retrieval"] == 40.0
    assert not board.partial.best.to_numpy().any() and board.partial.rank.isna().all()
    assert board.partial.n_used.at["clip-base", "toy-retrieval"] == 10


def test_mixed_results_are_flagged_not_averaged():
    board = build(collect([GOLDEN]))
    reasons = board.full.flags[(ODD, "toy-retrieval")]
    assert reasons[0].startswith("mixed results (config cfg-b-toy-re vs cfg-a-toy-re)")
    assert "not an average" in reasons[0]
    assert any("stale: task config" in r for r in reasons)
    assert board.full.values.at[ODD, "toy-retrieval"] == 32.0
    assert board.full.flags[(ODD, "group:coarse")] == ["includes flagged result(s): toy-retrieval"]
    assert board.full.flags[(ODD, "average")] == ["includes flagged result(s): toy-retrieval"]
    assert (ODD, "group:fine") not in board.full.flags       # no value, nothing to flag


def test_a_newer_task_version_makes_the_others_stale(results):
    edit(results / "clip-base" / "toy-pairs.json", task__version=2)
    board = build(collect([results]))
    for model in (SCRIPT, "R&D model"):
        assert board.full.flags[(model, "toy-pairs")] == ["stale: task version 1, the column uses version 2"]
        assert board.full.flags[(model, "group:fine")] == ["includes flagged result(s): toy-pairs"]
        assert (model, "average") not in board.full.flags    # toy-pairs is not shared by every model
    assert ("clip-base", "toy-pairs") not in board.full.flags


def test_suite_fixes_columns_and_groups_and_flags_results_of_an_older_task_yaml(results, tmp_path):
    include = tmp_path / "tasks"
    (include / "suites").mkdir(parents=True)
    for name, version in (("toy-retrieval", 1), ("toy-pairs", 2), ("toy-extra", 1)):
        (include / f"{name}.yaml").write_text(f"name: {name}\nversion: {version}\n")
    (include / "suites" / "toy.yaml").write_text(
        "name: toy\ntasks: [toy-retrieval, toy-pairs, toy-extra]\ngroups: {both: [toy-retrieval, toy-pairs]}\n")
    from sparc_eval.tasks import task_versions as shipped_versions

    current = shipped_versions(["toy-retrieval", "toy-pairs", "toy-captions"], [include])
    assert current == {"toy-retrieval": 1, "toy-pairs": 2}
    board = build(collect([results]), suite=load_suite("toy", [include]), current_versions=current)
    assert [c.key for c in board.columns] == ["average", "group:both", "toy-retrieval", "toy-pairs", "toy-extra"]
    assert board.title == "Leaderboard: toy"
    assert any("outside suite 'toy' left out: toy-captions, toy-classification" in n for n in board.notes)
    assert any("no results for task(s): toy-extra; left out of Average" in n for n in board.notes)
    # nobody has toy-extra: it is left out of the means (it would blank them all), its column stays empty; ODD has
    # no toy-pairs: the means are over toy-retrieval, the one task every model has
    cols = {c.key: c for c in board.columns}
    assert cols["average"].members == ["toy-retrieval"] and cols["toy-extra"].metric is None
    assert cols["group:both"].members == ["toy-retrieval"]
    assert board.full.values["toy-extra"].isna().all()
    assert board.full.values.at["clip-base", "average"] == board.full.values.at["clip-base", "group:both"] == 40
    assert board.full.rank.to_dict() == {SCRIPT: 1.0, "R&D model": 2.0, "clip-base": 3.0, ODD: 4.0}
    assert "stale: task version 1; the task YAML is now version 2" in board.full.flags[("clip-base", "toy-pairs")]
    (include / "suites" / "other.yaml").write_text("name: other\ntasks: [toy-extra]\n")
    with pytest.raises(ResultsError, match="none of the 17 result.s. is for a task of suite 'other'"):
        build(collect([results]), suite=load_suite("other", [include]))


def test_corrupt_and_foreign_files_are_named_and_skipped(results_cli, runner, results):
    truncated = results / "clip-base" / "toy-pairs.json"
    truncated.write_text(truncated.read_text()[:50])
    (results / "notes.json").write_text('{"schema": "something-else"}')
    r = runner.invoke(results_cli, ["leaderboard", str(results)])
    assert r.exit_code == 0, r.output
    assert "warning: skipped results/clip-base/toy-pairs.json: not valid JSON" in r.stderr
    assert "may be truncated" in r.stderr and "warning: skipped results/notes.json" in r.stderr
    assert "| clip-base | 3/4 |" in r.stdout                  # the rest of its results still show
    assert "skipped unreadable file results/clip-base/toy-pairs.json" in r.stdout


def test_empty_or_missing_results_folder_is_a_clear_error(results_cli, runner, tmp_path):
    (tmp_path / "empty").mkdir()
    r = runner.invoke(results_cli, ["leaderboard", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "no result files found" in r.output and "Traceback" not in r.output
    r = runner.invoke(results_cli, ["leaderboard", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such file or folder" in r.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.json").write_text("[1, 2")
    with pytest.raises(ResultsError, match="none of the 1 JSON file"):
        collect([tmp_path / "bad"])


def test_unknown_baseline_model_and_unknown_output_format_exit_2(results_cli, runner, tmp_path):
    r = runner.invoke(results_cli, ["leaderboard", str(GOLDEN), "--baseline", "clip-bse"])
    assert r.exit_code == 2 and "Did you mean: clip-base" in r.output
    r = runner.invoke(results_cli, ["leaderboard", str(GOLDEN), "-o", str(tmp_path / "board.pdf")])
    assert r.exit_code == 2 and "unknown leaderboard format '.pdf'" in r.output


def test_outputs_are_written_in_the_format_of_their_suffix(results_cli, runner, tmp_path):
    outs = [tmp_path / f"board.{s}" for s in ("md", "csv", "tex", "html")]
    args = ["leaderboard", str(GOLDEN), "--baseline", "clip-base"] + [a for o in outs for a in ("-o", str(o))]
    r = runner.invoke(results_cli, args)
    assert r.exit_code == 0, r.output
    board = build(collect([GOLDEN]), baseline="clip-base")
    for o in outs:
        assert o.read_text(encoding="utf-8") == render(board, o.suffix[1:])
    r = runner.invoke(results_cli, ["leaderboard", str(GOLDEN), "--format", "csv"])
    assert r.exit_code == 0 and r.stdout == render(build(collect([GOLDEN])), "csv")


def _entry(model: str, task: str, value: float):
    from sparc_eval.results.collect import Entry

    result = {"task": {"name": task, "version": 1, "config_sha256": "cfg"}, "model": {"name": model},
              "dataset": {"fingerprint": "fp", "n_used": 10, "n_total": 10}, "seed": 0, "metrics": {"top1": value},
              "main_metric": "top1"}
    return Entry(Path(f"/{model}/{task}.json"), result, f"{model}/{task}")


def test_rank_and_best_mark_agree_on_averages_equal_up_to_rounding():
    # (0.1 + 0.2 + 0.3) / 3 and (0.3 + 0.2 + 0.1) / 3 differ in the last bit
    entries = [_entry(m, t, v) for m, values in (("up", (0.1, 0.2, 0.3)), ("down", (0.3, 0.2, 0.1)),
                                                 ("low", (0.1, 0.1, 0.1)))
               for t, v in zip(("t1", "t2", "t3"), values)]
    board = build(entries)
    v = board.full.values
    assert v.at["up", "average"] != v.at["down", "average"]
    assert board.full.rank.to_dict() == {"down": 1.0, "up": 1.0, "low": 3.0}
    assert board.full.best["average"].to_dict() == {"down": True, "up": True, "low": False}
