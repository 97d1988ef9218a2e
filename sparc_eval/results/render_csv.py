"""CSV rendering of a leaderboard: one wide row per model (as open_clip's results CSV), machine-readable.

Columns: ``table`` (full / partial / chance), ``rank``, ``model``, ``role`` (model, control, reference),
``tasks``, then per board column its key (``average``, ``group:<name>``, task name) with the value; task
columns add ``<task> lo``, ``<task> hi`` (95% interval), ``<task> n`` and ``<task> vs chance`` (at
chance, below chance, above chance); with a baseline, ``<key> delta``; last ``flags``.
Numbers at full precision, empty when missing; text cells are guarded against spreadsheet formulas.

``render_long_csv``: one row per model x task x metric (what ``clip_benchmark build`` users load into
pandas), with the interval, n, chance, direction and kind (measured or imported) of each value.
"""
from __future__ import annotations

import csv
import io

from .formatting import csv_text, exact
from .leaderboard import Board, Table


def _header(board: Board) -> list[str]:
    head = ["table", "rank", "model", "role", "tasks"]
    for c in board.columns:
        head.append(c.key)
        if c.kind == "task":
            head += [f"{c.key} lo", f"{c.key} hi", f"{c.key} n", f"{c.key} vs chance"]
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
        row = [name, exact(g.rank[i]), csv_text(m), table.role(m), str(g.n_tasks[i])]
        for j, c in enumerate(board.columns):
            row.append(exact(g.values[i, j]))
            if c.kind == "task":
                row += [exact(g.lo[i, j]), exact(g.hi[i, j]), exact(g.n_used[i, j]), g.status[i, j] or ""]
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
    chance = ["chance", "", "", "", ""]
    for c in board.columns:
        chance.append(exact(c.chance))
        chance += ["", "", "", ""] if c.kind == "task" else []
        chance += [""] if board.baseline is not None else []
    w.writerow(chance + [""])
    if board.partial is not None:
        w.writerows(_rows(board, board.partial, "partial"))
    return buf.getvalue()


LONG_HEAD = ("table", "model", "task", "metric", "value", "lo", "hi", "n", "n_total", "chance", "higher_is_better",
             "unit", "main", "kind", "spec", "pretrained", "task_version", "flags", "role", "seed_group", "vs_chance",
             "control")


def render_long_csv(board: Board, digits: int = 1) -> str:
    """The results behind the board, one row per (model, task, metric); full runs, then partial ones."""
    from .chance import entry_status, is_control_metric
    from .leaderboard import metric_direction

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LONG_HEAD)
    for name, table in (("full", board.full), ("partial", board.partial)):
        if table is None:
            continue
        for (m, col), e in sorted(table.entries.items()):
            flags = " | ".join(table.flags.get((m, col), []))
            r = e.record
            version = "" if r.task.version is None else csv_text(str(r.task.version))
            for key in [r.main_metric] + sorted(k for k in r.metrics if k != r.main_metric):
                iv = e.interval(key)
                hib, unit, _, _ = metric_direction(key)
                w.writerow([name, csv_text(m), csv_text(col), csv_text(key), exact(e.value(key)),
                            exact(iv[0]) if iv else "", exact(iv[1]) if iv else "", exact(r.dataset.n_used),
                            exact(r.dataset.n_total), exact(e.chance(key)), str(hib).lower(), csv_text(unit),
                            str(key == r.main_metric).lower(), r.kind, csv_text(r.model.spec or ""),
                            csv_text(r.model.pretrained or ""), version, csv_text(flags), r.role,
                            csv_text(r.seed_group or ""), entry_status(e, key) or "",
                            str(is_control_metric(key)).lower()])
    return buf.getvalue()
