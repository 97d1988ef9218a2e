"""Golden-file tests of the leaderboard renderers on fixed, hand-checked result files.

Inputs: ``tests/golden/results/`` (4 models x 4 toy tasks; model names with ``<script>``, ``&``, ``%_``
and ``|``; a lower-is-better CHAIR task; one model missing a task; a mixed rerun; a partial run).
Expected outputs: ``tests/golden/leaderboard.{md,csv,tex,html}``. After an intended change, regenerate
with ``SPARC_EVAL_UPDATE_GOLDEN=1 pytest tests/test_results_render.py`` and review the diff.
"""
from __future__ import annotations

import csv
import html
import io
import os
import re
from pathlib import Path

import pytest

from sparc_eval.results.collect import collect
from sparc_eval.results.leaderboard import build
from sparc_eval.results.render import render

GOLDEN = Path(__file__).parent / "golden"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def board():
    return build(collect([GOLDEN / "results"]), baseline="clip-base")


@pytest.mark.parametrize("fmt", ["md", "csv", "tex", "html"])
def test_renderer_matches_golden_file(board, fmt):
    text = render(board, fmt)
    path = GOLDEN / f"leaderboard.{fmt}"
    if os.environ.get("SPARC_EVAL_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_markdown_escapes_user_strings_and_shows_hand_checked_cells(board):
    md = render(board, "md")
    assert "<script" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "R&amp;D model" in md and r"50%\_off\|v2" in md
    rows = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| ")}
    # averages over the 2 higher-is-better tasks every model has (50%_off|v2 has no toy-pairs): (50+55)/2 = 52.5,
    # R&D (45+70)/2 = 57.5, base (40+60)/2 = 50
    assert rows["&lt;script&gt;alert(1)&lt;/script&gt;"].startswith("| 2 |")
    assert "| 52.5 (+2.5) | 52.5 (+2.5) |" in rows["&lt;script&gt;alert(1)&lt;/script&gt;"]
    assert rows["R&amp;D model"].startswith("| 1 |") and rows["clip-base (baseline)"].startswith("| 3 | clip-base")
    # CHAIR_i is lower-is-better: 10.0 is the best of the column
    assert "**10.0** [8.0, 12.0] (-10.0)" in rows["&lt;script&gt;alert(1)&lt;/script&gt;"]
    # a model missing a task is ranked over the shared tasks (a note says so), with no mean of the group it lacks;
    # its mixed rerun is flagged
    assert rows[r"50%\_off\|v2"].startswith("| 4 |") and "32.0 [30.0, 34.0] (-8.0) †" in rows[r"50%\_off\|v2"]
    assert "| 41.0 (-9.0) † | 41.0 (-9.0) † | – |" in rows[r"50%\_off\|v2"]
    assert "different task sets" in md.split("## Notes")[1]
    assert "|  | *chance* |  | 6.0 | 6.0 | 50.0 |  | 10.0 | 50.0 | 2.0 |" in md
    partial = md.split("## Partial results")[1]
    assert "35.0 [20.0, 50.0] n=10/50" in partial and "35.0" not in md.split("## Partial results")[0]


def test_csv_round_trips_names_and_keeps_full_precision(board):
    rows = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    full = {r["model"]: r for r in rows if r["table"] == "full"}
    assert set(full) == {SCRIPT, "R&D model", "clip-base", "50%_off|v2"}
    assert float(full["clip-base"]["average"]) == pytest.approx(50, abs=1e-8)
    assert full["R&D model"]["rank"] == "1" and full["50%_off|v2"]["rank"] == "4"
    assert float(full[SCRIPT]["toy-captions delta"]) == -10.0
    assert "mixed results" in full["50%_off|v2"]["flags"]
    assert [r["model"] for r in rows if r["table"] == "partial"] == ["clip-base"]


def test_latex_escapes_every_special_character(board):
    tex = render(board, "tex")
    assert r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{}" in tex
    assert r"R\&D model" in tex and r"50\%\_off\textbar{}v2" in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex and tex.count(r"\begin{tabular}") == 2
    body = re.sub(r"\\[{}%&_$#]", "", tex)
    assert body.count("{") == body.count("}")
    for line in tex.splitlines():
        if line.endswith(r"\\") and "&" in line:
            assert len(re.findall(r"(?<!\\)&", line)) in (9, 8)  # 10 columns (rank, model, tasks, 7 values), 9 partial


def test_html_escapes_user_strings_and_needs_no_network(board):
    page = render(board, "html")
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script") == 1
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-" in html.unescape(page)


def test_latex_brackets_cannot_become_an_optional_argument(tmp_path):
    import json
    import shutil

    root = Path(shutil.copytree(GOLDEN / "results", tmp_path / "results"))
    for f in root.glob("clip-base/*.json"):
        d = json.loads(f.read_text())
        d["model"]["name"] = "[2x] clip"
        f.write_text(json.dumps(d))
    tex = render(build(collect([root])), "tex")
    assert r"{[}2x{]} clip" in tex and "[2x]" not in tex
    assert not re.search(r"\\\\\s*\[", tex)               # no "\\ [" anywhere: `\\` never meets a bracket
