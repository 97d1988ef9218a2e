"""The results commands end to end on real shapes-world results, and their import path without torch."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import TINY_OPEN_CLIP

ORACLE = "py:sparc_eval.models.oracle:shapes_oracle"


@pytest.fixture
def results_cli(cli):
    from sparc_eval.cli.results import COMMANDS

    for command in COMMANDS:
        cli.commands.setdefault(command.name, command)
    return cli


@pytest.fixture(scope="module")
def real_results(small_world, tmp_path_factory):
    """shapes-retrieval results of the tiny random open_clip model and of the ground-truth oracle."""
    from sparc_eval.api import evaluate

    out = tmp_path_factory.mktemp("real") / "results"
    params = [f"root={small_world}"]
    evaluate(TINY_OPEN_CLIP, ["shapes-retrieval"], params=params, output=out, model_name="tiny",
             progress=False, log=lambda m: None)
    evaluate(ORACLE, ["shapes-retrieval"], pretrained=str(small_world), params=params, output=out,
             model_name="oracle", progress=False, log=lambda m: None)
    return out


def test_leaderboard_check_and_compare_on_real_results(results_cli, runner, real_results, tmp_path):
    r = runner.invoke(results_cli, ["leaderboard", str(real_results), "--baseline", "tiny"])
    assert r.exit_code == 0, r.output
    assert "| 1 | oracle | 1/1 | **100.0** [100.0, 100.0] (+" in r.stdout
    assert "| 2 | tiny (baseline) | 1/1 |" in r.stdout
    r = runner.invoke(results_cli, ["leaderboard", str(real_results), "--suite", "demo"])
    assert r.exit_code == 0 and "# Leaderboard: demo" in r.stdout and "**100.0** [100.0, 100.0]" in r.stdout
    base = tmp_path / "main.json"
    r = runner.invoke(results_cli, ["baseline", "save", str(real_results), "-o", str(base)])
    assert r.exit_code == 0 and "2 with per-sample sums" in r.stderr, r.output
    r = runner.invoke(results_cli, ["check", str(real_results), "--baseline", str(base), "--metrics", "all"])
    assert r.exit_code == 0, r.output
    assert "check passed: 18 unchanged" in r.stdout and "paired bootstrap over images" in r.stdout
    r = runner.invoke(results_cli, ["compare", str(real_results / "tiny"), str(real_results / "oracle")])
    assert r.exit_code == 0, r.output
    assert "1 of 1 difference(s) significant" in r.stdout and "paired" in r.stdout


def test_results_commands_never_import_torch(real_results, tmp_path):
    """The CLI package and the four commands, in a fresh interpreter, leave torch & co. unimported."""
    script = textwrap.dedent(f"""
        import json, sys
        from sparc_eval.cli import cli
        from sparc_eval.cli.results import COMMANDS
        for c in COMMANDS:
            cli.commands.setdefault(c.name, c)
        root, out = {str(real_results)!r}, {str(tmp_path)!r}
        runs = [["leaderboard", root, "-o", out + "/board.html", "-o", out + "/board.md"],
                ["baseline", "save", root, "-o", out + "/base.json"],
                ["check", root, "--baseline", out + "/base.json", "--junit", out + "/junit.xml"],
                ["compare", root + "/tiny", root + "/oracle"]]
        codes = [cli.main(args, prog_name="sparc-eval", standalone_mode=False) or 0 for args in runs]
        heavy = sorted(m for m in ("torch", "torchvision", "open_clip", "transformers", "timm") if m in sys.modules)
        print(json.dumps({{"codes": codes, "heavy": heavy}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"codes": [0, 0, 0, 0], "heavy": []}
    assert (tmp_path / "board.html").stat().st_size > 0 and (tmp_path / "junit.xml").is_file()
