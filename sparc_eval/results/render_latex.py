"""LaTeX (booktabs) rendering of a leaderboard; every user string escaped (``formatting.latex_escape``).

Needs ``\\usepackage{booktabs}`` in the preamble. Intervals and deltas are set in ``\\scriptsize``,
the best value of a column in bold, flagged values carry a dagger explained below the table.
"""
from __future__ import annotations

from .chance import LEGEND as CHANCE_LEGEND
from .chance import MARKS as CHANCE_MARKS
from .formatting import latex_escape as esc
from .formatting import missing, num
from .leaderboard import Board, Table
from .render_markdown import cell_parts, describe_column, model_label

DAGGER = r"$^\dagger$"
LATEX_MARKS = {CHANCE_MARKS["at chance"]: r"$\approx$", CHANCE_MARKS["below chance"]: r"$\triangledown$"}


def _arrow(higher_is_better: bool) -> str:
    return r"$\uparrow$" if higher_is_better else r"$\downarrow$"


def _tabular(board: Board, table: Table, digits: int, partial: bool) -> list[str]:
    lead = "ll" if partial else "rll"
    lines = [r"\begin{tabular}{" + lead + "r" * len(board.columns) + "}", r"\toprule"]
    head = ([] if partial else ["Rank"]) + ["Model", "Tasks"] + [f"{esc(c.label)} {_arrow(c.higher_is_better)}"
                                                                 for c in board.columns]
    lines += [" & ".join(head) + r" \\", r"\midrule"]
    n_tasks = len(board.task_columns)
    g = table.grid
    for i, m in enumerate(table.models):
        rank = g.rank[i]
        row = [] if partial else ["--" if missing(rank) else str(int(rank))]
        label = esc(model_label(board, table, m))
        row += [r"\textit{" + label + "}" if table.role(m) != "model" else label, f"{g.n_tasks[i]}/{n_tasks}"]
        for j, c in enumerate(board.columns):
            parts = cell_parts(board, table, i, j, digits, partial)
            if parts is None:
                row.append("--")
                continue
            text = r"\textbf{" + parts[0] + "}" if g.best[i, j] else parts[0]
            if len(parts) > 1:
                text += r"~{\scriptsize " + " ".join(LATEX_MARKS.get(x, x) for x in parts[1:]) + "}"
            if (m, c.key) in table.flags:
                text += DAGGER
            row.append(text)
        lines.append(" & ".join(row) + r" \\")
    if not partial:
        lines += [r"\midrule", " & ".join(["", r"\textit{chance}", ""] + [num(c.chance, digits, "") for c in board.columns])
                  + r" \\"]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return lines


def _notes(board: Board, table: Table) -> list[str]:
    flags = [f"{DAGGER} {esc(m)} / {esc(col)}: {esc('; '.join(reasons))}" for (m, col), reasons in table.flags.items()]
    return [r"\par\smallskip{\footnotesize " + r"\\ ".join(flags) + "}"] if flags else []


def render_latex(board: Board, digits: int = 1) -> str:
    """The board as one or two ``table`` floats (full runs; partial runs apart)."""
    legend = "; ".join(f"{esc(c.label)}: {esc(describe_column(c, digits))}" for c in board.columns)
    out = [r"% sparc-eval leaderboard; needs \usepackage{booktabs}", r"\begin{table}[t]", r"\centering", r"\small"]
    if board.full.models:
        out += _tabular(board, board.full, digits, partial=False) + _notes(board, board.full)
    caption = f"{esc(board.title)}. Main metric with its 95\\% interval"
    if board.baseline is not None:
        caption += f" and the difference to {esc(board.baseline)}"
    caption += (f"; best per column in bold (models only). {esc(CHANCE_LEGEND)}".replace("≈", r"$\approx$")
                .replace("▾", r"$\triangledown$") + f". {legend}.")
    out += [r"\caption{" + caption + "}", r"\end{table}"]
    if board.partial is not None:
        out += ["", r"\begin{table}[t]", r"\centering", r"\small"]
        out += _tabular(board, board.partial, digits, partial=True) + _notes(board, board.partial)
        out += [r"\caption{" + esc(board.title) + r": partial runs (\texttt{--limit}; n = samples used/total), "
                r"not comparable with the full runs.}", r"\end{table}"]
    return "\n".join(out) + "\n"
