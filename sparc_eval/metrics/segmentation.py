"""Semantic-segmentation metrics: per-image area counts, dataset-level mIoU/aAcc/mAcc, per-image mIoU.

Two protocols are built from the same per-image counts:

- ``standard`` (mmsegmentation's ``IoUMetric``): intersection, union and ground-truth areas are summed
  over the whole dataset, IoU_c = I_c / U_c, and mIoU is the mean over classes with U_c > 0 (classes
  with U_c = 0 are NaN and left out, as ``np.nanmean``); mAcc likewise with I_c / G_c over classes with
  G_c > 0; aAcc = sum(I) / sum(G).
- ``sparc-paper`` (SPARC, arXiv 2401.09865, following PACL): for each image, the mean IoU over the
  classes present in its ground truth, background excluded; the dataset value is the mean over images
  that have at least one such class.

All values here are fractions in [0, 1]; tasks scale them to percent. ``counts_record`` and
``SEGMENTATION_AGGREGATIONS`` are the per-image record and the aggregation specs of the ``standard``
protocol shared by the zero-shot and the transfer segmentation tasks (``results.aggregate``
recomputes mIoU / mAcc / aAcc from the records for bootstrap intervals).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255
SEGMENTATION_AGGREGATIONS = {
    "mIoU": {"kind": "classwise_ratio", "num": "intersect", "den": "union", "scale": 100},
    "mAcc": {"kind": "classwise_ratio", "num": "intersect", "den": "label_area", "scale": 100},
    "aAcc": {"kind": "ratio", "num": "correct", "den": "valid", "scale": 100},
}


@dataclass
class AreaCounts:
    """Per-class pixel counts of one image (or a sum over images), each ``int64[num_classes]``."""

    intersect: np.ndarray
    union: np.ndarray
    pred_area: np.ndarray
    label_area: np.ndarray

    def __add__(self, other: AreaCounts) -> AreaCounts:
        return AreaCounts(self.intersect + other.intersect, self.union + other.union,
                          self.pred_area + other.pred_area, self.label_area + other.label_area)


def zero_counts(num_classes: int) -> AreaCounts:
    z = np.zeros(num_classes, dtype=np.int64)
    return AreaCounts(z.copy(), z.copy(), z.copy(), z.copy())


def counts_record(image_id: str, counts: AreaCounts) -> dict:
    """One image's result record: its per-class count lists, ``correct`` (pixels right) and ``valid``
    (pixels not ignored), clustered by the image for bootstrap intervals."""
    return {"id": image_id, "cluster": image_id, "intersect": counts.intersect.tolist(),
            "union": counts.union.tolist(), "pred_area": counts.pred_area.tolist(),
            "label_area": counts.label_area.tolist(), "correct": int(counts.intersect.sum()),
            "valid": int(counts.label_area.sum())}


def intersect_and_union(pred: np.ndarray, label: np.ndarray, num_classes: int,
                        ignore_index: int = IGNORE_INDEX) -> AreaCounts:
    """Counts for one image: ``pred`` and ``label`` are integer maps of the same shape [H, W].

    Pixels whose label is ``ignore_index`` are dropped; remaining values outside [0, num_classes)
    are not counted in any class (as mmseg's histogram range).
    """
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} != label shape {label.shape}")
    keep = label != ignore_index
    p = pred[keep].astype(np.int64, copy=False)
    g = label[keep].astype(np.int64, copy=False)

    def hist(values: np.ndarray) -> np.ndarray:
        inside = values[(values >= 0) & (values < num_classes)]
        return np.bincount(inside, minlength=num_classes).astype(np.int64)

    inter = hist(p[p == g])
    pred_area, label_area = hist(p), hist(g)
    return AreaCounts(inter, pred_area + label_area - inter, pred_area, label_area)


def _nan_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def dataset_metrics(total: AreaCounts) -> dict:
    """``standard`` protocol from dataset-summed counts -> ``{mIoU, mAcc, aAcc, IoU[C], Acc[C]}``.

    ``IoU``/``Acc`` hold NaN for classes with zero union / zero ground-truth area; the means skip
    them. ``aAcc`` is NaN when no pixel is valid.
    """
    iou = _nan_ratio(total.intersect.astype(np.float64), total.union.astype(np.float64))
    acc = _nan_ratio(total.intersect.astype(np.float64), total.label_area.astype(np.float64))
    valid = float(total.label_area.sum())
    return {"mIoU": _nanmean(iou), "mAcc": _nanmean(acc),
            "aAcc": float(total.intersect.sum()) / valid if valid > 0 else float("nan"), "IoU": iou, "Acc": acc}


def _nanmean(x: np.ndarray) -> float:
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else float("nan")


def present_class_scores(counts: AreaCounts, exclude: Iterable[int] = ()) -> tuple[float, float] | None:
    """``sparc-paper`` per-image scores: (mean IoU, mean accuracy) over the classes present in the
    ground truth (label area > 0), classes in ``exclude`` (background) left out; ``None`` when the
    image has no such class."""
    present = counts.label_area > 0
    for c in exclude:
        present[c] = False
    if not present.any():
        return None
    inter = counts.intersect[present].astype(np.float64)
    return float(np.mean(inter / counts.union[present])), float(np.mean(inter / counts.label_area[present]))
