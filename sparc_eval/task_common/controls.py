"""Controls shared by task types: chance levels computed from the evaluated data (see ``metrics.controls``).

Each helper returns ``(chance, method)``: chance levels in percent per metric key, and one line per key
saying how it was obtained (stored in the result's ``details["chance_method"]``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..metrics.controls import segmentation_chance


def segmentation_chance_of(records: Sequence[Mapping], protocol: str, exclude: Sequence[int] = ()
                           ) -> tuple[dict[str, float], dict[str, str]]:
    """Chance mIoU / mAcc / aAcc of a segmentation result from its per-image records' ``label_area``
    (the larger of prior sampling and the majority class; ``exclude``: classes left out of the
    ``sparc-paper`` per-image means). No valid pixel at all: no chance level, and the method says why."""
    if not records:
        return {}, {k: "undefined: no image evaluated" for k in ("mIoU", "mAcc", "aAcc")}
    area = np.asarray([r["label_area"] for r in records], dtype=np.float64)
    try:
        ch = segmentation_chance(area, protocol, exclude if protocol == "sparc-paper" else ())
    except ValueError as e:
        return {}, {k: f"undefined: {e}" for k in ("mIoU", "mAcc", "aAcc")}
    return dict(ch.values), dict(ch.method)


def faithfulness_miss_chance(kp: np.ndarray | None, kpna: np.ndarray | None, own_kp: np.ndarray | None,
                             own_kpna: np.ndarray | None, n_own: np.ndarray, n_pool: int,
                             pool_objects: np.ndarray | None = None, image_objects: np.ndarray | None = None,
                             own_rows: Sequence[Sequence[int]] | None = None, block: int = 1024) -> dict[str, float]:
    """Chance levels (percent) of ``K-P_miss``, ``K-Pna_miss``, ``CHAIR_i_miss``, ``CHAIR_s_miss``: the
    expected values of a caption drawn uniformly from the pool *without* the image's own references
    (the captions a retrieval miss can return).

    ``kp`` / ``kpna`` [N]: each image's expected value over the whole pool of ``n_pool`` captions
    (``chance_k_precision``, fractions); ``own_kp`` / ``own_kpna`` [N]: the sum of its own references'
    values; ``n_own`` [N]: how many references it has in the pool. CHAIR: ``pool_objects`` [M, O]
    mention counts per pool caption, ``image_objects`` [N, O] ground truth, ``own_rows[i]`` the pool
    rows of image i's references. Images whose references are the whole pool are left out.
    """
    n_own = np.asarray(n_own, dtype=np.float64)
    rest = n_pool - n_own
    ok = rest > 0
    out: dict[str, float] = {}
    if not ok.any():
        return out
    for key, full, own in (("K-P_miss", kp, own_kp), ("K-Pna_miss", kpna, own_kpna)):
        if full is not None and own is not None:
            per_image = (np.asarray(full, dtype=np.float64) * n_pool - np.asarray(own, dtype=np.float64))[ok] / rest[ok]
            out[key] = 100 * float(per_image.mean())
    if pool_objects is None or image_objects is None or own_rows is None:
        return out
    a = np.asarray(pool_objects, dtype=np.float64)
    absent = 1.0 - np.asarray(image_objects, dtype=np.float64)
    present = (a > 0).astype(np.float64)
    any_full = np.zeros(absent.shape[0])
    for s in range(0, a.shape[0], block):
        any_full += ((present[s:s + block] @ absent.T) > 0).sum(0)
    halluc = absent @ a.sum(0)
    mentions = np.full(absent.shape[0], a.sum())
    for i, rows in enumerate(own_rows):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size:
            own_h = a[rows] @ absent[i]
            halluc[i] -= own_h.sum()
            mentions[i] -= a[rows].sum()
            any_full[i] -= float((own_h > 0).sum())
    mention_total = mentions[ok].sum()
    out["CHAIR_i_miss"] = 100 * float(halluc[ok].sum() / mention_total) if mention_total > 0 else 0.0
    out["CHAIR_s_miss"] = 100 * float(any_full[ok].sum() / rest[ok].sum())
    return out
