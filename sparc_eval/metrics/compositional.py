"""Compositional-probe metrics: strict caption selection, Winoground's three scores, macro averages.

Every comparison is strict: an item counts as correct only when the right option scores strictly
higher than every other, so ties (identical embeddings, a degenerate model) count as wrong. This is
the SugarCrepe / Winoground definition; argmax-based implementations (CLIP_benchmark, ARO's
``np.argmax``) differ only at exact ties, where they favour the first option.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def best_wrong_option(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """``scores`` [N, K] (NaN pads items with fewer options), ``correct`` [N] option index ->
    float64 [N]: the highest score among each item's wrong options (-inf when it has none)."""
    scores = np.asarray(scores, dtype=np.float64)
    others = np.where(np.isnan(scores), -np.inf, scores)
    others[np.arange(scores.shape[0]), correct] = -np.inf
    return others.max(axis=1)


def selection_correct(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """``scores`` [N, K] (NaN pads items with fewer options), ``correct`` [N] option index ->
    bool [N]: the correct option scores strictly above every other option."""
    scores = np.asarray(scores, dtype=np.float64)
    return scores[np.arange(scores.shape[0]), correct] > best_wrong_option(scores, correct)


def winoground_scores(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``s`` [N, 2, 2] with ``s[n, c, i]`` = score of caption c with image i ->
    (text, image, group) bool [N] (Thrush et al. 2022, strict inequalities):

    text: s(c0,i0) > s(c1,i0) and s(c1,i1) > s(c0,i1); image: s(c0,i0) > s(c0,i1) and
    s(c1,i1) > s(c1,i0); group: both.
    """
    s = np.asarray(s, dtype=np.float64)
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    return text, image, text & image


def category_accuracy(correct: Sequence[bool], categories: Sequence[str]) -> dict[str, tuple[float, int]]:
    """Per category: (accuracy as a fraction, number of items), categories in first-seen order."""
    ok = np.asarray(correct, dtype=np.float64)
    cats = np.asarray(categories, dtype=object)
    out: dict[str, tuple[float, int]] = {}
    for c in dict.fromkeys(categories):
        mask = cats == c
        out[c] = (float(ok[mask].mean()), int(mask.sum()))
    return out


def eligible_categories(per_category: Mapping[str, tuple[float, int]], min_count: int = 0,
                        exclude: Iterable[str] = ()) -> list[str]:
    """Categories that enter the macro mean: at least ``min_count`` items and not excluded."""
    skip = set(exclude)
    return [c for c, (_, n) in per_category.items() if n >= min_count and c not in skip]


def macro_accuracy(per_category: Mapping[str, tuple[float, int]], categories: Sequence[str]) -> float:
    """Unweighted mean of the accuracies of ``categories`` (NaN when empty)."""
    vals = [per_category[c][0] for c in categories]
    return float(np.mean(vals)) if vals else float("nan")
