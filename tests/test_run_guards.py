"""``run`` checks what a user can get wrong before a model loads, binds a results folder to one model, and
runs several models in one call (one failing does not stop the others)."""
from __future__ import annotations

import json
import time

import pytest
from conftest import TINY_OPEN_CLIP

ORACLE = "py:sparc_eval.models.oracle:shapes_oracle"


def run(runner, cli, *args):
    return runner.invoke(cli, ["run", "-q", *map(str, args)])


def test_preflight_errors_come_before_any_model_loads(runner, cli, small_world, tmp_path):
    root = f"root={small_world}"
    base = ["--task", "shapes-retrieval", "--param", root, "--model", "py:no_such_module:build"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["--model", TINY_OPEN_CLIP], "nothing to run"),
        ([*base, "-o", a_file], "is a file; expected a folder"),
        ([*base, "-o", a_file / "sub"], "cannot write there"),
        ([*base, "--seed", "-5"], "-5 is not in the range 0<=x<=4294967295"),
        ([*base, "--model-name", "m" * 5000], "5000 characters; expected at most 120"),
        (["--task", "shapes-retrieval", "--param", root, "--model", TINY_OPEN_CLIP,
          "--param", "recall_at=[1,99999999999999999999]"], "is too large; expected a value <= 1e+09"),
        (["--task", "shapes-retrieval", "--param", root, "--model", TINY_OPEN_CLIP, "--param", "recall_at=[]"],
         "recall_at"),
    ]
    for args, message in cases:
        t0 = time.perf_counter()
        r = run(runner, cli, *args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, (args, r.output)
        assert time.perf_counter() - t0 < 20, args  # refused up front, not after an evaluation
    assert not (tmp_path / "res").exists()


def test_a_huge_recall_k_is_answered_at_once(runner, cli, small_world, tmp_path):
    t0 = time.perf_counter()
    r = run(runner, cli, "--task", "shapes-retrieval", "--param", f"root={small_world}", "--model", ORACLE,
            "--pretrained", small_world, "--model-name", "oracle", "--param", "recall_at=[1,10000000]",
            "-o", tmp_path / "res")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "res" / "oracle" / "shapes-retrieval.json").read_text())
    assert res["metrics"]["mean_R@10000000"] == 100.0 and res["metrics"]["mean_R@1"] == 100.0
    assert time.perf_counter() - t0 < 60


def test_a_results_folder_is_bound_to_one_model(runner, cli, small_world, tmp_path):
    out = tmp_path / "res"
    common = ["--task", "shapes-retrieval", "--param", f"root={small_world}", "--model-name", "mine", "-o", out,
              "--limit", "8"]
    assert run(runner, cli, *common, "--model", ORACLE, "--pretrained", small_world).exit_code == 0
    identity = json.loads((out / "mine" / ".identity.json").read_text())
    assert identity["spec"] == ORACLE and {"fingerprint", "host", "time"} <= set(identity)
    other = run(runner, cli, *common, "--model", TINY_OPEN_CLIP)
    assert other.exit_code == 2 and "holds the result of another model" in other.output and "--model-name" in other.output
    again = run(runner, cli, *common, "--model", ORACLE, "--pretrained", small_world)
    assert again.exit_code == 0 and "skipped" in again.output  # the same model proceeds
    rebound = run(runner, cli, *common, "--model", TINY_OPEN_CLIP, "--overwrite")
    assert rebound.exit_code == 0, rebound.output
    assert json.loads((out / "mine" / ".identity.json").read_text())["spec"] == TINY_OPEN_CLIP
    assert [p.name for p in (out / "mine").iterdir() if p.name.startswith(".identity.")] == [".identity.json"]


def test_several_models_in_one_call_and_one_failing(runner, cli, small_world, tmp_path):
    out = tmp_path / "res"
    models = tmp_path / "models.txt"
    models.write_text(f"# spec,pretrained,name\n{ORACLE},{small_world},oracle-from-file\n\n"
                      f"py:no_such_module:build,,broken\n")
    r = run(runner, cli, "--task", "shapes-retrieval", "--param", f"root={small_world}", "--limit", "8", "-o", out,
            "--model", TINY_OPEN_CLIP, "--model", ORACLE, "--pretrained", "", "--pretrained", small_world,
            "--model-name", "tiny", "--model-name", "oracle", "--models", models)
    assert r.exit_code == 1, r.output
    assert "3 of 4 model(s) evaluated; 1 failed" in r.output and "no_such_module" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["oracle", "oracle-from-file", "tiny"]  # "broken" left unbound
    for name, value in (("oracle", 100.0), ("oracle-from-file", 100.0)):
        assert json.loads((out / name / "shapes-retrieval.json").read_text())["metrics"]["mean_R@1"] == value


@pytest.mark.parametrize("args, message", [
    (["--model", "a:x", "--model", "b:y", "--pretrained", "p1", "--pretrained", "p2", "--pretrained", "p3"],
     "--pretrained given 3 times for 2 --model"),
    (["--model", "a:x", "--model", "b:y", "--model-name", "one"], "each model needs its own name"),
])
def test_mismatched_model_lists_are_refused(runner, cli, args, message):
    r = run(runner, cli, "--task", "shapes-retrieval", *args)
    assert r.exit_code == 2 and message in r.output
