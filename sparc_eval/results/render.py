"""Pick a leaderboard renderer by name or file suffix, and write boards atomically."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ResultsError
from ..fileio import atomic_write_text
from .leaderboard import Board
from .render_csv import render_csv, render_long_csv
from .render_html import render_html
from .render_latex import render_latex
from .render_markdown import render_markdown

RENDERERS: dict[str, Callable[[Board, int], str]] = {
    "md": render_markdown, "csv": render_csv, "tex": render_latex, "html": render_html, "csv-long": render_long_csv,
}
SUFFIXES = {".md": "md", ".markdown": "md", ".csv": "csv", ".tex": "tex", ".html": "html", ".htm": "html"}


def format_of(path: Path | str) -> str:
    """The renderer name for an output file, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ResultsError(f"{path}: unknown leaderboard format {suffix or '(no suffix)'!r}; "
                           f"expected one of {', '.join(sorted(SUFFIXES))}")
    return SUFFIXES[suffix]


def render(board: Board, fmt: str, digits: int = 1) -> str:
    if fmt not in RENDERERS:
        raise ResultsError(f"unknown leaderboard format {fmt!r}; expected one of {', '.join(RENDERERS)}")
    return RENDERERS[fmt](board, digits)


def write_board(board: Board, path: Path | str, digits: int = 1, long: bool = False) -> Path:
    """Render ``board`` in the format named by ``path``'s suffix and write it atomically; ``long``: a CSV
    file gets one row per model x task x metric."""
    path = Path(path)
    fmt = format_of(path)
    atomic_write_text(path, render(board, "csv-long" if long and fmt == "csv" else fmt, digits))
    return path
