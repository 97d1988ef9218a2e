"""Self-contained HTML rendering of a leaderboard: the ranked table, a chart per column, per-task details.

One file, no network: CSS and JS are inlined from ``assets/``, images are data URIs, charts are inline SVG
(``results.svg``). A Content-Security-Policy allows only the page's own script (by hash), so even a string
that escaped escaping could not run; every user string goes through ``html.escape``. The page reads
without the script (it sorts tables and picks a model in example galleries); the interval toggle is CSS.

Layout: the rank and model columns stay in view (sticky) while the table scrolls sideways, task columns
are grouped under their task groups, and each cell holds one line (the value, its chance mark and flag;
the 95% interval and the difference to the baseline are in its tooltip, or inline with the toggle).
``control`` and ``reference`` rows are styled as such and never marked best.
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
from .leaderboard import Board, Column, Table, aggregate_interval
from .render_markdown import ROLE_LABELS, describe_column, seed_legend
from .svg import Dot, dot_chart
from .task_views import metric_info, ordered_metrics, views

ROLE_ORDER = {"model": 0, "control": 1, "reference": 2}


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


def _bands(board: Board) -> list[tuple[str, list[Column]]]:
    """Columns in display order, in bands: the aggregates, then the tasks under their (first) task group."""
    bands: list[tuple[str, list[Column]]] = []
    if board.aggregate_columns:
        bands.append(("summary", board.aggregate_columns))
    by_group: dict[str, list[Column]] = {g: [] for g in board.groups}
    other: list[Column] = []
    for c in board.task_columns:
        group = next((g for g, members in board.groups.items() if c.key in members), None)
        (by_group[group] if group is not None else other).append(c)
    bands += [(g, cols) for g, cols in by_group.items() if cols]
    if other:
        bands.append(("other tasks" if by_group and any(by_group.values()) else "tasks", other))
    return bands


def _board_table(board: Board, table: Table, digits: int, partial: bool, table_id: str) -> list[str]:
    ids = _task_ids(board)
    bands = _bands(board)
    order = [c for _, cols in bands for c in cols]
    index = {c.key: j for j, c in enumerate(board.columns)}
    lead = (["Rank"] if not partial else []) + ["Model"]
    top = [f'<th class="stick lead" colspan="{len(lead)}"></th>', "<th></th>"]
    top += [f'<th class="band band-{k % 2}" colspan="{len(cols)}" scope="colgroup">{esc(name)}</th>'
            for k, (name, cols) in enumerate(bands)]
    head = ([_sort_header("Rank", cls="stick rank", hib=False)] if not partial else [])
    head += [_sort_header("Model", cls=f"text stick model{' first' if partial else ''}", text=True),
             _sort_header("Tasks", title="tasks with a result / tasks on the board")]
    for c in order:
        link = f'<a class="detail" href="#{ids[c.key]}" title="details of {esc(c.label)}">▸</a>' if c.kind == "task" else ""
        what = c.metric if c.kind == "task" else "mean"
        flag = (f'<span class="artifact" title="{esc(describe_column(c, digits))}">⚑</span>' if c.artifact else "")
        extra = f'{flag}{link}<span class="metric">{esc(what or "")} {arrow(c.higher_is_better)}</span>'
        head.append(_sort_header(c.label, cls=c.kind, hib=c.higher_is_better, title=describe_column(c, digits),
                                 extra=extra))
    out = [f'<div class="scroll"><table class="board sortable" id="{table_id}">',
           '<thead><tr class="bands">' + "".join(top) + "</tr><tr>" + "".join(head) + "</tr></thead>", "<tbody>"]
    n_tasks = len(board.task_columns)
    g = table.grid
    for i, m in enumerate(table.models):
        cells = []
        if not partial:
            rank = g.rank[i]
            cells.append(f'<td class="stick rank" data-v="{exact(rank)}">{"–" if missing(rank) else int(rank)}</td>')
        badge = '<span class="badge">baseline</span>' if m == board.baseline else ""
        role = table.role(m)
        if role in ROLE_LABELS:
            badge += f'<span class="badge role">{esc(ROLE_LABELS[role])}</span>'
        cells.append(f'<td class="text stick model{" first" if partial else ""}" title="{esc(m)}" data-v="{esc(m)}">'
                     f'<span class="name">{esc(m)}</span>{badge}</td>')
        lacking = [c.label for c in board.task_columns if missing(g.values[i, index[c.key]])]
        tip = f' title="{esc("no result for " + ", ".join(lacking))}"' if lacking else ""
        cells.append(f'<td data-v="{g.n_tasks[i]}"{tip}>{g.n_tasks[i]}/{n_tasks}</td>')
        for c in order:
            cells.append(_cell(board, table, i, index[c.key], c, digits, partial))
        out.append(f'<tr class="role-{esc(role)}">' + "".join(cells) + "</tr>")
    out.append("</tbody>")
    if not partial:
        chance = ['<td class="stick rank"></td>', '<td class="text stick model">chance</td>', "<td></td>"]
        chance += [f'<td class="{c.kind}">{num(c.chance, digits, "")}</td>' for c in order]
        out.append('<tfoot><tr>' + "".join(chance) + "</tr></tfoot>")
    out.append("</table></div>")
    return out


def _cell(board: Board, table: Table, i: int, j: int, c: Column, digits: int, partial: bool) -> str:
    g, m = table.grid, table.models[i]
    v = g.values[i, j]
    classes = [c.kind] + (["best"] if g.best[i, j] else [])
    if missing(v):
        why = "no result" if c.kind == "task" else "no value: a task of this mean has no result"
        return f'<td class="{" ".join(classes)}" data-v="" title="{esc(why)}">–</td>'
    body = num(v, digits)
    tip = [f"{m} · {c.label}: {num(v, digits)}"]
    iv = interval(g.lo[i, j], g.hi[i, j], digits)
    if iv:
        tip.append(f"95% interval {iv}")
        body_ci = f'<span class="ci"> {iv}</span>'
    else:
        body_ci = ""
    state = g.status[i, j]
    if state in CHANCE_MARKS:
        body += f'<span class="chance-mark">{CHANCE_MARKS[state]}</span>'
        tip.append(state)
    if partial and c.kind == "task" and not missing(g.n_used[i, j]):
        total = g.n_total[i, j]
        n_text = f"n={int(g.n_used[i, j])}" + ("" if missing(total) else f"/{int(total)}")
        body_ci += f'<span class="ci"> {n_text}</span>'
        tip.append(n_text)
    reasons = table.flags.get((m, c.key))
    if reasons:
        body += '<sup class="flag">†</sup>'
        tip.append("flagged: " + "; ".join(reasons))
    delta = ""
    if g.delta is not None and m != board.baseline:
        d = g.delta[i, j]
        if not missing(d):
            good = (d > 0) == c.higher_is_better
            delta = f'<span class="delta {"pos" if good and d != 0 else "neg" if d != 0 else ""}"> {signed(d, digits)}</span>'
            tip.append(f"{signed(d, digits)} vs the baseline")
    return (f'<td class="{" ".join(classes)}" data-v="{exact(v)}" title="{esc(" · ".join(tip))}">'
            f'{body}{body_ci}{delta}</td>')


# -- charts ---------------------------------------------------------------------------------------------------
def _chart(board: Board, c: Column, digits: int) -> list[str]:
    """Every row of the full table (ranked order) as a dot with its interval whisker; chance as a line."""
    table = board.full
    j = board.columns.index(c)
    g = table.grid
    dots = []
    for i, m in enumerate(table.models):
        v = g.values[i, j]
        if missing(v):
            continue
        if c.kind == "task":
            lo, hi = g.lo[i, j], g.hi[i, j]
        else:
            lo, hi = aggregate_interval(table, m, c) or (math.nan, math.nan)
        role = table.role(m)
        cls = " ".join(x for x in (role, "best" if g.best[i, j] else "") if x)
        tip = f"{m}: {num(v, digits)}" + (f" {interval(lo, hi, digits)}" if not missing(lo) else "")
        dots.append(Dot(m + ("" if role == "model" else f" ({role})"), float(v), float(lo), float(hi), cls, tip))
    percent = c.unit == "%"
    svg = dot_chart(dots, c.chance, percent, digits, f"{c.label}: {c.metric or 'mean'} per model") if dots else (
        '<p class="muted">No values.</p>')
    link = f' <a href="#{_task_ids(board)[c.key]}">details</a>' if c.kind == "task" else ""
    chance = f" · chance {num(c.chance, digits)}" if c.chance is not None else " · no chance level stored"
    return [f'<figure class="chart {esc(c.kind)}" data-column="{esc(c.key)}"><figcaption><strong>{esc(c.label)}</strong> '
            f'<span class="muted">{esc(c.metric or "mean")} {arrow(c.higher_is_better)}{esc(chance)}</span>{link}'
            f"</figcaption>{svg}</figure>"]


# -- task details -----------------------------------------------------------------------------------------------
DetailRow = tuple[str, Entry, list[str] | None, bool]


def _detail_rows(board: Board) -> dict[str, list[DetailRow]]:
    """Per task: (model, entry, flags, partial) of every result shown, ranked: models by the main metric
    (direction-aware), then controls and references, partial runs last."""
    rows: dict[str, list[DetailRow]] = {}
    for table, partial in ((board.full, False), (board.partial, True)):
        if table is not None:
            for (m, t), e in table.entries.items():
                rows.setdefault(t, []).append((m, e, table.flags.get((m, t)), partial))
    cols = {c.key: c for c in board.task_columns}
    roles = {**(board.partial.roles if board.partial is not None else {}), **board.full.roles}

    def key(r: DetailRow, col: Column):
        v = r[1].value(col.metric)
        return (r[3], ROLE_ORDER.get(roles.get(r[0], "model"), 0), math.isnan(v),
                0.0 if math.isnan(v) else (-v if col.higher_is_better else v), r[0].lower(), r[0])

    return {t: sorted(rs, key=lambda r: key(r, cols[t])) for t, rs in rows.items() if t in cols}


def _metric_cell(value: object, iv: object, digits: int) -> str:
    if not isinstance(value, (int, float)) or math.isnan(value):
        return '<td data-v="">–</td>'
    ci, title = "", ""
    if isinstance(iv, list) and len(iv) == 2 and all(isinstance(x, (int, float)) for x in iv):
        ci = f'<span class="ci"> [{iv[0]:.{digits}f}, {iv[1]:.{digits}f}]</span>'
        title = f' title="95% interval [{iv[0]:.{digits}f}, {iv[1]:.{digits}f}]"'
    return f'<td data-v="{value:.10g}"{title}>{value:.{digits}f}{ci}</td>'


def _details(c: Column, rows: list[DetailRow], anchor: str, digits: int, roles: dict[str, str],
             colours: dict[str, int]) -> list[str]:
    metrics = ordered_metrics(c.metric, {k for _, e, _, _ in rows for k in e.metrics})
    summary = esc(describe_column(c, digits))
    if rows:
        ds = rows[0][1].dataset
        summary += f" · dataset {esc(ds.name or '?')} ({esc(ds.format or '?')})"
    out = [(f'<details class="task" id="{anchor}"><summary><strong>{esc(c.label)}</strong> '
            f'<span class="muted">{summary} · {len(rows)} result{"s" if len(rows) != 1 else ""}</span></summary>')]
    if not rows:
        return out + ["<p>No results.</p></details>"]
    head = [_sort_header("Model", cls="text stick model first", text=True), _sort_header("n"), _sort_header("seed")]
    for k in metrics:
        hib, control = metric_info(k)
        label = f"{k} {arrow(hib)}"
        head.append(_sort_header(label, cls="control" if control else "", hib=hib,
                                 title=f"{k}: {'higher' if hib else 'lower'} is better"
                                       + ("; a control (describes the data or the text prior, never ranked)"
                                          if control else "")))
    head += [_sort_header(h, cls="text", text=True) for h in ("dataset", "config", "file", "flags")]
    out += ['<div class="scroll"><table class="detail sortable">', "<thead><tr>" + "".join(head) + "</tr></thead><tbody>"]
    for m, e, reasons, partial in rows:
        ds = e.dataset
        role = roles.get(m, "model")
        badge = '<span class="badge">partial</span>' if partial else ""
        badge += f'<span class="badge role">{esc(ROLE_LABELS[role])}</span>' if role in ROLE_LABELS else ""
        cells = [f'<td class="text stick model first" title="{esc(m)}" data-v="{esc(m)}"><span class="name">{esc(m)}'
                 f'</span>{badge}</td>',
                 f'<td data-v="{exact(ds.n_used)}">{esc(ds.n_used)}/{esc(ds.n_total)}</td>',
                 f'<td data-v="{esc(e.seed)}">{esc(e.seed)}</td>']
        values, ivs = e.metrics, e.record.intervals or {}
        cells += [_metric_cell(values.get(k), ivs.get(k), digits) for k in metrics]
        cells += [f'<td class="text"><code>{esc(str(e.fingerprint)[:12])}</code></td>',
                  f'<td class="text"><code>{esc(e.config_sha256[:12])}</code> v{esc(e.version)}</td>',
                  f'<td class="text">{esc(e.label)}</td>',
                  f'<td class="text">{esc("; ".join(reasons or []))}</td>']
        out.append(f'<tr class="role-{esc(role)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    full = [(m, e) for m, e, _, partial in rows if not partial]
    out.append(views(rows[0][1].record.task.type, full, digits, anchor, colours))
    return out + ["</details>"]


def _seed_section(board: Board, digits: int) -> list[str]:
    seeds = board.seeds
    if seeds is None:
        return []
    order = [c for _, cols in _bands(board) for c in cols]
    head = [_sort_header("Seed group", cls="text stick model first", text=True), _sort_header("Seeds")]
    head += [_sort_header(c.label, cls=c.kind, hib=c.higher_is_better, title=describe_column(c, digits))
             for c in order]
    legend = seed_legend(seeds) + " On this page the differences are in each cell's tooltip, or in the cell with the toggle."
    out = ['<section id="seeds"><h2>Seed groups</h2>', f'<p class="muted legend-text">{esc(legend)}</p>',
           '<div class="scroll"><table class="board seeds sortable">', "<thead><tr>" + "".join(head) + "</tr></thead><tbody>"]
    for row in seeds.rows:
        badge = '<span class="badge">baseline</span>' if row.group == seeds.baseline else ""
        cells = [f'<td class="text stick model first" title="{esc(", ".join(row.models))}" data-v="{esc(row.group)}">'
                 f'<span class="name">{esc(row.group)}</span>{badge}</td>',
                 f'<td data-v="{len(row.models)}">{len(row.models)}</td>']
        for c in order:
            stat = row.stats.get(c.key)
            if stat is None or not stat.n or missing(stat.mean):
                cells.append(f'<td class="{c.kind}" data-v="">–</td>')
                continue
            body = f"{num(stat.mean, digits)}<span class=\"sd\"> ± {num(stat.sd, digits)}</span>"
            tip = [f"{row.group} · {c.label}: mean {num(stat.mean, digits)} ± sd {num(stat.sd, digits)} over "
                   f"{stat.n} seed(s)"]
            d = row.diff.get(c.key)
            if d is not None:
                iv = d.interval
                sig = row.significant.get(c.key)
                text = signed(d.diff, digits) + (f" {interval(iv[0], iv[1], digits)}{'ᵗ' if d.shown == 't' else 'ᵇ'}"
                                                 if iv is not None else "")
                tip.append(f"difference to {seeds.baseline}: {text}" + (
                    f"; {d.method}; p = {d.p_value:.3g}, Holm-adjusted {row.p_holm.get(c.key, float('nan')):.3g}"
                    if iv is not None else f"; {d.note}") + ("; significant" if sig else ""))
                body += (f'<span class="delta{" sig" if sig else ""}"> {esc(text)}</span>'
                         + ('<span class="sig" title="significant">*</span>' if sig else ""))
            elif c.key in row.delta:
                body += f'<span class="delta"> {signed(row.delta[c.key], digits)}</span>'
                tip.append(f"difference of means to {seeds.baseline}: {signed(row.delta[c.key], digits)}")
            cells.append(f'<td class="{c.kind}" data-v="{exact(stat.mean)}" title="{esc(" · ".join(tip))}">{body}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    return out + ["</tbody></table></div></section>"]


def render_html(board: Board, digits: int = 1) -> str:
    """The board as one HTML page with inline CSS, JS, SVG and images (no external resources)."""
    css, js = _asset("leaderboard.css"), _asset("leaderboard.js")
    n_models, n_tasks = len(board.full.models), len(board.task_columns)
    meta = f"{n_models} model{'s' if n_models != 1 else ''} × {n_tasks} task{'s' if n_tasks != 1 else ''}"
    if board.suite:
        meta += f" · suite {esc(board.suite)}"
    if board.baseline is not None:
        meta += f" · differences to the baseline {esc(board.baseline)}"
    legend = ("Cells: the main metric; hover a cell for its 95% interval"
              + (" and its difference to the baseline" if board.baseline is not None else "")
              + ". Green: best in column (models only). Control and reference rows (italic) are never ranked. "
              f"{CHANCE_LEGEND}. † flagged (hover for the reason); ⚑ probe categories a text-only classifier "
              "solves. Click a header to sort; ▸ opens a task's details.")
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
           '<input type="checkbox" id="show-ci" class="toggle" aria-label="show intervals and differences in the cells">',
           f"<header><h1>{esc(board.title)}</h1><p class=\"meta\">{meta}</p><nav>{''.join(nav)}</nav></header>",
           "<main>", '<section id="board"><h2>Leaderboard</h2>',
           f'<div class="toolbar"><label for="show-ci" class="toggle-label">show intervals'
           f'{" and differences" if board.baseline is not None else ""} in the cells</label></div>',
           f'<p class="muted legend-text">{esc(legend)}</p>']
    if board.full.models:
        out += _board_table(board, board.full, digits, False, "board-table")
    else:
        out.append("<p>No full runs: every result is partial (see below).</p>")
    if board.notes:
        out.append('<p class="muted legend-text">' + "<br>".join(esc(n) for n in board.notes if "task sets" in n) + "</p>")
    out += ["</section>"] + _seed_section(board, digits)
    out += ['<section id="charts"><h2>Charts</h2>',
            '<p class="muted legend-text">Each chart: one dot per row of the table with its 95% interval as a whisker '
            "(for a mean of tasks: the mean of their interval ends, never narrower than the mean's own interval), the "
            "chance level as a dashed line; green: best model, hollow: control and reference rows.</p>",
            '<div class="charts">']
    if board.full.models:
        for _, cols in _bands(board):
            for c in cols:
                out += _chart(board, c, digits)
    out += ["</div></section>", '<section id="details"><h2>Task details</h2>']
    ids, rows = _task_ids(board), _detail_rows(board)
    roles = {**(board.partial.roles if board.partial is not None else {}), **board.full.roles}
    colours = {m: k for k, m in enumerate(dict.fromkeys([*board.full.models, *(board.partial.models if board.partial
                                                                               is not None else [])]))}
    for _, cols in _bands(board):
        for c in cols:
            if c.kind == "task":
                out += _details(c, rows.get(c.key, []), ids[c.key], digits, roles, colours)
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
    out += ["</main>", f"<script>{js}</script>", "</body>", "</html>"]
    return "\n".join(out) + "\n"
