"""``baseline save``, ``check`` and ``compare`` on synthetic results with per-sample records.

The results are written with the real store (``store.write_result``); their metrics and intervals are
computed by ``results.aggregate`` from the records, as ``api.evaluate`` does. 400 images, one record
each (``hit`` 0/1), so the paired differences below can be worked out by hand.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from sparc_eval.errors import ConfigError, ResultsError
from sparc_eval.results.aggregate import ClusterSums, intervals
from sparc_eval.results.baseline import load_baseline, save_baseline
from sparc_eval.results.check import load_rules, run_check
from sparc_eval.results.collect import collect
from sparc_eval.results.paired import paired_shared, stored_sums, sums_to_json
from sparc_eval.results.store import result_path, write_result

N = 400
ACC = {"acc": {"kind": "mean", "field": "hit", "scale": 100}}
CHAIR = {"CHAIR_i": {"kind": "ratio", "num": "hallucinated", "den": "mentions", "scale": 100}}
MODEL = "ckpt|<b>"          # a user string with Markdown/HTML specials


@pytest.fixture
def results_cli(cli):
    from sparc_eval.cli.results import COMMANDS

    for command in COMMANDS:
        cli.commands.setdefault(command.name, command)
    return cli


def hits(n_right: int, flip_to_wrong: int = 0, flip_to_right: int = 0) -> np.ndarray:
    """Images 0..n_right-1 right; then the first ``flip_to_wrong`` right ones wrong and the first
    ``flip_to_right`` wrong ones right."""
    h = np.zeros(N, dtype=int)
    h[:n_right] = 1
    h[:flip_to_wrong] = 0
    h[n_right:n_right + flip_to_right] = 1
    return h


def write(root: Path, model: str, task: str, records: list[dict], aggs: dict, *, version: int = 1,
          fingerprint: str = "fp", config: str = "cfg", samples: bool = True, seed: int = 0, partial: bool = False,
          started: str = "2026-11-01T00:00:00+00:00") -> Path:
    metrics = {k: float(v[0]) for k, v in ClusterSums(records, aggs).compute().items()}
    main = next(iter(aggs))
    result = {
        "schema": "sparc-eval/result/v1",
        "task": {"name": task, "type": "synthetic", "version": version, "config_sha256": config, "groups": []},
        "model": {"spec": "py:test", "pretrained": None, "name": model, "weights_sha256": None},
        "dataset": {"name": "toy", "format": "synthetic", "fingerprint": fingerprint, "n_total": N,
                    "n_used": len(records), "limit": len(records) if partial else None, "partial": partial},
        "seed": seed, "metrics": metrics, "main_metric": main, "intervals": intervals(records, aggs),
        "chance": {}, "aggregations": aggs, "provenance": {"started": started},
    }
    path = result_path(root / ("partial" if partial else ""), model, task)
    write_result(path, result, records if samples else None)
    return path


def acc_records(h: np.ndarray) -> list[dict]:
    return [{"cluster": i, "id": f"img{i}", "hit": int(x)} for i, x in enumerate(h)]


def chair_records(hallucinated: np.ndarray) -> list[dict]:
    return [{"cluster": i, "hallucinated": int(x), "mentions": 2} for i, x in enumerate(hallucinated)]


@pytest.fixture
def baseline_file(tmp_path) -> Path:
    root = tmp_path / "base"
    write(root, MODEL, "toy-acc", acc_records(hits(240)), ACC)
    write(root, MODEL, "toy-chair", chair_records(hits(80)), CHAIR)
    write(root, MODEL, "toy-extra", acc_records(hits(200)), ACC)
    return save_baseline(collect([root]), tmp_path / "baselines" / "main.json")


def current(tmp_path, acc: np.ndarray, chair: np.ndarray | None = None, extra: bool = True, **kw) -> Path:
    root = tmp_path / "current"
    write(root, MODEL, "toy-acc", acc_records(acc), ACC, **kw)
    write(root, MODEL, "toy-chair", chair_records(hits(80) if chair is None else chair), CHAIR)
    if extra:
        write(root, MODEL, "toy-extra", acc_records(hits(200)), ACC)
    return root


def rows_by_task(report) -> dict[str, object]:
    return {r.task: r for r in report.rows}


def test_baseline_file_stores_per_cluster_sums_that_reproduce_the_paired_bootstrap(tmp_path, baseline_file):
    base = load_baseline(baseline_file)
    assert sorted(base.entries) == [(MODEL, "toy-acc"), (MODEL, "toy-chair"), (MODEL, "toy-extra")]
    assert base.entries[(MODEL, "toy-acc")].value() == 60.0
    assert len(base.sums[(MODEL, "toy-acc")].clusters) == N
    text = baseline_file.read_text()
    assert len(text.splitlines()) == 5 and "details" not in text            # one line per result
    # the stored sums give the same paired bootstrap as the two record sets
    a, b = acc_records(hits(240)), acc_records(hits(240, flip_to_wrong=30, flip_to_right=10))
    direct = paired_shared(a, ACC, b, ACC)["acc"]
    via = paired_shared(base.sums[(MODEL, "toy-acc")], ACC, b, ACC, ["acc"])["acc"]
    assert (via.diff, via.lo, via.hi, via.p_value) == (direct.diff, direct.lo, direct.hi, direct.p_value)
    assert via.diff == pytest.approx(-5.0)                                   # 20 net images of 400


def test_vector_fields_and_tuple_clusters_survive_the_json_round_trip():
    aggs = {"mIoU": {"kind": "classwise_ratio", "num": "inter", "den": "union", "scale": 100}}
    rng = np.random.default_rng(0)
    a = [{"cluster": [i // 3, "x"], "inter": rng.integers(0, 5, 4).tolist(), "union": [5, 5, 5, 0]} for i in range(60)]
    b = [dict(r, inter=[max(0, x - 1) for x in r["inter"]]) for r in a]
    stored = stored_sums(json.loads(json.dumps(sums_to_json(ClusterSums(a, aggs)))), aggs, "test")
    direct = paired_shared(a, aggs, b, aggs)["mIoU"]
    via = paired_shared(stored, aggs, b, aggs, ["mIoU"])["mIoU"]
    assert (via.a, via.b, via.lo, via.hi, via.p_value) == (direct.a, direct.b, direct.lo, direct.hi, direct.p_value)


def test_a_regression_beyond_noise_fails_and_one_within_noise_passes(tmp_path, baseline_file):
    base = load_baseline(baseline_file)
    rules = load_rules(tolerance=1.0)
    # 40 images lost: -10 points, every discordant pair goes one way -> outside the noise
    report = run_check(collect([current(tmp_path, hits(240, flip_to_wrong=40))]), base, rules)
    row = rows_by_task(report)["toy-acc"]
    assert row.status == "regressed" and row.difference.diff == pytest.approx(-10.0)
    assert row.difference.method == "paired" and row.difference.hi < 0
    assert report.failed and report.exit_code == 1
    # 28 lost, 20 gained: -2 points, beyond the tolerance but the paired interval includes 0
    report = run_check(collect([current(tmp_path / "2", hits(240, flip_to_wrong=28, flip_to_right=20))]), base, rules)
    row = rows_by_task(report)["toy-acc"]
    assert row.difference.diff == pytest.approx(-2.0) and row.difference.lo < 0 < row.difference.hi
    assert row.status == "unchanged" and "within the noise" in row.message
    assert not report.failed and report.exit_code == 0
    # 40 gained: improved
    report = run_check(collect([current(tmp_path / "3", hits(240, flip_to_right=40))]), base, rules)
    assert rows_by_task(report)["toy-acc"].status == "improved" and report.exit_code == 0


def test_lower_is_better_metrics_regress_when_they_rise(tmp_path, baseline_file):
    base = load_baseline(baseline_file)
    worse = run_check(collect([current(tmp_path / "w", hits(240), chair=hits(120))]), base)
    row = rows_by_task(worse)["toy-chair"]
    assert row.metric == "CHAIR_i" and not row.higher_is_better
    assert row.difference.diff == pytest.approx(5.0) and row.status == "regressed"    # 20% -> 30% of images, /2
    better = run_check(collect([current(tmp_path / "b", hits(240), chair=hits(40))]), base)
    assert rows_by_task(better)["toy-chair"].status == "improved"


def test_missing_version_config_and_dataset_changes_are_their_own_failures(tmp_path, baseline_file):
    base = load_baseline(baseline_file)
    cases = {"version_changed": {"version": 2}, "config_changed": {"config": "other"},
             "dataset_changed": {"fingerprint": "other"}}
    for status, change in cases.items():
        report = run_check(collect([current(tmp_path / status, hits(240), **change)]), base)
        row = rows_by_task(report)["toy-acc"]
        assert row.status == status and row.metric == "" and report.exit_code == 1, (status, row)
    report = run_check(collect([current(tmp_path / "missing", hits(240), extra=False)]), base)
    assert rows_by_task(report)["toy-extra"].status == "missing" and report.exit_code == 1
    assert "version changed" in run_check(collect([current(tmp_path / "v", hits(240), version=2)]), base).summary()


def test_without_per_sample_records_the_stored_intervals_are_the_noise(tmp_path, baseline_file):
    base = load_baseline(baseline_file)
    report = run_check(collect([current(tmp_path, hits(240, flip_to_wrong=40), samples=False)]), base)
    row = rows_by_task(report)["toy-acc"]
    assert row.difference.method == "intervals" and row.status == "regressed"


def test_tolerance_file_per_task_and_metric(tmp_path, baseline_file):
    cfg = tmp_path / "tolerances.yaml"
    cfg.write_text("tolerance: 1.0\ntasks:\n  toy-acc: {tolerance: 15.0}\n  toy-chair: {metrics: all}\n")
    rules = load_rules(cfg)
    assert rules.for_task("toy-acc").tolerance == 15.0 and rules.for_task("toy-extra").tolerance == 1.0
    report = run_check(collect([current(tmp_path, hits(240, flip_to_wrong=40))]), load_baseline(baseline_file), rules)
    assert rows_by_task(report)["toy-acc"].status == "unchanged" and not report.failed
    for bad, match in (("tolerance: -1\n", "tolerance >= 0"), ("tolrance: 1\n", "unknown key"),
                       ("tasks: {toy-acc: {metrics: some}}\n", "'main', 'all' or a list"), ("[1, 2\n", "not valid YAML")):
        cfg.write_text(bad)
        with pytest.raises(ConfigError, match=match):
            load_rules(cfg)


def test_check_cli_exit_codes_junit_and_markdown(results_cli, runner, tmp_path, baseline_file):
    ok = current(tmp_path / "ok", hits(240))
    r = runner.invoke(results_cli, ["check", str(ok), "--baseline", str(baseline_file)])
    assert r.exit_code == 0, r.output
    assert "check passed: 3 unchanged" in r.stdout
    bad = current(tmp_path / "bad", hits(240, flip_to_wrong=40), version=1, extra=False)
    junit, md = tmp_path / "report.xml", tmp_path / "summary.md"
    r = runner.invoke(results_cli, ["check", str(bad), "--baseline", str(baseline_file), "--junit", str(junit),
                                    "--markdown", str(md)])
    assert r.exit_code == 1, r.output
    assert "check FAILED: 1 regressed, 1 missing, 1 unchanged" in r.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "2"
    failures = {c.get("name"): c.find("failure").get("type") for c in suite.iter("testcase") if c.find("failure") is not None}
    assert failures == {"toy-acc / acc": "regressed", "toy-extra / acc": "missing"}
    assert all(c.get("classname") == MODEL for c in suite.iter("testcase"))
    summary = md.read_text()
    assert summary.startswith("### ❌ sparc-eval check FAILED")
    assert r"ckpt\|&lt;b&gt;" in summary and "<b>" not in summary
    assert "🔴 regressed" in summary and "<details><summary>1 unchanged</summary>" in summary
    for args in (["check", str(ok), "--baseline", str(tmp_path / "none.json")],
                 ["check", str(tmp_path / "empty"), "--baseline", str(baseline_file)],
                 ["check", str(ok), "--baseline", str(baseline_file), "--map", "nonsense"],
                 ["check", str(ok), "--baseline", str(ok / "ckpt-b" / "toy-acc.json")]):
        (tmp_path / "empty").mkdir(exist_ok=True)
        r = runner.invoke(results_cli, args)
        assert r.exit_code == 2 and "Traceback" not in r.output, (args, r.output)


def test_map_compares_a_renamed_model_with_the_baseline_model(results_cli, runner, tmp_path, baseline_file):
    root = tmp_path / "pr"
    for task, aggs, records in (("toy-acc", ACC, acc_records(hits(240))), ("toy-chair", CHAIR, chair_records(hits(80))),
                                ("toy-extra", ACC, acc_records(hits(200)))):
        write(root, "candidate", task, records, aggs)
    r = runner.invoke(results_cli, ["check", str(root), "--baseline", str(baseline_file), "--map", f"candidate={MODEL}"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(results_cli, ["baseline", "show", str(baseline_file)])
    assert r.exit_code == 0 and "toy-chair" in r.stdout and "400" in r.stdout


def test_compare_gives_paired_differences_with_significance(results_cli, runner, tmp_path):
    write(tmp_path / "a", "model-a", "toy-acc", acc_records(hits(240)), ACC)
    write(tmp_path / "b", "model-b", "toy-acc", acc_records(hits(240, flip_to_wrong=40)), ACC)
    write(tmp_path / "c", "model-c", "toy-acc", acc_records(hits(240, flip_to_wrong=40)), ACC, fingerprint="other")
    out = tmp_path / "cmp.json"
    r = runner.invoke(results_cli, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "1 of 1 difference(s) significant" in r.stdout
    (row,) = json.loads(out.read_text())
    direct = paired_shared(acc_records(hits(240)), ACC, acc_records(hits(240, flip_to_wrong=40)), ACC)["acc"]
    assert row["diff"] == pytest.approx(-10.0) and row["lo"] == direct.lo and row["hi"] == direct.hi
    assert row["method"] == "paired" and row["significant"] and row["better"] == "A" and row["n_clusters"] == N
    r = runner.invoke(results_cli, ["compare", str(tmp_path / "a"), str(tmp_path / "c"), "--json", str(out)])
    (row,) = json.loads(out.read_text())
    assert row["method"] == "intervals" and "datasets differ" in row["note"]


def test_partial_runs_are_never_checked_saved_or_compared(results_cli, runner, tmp_path):
    # a later partial (--limit) run beside the full one: `pick` alone would keep the partial one
    root = tmp_path / "runs"
    write(root, MODEL, "toy-acc", acc_records(hits(240)), ACC)
    later = "2026-12-01T00:00:00+00:00"
    write(root, MODEL, "toy-acc", acc_records(hits(240))[:40], ACC, partial=True, started=later)
    warnings: list[str] = []
    base = load_baseline(save_baseline(collect([root]), tmp_path / "base.json", warn=warnings.append))
    assert base.entries[(MODEL, "toy-acc")].value() == 60.0 and len(base.sums[(MODEL, "toy-acc")].clusters) == N
    assert any("1 partial (--limit) result(s) left out of the baseline" in w for w in warnings)
    report = run_check(collect([root]), base)
    assert report.summary() == "check passed: 1 unchanged" and report.rows[0].difference.method == "paired"
    assert any("partial (--limit) result(s) not checked" in w for w in report.warnings)
    only_partial = tmp_path / "only-partial"
    write(only_partial, MODEL, "toy-acc", acc_records(hits(240))[:40], ACC, partial=True)
    (row,) = run_check(collect([only_partial]), base).rows
    assert row.status == "missing" and "no full (only a partial --limit) result" in row.message
    with pytest.raises(ResultsError, match="all partial .--limit. runs"):
        save_baseline(collect([only_partial]), tmp_path / "nothing.json")
    other = tmp_path / "other"
    write(other, "model-b", "toy-acc", acc_records(hits(240, flip_to_wrong=40)), ACC)
    r = runner.invoke(results_cli, ["compare", str(root), str(other), "--json", str(tmp_path / "cmp.json")])
    assert r.exit_code == 0, r.output
    (cmp_row,) = json.loads((tmp_path / "cmp.json").read_text())
    assert cmp_row["a"] == 60.0 and cmp_row["method"] == "paired" and cmp_row["n_clusters"] == N
    assert "partial (--limit) result(s) not compared" in r.stderr
    r = runner.invoke(results_cli, ["compare", str(only_partial), str(other)])
    assert r.exit_code == 2 and "A holds only partial (--limit) results" in r.output


def test_a_changed_seed_is_reported_not_compared(results_cli, runner, tmp_path, baseline_file):
    report = run_check(collect([current(tmp_path, hits(240), seed=1)]), load_baseline(baseline_file))
    row = rows_by_task(report)["toy-acc"]
    assert row.status == "seed_changed" and row.metric == "" and report.exit_code == 1
    assert "seed 0 in the baseline, 1 in" in row.message and "1 seed changed" in report.summary()
    write(tmp_path / "a", "model-a", "toy-acc", acc_records(hits(240)), ACC)
    write(tmp_path / "b", "model-b", "toy-acc", acc_records(hits(240)), ACC, seed=7)
    out = tmp_path / "cmp.json"
    r = runner.invoke(results_cli, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "seeds differ (0 vs 7)" in json.loads(out.read_text())[0]["note"]


def test_a_metric_list_gates_each_task_on_the_metrics_it_reports(results_cli, runner, tmp_path, baseline_file):
    # toy-acc reports acc only, toy-chair CHAIR_i only: neither is "missing" the other's metric
    ok = current(tmp_path, hits(240))
    r = runner.invoke(results_cli, ["check", str(ok), "--baseline", str(baseline_file), "--metrics", "acc,CHAIR_i"])
    assert r.exit_code == 0, r.output
    assert "check passed: 3 unchanged" in r.stdout
    report = run_check(collect([current(tmp_path / "w", hits(240, flip_to_wrong=40))]), load_baseline(baseline_file),
                       load_rules(metrics="acc,CHAIR_i".split(",")))
    assert rows_by_task(report)["toy-acc"].status == "regressed"
    with pytest.raises(ConfigError, match=r"acc_typo reported by none of the baseline results .* known: CHAIR_i, acc"):
        run_check(collect([ok]), load_baseline(baseline_file), load_rules(metrics=["acc", "acc_typo"]))  # gates nothing
    # a metric the baseline has but the new result lost is still a failure
    lost = tmp_path / "lost"
    write(lost, MODEL, "toy-acc", [{**r, "hit2": r["hit"]} for r in acc_records(hits(240))],
          {"acc2": {"kind": "mean", "field": "hit2", "scale": 100}})
    with_two = tmp_path / "two"
    write(with_two, MODEL, "toy-acc", [{**r, "hit2": r["hit"]} for r in acc_records(hits(240))],
          {**ACC, "acc2": {"kind": "mean", "field": "hit2", "scale": 100}})
    base = load_baseline(save_baseline(collect([with_two]), tmp_path / "two.json"))
    report = run_check(collect([lost]), base, load_rules(metrics=["acc", "acc2"]))
    assert {r.metric: r.status for r in report.rows} == {"acc": "missing", "acc2": "unchanged"}


def test_markdown_summary_shows_the_baseline_file_name_verbatim(tmp_path, baseline_file):
    from sparc_eval.results.check_report import markdown_summary
    from sparc_eval.results.formatting import markdown_code

    renamed = baseline_file.with_name("main_v2.json")
    baseline_file.rename(renamed)
    summary = markdown_summary(run_check(collect([current(tmp_path, hits(240))]), load_baseline(renamed)))
    assert "Baseline `main_v2.json` (created" in summary and r"main\_v2" not in summary
    assert markdown_code("a`b") == "``a`b``" and markdown_code("`x") == "`` `x ``"


def test_a_malformed_grouped_baseline_exits_2(results_cli, runner, tmp_path, baseline_file):
    lines = baseline_file.read_text().splitlines()
    item = json.loads(lines[1].rstrip(","))
    item["clusters"]["grouped"] = [{"field": "hit", "group": "label", "rows": [0, 10 ** 6], "cols": [0, 0],
                                    "sum": [1, 1], "count": [1, 1]}]
    lines[1] = json.dumps(item) + ","
    broken = tmp_path / "broken.json"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(ResultsError, match=r"broken.json: results\[0\]: per-cluster sums are malformed"):
        load_baseline(broken)
    r = runner.invoke(results_cli, ["check", str(current(tmp_path, hits(240))), "--baseline", str(broken)])
    assert r.exit_code == 2 and "per-cluster sums are malformed" in r.output and "Traceback" not in r.output
