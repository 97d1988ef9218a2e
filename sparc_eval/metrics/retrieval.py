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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .rows import RowSource, TensorRows, as_rows


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


@dataclass
class _Prepared:
    """Row sources (captions sorted by image), block bounds, and the scores of the true pairs."""

    img: RowSource
    txt: RowSource
    ti: torch.Tensor
    bounds: list[tuple[int, int]]
    tbounds: list[tuple[int, int]]
    pos_score: torch.Tensor
    best: torch.Tensor
    pos_tied: torch.Tensor


def prepare(img: RowSource, txt: RowSource, text_image: np.ndarray, block: int = 1024) -> _Prepared:
    """Cut blocks and read the true pairs' scores from the diagonal blocks. ``text_image`` must be
    non-decreasing (captions grouped by image, in image order) and every image needs a caption."""
    n, m = img.n, txt.n
    ti_np = np.asarray(text_image, dtype=np.int64)
    if ti_np.shape != (m,):
        raise ValueError(f"text_image has shape {ti_np.shape}, expected ({m},)")
    if m and (ti_np.min() < 0 or ti_np.max() >= n):
        raise ValueError("text_image holds image indices outside [0, n_images)")
    if np.any(np.diff(ti_np) < 0):
        raise ValueError("captions must be grouped by image in image order for blocked retrieval")
    caps_per_image = np.bincount(ti_np, minlength=n)
    if n and caps_per_image.min() == 0:
        raise ValueError(f"{int((caps_per_image == 0).sum())} image(s) have no caption")
    ti = torch.from_numpy(ti_np)
    bounds = [(a, min(a + block, n)) for a in range(0, n, block)]
    tbounds = [(int(torch.searchsorted(ti, a)), int(torch.searchsorted(ti, b))) for a, b in bounds]
    pos_score = torch.empty(m)
    best = torch.full((n,), -float("inf"))
    for (a, b), (ta, tb) in zip(bounds, tbounds):
        s = img.read(a, b) @ txt.read(ta, tb).T
        rows = ti[ta:tb] - a
        pos_score[ta:tb] = s[rows, torch.arange(tb - ta)]
        best[a:b] = torch.full((b - a,), -float("inf")).scatter_reduce(0, rows, pos_score[ta:tb], "amax")
    pos_tied = torch.zeros(n, dtype=torch.int64).scatter_add_(0, ti, (pos_score == best[ti]).to(torch.int64))
    return _Prepared(img, txt, ti, bounds, tbounds, pos_score, best, pos_tied)


def count_block(p: _Prepared, a: int, b: int, acc: dict[str, torch.Tensor]) -> None:
    """Accumulate the counts of image block [a, b) against every caption block into ``acc``.
    The block products are the same calls as in ``prepare``, so true pairs compare equal to themselves.
    Only the diagonal caption block holds true pairs; elsewhere no mask is needed."""
    best_b = p.best[a:b, None]
    img = p.img.read(a, b)
    diagonal = p.tbounds[p.bounds.index((a, b))]
    for ta, tb in p.tbounds:
        if ta == tb:
            continue
        s = img @ p.txt.read(ta, tb).T
        ps = p.pos_score[None, ta:tb]
        gt_i, eq_i, gt_t, eq_t = s > best_b, s == best_b, s > ps, s == ps
        if (ta, tb) == diagonal:
            neg = p.ti[None, ta:tb] != torch.arange(a, b)[:, None]
            gt_i, eq_i, gt_t, eq_t = gt_i & neg, eq_i & neg, gt_t & neg, eq_t & neg
        acc["i2t_gt"][a:b] += gt_i.sum(1)
        acc["i2t_eq"][a:b] += eq_i.sum(1)
        acc["t2i_gt"][ta:tb] += gt_t.sum(0)
        acc["t2i_eq"][ta:tb] += eq_t.sum(0)


def new_accumulator(n: int, m: int) -> dict[str, torch.Tensor]:
    return {"i2t_gt": torch.zeros(n, dtype=torch.int64), "i2t_eq": torch.zeros(n, dtype=torch.int64),
            "t2i_gt": torch.zeros(m, dtype=torch.int64), "t2i_eq": torch.zeros(m, dtype=torch.int64)}


def retrieval_counts(image_emb, text_emb, text_image: Sequence[int] | np.ndarray, block: int = 1024) -> RetrievalCounts:
    """Exact tie-aware counts for every query. ``image_emb`` and ``text_emb`` are tensors [N, D], [M, D]
    or row sources (then captions must already be grouped by image); ``text_image[j]`` is the image
    index of caption j; every image needs at least one caption. Memory: one image block and one
    caption block at a time, plus O(N + M) counters."""
    ti_np = np.asarray(text_image, dtype=np.int64)
    order = np.argsort(ti_np, kind="stable")
    if isinstance(text_emb, torch.Tensor):
        txt = TensorRows(text_emb[torch.from_numpy(order)] if np.any(np.diff(ti_np) < 0) else text_emb)
    else:
        txt = text_emb
    p = prepare(as_rows(image_emb), txt, ti_np[order], block)
    n, m = p.img.n, p.txt.n
    acc = new_accumulator(n, m)
    for a, b in p.bounds:
        count_block(p, a, b, acc)
    inv = np.empty_like(order)
    inv[order] = np.arange(m)
    return RetrievalCounts(acc["i2t_gt"].numpy(), acc["i2t_eq"].numpy(), p.pos_tied.numpy(),
                           acc["t2i_gt"].numpy()[inv], acc["t2i_eq"].numpy()[inv], n, m)


_EXACT_DRAWS = 64  # up to this many draws from a tie group the miss probability is an exact product


def hit_probability(gt: np.ndarray, eq: np.ndarray, pos_tied: np.ndarray | int, k: int) -> np.ndarray:
    """P(at least one match in the top k) under random tie order, per query (see module docstring).

    The ``r = k - gt`` slots left for the tie group (``eq`` negatives, ``p`` positives) all miss with
    probability C(eq, r) / C(eq + p, r): a product of r factors when r <= 64, else from log-gamma, so
    the cost is O(queries) for any k (a k beyond the gallery is simply a certain hit)."""
    gt = np.asarray(gt, dtype=np.int64)
    eq = np.asarray(eq, dtype=np.int64)
    p = np.broadcast_to(np.asarray(pos_tied, dtype=np.int64), gt.shape)
    r = np.clip(k - gt, 0, None)
    draws = np.minimum(r, eq + 1)  # once a draw exceeds the tied negatives, a positive is certain
    miss = np.ones(gt.shape, dtype=np.float64)
    for i in range(int(min(draws.max(initial=0), _EXACT_DRAWS))):
        active = i < draws
        num = np.clip(np.where(active, eq - i, 1), 0, None).astype(np.float64)
        den = np.clip(np.where(active, eq + p - i, 1), 1, None).astype(np.float64)
        miss *= num / den
    many = draws > _EXACT_DRAWS
    if many.any():
        from scipy.special import gammaln

        e, q, r_many = eq[many].astype(np.float64), p[many].astype(np.float64), r[many].astype(np.float64)
        d = np.minimum(r_many, e)
        log_miss = gammaln(e + 1) - gammaln(e - d + 1) - gammaln(e + q + 1) + gammaln(e + q - d + 1)
        miss[many] = np.where(r_many > e, 0.0, np.exp(log_miss))
    return np.where(r <= 0, 0.0, 1.0 - miss)


def hits_at_k(counts: RetrievalCounts, ks: Sequence[int]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Per-query hit probabilities: ({k: [N] for image queries}, {k: [M] for caption queries})."""
    i2t = {k: hit_probability(counts.i2t_gt, counts.i2t_eq, counts.i2t_pos_tied, k) for k in ks}
    t2i = {k: hit_probability(counts.t2i_gt, counts.t2i_eq, 1, k) for k in ks}
    return i2t, t2i


def recall_from_hits(i2t: Mapping[int, np.ndarray], t2i: Mapping[int, np.ndarray]) -> dict[str, float]:
    """``i2t_R@k``, ``t2i_R@k`` and ``mean_R@k`` in percent from per-query hits (0/1 or probabilities)
    for each k of ``i2t``."""
    out: dict[str, float] = {}
    for k in i2t:
        a, b = 100 * float(np.mean(i2t[k])), 100 * float(np.mean(t2i[k]))
        out[f"i2t_R@{k}"], out[f"t2i_R@{k}"], out[f"mean_R@{k}"] = a, b, (a + b) / 2
    return out


def recall_at_k(counts: RetrievalCounts, ks: Sequence[int]) -> dict[str, float]:
    """``i2t_R@k``, ``t2i_R@k`` and ``mean_R@k`` in percent."""
    return recall_from_hits(*hits_at_k(counts, ks))


def chance_recall(caps_per_image: np.ndarray, k: int) -> dict[str, float]:
    """Expected recall@k of a model that ranks at random (percent)."""
    caps = np.asarray(caps_per_image, dtype=np.int64)
    n, m = caps.size, int(caps.sum())
    i2t = 100 * float(hit_probability(np.zeros(n, np.int64), m - caps, caps, k).mean())
    t2i = 100 * min(k / n, 1.0)
    return {f"i2t_R@{k}": i2t, f"t2i_R@{k}": t2i, f"mean_R@{k}": (i2t + t2i) / 2}


def topk_hits_faiss(img, txt, text_image: Sequence[int] | np.ndarray, ks: Sequence[int], block: int = 1024,
                    text_block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Hits by exact inner-product top-k search with faiss, keeping a running top-k per query over
    blocks of the other side (memory: one query block, one database block, and the running lists).

    Returns (i2t hits [N, len(ks)], t2i hits [M, len(ks)]) as 0/1. Ties are broken in faiss's order,
    not by expectation: use it on continuous embeddings (where exact ties do not occur) or as a
    cross-check of the exact counting path.
    """
    import faiss

    img, txt = as_rows(img), as_rows(txt)
    ti = np.asarray(text_image, dtype=np.int64)
    kmax = max(ks)

    def search(queries, database, q_block, d_block):
        for qa in range(0, queries.n, q_block):
            q = queries.read(qa, min(qa + q_block, queries.n)).numpy()
            top_s = torch.full((q.shape[0], kmax), -float("inf"))
            top_i = torch.full((q.shape[0], kmax), -1, dtype=torch.int64)
            for da in range(0, database.n, d_block):
                db = database.read(da, min(da + d_block, database.n)).numpy()
                d, i = faiss.knn(q, db, min(kmax, db.shape[0]), metric=faiss.METRIC_INNER_PRODUCT)
                cand_s = torch.cat([top_s, torch.from_numpy(d)], 1)
                cand_i = torch.cat([top_i, torch.from_numpy(i).long() + da], 1)
                top_s, pick = torch.topk(cand_s, kmax, dim=1)
                top_i = torch.gather(cand_i, 1, pick)
            yield qa, top_i.numpy()

    i2t = np.zeros((img.n, len(ks)))
    for qa, top in search(img, txt, block, text_block):
        own = np.arange(qa, qa + top.shape[0])[:, None]
        match = np.where(top >= 0, ti[np.clip(top, 0, None)], -1) == own
        for c, k in enumerate(ks):
            i2t[qa:qa + top.shape[0], c] = match[:, :k].any(1)
    t2i = np.zeros((txt.n, len(ks)))
    for qa, top in search(txt, img, text_block, block):
        match = top == ti[qa:qa + top.shape[0], None]
        for c, k in enumerate(ks):
            t2i[qa:qa + top.shape[0], c] = match[:, :k].any(1)
    return i2t, t2i
