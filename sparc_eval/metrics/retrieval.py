"""Image-text retrieval recall@k, memory-bounded and exact.

Definitions (protocols.md §5): scores are dot products of l2-normalised embeddings.
- image->text (``i2t``): an image's query succeeds at k if *any* of its captions is among the k
  best-scoring captions of the whole pool;
- text->image (``t2i``): a caption's query succeeds at k if its image is among the k best images.

Ties. A query's outcome is computed from counts: ``gt`` = non-matches scoring strictly above its
best match, ``eq`` = non-matches scoring exactly equal to it (and, for i2t, ``p`` = matches tied at
that best score). With random tie order, P(hit@k) = 1 - C(eq, r) / C(eq + p, r) with r = k - gt
(for t2i p = 1: min(max((k - gt) / (eq + 1), 0), 1)). This is the expected recall over all tie
orders (McSherry & Najork, ECIR 2008): deterministic, equal to the usual value when there are no
ties, and exactly chance for a model whose scores are all equal.

Memory: the score matrix is computed in blocks of ``block`` images against the captions of one
image block at a time; nothing of size N x M is held. The scores of the true pairs are read from
the same block products as the comparisons (captions sorted by image so true pairs lie in diagonal
blocks), so a pair is never compared with a differently rounded copy of itself.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class RetrievalCounts:
    """Per-query counts. i2t arrays have one entry per image, t2i arrays one per caption."""

    i2t_gt: np.ndarray
    i2t_eq: np.ndarray
    i2t_pos_tied: np.ndarray
    t2i_gt: np.ndarray
    t2i_eq: np.ndarray
    n_images: int
    n_texts: int


def retrieval_counts(image_emb: torch.Tensor, text_emb: torch.Tensor, text_image: Sequence[int] | np.ndarray,
                     block: int = 1024) -> RetrievalCounts:
    """Exact tie-aware counts for every query. ``text_image[j]`` is the image index of caption j;
    every image must have at least one caption."""
    img = image_emb.float()
    n, m = img.shape[0], text_emb.shape[0]
    ti_np = np.asarray(text_image, dtype=np.int64)
    if ti_np.shape != (m,):
        raise ValueError(f"text_image has shape {ti_np.shape}, expected ({m},)")
    if m and (ti_np.min() < 0 or ti_np.max() >= n):
        raise ValueError("text_image holds image indices outside [0, n_images)")
    caps_per_image = np.bincount(ti_np, minlength=n)
    if n and caps_per_image.min() == 0:
        raise ValueError(f"{int((caps_per_image == 0).sum())} image(s) have no caption")
    order = np.argsort(ti_np, kind="stable")
    ti = torch.from_numpy(ti_np[order])
    txt = text_emb.float()[torch.from_numpy(order)]
    starts = list(range(0, n, block))
    bounds = [(a, min(a + block, n)) for a in starts]
    tbounds = [(int(torch.searchsorted(ti, a)), int(torch.searchsorted(ti, b))) for a, b in bounds]

    pos_score = torch.empty(m)
    best = torch.full((n,), -float("inf"))
    for (a, b), (ta, tb) in zip(bounds, tbounds):
        s = img[a:b] @ txt[ta:tb].T
        rows = ti[ta:tb] - a
        cols = torch.arange(tb - ta)
        pos_score[ta:tb] = s[rows, cols]
        best[a:b] = torch.full((b - a,), -float("inf")).scatter_reduce(0, rows, pos_score[ta:tb], "amax")
    pos_tied = torch.zeros(n, dtype=torch.int64).scatter_add_(
        0, ti, (pos_score == best[ti]).to(torch.int64))

    i2t_gt = torch.zeros(n, dtype=torch.int64)
    i2t_eq = torch.zeros(n, dtype=torch.int64)
    t2i_gt = torch.zeros(m, dtype=torch.int64)
    t2i_eq = torch.zeros(m, dtype=torch.int64)
    for a, b in bounds:
        rows_idx = torch.arange(a, b)[:, None]
        best_b = best[a:b, None]
        for ta, tb in tbounds:
            if ta == tb:
                continue
            s = img[a:b] @ txt[ta:tb].T
            neg = ti[None, ta:tb] != rows_idx
            i2t_gt[a:b] += ((s > best_b) & neg).sum(1)
            i2t_eq[a:b] += ((s == best_b) & neg).sum(1)
            ps = pos_score[None, ta:tb]
            t2i_gt[ta:tb] += ((s > ps) & neg).sum(0)
            t2i_eq[ta:tb] += ((s == ps) & neg).sum(0)
    inv = np.empty_like(order)
    inv[order] = np.arange(m)
    return RetrievalCounts(i2t_gt.numpy(), i2t_eq.numpy(), pos_tied.numpy(), t2i_gt.numpy()[inv],
                           t2i_eq.numpy()[inv], n, m)


def hit_probability(gt: np.ndarray, eq: np.ndarray, pos_tied: np.ndarray | int, k: int) -> np.ndarray:
    """P(at least one match in the top k) under random tie order, per query (see module docstring)."""
    gt = np.asarray(gt, dtype=np.int64)
    eq = np.asarray(eq, dtype=np.int64)
    p = np.broadcast_to(np.asarray(pos_tied, dtype=np.int64), gt.shape)
    r = k - gt
    miss = np.ones(gt.shape, dtype=np.float64)
    for i in range(int(max(r.max(initial=0), 0))):
        active = i < r
        num = np.clip(np.where(active, eq - i, 1), 0, None).astype(np.float64)
        den = np.clip(np.where(active, eq + p - i, 1), 1, None).astype(np.float64)
        miss *= num / den
    return np.where(r <= 0, 0.0, 1.0 - miss)


def recall_at_k(counts: RetrievalCounts, ks: Sequence[int]) -> dict[str, float]:
    """``i2t_R@k``, ``t2i_R@k`` and ``mean_R@k`` in percent."""
    out: dict[str, float] = {}
    for k in ks:
        i2t = 100 * float(hit_probability(counts.i2t_gt, counts.i2t_eq, counts.i2t_pos_tied, k).mean())
        t2i = 100 * float(hit_probability(counts.t2i_gt, counts.t2i_eq, 1, k).mean())
        out[f"i2t_R@{k}"], out[f"t2i_R@{k}"], out[f"mean_R@{k}"] = i2t, t2i, (i2t + t2i) / 2
    return out


def chance_recall(caps_per_image: np.ndarray, k: int) -> dict[str, float]:
    """Expected recall@k of a model that ranks at random (percent)."""
    caps = np.asarray(caps_per_image, dtype=np.int64)
    n, m = caps.size, int(caps.sum())
    i2t = 100 * float(hit_probability(np.zeros(n, np.int64), m - caps, caps, k).mean())
    t2i = 100 * min(k / n, 1.0)
    return {f"i2t_R@{k}": i2t, f"t2i_R@{k}": t2i, f"mean_R@{k}": (i2t + t2i) / 2}
