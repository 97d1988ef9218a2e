"""GitHub Markdown rendering of a leaderboard; every user string escaped (``formatting.markdown_escape``)."""
from __future__ import annotations

from .chance import LEGEND as CHANCE_LEGEND
from .chance import MARKS as CHANCE_MARKS
from .formatting import DASH, arrow, interval, missing, num, signed
from .formatting import markdown_escape as esc
from .leaderboard import Board, Column, SeedTable, Table

MARK = "†"
ARTIFACT = "⚑"
ROLE_LABELS = {"control": "control", "reference": "reference"}


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
    if col.artifact:
        text += f"; flagged: a text-only classifier solves categor{'y' if len(col.artifact) == 1 else 'ies'} " \
                f"{', '.join(col.artifact)}"
    return text


def chance_mark(table: Table, i: int, j: int) -> str:
    """``≈`` (at chance), ``▾`` (below chance) or '' for cell (model ``i``, column ``j``)."""
    return CHANCE_MARKS.get(table.grid.status[i, j], "")


def model_label(board: Board, table: Table, m: str) -> str:
    """A row's label text (unescaped): the name, then its role when not a plain model, and baseline."""
    role = ROLE_LABELS.get(table.role(m))
    label = m + (f" ({role})" if role else "")
    if m == board.baseline or (board.seeds is not None and m in _members(board.seeds, board.baseline)):
        label += " (baseline)" if m == board.baseline else " (baseline group)"
    return label


def _members(seeds: SeedTable, group: str | None) -> list[str]:
    return next((r.models for r in seeds.rows if r.group == group), [])


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
    mark = chance_mark(table, i, j)
    if mark:
        parts.append(mark)
    if g.delta is not None and table.models[i] != board.baseline:
        parts.append(f"({signed(g.delta[i, j], digits)})")
    return parts


def _table(board: Board, table: Table, digits: int, partial: bool) -> list[str]:
    head = ([] if partial else ["Rank"]) + ["Model", "Tasks"] + [
        f"{esc(c.label)}{' ' + ARTIFACT if c.artifact else ''} {arrow(c.higher_is_better)}" for c in board.columns]
    align = ([] if partial else ["---:"]) + ["---", "---:"] + ["---:"] * len(board.columns)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    n_tasks = len(board.task_columns)
    g = table.grid
    for i, m in enumerate(table.models):
        rank = g.rank[i]
        row = [] if partial else [DASH if missing(rank) else str(int(rank))]
        label = esc(model_label(board, table, m))
        row += [f"*{label}*" if table.role(m) != "model" else label, f"{g.n_tasks[i]}/{n_tasks}"]
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


def _seed_cell(board: Board, row, key: str, digits: int) -> str:
    stat = row.stats.get(key)
    if stat is None or not stat.n or missing(stat.mean):
        return DASH
    text = f"{num(stat.mean, digits)} ± {num(stat.sd, digits)}"
    d = row.diff.get(key)
    if d is not None:
        iv = d.interval
        text += f" ({signed(d.diff, digits)}"
        if iv is not None:
            text += f" {interval(iv[0], iv[1], digits)}{'ᵗ' if d.shown == 't' else 'ᵇ'}"
        text += ("*" if row.significant.get(key) else "") + ")"
    elif key in row.delta:
        text += f" ({signed(row.delta[key], digits)})"
    return text


def seed_legend(seeds: SeedTable) -> str:
    """What the seed table's cells hold (plain text)."""
    text = "Cells: mean ± sd over the seeds of each seed group"
    if seeds.baseline is not None:
        text += (f"; in parentheses the difference to the baseline group {seeds.baseline} (mean of means) with its "
                 f"95% interval: ᵗ the t-interval over seed pairs (df = seeds - 1), ᵇ the two-way bootstrap (images "
                 f"resampled with the same weights across seeds, seeds resampled); with fewer than 5 seeds the wider "
                 f"of the two is shown. * significant after Holm's correction over the {seeds.n_tests} differences "
                 f"of this table, never when both groups are at or below chance. Group columns: difference of means, "
                 f"not tested")
    return text + "."


def seed_lines(board: Board, digits: int) -> list[str]:
    seeds = board.seeds
    if seeds is None:
        return []
    head = ["Seed group", "Seeds"] + [f"{esc(c.label)} {arrow(c.higher_is_better)}" for c in board.columns]
    out = ["", "## Seed groups", "", esc(seed_legend(seeds)), "", "| " + " | ".join(head) + " |",
           "|" + "|".join(["---", "---:"] + ["---:"] * len(board.columns)) + "|"]
    for row in seeds.rows:
        name = esc(row.group) + (" (baseline)" if row.group == seeds.baseline else "")
        out.append("| " + " | ".join([name, str(len(row.models))] + [_seed_cell(board, row, c.key, digits)
                                                                       for c in board.columns]) + " |")
    return out


def render_markdown(board: Board, digits: int = 1) -> str:
    """The whole board as GitHub Markdown: table, column legend, partial table, flags, notes."""
    n_models, n_tasks = len(board.full.models), len(board.task_columns)
    out = [f"# {esc(board.title)}", ""]
    legend = (f"{n_models} model{'s' if n_models != 1 else ''} × {n_tasks} task{'s' if n_tasks != 1 else ''}. "
              f"Cells: main metric [95% interval]")
    if board.baseline is not None:
        legend += f" (difference to the baseline {esc(board.baseline)})"
    legend += (f"; **bold**: best in column (models only; *control* and *reference* rows are unranked); "
               f"{esc(CHANCE_LEGEND)}; {MARK}: flagged (see Flags); {ARTIFACT}: probe categories a text-only "
               f"classifier solves (see Notes); ↑/↓: higher/lower is better.")
    out += [legend, ""]
    if board.full.models:
        out += _table(board, board.full, digits, partial=False)
    else:
        out.append("No full runs: every result is partial (see below).")
    out += seed_lines(board, digits)
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
