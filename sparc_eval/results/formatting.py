"""Number formatting and escaping shared by the leaderboard, check and compare renderers."""
from __future__ import annotations

import math
import re

DASH = "–"


def missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def num(value: float | None, digits: int = 1, empty: str = DASH) -> str:
    """``45.2``; ``empty`` for None/NaN."""
    return empty if missing(value) else f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 1, empty: str = DASH) -> str:
    """``+3.1`` / ``-0.4`` (a plain hyphen, so CSV and LaTeX read it as a number); the sign is kept
    when the rounded value is 0 (``-0.0``: slightly worse)."""
    return empty if missing(value) else f"{value:+.{digits}f}"


def interval(lo: float | None, hi: float | None, digits: int = 1) -> str:
    """``[43.1, 47.3]``; empty when either end is missing."""
    if missing(lo) or missing(hi):
        return ""
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def arrow(higher_is_better: bool) -> str:
    return "↑" if higher_is_better else "↓"


def exact(value: float | None) -> str:
    """A full-precision number for machine-readable fields (CSV, HTML sort keys); '' when missing."""
    return "" if missing(value) else format(float(value), ".10g")


_MARKDOWN = {c: "\\" + c for c in "\\`*_[]|~#"}
_MARKDOWN.update({"<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " ", "\r": " "})


def markdown_escape(text: object) -> str:
    """User text safe inside a GitHub Markdown table cell: no emphasis, links, pipes or raw HTML."""
    return "".join(_MARKDOWN.get(c, c) for c in str(text))


def markdown_code(text: object) -> str:
    """User text as an inline code span, shown verbatim (backslash escapes are not processed inside
    one): fenced by more backticks than the text's longest run of them; line breaks become spaces."""
    s = str(text).replace("\r", " ").replace("\n", " ")
    fence = "`" * (max(map(len, re.findall("`+", s)), default=0) + 1)
    pad = " " if s[:1] == "`" or s[-1:] == "`" else ""
    return f"{fence}{pad}{s}{pad}{fence}"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
          ">": r"\textgreater{}", "|": r"\textbar{}", "[": "{[}", "]": "{]}", "\n": " ", "\r": " "}


def latex_escape(text: object) -> str:
    """User text safe in LaTeX body text (all ten special characters, plus < > | and [ ], which would
    otherwise be read as the optional argument of a preceding ``\\``)."""
    return "".join(_LATEX.get(c, c) for c in str(text))


def csv_text(text: object) -> str:
    """A text cell that spreadsheets will not run as a formula (OWASP: prefix = + - @ TAB CR with ')."""
    s = str(text)
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s
