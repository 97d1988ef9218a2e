"""Figures for papers: a leaderboard column as a dot-and-whisker chart, drawn with matplotlib (no torch).

One panel per column (a task, a task group or ``Average``): one row per row of the board's full table, ranked
by the first column drawn (models, then controls and references), the main metric as a dot, its 95% interval
as an error bar (for a group: the mean of its tasks' interval ends, ``leaderboard.aggregate_interval``) and the
chance level as a dashed line. Control and reference rows are drawn hollow and grey, and labelled as such.
Sizes and type follow common two-column paper templates: 3.5 in (one column) or 7 in (two columns) wide,
serif text at 8 pt, the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies). PDF
and SVG keep text as text (vector); PNG is rendered at ``dpi``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..errors import ResultsError
from .leaderboard import Board, Column, aggregate_interval

WIDTHS = {1: 3.5, 2: 7.0}           # inches: one and two columns of a paper
FORMATS = ("pdf", "png", "svg")
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
GREY = "#6e7781"
STYLE = {"font.family": "serif", "font.serif": ["DejaVu Serif", "Times New Roman", "Times", "serif"],
         "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 8,
         "legend.fontsize": 7, "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0,
         "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "savefig.bbox": "tight",
         "savefig.pad_inches": 0.02}


def find_columns(board: Board, names: Sequence[str]) -> list[Column]:
    """The board columns named ``names`` (a task, a group, or ``Average``), or ``ResultsError`` listing them."""
    by_name = {c.label.lower(): c for c in board.columns} | {c.key.lower(): c for c in board.columns}
    out = []
    for name in names:
        col = by_name.get(name.lower())
        if col is None:
            raise ResultsError(f"--task {name!r}: not a column of these results; expected one of "
                               f"{', '.join(c.label for c in board.columns)}")
        out.append(col)
    return out


def plot_columns(board: Board, columns: Sequence[Column], path: Path | str, width: int = 1, dpi: int = 300,
                 digits: int = 1) -> Path:
    """Draw ``columns`` side by side and save to ``path`` (format from its suffix: .pdf .png .svg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ResultsError(f"{path}: unknown figure format {path.suffix or '(no suffix)'!r}; expected .pdf, .png or .svg")
    if width not in WIDTHS:
        raise ResultsError(f"--width {width}: expected 1 (one column, 3.5 in) or 2 (two columns, 7 in)")
    table = board.full
    if not table.models:
        raise ResultsError("no full results to plot (every result is partial)")
    colours = {m: PALETTE[k % len(PALETTE)] for k, m in enumerate(m for m in table.models if table.role(m) == "model")}
    j = board.columns.index(columns[0])
    order = {r: k for k, r in enumerate(("model", "control", "reference"))}

    def rank(m: str):
        v = table.grid.values[table.models.index(m), j]
        return (order.get(table.role(m), 0), math.isnan(v), 0.0 if math.isnan(v) else (-v if columns[0].higher_is_better
                                                                                        else v))

    rows = sorted(table.models, key=rank)
    height = 0.8 + 0.17 * len(rows)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(WIDTHS[width], height), layout="constrained")
        axes = fig.subplots(1, len(columns), sharey=True, squeeze=False)[0]
        for k, (ax, col) in enumerate(zip(axes, columns)):
            _panel(ax, board, col, rows, colours, digits, first=k == 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=fmt, dpi=dpi, metadata=_metadata(fmt))
    return path


def _metadata(fmt: str) -> dict:
    """No creation date: the same results give the same file."""
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "sparc-eval"}
    if fmt == "svg":
        return {"Date": None, "Creator": "sparc-eval"}
    return {"Software": "sparc-eval"}


def _panel(ax, board: Board, col: Column, rows: Sequence[str], colours: dict[str, str], digits: int,
           first: bool) -> None:
    table = board.full
    j = board.columns.index(col)
    g = table.grid
    ys = list(range(len(rows)))[::-1]                 # the first (best) row on top
    for y, m in zip(ys, rows):
        i = table.models.index(m)
        v = g.values[i, j]
        if math.isnan(v):
            continue
        lo, hi = (g.lo[i, j], g.hi[i, j]) if col.kind == "task" else (aggregate_interval(table, m, col) or (math.nan,) * 2)
        model = table.role(m) == "model"
        c = colours.get(m, GREY)
        err = None if math.isnan(lo) or math.isnan(hi) else [[max(v - lo, 0.0)], [max(hi - v, 0.0)]]
        ax.errorbar([v], [y], xerr=err, fmt="o", ms=3.5, color=c, mfc=c if model else "white", mec=c, mew=0.8,
                    elinewidth=0.8, capsize=1.8, capthick=0.8, zorder=3)
    if col.chance is not None:
        ax.axvline(col.chance, color="#444444", ls=(0, (3, 2)), lw=0.7, zorder=1)
        ax.annotate(f"chance {col.chance:.{digits}f}", (col.chance, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(2, -1), textcoords="offset points", ha="left", va="top", fontsize=6.5, color="#444444")
    ax.set_yticks(ys)
    ax.set_yticklabels([m if table.role(m) == "model" else f"{m} ({table.role(m)})" for m in rows])
    for label, m in zip(ax.get_yticklabels(), rows):
        if table.role(m) != "model":
            label.set_style("italic")
            label.set_color(GREY)
    if not first:
        ax.tick_params(axis="y", length=0)
    ax.set_ylim(-0.6, len(rows) - 0.1)
    arrow = "↑" if col.higher_is_better else "↓"
    metric = col.metric or "mean"
    ax.set_xlabel(f"{metric} {arrow}" + (f" ({col.unit})" if col.unit else ""))
    ax.set_title(col.label, loc="left", fontweight="bold")
    ax.grid(axis="x", lw=0.4, color="#d0d7de", zorder=0)
    ax.spines[["top", "right", "left"]].set_visible(False)
