"""CSV rendering of a leaderboard: one wide row per model (as open_clip's results CSV), machine-readable.

Columns: ``table`` (full / partial / chance), ``rank``, ``model``, ``tasks``, then per board column its
key (``average``, ``group:<name>``, task name) with the value; task columns add ``<task> lo``,
``<task> hi`` (95% interval) and ``<task> n``; with a baseline, ``<key> delta``; last ``flags``.
Numbers at full precision, empty when missing; text cells are guarded against spreadsheet formulas.
"""
from __future__ import annotations

import csv
import io

from .formatting import csv_text, exact
from .leaderboard import Board, Table


def _header(board: Board) -> list[str]:
    head = ["table", "rank", "model", "tasks"]
    for c in board.columns:
        head.append(c.key)
        if c.kind == "task":
            head += [f"{c.key} lo", f"{c.key} hi", f"{c.key} n"]
        if board.baseline is not None:
            head.append(f"{c.key} delta")
    return [csv_text(h) for h in head] + ["flags"]


def _rows(board: Board, table: Table, name: str) -> list[list[str]]:
    rows = []
    g = table.grid
    flags_of: dict[str, list[str]] = {}
    for (m, col), reasons in table.flags.items():
        flags_of.setdefault(m, []).append(f"{col}: {'; '.join(reasons)}")
    for i, m in enumerate(table.models):
        row = [name, exact(g.rank[i]), csv_text(m), str(g.n_tasks[i])]
        for j, c in enumerate(board.columns):
            row.append(exact(g.values[i, j]))
            if c.kind == "task":
                row += [exact(g.lo[i, j]), exact(g.hi[i, j]), exact(g.n_used[i, j])]
            if board.baseline is not None:
                row.append(exact(g.delta[i, j]) if g.delta is not None else "")
        flags = flags_of.get(m, [])
        rows.append(row + [csv_text(" | ".join(flags))])
    return rows


def render_csv(board: Board, digits: int = 1) -> str:
    """The board as CSV (``digits`` is unused: CSV keeps full precision)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_header(board))
    w.writerows(_rows(board, board.full, "full"))
    chance = ["chance", "", "", ""]
    for c in board.columns:
        chance.append(exact(c.chance))
        chance += ["", "", ""] if c.kind == "task" else []
        chance += [""] if board.baseline is not None else []
    w.writerow(chance + [""])
    if board.partial is not None:
        w.writerows(_rows(board, board.partial, "partial"))
    return buf.getvalue()
