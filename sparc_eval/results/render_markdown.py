"""GitHub Markdown rendering of a leaderboard; every user string escaped (``formatting.markdown_escape``)."""
from __future__ import annotations

from .formatting import DASH, arrow, interval, missing, num, signed
from .formatting import markdown_escape as esc
from .leaderboard import Board, Column, Table

MARK = "†"


def describe_column(col: Column, digits: int = 1) -> str:
    """One plain-text line saying what a column holds (shared by the renderers' legends)."""
    direction = "higher is better" if col.higher_is_better else "lower is better"
    if col.kind == "task":
        if col.metric is None:
            return "no results"
        text = f"{col.metric} ({direction}), task version {col.version}"
    else:
        text = f"{col.description}: {', '.join(col.members)} ({direction})"
    if col.chance is not None:
        text += f", chance {num(col.chance, digits)}"
    return text


def cell_parts(board: Board, table: Table, i: int, j: int, digits: int, partial: bool) -> list[str] | None:
    """``[value, interval?, n?, delta?]`` of cell (model ``i``, column ``j``) as plain text; None when empty."""
    g = table.grid
    v = g.values[i, j]
    if missing(v):
        return None
    parts = [num(v, digits)]
    iv = interval(g.lo[i, j], g.hi[i, j], digits)
    if iv:
        parts.append(iv)
    if partial and board.columns[j].kind == "task" and not missing(g.n_used[i, j]):
        total = g.n_total[i, j]
        parts.append(f"n={int(g.n_used[i, j])}" + (f"/{int(total)}" if not missing(total) else ""))
    if g.delta is not None and table.models[i] != board.baseline:
        parts.append(f"({signed(g.delta[i, j], digits)})")
    return parts


def _table(board: Board, table: Table, digits: int, partial: bool) -> list[str]:
    head = ([] if partial else ["Rank"]) + ["Model", "Tasks"] + [f"{esc(c.label)} {arrow(c.higher_is_better)}"
                                                                 for c in board.columns]
    align = ([] if partial else ["---:"]) + ["---", "---:"] + ["---:"] * len(board.columns)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    n_tasks = len(board.task_columns)
    g = table.grid
    for i, m in enumerate(table.models):
        rank = g.rank[i]
        row = [] if partial else [DASH if missing(rank) else str(int(rank))]
        row += [esc(m) + (" (baseline)" if m == board.baseline else ""), f"{g.n_tasks[i]}/{n_tasks}"]
        for j, c in enumerate(board.columns):
            parts = cell_parts(board, table, i, j, digits, partial)
            if parts is None:
                row.append(DASH)
                continue
            if g.best[i, j]:
                parts[0] = f"**{parts[0]}**"
            if (m, c.key) in table.flags:
                parts.append(MARK)
            row.append(" ".join(parts))
        lines.append("| " + " | ".join(row) + " |")
    if not partial:
        chance = ["", "*chance*", ""] + [num(c.chance, digits, "") for c in board.columns]
        lines.append("| " + " | ".join(chance) + " |")
    return lines


def _flags(table: Table, where: str = "") -> list[str]:
    return [f"- {esc(m)} / {esc(col)}{where}: {esc('; '.join(reasons))}" for (m, col), reasons in table.flags.items()]


def render_markdown(board: Board, digits: int = 1) -> str:
    """The whole board as GitHub Markdown: table, column legend, partial table, flags, notes."""
    n_models, n_tasks = len(board.full.models), len(board.task_columns)
    out = [f"# {esc(board.title)}", ""]
    legend = (f"{n_models} model{'s' if n_models != 1 else ''} × {n_tasks} task{'s' if n_tasks != 1 else ''}. "
              f"Cells: main metric [95% interval]")
    if board.baseline is not None:
        legend += f" (difference to the baseline {esc(board.baseline)})"
    legend += f"; **bold**: best in column; {MARK}: flagged (see Flags); ↑/↓: higher/lower is better."
    out += [legend, ""]
    if board.full.models:
        out += _table(board, board.full, digits, partial=False)
    else:
        out.append("No full runs: every result is partial (see below).")
    out += ["", "**Columns**", ""]
    out += [f"- {esc(c.label)}: {esc(describe_column(c, digits))}" for c in board.columns]
    if board.partial is not None:
        out += ["", "## Partial results (`--limit`)", "",
                "Runs on a subset of the data (n = samples used / total): not comparable with the table above.", ""]
        out += _table(board, board.partial, digits, partial=True)
    flags = _flags(board.full) + (_flags(board.partial, " (partial)") if board.partial is not None else [])
    if flags:
        out += ["", "## Flags", ""] + flags
    if board.notes:
        out += ["", "## Notes", ""] + [f"- {esc(n)}" for n in board.notes]
    return "\n".join(out) + "\n"
