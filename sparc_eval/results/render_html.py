"""Self-contained HTML rendering of a leaderboard: sortable table, per-group bar charts, per-task details.

No network: CSS and JS are inlined from ``assets/``; a Content-Security-Policy allows only that one
script (by hash), so even a string that escaped escaping could not run. Every user string goes
through ``html.escape``. Sorting is the only thing the script does; the page reads without it.
"""
from __future__ import annotations

import base64
import hashlib
import html
import math
from importlib import resources

from .chance import LEGEND as CHANCE_LEGEND
from .chance import MARKS as CHANCE_MARKS
from .collect import Entry
from .formatting import arrow, exact, interval, missing, num, signed
from .leaderboard import Board, Column, Table
from .render_markdown import ROLE_LABELS, describe_column, seed_legend


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:; "
            f"base-uri 'none'; form-action 'none'")


def _sort_header(label: str, *, cls: str = "", text: bool = False, hib: bool = True, title: str = "",
                 extra: str = "") -> str:
    attrs = f' class="{cls}"' if cls else ""
    attrs += ' data-type="text"' if text else f' data-type="num" data-hib="{int(hib)}"'
    attrs += f' title="{esc(title)}"' if title else ""
    return f'<th{attrs}><button class="sort" type="button">{esc(label)}</button>{extra}</th>'


def _task_ids(board: Board) -> dict[str, str]:
    return {c.key: f"task-{i}" for i, c in enumerate(board.task_columns)}


def _board_table(board: Board, table: Table, digits: int, partial: bool, table_id: str) -> list[str]:
    ids = _task_ids(board)
    head = [] if partial else [_sort_header("Rank", hib=False)]
    head += [_sort_header("Model", cls="text", text=True), _sort_header("Tasks")]
    for c in board.columns:
        link = f' <a class="detail" href="#{ids[c.key]}" title="details">details</a>' if c.kind == "task" else ""
        what = c.metric if c.kind == "task" else "mean"
        flag = (f'<span class="artifact" title="{esc(describe_column(c, digits))}">⚑</span>' if c.artifact else "")
        extra = f'{flag}{link}<span class="metric">{esc(what or "")} {arrow(c.higher_is_better)}</span>'
        head.append(_sort_header(c.label, cls=c.kind, hib=c.higher_is_better, title=describe_column(c, digits),
                                 extra=extra))
    out = [f'<div class="scroll"><table class="board sortable" id="{table_id}">', "<thead><tr>" + "".join(head)
           + "</tr></thead>", "<tbody>"]
    n_tasks = len(board.task_columns)
    g = table.grid
    for i, m in enumerate(table.models):
        cells = []
        if not partial:
            rank = g.rank[i]
            cells.append(f'<td data-v="{exact(rank)}">{"–" if missing(rank) else int(rank)}</td>')
        badge = '<span class="badge">baseline</span>' if m == board.baseline else ""
        role = table.role(m)
        if role in ROLE_LABELS:
            badge += f'<span class="badge role">{esc(ROLE_LABELS[role])}</span>'
        cells.append(f'<td class="text model" title="{esc(m)}" data-v="{esc(m)}">{esc(m)}{badge}</td>')
        cells.append(f'<td data-v="{g.n_tasks[i]}">{g.n_tasks[i]}/{n_tasks}</td>')
        for j, c in enumerate(board.columns):
            cells.append(_cell(board, table, i, j, c, digits, partial))
        out.append(f'<tr class="role-{esc(role)}">' + "".join(cells) + "</tr>")
    out.append("</tbody>")
    if not partial:
        chance = ['<td></td>', '<td class="text">chance</td>', "<td></td>"]
        chance += [f'<td class="{c.kind}">{num(c.chance, digits, "")}</td>' for c in board.columns]
        out.append("<tfoot><tr>" + "".join(chance) + "</tr></tfoot>")
    out.append("</table></div>")
    return out


def _cell(board: Board, table: Table, i: int, j: int, c: Column, digits: int, partial: bool) -> str:
    g, m = table.grid, table.models[i]
    v = g.values[i, j]
    classes = [c.kind] + (["best"] if g.best[i, j] else [])
    if missing(v):
        return f'<td class="{" ".join(classes)}" data-v="">–</td>'
    body = num(v, digits)
    iv = interval(g.lo[i, j], g.hi[i, j], digits)
    if iv:
        body += f'<span class="ci">{iv}</span>'
    state = g.status[i, j]
    if state in CHANCE_MARKS:
        body += f'<span class="chance-mark" title="{esc(CHANCE_LEGEND)}">{CHANCE_MARKS[state]} {esc(state)}</span>'
    if partial and c.kind == "task" and not missing(g.n_used[i, j]):
        total = g.n_total[i, j]
        body += f'<span class="n">n={int(g.n_used[i, j])}{"" if missing(total) else f"/{int(total)}"}</span>'
    if g.delta is not None and m != board.baseline:
        d = g.delta[i, j]
        if not missing(d):
            good = (d > 0) == c.higher_is_better
            body += f'<span class="delta {"pos" if good and d != 0 else "neg" if d != 0 else ""}">{signed(d, digits)}</span>'
    reasons = table.flags.get((m, c.key))
    if reasons:
        body += f'<sup class="flag" title="{esc("; ".join(reasons))}">†</sup>'
    return f'<td class="{" ".join(classes)}" data-v="{exact(v)}">{body}</td>'


def _chart(board: Board, c: Column, digits: int) -> list[str]:
    j = board.columns.index(c)
    best = dict(zip(board.full.models, board.full.grid.best[:, j]))
    s = board.full.values[c.key].dropna()
    s = s.sort_values(ascending=not c.higher_is_better, kind="stable")
    percent = c.unit == "%" and (s.empty or (s.min() >= 0 and s.max() <= 100))
    scale = 100.0 if percent else float(max(s.abs().max() if not s.empty else 1.0, 1e-9))
    out = [(f'<figure class="chart" data-column="{esc(c.key)}"><figcaption><strong>{esc(c.label)}</strong> '
            f'{arrow(c.higher_is_better)} <span class="muted">{esc(describe_column(c, digits))}</span></figcaption>'),
           '<ol class="bars">']
    for m, v in s.items():
        width = min(max(v / scale * 100, 0.0), 100.0)
        mark = " best" if best[m] else ""
        chance = ""
        if c.chance is not None:
            left = min(max(c.chance / scale * 100, 0.0), 100.0)
            chance = f'<span class="bar-chance" style="left:{left:.2f}%" title="chance {num(c.chance, digits)}"></span>'
        out.append(f'<li><span class="bar-label" title="{esc(m)}">{esc(m)}</span><span class="bar-track">'
                   f'<span class="bar-fill{mark}" style="width:{width:.2f}%"></span>{chance}</span>'
                   f'<span class="bar-value">{num(v, digits)}</span></li>')
    out.append("</ol></figure>")
    return out


DetailRow = tuple[str, Entry, list[str] | None, bool]


def _detail_rows(board: Board) -> dict[str, list[DetailRow]]:
    """Per task: (model, entry, flags, partial) of every result shown."""
    rows: dict[str, list[DetailRow]] = {}
    for table, partial in ((board.full, False), (board.partial, True)):
        if table is not None:
            for (m, t), e in table.entries.items():
                rows.setdefault(t, []).append((m, e, table.flags.get((m, t)), partial))
    return rows


def _metric_cell(value: object, iv: object, digits: int) -> str:
    if not isinstance(value, (int, float)) or math.isnan(value):
        return '<td data-v="">–</td>'
    ci = ""
    if isinstance(iv, list) and len(iv) == 2 and all(isinstance(x, (int, float)) for x in iv):
        ci = f'<span class="ci">[{iv[0]:.{digits}f}, {iv[1]:.{digits}f}]</span>'
    return f'<td data-v="{value:.10g}">{value:.{digits}f}{ci}</td>'


def _details(c: Column, rows: list[DetailRow], anchor: str, digits: int) -> list[str]:
    metrics = [c.metric] if c.metric else []
    seen = set(metrics)
    for _, e, _, _ in rows:
        new = sorted(set(e.metrics) - seen)
        metrics += new
        seen.update(new)
    summary = esc(describe_column(c, digits))
    if rows:
        ds = rows[0][1].dataset
        summary += f" · dataset {esc(ds.name or '?')} ({esc(ds.format or '?')})"
    out = [(f'<details class="task" id="{anchor}"><summary><strong>{esc(c.label)}</strong> '
            f'<span class="muted">{summary} · {len(rows)} result{"s" if len(rows) != 1 else ""}</span></summary>')]
    if not rows:
        return out + ["<p>No results.</p></details>"]
    head = [_sort_header("Model", cls="text", text=True), _sort_header("n"), _sort_header("seed")]
    head += [_sort_header(k, title=k) for k in metrics]
    head += [_sort_header(h, cls="text", text=True) for h in ("dataset", "config", "file", "flags")]
    out += ['<div class="scroll"><table class="detail sortable">', "<thead><tr>" + "".join(head) + "</tr></thead><tbody>"]
    for m, e, reasons, partial in sorted(rows, key=lambda r: (r[3], r[0].lower(), r[0])):
        ds = e.dataset
        badge = '<span class="badge">partial</span>' if partial else ""
        cells = [f'<td class="text model" title="{esc(m)}" data-v="{esc(m)}">{esc(m)}{badge}</td>',
                 f'<td data-v="{exact(ds.n_used)}">{esc(ds.n_used)}/{esc(ds.n_total)}</td>',
                 f'<td data-v="{esc(e.seed)}">{esc(e.seed)}</td>']
        values, ivs = e.metrics, e.record.intervals or {}
        cells += [_metric_cell(values.get(k), ivs.get(k), digits) for k in metrics]
        cells += [f'<td class="text"><code>{esc(str(e.fingerprint)[:12])}</code></td>',
                  f'<td class="text"><code>{esc(e.config_sha256[:12])}</code> v{esc(e.version)}</td>',
                  f'<td class="text">{esc(e.label)}</td>',
                  f'<td class="text">{esc("; ".join(reasons or []))}</td>']
        out.append("<tr>" + "".join(cells) + "</tr>")
    return out + ["</tbody></table></div></details>"]


def _seed_section(board: Board, digits: int) -> list[str]:
    seeds = board.seeds
    if seeds is None:
        return []
    head = [_sort_header("Seed group", cls="text", text=True), _sort_header("Seeds")]
    head += [_sort_header(c.label, cls=c.kind, hib=c.higher_is_better, title=describe_column(c, digits))
             for c in board.columns]
    out = ['<section id="seeds"><h2>Seed groups</h2>', f'<p class="muted">{esc(seed_legend(seeds))}</p>',
           '<div class="scroll"><table class="board sortable">', "<thead><tr>" + "".join(head) + "</tr></thead><tbody>"]
    for row in seeds.rows:
        badge = '<span class="badge">baseline</span>' if row.group == seeds.baseline else ""
        cells = [f'<td class="text model" title="{esc(", ".join(row.models))}" data-v="{esc(row.group)}">'
                 f'{esc(row.group)}{badge}</td>', f'<td data-v="{len(row.models)}">{len(row.models)}</td>']
        for c in board.columns:
            stat = row.stats.get(c.key)
            if stat is None or not stat.n or missing(stat.mean):
                cells.append(f'<td class="{c.kind}" data-v="">–</td>')
                continue
            body = f"{num(stat.mean, digits)} ± {num(stat.sd, digits)}"
            d = row.diff.get(c.key)
            if d is not None:
                iv = d.interval
                sig = row.significant.get(c.key)
                title = (f"{d.method}; p = {d.p_value:.3g}, Holm-adjusted {row.p_holm.get(c.key, float('nan')):.3g}"
                         if iv is not None else d.note)
                text = signed(d.diff, digits) + (f" {interval(iv[0], iv[1], digits)}{'ᵗ' if d.shown == 't' else 'ᵇ'}"
                                                 if iv is not None else "")
                body += (f'<span class="delta{" sig" if sig else ""}" title="{esc(title)}">{esc(text)}'
                         f'{"*" if sig else ""}</span>')
            elif c.key in row.delta:
                body += f'<span class="delta">{signed(row.delta[c.key], digits)}</span>'
            cells.append(f'<td class="{c.kind}" data-v="{exact(stat.mean)}">{body}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    return out + ["</tbody></table></div></section>"]


def render_html(board: Board, digits: int = 1) -> str:
    """The board as one HTML page with inline CSS and JS (no external resources)."""
    css, js = _asset("leaderboard.css"), _asset("leaderboard.js")
    n_models, n_tasks = len(board.full.models), len(board.task_columns)
    meta = f"{n_models} model{'s' if n_models != 1 else ''} × {n_tasks} task{'s' if n_tasks != 1 else ''}"
    if board.suite:
        meta += f" · suite {esc(board.suite)}"
    if board.baseline is not None:
        meta += f" · differences to the baseline {esc(board.baseline)}"
    meta += (" · cells: main metric with its 95% interval; green: best in column (models only; control and reference "
             "rows in italics, unranked); † flagged (hover for the reason); ⚑ probe categories a text-only classifier "
             f"solves; {esc(CHANCE_LEGEND)}; click a header to sort")
    charts = board.aggregate_columns or board.task_columns
    flags = [(m, col, r, "") for (m, col), r in board.full.flags.items()]
    if board.partial is not None:
        flags += [(m, col, r, " (partial)") for (m, col), r in board.partial.flags.items()]
    nav = ['<a href="#board">Table</a>'] + (['<a href="#seeds">Seed groups</a>'] if board.seeds is not None else [])
    nav += ['<a href="#charts">Charts</a>', '<a href="#details">Task details</a>']
    nav += ['<a href="#partial">Partial runs</a>'] if board.partial is not None else []
    nav += ['<a href="#flags">Flags</a>'] if flags else []
    nav += ['<a href="#notes">Notes</a>'] if board.notes else []
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{esc(_csp(js))}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{esc(board.title)}</title>", f"<style>\n{css}</style>", "</head>", "<body>",
           f"<header><h1>{esc(board.title)}</h1><p class=\"meta\">{meta}</p><nav>{''.join(nav)}</nav></header>",
           '<section id="board"><h2>Leaderboard</h2>']
    if board.full.models:
        out += _board_table(board, board.full, digits, False, "board-table")
    else:
        out.append("<p>No full runs: every result is partial (see below).</p>")
    out += ["</section>"] + _seed_section(board, digits) + ['<section id="charts"><h2>Charts</h2><div class="charts">']
    for c in charts:
        out += _chart(board, c, digits)
    out += ["</div></section>", '<section id="details"><h2>Task details</h2>']
    ids, rows = _task_ids(board), _detail_rows(board)
    for c in board.task_columns:
        out += _details(c, rows.get(c.key, []), ids[c.key], digits)
    out.append("</section>")
    if board.partial is not None:
        out += [('<section id="partial"><h2>Partial runs (--limit)</h2><p class="muted">Runs on a subset of the data '
                 '(n = samples used / total): not comparable with the table above.</p>')]
        out += _board_table(board, board.partial, digits, True, "partial-table") + ["</section>"]
    if flags:
        out += ['<section id="flags"><h2>Flags</h2><ul class="flags">']
        out += [f"<li><strong>{esc(m)}</strong> / {esc(col)}{where}: {esc('; '.join(r))}</li>" for m, col, r, where in flags]
        out += ["</ul></section>"]
    if board.notes:
        out += ['<section id="notes"><h2>Notes</h2><ul class="notes">']
        out += [f"<li>{esc(n)}</li>" for n in board.notes] + ["</ul></section>"]
    out += [f"<script>{js}</script>", "</body>", "</html>"]
    return "\n".join(out) + "\n"
