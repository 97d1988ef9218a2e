"""Where a result stands against its chance level, and which rows are findings (no torch).

A value is *at chance* when its 95% interval covers the chance level the task stored for that metric
(``metrics.controls.covers``), *below chance* when the interval lies wholly on the worse side of it
(a predictor that ignores the input can do that: a random text tower that retrieves the same caption
for every image, a constant segmentation of a rare class), and *above chance* otherwise. Only "above"
is evidence of skill: a difference between two results that are both at or below chance is never
marked significant (``metrics.controls.significant``). Values without an interval or a chance level
have no status.

``artifact_flags`` reads the probe categories a task flagged because a text-only classifier tells
their right captions from the wrong ones (``details["artifact_flagged"]``).
"""
from __future__ import annotations

import math

from ..errors import UnknownNameError
from ..metrics.controls import covers
from ..metrics.registry import get
from .collect import Entry

AT, BELOW, ABOVE = "at chance", "below chance", "above chance"
MARKS = {AT: "≈", BELOW: "▾"}
LEGEND = ("≈ at chance (the 95% interval covers the chance level), ▾ below chance (the interval lies wholly on the "
          "worse side of it): neither is a finding, and no difference between two such values is marked "
          "significant")


def status(value: float, interval: tuple[float, float] | None, chance: float | None,
           higher_is_better: bool = True) -> str | None:
    """``AT``, ``BELOW`` or ``ABOVE`` chance; None without an interval or a chance level."""
    if interval is None or chance is None or value is None or math.isnan(value):
        return None
    if covers(interval, chance):
        return AT
    worse = interval[1] < chance if higher_is_better else interval[0] > chance
    return BELOW if worse else ABOVE


def entry_status(entry: Entry, metric: str | None = None) -> str | None:
    """``status`` of one metric (default: the main one) of a result, from its own interval and chance."""
    key = metric or entry.main_metric
    try:
        hib = get(key).higher_is_better
    except UnknownNameError:  # treated as higher-is-better, as the leaderboard does
        hib = True
    return status(entry.value(key), entry.interval(key), entry.chance(key), hib)


def no_skill(state: str | None) -> bool:
    """At or below chance: nothing the model learned shows in the value."""
    return state in (AT, BELOW)


def artifact_flags(entry: Entry) -> list[str]:
    """Probe categories whose text alone gives the answer (``artifact_acc`` lower bound above the flag level)."""
    flagged = (entry.record.details or {}).get("artifact_flagged") or []
    return [str(c) for c in flagged] if isinstance(flagged, list) else []


def artifact_text(task: str, categories: list[str]) -> str:
    """The sentence every table prints for a task with flagged probe categories."""
    return (f"{task}: probe categor{'y' if len(categories) == 1 else 'ies'} {', '.join(categories)} flagged: a "
            f"text-only classifier picks the right caption (artifact_acc lower bound > 60%), so the caption's words "
            f"alone give the answer there")


def is_control_metric(key: str) -> bool:
    """Registered as a control (``blind_acc``, ``artifact_acc``...): describes the data or the text prior."""
    try:
        return get(key).control
    except UnknownNameError:
        return False
