"""What a task's details section of the HTML leaderboard shows besides its metrics table, chosen from what
its results hold (no torch): per-category dots (SugarCrepe/ARO categories, ImageNet-C corruptions and
severities, few-shot heads), per-class IoU, a corruption x severity heat map and a confusion matrix (from the
per-sample records), recall@k curves (from the retrieval ranks), and a gallery of example queries with what
each model ranked first (``task_common.examples``).

Every function takes the task's rows (model name, entry) in display order and returns HTML, or '' when the
results hold nothing for it; ``colours`` gives each model its palette index, the same on the whole page.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from ..errors import UnknownNameError
from ..metrics.registry import get
from .collect import Entry
from .svg import Series, category_chart, esc, heatmap, legend, line_chart

Row = tuple[str, Entry]
MAX_CONFUSION_CLASSES = 20
MAX_HEATMAPS = 8      # per-model matrices shown (models first)
SEVERITY = "severity_"


def natural_key(key: str) -> list:
    """``i2t_R@5`` before ``i2t_R@10``: digit runs compare as numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in re.split(r"(\d+)", key) if p]


def metric_info(key: str) -> tuple[bool, bool]:
    """(higher_is_better, control) of a metric key (unregistered: higher is better, not a control)."""
    try:
        info = get(key)
    except UnknownNameError:
        return True, False
    return info.higher_is_better, info.control


def ordered_metrics(main: str | None, keys: set[str]) -> list[str]:
    """The main metric, then the others in natural order, control metrics last."""
    rest = sorted((k for k in keys if k != main), key=lambda k: (metric_info(k)[1], natural_key(k)))
    return ([main] if main else []) + rest


def _figure(title: str, body: str, note: str = "", wide: bool = False) -> str:
    return (f'<figure class="view{" wide" if wide else ""}"><figcaption><strong>{esc(title)}</strong>'
            + (f' <span class="muted">{esc(note)}</span>' if note else "") + f"</figcaption>{body}</figure>")


def _percent(key: str) -> bool:
    try:
        return get(key).unit == "%"
    except UnknownNameError:
        return False


# -- per-category values (metrics "<base>.<category>") ------------------------------------------------------
def _category_families(rows: Sequence[Row]) -> dict[str, list[str]]:
    """``{base: [categories]}`` of the primary (non-control) metrics reported per category, at least two each;
    ImageNet-C's ``severity_<s>`` subsets form their own family."""
    fams: dict[str, list[str]] = {}
    for _, e in rows:
        for key in e.metrics:
            base, dot, cat = key.partition(".")
            if not dot or metric_info(key)[1]:
                continue
            fam = f"{base}.{SEVERITY}" if cat.startswith(SEVERITY) else base
            if cat not in fams.setdefault(fam, []):
                fams[fam].append(cat)
    return {f: sorted(cats, key=natural_key) for f, cats in fams.items() if len(cats) >= 2}


def category_views(rows: Sequence[Row], digits: int, colours: dict[str, int]) -> list[str]:
    out = []
    for fam, cats in _category_families(rows).items():
        base = fam.split(".")[0]
        keys = [f"{base}.{c}" for c in cats]
        series = []
        for m, e in rows:
            ivs = [e.interval(k) or (math.nan, math.nan) for k in keys]
            series.append(Series(m, [e.value(k) for k in keys], [a for a, _ in ivs], [b for _, b in ivs], colours[m]))
        chance = [next((e.chance(k) for _, e in rows if e.chance(k) is not None), None) for k in keys]
        what = "per severity" if fam.endswith(SEVERITY) else "per category"
        out.append(_figure(f"{base} {what}", category_chart([c.removeprefix(SEVERITY) for c in cats], series, chance,
                                                             _percent(base), digits,
                                                             f"{base} {what}") + legend(series),
                           "dots: value; whiskers: 95% interval; dashed: chance"))
    return out


def per_class_iou(rows: Sequence[Row], digits: int, colours: dict[str, int]) -> str:
    """Per-class IoU of segmentation results (``details.per_class_IoU``)."""
    tables = [(m, (e.record.details or {}).get("per_class_IoU")) for m, e in rows]
    tables = [(m, t) for m, t in tables if isinstance(t, dict) and t]
    if not tables:
        return ""
    classes = list(dict.fromkeys(c for _, t in tables for c in t))
    series = [Series(m, [math.nan if t.get(c) is None else float(t[c]) for c in classes], colour=colours[m])
              for m, t in tables]
    return _figure("IoU per class", category_chart(classes, series, None, True, digits, "IoU per class")
                   + legend(series), "dataset-level IoU of each class (no interval)")


# -- from the per-sample records ------------------------------------------------------------------------------
def _records(e: Entry) -> list[dict]:
    try:
        return e.records()
    except Exception:  # already verified when collected; a file gone since is simply not drawn
        return []


def corruption_heatmaps(rows: Sequence[Row], digits: int) -> str:
    """ImageNet-C: top-1 per corruption x severity (records carrying ``top1.<corruption>`` and
    ``top1.severity_<s>``), one matrix per model."""
    out = []
    for m, e in rows[:MAX_HEATMAPS]:
        cells: dict[tuple[str, str], list[float]] = {}
        for r in _records(e):
            sev = next((k.split(".", 1)[1] for k in r if k.startswith(f"top1.{SEVERITY}")), None)
            corr = next((k.split(".", 1)[1] for k in r if k.startswith("top1.") and SEVERITY not in k), None)
            if sev and corr:
                cells.setdefault((corr, sev.removeprefix(SEVERITY)), []).append(float(r["top1"]))
        if not cells:
            continue
        corrs = sorted({c for c, _ in cells})
        sevs = sorted({s for _, s in cells}, key=natural_key)
        mat = [[100 * float(np.mean(cells[(c, s)])) if (c, s) in cells else math.nan for s in sevs] for c in corrs]
        out.append(heatmap(mat, corrs, sevs, 0.0, 100.0, 0, f"{m}: top-1 by corruption and severity", title=m))
    if not out:
        return ""
    return _figure("top-1 by corruption × severity", '<div class="multiples">' + "".join(out) + "</div>",
                   "percent of images of each cell")


def confusion_matrices(rows: Sequence[Row]) -> str:
    """Row-normalised confusion matrices (true class x predicted class, percent) from ``label``/``pred``
    records, for label sets of at most ``MAX_CONFUSION_CLASSES`` classes."""
    out = []
    for m, e in rows[:MAX_HEATMAPS]:
        recs = [r for r in _records(e) if isinstance(r.get("label"), int) and isinstance(r.get("pred"), int)]
        if not recs:
            continue
        names = (e.record.details or {}).get("classnames")
        n = max(max(r["label"], r["pred"]) for r in recs) + 1
        if isinstance(names, list) and len(names) >= n:
            n = len(names)
        if n > MAX_CONFUSION_CLASSES:
            continue
        labels = [str(x) for x in names] if isinstance(names, list) and len(names) == n else [str(i) for i in range(n)]
        counts = np.zeros((n, n))
        for r in recs:
            counts[r["label"], r["pred"]] += 1
        totals = counts.sum(axis=1, keepdims=True)
        mat = np.where(totals > 0, 100 * counts / np.maximum(totals, 1), np.nan)
        keep = totals[:, 0] > 0
        out.append(heatmap(mat[keep].tolist(), [lb for lb, k in zip(labels, keep) if k], labels, 0.0, 100.0, 0,
                           f"{m}: confusion matrix", title=m))
    if not out:
        return ""
    return _figure("Confusion matrices", '<div class="multiples">' + "".join(out) + "</div>",
                   "rows: true class, columns: predicted (top-1), percent of each row")


def recall_curves(rows: Sequence[Row], colours: dict[str, int]) -> str:
    """Recall@k for k = 1 .. the gallery size, from each query's rank and ties (expected value over a random
    order of the tied items, one match per tie group), image->text and text->image."""
    charts, shown = [], []
    for direction, title in (("i2t", "image → text"), ("t2i", "text → image")):
        series, top = [], 1
        per_model = []
        for m, e in rows:
            recs = [r for r in _records(e) if r.get("direction") == direction and isinstance(r.get("rank"), int)]
            if recs:
                gt = np.array([r["rank"] for r in recs], dtype=float)
                eq = np.array([r.get("ties", 0) for r in recs], dtype=float)
                per_model.append((m, gt, eq))
                top = max(top, int(gt.max() + eq.max()) + 1)
        if not per_model:
            continue
        xs = [k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000) if k <= max(top, 10)]
        for m, gt, eq in per_model:
            series.append(Series(m, [100 * float(np.clip((k - gt) / (eq + 1), 0, 1).mean()) for k in xs],
                                 colour=colours[m]))
        charts.append(f'<div class="curve-box"><div class="muted">{esc(title)}</div>'
                      + line_chart(xs, series, "k", f"{direction}_R@k (%)", label=f"{direction} recall at k") + "</div>")
        shown = shown or series
    if not charts:
        return ""
    return _figure("Recall@k", '<div class="multiples">' + "".join(charts) + "</div>" + legend(shown),
                   "ties counted by their expected value")


GALLERY_QUERIES = 24  # queries shown per task: keeps the page small (~3 kB per thumbnail) whatever ``examples`` is


def gallery(rows: Sequence[Row], gid: str) -> str:
    """Example queries (``details.examples`` + records with ``top``): the query image and, per model, its
    top-5 candidates marked right or wrong; the first ``GALLERY_QUERIES`` queries. A menu picks the model
    (all are shown without script)."""
    queries: dict[str, str] = {}
    texts: dict[str, dict[str, str]] = {}
    tops: dict[str, dict[str, dict]] = {}
    kind = ""
    for m, e in rows:
        ex = (e.record.details or {}).get("examples")
        if not isinstance(ex, dict):
            continue
        kind = kind or str(ex.get("kind", ""))
        for qid, uri in (ex.get("thumbnails") or {}).items():
            if isinstance(uri, str) and uri.startswith("data:image/jpeg;base64,"):
                queries.setdefault(str(qid), uri)
        texts[m] = {str(k): str(v) for k, v in (ex.get("texts") or {}).items()}
        tops[m] = {str(r.get("id")).removeprefix("image:"): r for r in _records(e) if isinstance(r.get("top"), list)}
    models = [m for m, _ in rows if tops.get(m)]
    if not queries or not models:
        return ""
    queries = dict(list(queries.items())[:GALLERY_QUERIES])
    opts = "".join(f'<option value="{i}">{esc(m)}</option>' for i, m in enumerate(models))
    out = [f'<div class="gallery" id="{esc(gid)}"><label class="pick">Model <select>{opts}</select></label>'
           f'<div class="queries">']
    for qid, uri in queries.items():
        out.append(f'<figure class="query"><div class="q"><img src="{esc(uri)}" alt="{esc(qid)}" title="{esc(qid)}">'
                   f'<figcaption>{esc(_short(qid))}</figcaption></div><div class="answers">')
        for i, m in enumerate(models):
            r = tops[m].get(qid)
            if r is None:
                continue
            hits = r.get("top_hit") or []
            items = "".join(f'<li class="{"hit" if i_hit else "miss"}" title="{"right" if i_hit else "wrong"}">'
                            f'{esc(texts[m].get(str(c), str(c)))}</li>'
                            for c, i_hit in zip(r["top"], list(hits) + [0] * len(r["top"])))
            out.append(f'<div class="top" data-model="{i}"><span class="who">{esc(m)}</span><ol>{items}</ol></div>')
        out.append("</div></figure>")
    out.append("</div></div>")
    return _figure(f"Examples ({kind})" if kind else "Examples", "".join(out),
                   "each query's top 5, best first; ✓ right, ✗ wrong", wide=True)


def _short(text: str, n: int = 22) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


def views(task_type: str, rows: Sequence[Row], digits: int, anchor: str, colours: dict[str, int]) -> str:
    """Every view that fits the task's results, in a fixed order."""
    parts = category_views(rows, digits, colours)
    parts.append(per_class_iou(rows, digits, colours))
    parts.append(corruption_heatmaps(rows, digits))
    if task_type in ("zeroshot_classification", "linear_probe"):
        parts.append(confusion_matrices(rows))
    if task_type == "retrieval":
        parts.append(recall_curves(rows, colours))
    parts.append(gallery(rows, f"{anchor}-gallery"))
    parts = [p for p in parts if p]
    return '<div class="views">' + "".join(parts) + "</div>" if parts else ""
