"""Small inline SVG charts for the HTML leaderboard (no script, no network): dots with interval whiskers and
a chance line, dots per category and model, curves, heat maps. Every label is escaped; sizes are in the SVG's
own units and the page scales the drawing to its box.

Colours: the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies), one per model
in the order given.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
ROW = 18          # height of one row of dots
LABEL = 150       # width of the row labels
VALUE = 46        # width of the value column at the right
WIDTH = 460
AXIS = 22         # room for the axis at the bottom


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _f(x: float) -> str:
    return f"{x:.1f}"


@dataclass
class Axis:
    """A linear axis from ``lo`` to ``hi`` drawn between pixels ``x0`` and ``x1``."""

    lo: float
    hi: float
    x0: float
    x1: float

    @classmethod
    def fit(cls, values: Sequence[float], x0: float, x1: float, percent: bool = False) -> Axis:
        """Bounds around ``values`` (NaN ignored), at round numbers; percentages stay within 0-100."""
        vals = [v for v in values if v is not None and not math.isnan(v)]
        if not vals:
            return cls(0.0, 100.0 if percent else 1.0, x0, x1)
        lo, hi = min(vals), max(vals)
        if hi - lo < 1e-9:
            lo, hi = lo - 1, hi + 1
        step = _nice((hi - lo) / 4)
        lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
        if percent:
            lo, hi = max(lo, 0.0), min(hi, 100.0)
        return cls(lo, hi, x0, x1)

    def x(self, v: float) -> float:
        return self.x0 + (min(max(v, self.lo), self.hi) - self.lo) / (self.hi - self.lo) * (self.x1 - self.x0)

    def ticks(self) -> list[float]:
        step = _nice((self.hi - self.lo) / 4)
        first = math.ceil(self.lo / step - 1e-9) * step
        return [first + i * step for i in range(int((self.hi - first) / step + 1e-9) + 1)]

    def svg(self, y: float) -> str:
        out = [f'<line class="axis" x1="{_f(self.x0)}" x2="{_f(self.x1)}" y1="{_f(y)}" y2="{_f(y)}"/>']
        for t in self.ticks():
            x = self.x(t)
            label = f"{t:g}" if abs(t) < 1e5 else f"{t:.2g}"
            out.append(f'<line class="tick" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(y)}" y2="{_f(y + 4)}"/>'
                       f'<text class="tick" x="{_f(x)}" y="{_f(y + 15)}" text-anchor="middle">{label}</text>')
        return "".join(out)


def _nice(raw: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at least ``raw``."""
    if raw <= 0 or math.isnan(raw):
        return 1.0
    p = 10 ** math.floor(math.log10(raw))
    return next(m * p for m in (1, 2, 2.5, 5, 10) if m * p >= raw - 1e-12)


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    return (f'<svg class="plot" viewBox="0 0 {_f(width)} {_f(height)}" width="{_f(width)}" height="{_f(height)}" '
            f'role="img" aria-label="{esc(label)}">' + "".join(body) + "</svg>")


@dataclass
class Dot:
    """One row of a dot chart: a label, a value and its 95% interval (ends may be NaN), a CSS class."""

    label: str
    value: float
    lo: float = math.nan
    hi: float = math.nan
    cls: str = ""
    title: str = ""


def _whisker(x_lo: float, x_hi: float, y: float, colour_: str = "") -> str:
    stroke = f' style="stroke:{colour_}"' if colour_ else ""
    return (f'<line class="whisker"{stroke} x1="{_f(x_lo)}" x2="{_f(x_hi)}" y1="{_f(y)}" y2="{_f(y)}"/>'
            f'<line class="cap"{stroke} x1="{_f(x_lo)}" x2="{_f(x_lo)}" y1="{_f(y - 4)}" y2="{_f(y + 4)}"/>'
            f'<line class="cap"{stroke} x1="{_f(x_hi)}" x2="{_f(x_hi)}" y1="{_f(y - 4)}" y2="{_f(y + 4)}"/>')


def _chance(axis: Axis, chance: float | None, top: float, bottom: float, digits: int) -> str:
    if chance is None or math.isnan(chance):
        return ""
    x = axis.x(chance)
    return (f'<line class="chance" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(top)}" y2="{_f(bottom)}">'
            f"<title>chance {chance:.{digits}f}</title></line>")


def dot_chart(dots: Sequence[Dot], chance: float | None, percent: bool, digits: int = 1, label: str = "") -> str:
    """One row per model: its value as a dot, its 95% interval as a whisker, the chance level as a dashed line."""
    x0, x1 = LABEL, WIDTH - VALUE
    axis = Axis.fit([v for d in dots for v in (d.value, d.lo, d.hi)] + ([chance] if chance is not None else []),
                    x0 + 6, x1 - 6, percent)
    height = 6 + ROW * len(dots) + AXIS
    body = [_chance(axis, chance, 2, 6 + ROW * len(dots), digits)]
    for i, d in enumerate(dots):
        y = 6 + ROW * i + ROW / 2
        body.append(f'<g class="row {esc(d.cls)}"><title>{esc(d.title or d.label)}</title>'
                    f'<text class="label" x="{LABEL - 6}" y="{_f(y + 4)}" text-anchor="end">{esc(_clip(d.label))}</text>')
        if not (math.isnan(d.lo) or math.isnan(d.hi)):
            body.append(_whisker(axis.x(d.lo), axis.x(d.hi), y))
        if not math.isnan(d.value):
            body.append(f'<circle class="dot" cx="{_f(axis.x(d.value))}" cy="{_f(y)}" r="4.5"/>'
                        f'<text class="value" x="{WIDTH - 2}" y="{_f(y + 4)}" text-anchor="end">'
                        f'{d.value:.{digits}f}</text>')
        body.append("</g>")
    body.append(axis.svg(6 + ROW * len(dots) + 2))
    return _svg(WIDTH, height, body, label)


def _clip(text: str, n: int = 24) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass
class Series:
    """One model's values in a multi-model chart: ``values[i]`` (and interval ends) for row/point i; ``colour``
    its index in the palette (the same model keeps its colour on the whole page)."""

    name: str
    values: Sequence[float]
    lo: Sequence[float] | None = None
    hi: Sequence[float] | None = None
    colour: int = 0


def category_chart(categories: Sequence[str], series: Sequence[Series], chance: Sequence[float | None] | None,
                   percent: bool, digits: int = 1, label: str = "") -> str:
    """One row per category, one coloured dot per model (offset vertically so they never hide each other),
    whiskers where an interval is known, each category's chance level as a short dashed mark."""
    n = max(len(series), 1)
    row = max(ROW, 6 * n + 8)
    x0, x1 = LABEL, WIDTH - 8
    values = [v for s in series for v in list(s.values) + list(s.lo or []) + list(s.hi or [])]
    axis = Axis.fit(values + [c for c in (chance or []) if c is not None], x0 + 6, x1 - 6, percent)
    height = 6 + row * len(categories) + AXIS
    body = []
    for i, cat in enumerate(categories):
        top = 6 + row * i
        if i % 2:
            body.append(f'<rect class="band" x="0" y="{_f(top)}" width="{WIDTH}" height="{row}"/>')
        body.append(f'<text class="label" x="{LABEL - 6}" y="{_f(top + row / 2 + 4)}" text-anchor="end">'
                    f'<title>{esc(cat)}</title>{esc(_clip(cat))}</text>')
        if chance is not None and chance[i] is not None:
            body.append(_chance(axis, chance[i], top + 1, top + row - 1, digits))
        for k, s in enumerate(series):
            v = s.values[i]
            if v is None or math.isnan(v):
                continue
            y = top + 4 + (row - 8) * (k + 0.5) / n
            tip = f"{s.name}: {v:.{digits}f}"
            if s.lo is not None and s.hi is not None and not (math.isnan(s.lo[i]) or math.isnan(s.hi[i])):
                body.append(_whisker(axis.x(s.lo[i]), axis.x(s.hi[i]), y, colour(s.colour)))
                tip += f" [{s.lo[i]:.{digits}f}, {s.hi[i]:.{digits}f}]"
            body.append(f'<circle class="dot" style="fill:{colour(s.colour)}" cx="{_f(axis.x(v))}" cy="{_f(y)}" r="3.5">'
                        f"<title>{esc(cat)} · {esc(tip)}</title></circle>")
    body.append(axis.svg(6 + row * len(categories) + 2))
    return _svg(WIDTH, height, body, label)


def line_chart(xs: Sequence[float], series: Sequence[Series], x_label: str, y_label: str, digits: int = 1,
               label: str = "", log_x: bool = True) -> str:
    """Curves (one per model) over ``xs``; the x axis logarithmic when ``log_x``."""
    left, right, top, height = 40, WIDTH - 10, 8, 190
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xa = Axis(fx(xs[0]), fx(xs[-1]) if len(xs) > 1 else fx(xs[0]) + 1, left, right)
    ya = Axis(0.0, 100.0, top + height, top)
    body = []
    for t in (0, 25, 50, 75, 100):
        y = ya.x(t)
        body.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{_f(y)}" y2="{_f(y)}"/>'
                    f'<text class="tick" x="{left - 4}" y="{_f(y + 4)}" text-anchor="end">{t}</text>')
    for v in xs:
        if not log_x or math.log10(v).is_integer() or v in (5, 50, 500):
            x = xa.x(fx(v))
            body.append(f'<text class="tick" x="{_f(x)}" y="{_f(top + height + 15)}" text-anchor="middle">{v:g}</text>')
    for s in series:
        pts = " ".join(f"{_f(xa.x(fx(x)))},{_f(ya.x(y))}" for x, y in zip(xs, s.values) if not math.isnan(y))
        body.append(f'<polyline class="curve" style="stroke:{colour(s.colour)}" points="{pts}"><title>{esc(s.name)}</title>'
                    f"</polyline>")
    body.append(f'<text class="axis-label" x="{_f((left + right) / 2)}" y="{top + height + 30}" '
                f'text-anchor="middle">{esc(x_label)}</text>')
    body.append(f'<text class="axis-label" x="10" y="{_f(top + height / 2)}" text-anchor="middle" '
                f'transform="rotate(-90 10 {_f(top + height / 2)})">{esc(y_label)}</text>')
    return _svg(WIDTH, top + height + 36, body, label)


def heatmap(matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], lo: float, hi: float,
            digits: int = 0, label: str = "", cell: int = 22, title: str = "") -> str:
    """A grid of values coloured from white (``lo``) to dark blue (``hi``), each cell labelled with its value."""
    left = min(LABEL, 8 + 6.5 * max((len(_clip(r, 20)) for r in rows), default=4))
    top = 8 + 6.5 * max((len(_clip(c, 14)) for c in cols), default=2) * 0.75 + (16 if title else 0)
    width, height = left + cell * len(cols) + 4 + 6.5 * max((len(_clip(c, 14)) for c in cols), default=2) * 0.72, \
        top + cell * len(rows) + 4
    body = [f'<text class="axis-label" x="{_f(left)}" y="12">{esc(title)}</text>'] if title else []
    for j, c in enumerate(cols):
        x = left + cell * j + cell / 2
        body.append(f'<text class="tick" x="{_f(x)}" y="{_f(top - 4)}" text-anchor="start" '
                    f'transform="rotate(-45 {_f(x)} {_f(top - 4)})"><title>{esc(c)}</title>{esc(_clip(c, 14))}</text>')
    for i, r in enumerate(rows):
        y = top + cell * i
        body.append(f'<text class="tick" x="{_f(left - 4)}" y="{_f(y + cell / 2 + 4)}" text-anchor="end">'
                    f'<title>{esc(r)}</title>{esc(_clip(r, 20))}</text>')
        for j, v in enumerate(matrix[i]):
            if v is None or math.isnan(v):
                continue
            t = 0.0 if hi <= lo else min(max((v - lo) / (hi - lo), 0.0), 1.0)
            fill = f"rgb({int(255 - 255 * t)},{int(255 - 141 * t)},{int(255 - 77 * t)})"
            ink = "#fff" if t > 0.55 else "#1f2328"
            x = left + cell * j
            body.append(f'<rect class="cell" x="{_f(x)}" y="{_f(y)}" width="{cell}" height="{cell}" style="fill:{fill}">'
                        f"<title>{esc(r)} · {esc(cols[j])}: {v:.{max(digits, 1)}f}</title></rect>"
                        f'<text class="cell" x="{_f(x + cell / 2)}" y="{_f(y + cell / 2 + 3.5)}" text-anchor="middle" '
                        f'style="fill:{ink}">{v:.{digits}f}</text>')
    return _svg(width, height, body, label)


def legend(series: Sequence[Series]) -> str:
    """The colour of each model, as an HTML list."""
    items = "".join(f'<li><span class="swatch" style="background:{colour(s.colour)}"></span>{esc(s.name)}</li>'
                    for s in series)
    return f'<ul class="legend">{items}</ul>'
