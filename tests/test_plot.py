"""``sparc-eval plot``: a task's or a group's chart for a paper, drawn with matplotlib from result files only."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sparc_eval.results.collect import collect
from sparc_eval.results.leaderboard import build
from sparc_eval.results.plot import PALETTE, find_columns, plot_columns

GOLDEN = Path(__file__).parent / "golden" / "results"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def board():
    return build(collect([GOLDEN]))


def test_svg_is_vector_one_column_wide_serif_with_error_bars_and_a_dashed_chance_line(board, tmp_path):
    svg = plot_columns(board, find_columns(board, ["toy-retrieval"]), tmp_path / "fig.svg").read_text()
    width = float(re.search(r'<svg[^>]* width="([\d.]+)pt"', svg).group(1))
    assert width <= 3.5 * 72 + 1                                      # one column (tight bounding box)
    assert "<image" not in svg and "<text" in svg                    # vector, text kept as text
    assert "font-family" in svg and "serif" in svg.lower() and "font-size:8px" in svg.replace(" ", "")
    assert "stroke-dasharray" in svg                                 # the chance line
    for name in ("<script>alert(1)</script>", "R&D model", "clip-base"):
        assert name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in svg
    assert "chance 2.0" in svg
    colours = {c.lower() for c in re.findall(r"#[0-9A-Fa-f]{6}", svg)}
    assert {PALETTE[0].lower(), PALETTE[1].lower()} <= colours        # Okabe-Ito, a colour per model


def test_pdf_and_png_and_two_columns(board, tmp_path):
    pdf = plot_columns(board, find_columns(board, ["coarse", "toy-captions"]), tmp_path / "fig.pdf", width=2)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and b"/Subtype /Image" not in data and b"/FontFile2" in data   # embedded TrueType
    from PIL import Image

    png = plot_columns(board, find_columns(board, ["Average"]), tmp_path / "fig.png", width=2, dpi=100)
    with Image.open(png) as im:
        assert 6.0 * 100 <= im.width <= 7.0 * 100 + 2


def test_plot_command_and_its_errors(cli, runner, tmp_path):
    out = tmp_path / "fig.pdf"
    res = runner.invoke(cli, ["plot", str(GOLDEN), "--task", "toy-pairs", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(b"%PDF")
    res = runner.invoke(cli, ["plot", str(GOLDEN), "--task", "toy-nothing", "-o", str(out)])
    assert res.exit_code == 2 and "not a column" in res.output and "toy-retrieval" in res.output
    res = runner.invoke(cli, ["plot", str(GOLDEN), "--task", "toy-pairs", "-o", str(tmp_path / "fig.jpg")])
    assert res.exit_code == 2 and "expected .pdf, .png or .svg" in res.output


def test_plot_never_imports_torch(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        from sparc_eval.cli import cli
        code = cli.main(["plot", {str(GOLDEN)!r}, "--task", "toy-retrieval", "-o", {str(tmp_path / "f.svg")!r}],
                        prog_name="sparc-eval", standalone_mode=False) or 0
        print(json.dumps([code, sorted(m for m in ("torch", "torchvision", "open_clip") if m in sys.modules)]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [0, []]
