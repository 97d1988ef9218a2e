"""Single-label classification metrics: top-k accuracy and mean per-class recall, tie-aware.

Scores are any [N, C] real matrix (zero-shot: image-class cosine similarities; linear probe:
logits). For image i with true class y_i, ``above`` = classes scoring strictly higher than y_i and
``tied`` = other classes scoring exactly equal to it. Ties are resolved by expectation over a random
order of the tied classes, as for retrieval (``metrics.retrieval``): y_i's position is uniform in
[above, above + tied], so

    P(hit@k) = clip((k - above) / (tied + 1), 0, 1).

This equals the usual top-k indicator when nothing ties, and makes a model whose scores are all
equal score exactly chance (k / C). ``top1``, ``top5`` are the mean of P(hit@k) in percent;
``mean_per_class_recall`` is the mean over classes present in the labels of the mean P(hit@1) of
their images (= scikit-learn's ``balanced_accuracy_score`` when nothing ties).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .rows import RowSource, as_rows

NAN_RANK = 2 ** 62


@dataclass
class ClassCounts:
    """Per-image counts: ``above`` [N] and ``tied`` [N] as in the module docstring, and ``pred`` [N]
    the highest-scoring class (the lowest index among equal scores)."""

    above: np.ndarray
    tied: np.ndarray
    pred: np.ndarray


def score_counts(scores: torch.Tensor, labels: Sequence[int] | np.ndarray | torch.Tensor) -> ClassCounts:
    """Counts from a score matrix [N, C] (on any device) and labels [N] in [0, C); a NaN true-class
    score is a miss at every k (``above`` = ``NAN_RANK``). Only the counts come back to the CPU."""
    s = torch.as_tensor(scores)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=s.device)
    if s.ndim != 2 or y.shape != (s.shape[0],):
        raise ValueError(f"scores {tuple(s.shape)} and labels {tuple(y.shape)}: expected [N, C] and [N]")
    true = s.gather(1, y[:, None])
    above = (s > true).sum(1)
    tied = (s == true).sum(1) - 1
    bad = torch.isnan(true[:, 0])
    above[bad], tied[bad] = NAN_RANK, 0
    return ClassCounts(above.cpu().numpy(), tied.cpu().numpy(), s.argmax(1).cpu().numpy())


def embedding_counts(image_emb: torch.Tensor | RowSource, class_emb: torch.Tensor,
                     labels: Sequence[int] | np.ndarray, block: int = 4096,
                     device: str | torch.device | None = None) -> ClassCounts:
    """Counts for scores ``image_emb [N, D] @ class_emb [C, D].T``, read and scored ``block`` images at a
    time on ``device`` (default: ``class_emb``'s; memory O(block x C); ``image_emb`` may be a row source
    streaming from the cache)."""
    rows = as_rows(image_emb)
    y = np.asarray(labels, dtype=np.int64)
    classifier = class_emb.to(device=device or class_emb.device, dtype=torch.float32).T
    parts = [score_counts(rows.read(a, min(a + block, rows.n)).to(classifier.device) @ classifier,
                          y[a:a + block]) for a in range(0, rows.n, block)]
    if not parts:
        return ClassCounts(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return ClassCounts(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("above", "tied", "pred")))


def hit_probability(counts: ClassCounts, k: int) -> np.ndarray:
    """P(true class in the top k) per image under random tie order, in [0, 1]."""
    return np.clip((k - counts.above) / (counts.tied + 1.0), 0.0, 1.0)


def topk_accuracy(counts: ClassCounts, k: int) -> float:
    """Top-k accuracy in percent."""
    return 100.0 * float(hit_probability(counts, k).mean()) if counts.above.size else float("nan")


def per_class_recall(hit: np.ndarray, labels: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """Mean of ``hit`` over each class's images [C]; NaN for classes without images."""
    y = np.asarray(labels, dtype=np.int64)
    n = np.bincount(y, minlength=n_classes).astype(np.float64)
    s = np.bincount(y, weights=np.asarray(hit, np.float64), minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.where(n > 0, n, 1), np.nan)


def mean_per_class_recall(hit: np.ndarray, labels: Sequence[int] | np.ndarray, n_classes: int) -> float:
    """Mean per-class recall in percent over the classes present in ``labels``."""
    r = per_class_recall(hit, labels, n_classes)
    return 100.0 * float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def classification_metrics(counts: ClassCounts, labels: Sequence[int] | np.ndarray, n_classes: int,
                           ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """``top{k}`` for each k and ``mean_per_class_recall``, in percent."""
    out = {f"top{k}": topk_accuracy(counts, k) for k in ks}
    out["mean_per_class_recall"] = mean_per_class_recall(hit_probability(counts, 1), labels, n_classes)
    return out


def chance(n_classes: int, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Expected metrics of a model that ranks classes at random (percent)."""
    out = {f"top{k}": 100.0 * min(k, n_classes) / n_classes for k in ks}
    out["mean_per_class_recall"] = 100.0 / n_classes
    return out
