"""The results tables read the controls (no models: synthetic results written with the real store).

400 images, one record each (``hit`` 0/1), so every value below is worked out by hand:

- roles: only ``model`` rows are ranked and marked best; controls and references follow, labelled;
- chance: a value whose interval covers the stored chance level is marked at chance (≈), one wholly
  below it below chance (▾); a difference where both sides are at chance is never significant; compare's
  p-values are Holm-adjusted over its rows; flagged probe categories reach the board and ``check``;
- seed groups: mean ± sd over seeds, the t-interval over seed pairs (df = 1 for two seeds), the two-way
  bootstrap equal to ``metrics.controls.two_way_bootstrap`` on the same numbers, and the wider shown.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sparc_eval.metrics.controls import holm, seed_t_interval, two_way_bootstrap
from sparc_eval.results.aggregate import ClusterSums, intervals
from sparc_eval.results.baseline import load_baseline, save_baseline
from sparc_eval.results.chance import AT, BELOW, entry_status
from sparc_eval.results.check import Rule, Rules, run_check
from sparc_eval.results.collect import collect
from sparc_eval.results.compare import compare
from sparc_eval.results.leaderboard import build
from sparc_eval.results.render import render
from sparc_eval.results.store import result_path, write_result

N = 400
ACC = {"acc": {"kind": "mean", "field": "hit", "scale": 100}}


@pytest.fixture
def results_cli(cli):
    from sparc_eval.cli.results import COMMANDS

    for command in COMMANDS:
        cli.commands.setdefault(command.name, command)
    return cli


def hits(n_right: int, flip: int = 0) -> np.ndarray:
    """Images 0..n_right-1 right, then the next ``flip`` wrong ones right too."""
    h = np.zeros(N, dtype=int)
    h[:n_right + flip] = 1
    return h


def write(root: Path, model: str, task: str, h: np.ndarray, *, chance: float = 50.0, role: str = "model",
          seed_group: str | None = None, details: dict | None = None, extra: dict | None = None) -> Path:
    records = [{"cluster": i, "id": f"img{i}", "hit": int(x), **({k: int(x) for k in extra} if extra else {})}
               for i, x in enumerate(h)]
    aggs = {**ACC, **{k: {"kind": "mean", "field": k, "scale": 100} for k in (extra or {})}}
    metrics = {k: float(v[0]) for k, v in ClusterSums(records, aggs).compute().items()}
    result = {
        "schema": "sparc-eval/result/v2",
        "task": {"name": task, "type": "synthetic", "version": 1, "config_sha256": "cfg", "groups": []},
        "model": {"spec": "py:test", "pretrained": None, "name": model, "weights_sha256": None},
        "dataset": {"name": "toy", "format": "synthetic", "fingerprint": "fp", "n_total": N, "n_used": N,
                    "limit": None, "partial": False},
        "seed": 0, "metrics": metrics, "main_metric": "acc", "intervals": intervals(records, aggs),
        "chance": {k: chance for k in metrics}, "aggregations": aggs, "details": details or {},
        "provenance": {"started": "2026-11-01T00:00:00+00:00"}, "role": role, "seed_group": seed_group,
    }
    path = result_path(root, model, task)
    write_result(path, result, records)
    return path


def test_roles_chance_marks_and_artifact_flags_on_the_board(tmp_path):
    for model, h, role in (("good", hits(300), "model"), ("weak", hits(204), "model"), ("bad", hits(150), "model"),
                           ("untrained", hits(198), "control"), ("oracle", hits(400), "reference")):
        write(tmp_path, model, "toy-acc", h, role=role)
        write(tmp_path, model, "toy-probe", h, role=role, details={"artifact_flagged": ["add_att"]})
    board = build(collect([tmp_path]))
    t = board.full
    assert t.models == ["good", "weak", "bad", "untrained", "oracle"]  # models by rank, then control, reference
    assert t.rank.tolist()[:3] == [1, 2, 3] and all(math.isnan(r) for r in t.rank.tolist()[3:])
    j = [c.key for c in board.columns].index("toy-acc")
    assert t.grid.best[:, j].tolist() == [True, False, False, False, False]  # the oracle's 100 is not "best"
    e = t.entries
    assert entry_status(e[("weak", "toy-acc")]) == AT and entry_status(e[("bad", "toy-acc")]) == BELOW
    assert entry_status(e[("good", "toy-acc")]) == "above chance"
    assert t.grid.status[:, j].tolist() == ["above chance", AT, BELOW, AT, "above chance"]
    md = render(board, "md")
    assert "| 1 | good | 2/2 |" in md and "| – | *untrained (control)* | 2/2 |" in md
    assert "| – | *oracle (reference)* |" in md
    line = {name: next(x for x in md.splitlines() if f"| {name} |" in x) for name in ("weak", "bad")}
    assert "51.0 [" in line["weak"] and "] ≈" in line["weak"] and "37.5 [" in line["bad"] and "] ▾" in line["bad"]
    assert "toy-probe ⚑ ↑" in md and "probe category add\\_att flagged" in md  # Markdown-escaped
    assert [c.artifact for c in board.columns if c.key == "toy-probe"] == [["add_att"]]
    assert "50.0" in next(x for x in md.splitlines() if "*chance*" in x)
    html = render(board, "html")
    assert 'class="role-control"' in html and '<span class="chance-mark">≈</span>' in html and "⚑" in html
    assert " · at chance" in html                                   # the mark's meaning, in the cell's tooltip
    csv = render(board, "csv")
    assert "full,,untrained,control," in csv and "below chance" in csv


def test_seed_groups_mean_sd_and_method_difference(results_cli, runner, tmp_path):
    values = {"clip-s0": 240, "clip-s1": 260, "sparc-s0": 280, "sparc-s1": 320}
    for model, n in values.items():
        write(tmp_path, model, "toy-acc", hits(n), seed_group=model.split("-")[0])
    write(tmp_path, "untrained", "toy-acc", hits(200), role="control")
    board = build(collect([tmp_path]), baseline="clip")
    seeds = board.seeds
    assert [r.group for r in seeds.rows] == ["clip", "sparc"] and seeds.baseline == "clip"
    clip, sparc = seeds.rows
    assert clip.stats["toy-acc"].mean == 62.5 and clip.stats["toy-acc"].sd == pytest.approx(np.sqrt(12.5))
    assert sparc.stats["toy-acc"].values == [70.0, 80.0]
    d = sparc.diff["toy-acc"]
    assert d.diff == 12.5
    # t over seed pairs (clip-s0, sparc-s0), (clip-s1, sparc-s1): differences 10, 15; t(0.975, 1) = 12.7062
    half = 12.706204736 * np.std([10, 15], ddof=1) / np.sqrt(2)
    assert d.t == pytest.approx((12.5 - half, 12.5 + half)) and d.t == seed_t_interval([60, 65], [70, 80])[1]
    # the two-way bootstrap is metrics.controls.two_way_bootstrap on the same per-image numbers
    a = np.stack([hits(240), hits(260)]).astype(float)
    b = np.stack([hits(280), hits(320)]).astype(float)
    assert d.bootstrap == two_way_bootstrap(a, b).interval
    assert d.shown == "t" and d.interval == d.t  # two seeds: the t-interval is the wider
    assert not sparc.significant["toy-acc"] and seeds.n_tests == 1
    # the main table's deltas are to the baseline group's mean
    t = board.full
    assert t.delta.loc["sparc-s1", "toy-acc"] == pytest.approx(80 - 62.5)
    md = render(board, "md")
    assert "## Seed groups" in md and "| clip (baseline) | 2 | 62.5 ± 3.5 |" in md
    assert f"| sparc | 2 | 75.0 ± 7.1 (+12.5 [{12.5 - half:.1f}, {12.5 + half:.1f}]ᵗ) |" in md
    assert "clip-s0 (baseline group)" in md
    html = render(board, "html")
    assert 'id="seeds"' in html and "ᵗ" in html and "sparc" in html.split('id="seeds"')[1]
    assert "untrained (control)" in render(board, "tex").replace(r"\textit{", "")
    # compare: one folder, two seed groups
    out = tmp_path / "cmp.json"
    r = runner.invoke(results_cli, ["compare", str(tmp_path), "--a", "clip", "--b", "sparc", "--json", str(out)])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(out.read_text())
    assert row["a_values"] == [60.0, 65.0] and row["b_values"] == [70.0, 80.0] and row["shown"] == "t"
    assert (row["lo"], row["hi"]) == pytest.approx(d.t) and row["significant"] is False
    assert row["p_holm"] == pytest.approx(row["p_value"]) and "seed groups" in " ".join(r.output.split())
    r = runner.invoke(results_cli, ["compare", str(tmp_path), "--a", "clip"])
    assert r.exit_code == 2 and "--a NAME and --b NAME" in r.output
    r = runner.invoke(results_cli, ["compare", str(tmp_path), "--a", "clip", "--b", "nope"])
    assert r.exit_code == 2 and "no model or seed group" in r.output


def test_no_difference_between_two_values_at_chance_is_significant_and_holm(tmp_path):
    # A 52.5%, B 58.5% (24 images flipped to right): the paired interval excludes 0
    for root, chance in ((tmp_path / "at", 55.0), (tmp_path / "above", 40.0)):
        write(root / "a", "model-a", "toy-acc", hits(210), chance=chance)
        write(root / "b", "model-b", "toy-acc", hits(210, flip=24), chance=chance)
        write(root / "a", "model-a", "toy-acc2", hits(210), chance=chance)
        write(root / "b", "model-b", "toy-acc2", hits(210, flip=9), chance=chance)
    rows = compare(collect([tmp_path / "at" / "a"]), collect([tmp_path / "at" / "b"]))
    first = rows[0]
    assert first.a_chance == first.b_chance == AT
    assert first.difference.lo > 0 and not first.significant and first.better == "-"
    rows = compare(collect([tmp_path / "above" / "a"]), collect([tmp_path / "above" / "b"]))
    assert [r.a_chance for r in rows] == ["above chance"] * 2
    assert [r.p_holm for r in rows] == pytest.approx(holm([r.difference.p_value for r in rows]))
    for r in rows:
        assert r.significant == (r.p_holm <= 0.05 and (r.difference.lo > 0 or r.difference.hi < 0))
    assert rows[0].significant and rows[0].better == "B"


def test_check_skips_controls_flags_artifacts_and_ignores_changes_at_chance(tmp_path):
    base = tmp_path / "base"
    write(base, "m", "toy-acc", hits(210), chance=55.0, extra=["blind_acc"])
    write(base, "m", "toy-probe", hits(300), details={"artifact_flagged": ["swap_obj"]})
    baseline = load_baseline(save_baseline(collect([base]), tmp_path / "base.json"))
    now = tmp_path / "now"
    write(now, "m", "toy-acc", hits(210, flip=24), chance=55.0, extra=["blind_acc"])  # +6, both at chance
    write(now, "m", "toy-probe", hits(300), details={"artifact_flagged": ["swap_obj"]})
    report = run_check(collect([now]), baseline, Rules(Rule(tolerance=1.0, metrics="all")))
    acc = [r for r in report.rows if r.task == "toy-acc"]
    assert [r.metric for r in acc] == ["acc"]  # blind_acc is a control: not gated
    assert acc[0].status == "unchanged" and "at or below chance" in acc[0].message
    assert any("probe category swap_obj flagged" in w for w in report.warnings)
