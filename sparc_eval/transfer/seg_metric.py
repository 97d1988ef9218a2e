"""mmsegmentation's ``IoUMetric`` keeping each image's pixel counts, for records and intervals.

Per image it stores mmseg's own ``intersect_and_union`` counts (ignore pixels dropped, per class:
intersection, union, predicted area, label area); the dataset metrics are mmseg's
``total_area_to_metrics`` on the summed counts (dataset-level accumulation, nan-mean over classes
with an empty union), reported unrounded in percent (mmseg's own summary rounds to 2 decimals).
``records`` holds one record per image (``metrics.segmentation.counts_record``: ``intersect``,
``union``, ``pred_area``, ``label_area`` lists and their totals), the basis of the result's bootstrap
intervals (``SEGMENTATION_AGGREGATIONS``). Per-image counts are whole numbers (mmseg's float32
histograms of one image are exact); the sums are taken in float64 (mmseg sums float32, which is
inexact beyond 2**24 pixels per class).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmseg.evaluation.metrics import IoUMetric

from ..metrics.segmentation import AreaCounts, counts_record


class RecordedIoUMetric(IoUMetric):
    default_prefix = ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.records: list[dict] = []
        self.per_class: dict[str, dict] = {}

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        num_classes = len(self.dataset_meta["classes"])
        for sample in data_samples:
            pred = sample["pred_sem_seg"]["data"].squeeze()
            label = sample["gt_sem_seg"]["data"].squeeze().to(pred)
            areas = self.intersect_and_union(pred, label, num_classes, self.ignore_index)
            self.results.append((Path(sample["img_path"]).stem, *areas))

    def compute_metrics(self, results: list) -> dict[str, float]:
        names = [r[0] for r in results]
        inter, union, pred, label = (np.stack([r[i].numpy() for r in results]).astype(np.float64) for i in range(1, 5))
        totals = (torch.from_numpy(a.sum(0)) for a in (inter, union, pred, label))
        ret = self.total_area_to_metrics(*totals, ["mIoU"], self.nan_to_num, self.beta)
        classes = list(self.dataset_meta["classes"])
        self.per_class = {"IoU": {c: _pct(v) for c, v in zip(classes, ret["IoU"], strict=True)},
                          "Acc": {c: _pct(v) for c, v in zip(classes, ret["Acc"], strict=True)}}
        self.records = [counts_record(n, AreaCounts(*(a[i].astype(np.int64) for a in (inter, union, pred, label))))
                        for i, n in enumerate(names)]
        return {"mIoU": float(np.nanmean(ret["IoU"]) * 100), "aAcc": float(ret["aAcc"] * 100),
                "mAcc": float(np.nanmean(ret["Acc"]) * 100)}


def _pct(v) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v * 100

