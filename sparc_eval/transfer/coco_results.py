"""Detector outputs -> COCO results JSON -> COCOeval (pycocotools), and the mmengine metric doing it.

The detector predicts contiguous labels ``0..K-1``; label ``i`` is the dataset's category
``cat_ids[i]`` (the order of the ``categories`` list of the annotation file, as mmdet's
``CocoDataset``), so COCO's gapped ids (1-90) go back to the file's own ids here. Boxes are
``[x1, y1, x2, y2]`` in original-image pixels and become ``[x, y, w, h]``; masks become compressed
RLE. Evaluation is COCOeval restricted to the evaluated images (``params.imgIds``), with its
defaults (IoU .50:.05:.95, 100 detections per image, COCO's area ranges). Metrics are percentages;
an AP that COCOeval cannot define (-1: no ground truth in that area range, e.g. ``APl`` on a world of
small objects) is left out and listed in ``undefined``.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mmengine.evaluator import BaseMetric
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPES = ("bbox", "segm")


def encode_masks(masks: np.ndarray) -> list[dict]:
    """Boolean masks ``[N, H, W]`` -> compressed RLEs (``counts`` as str, JSON-ready)."""
    out = []
    for m in masks:
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append(rle)
    return out


def to_coco_results(image_id: int, bboxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                    cat_ids: Sequence[int], masks: Sequence[dict] | None = None) -> tuple[list[dict], list[dict]]:
    """One image's detections (``bboxes`` ``[N, 4]`` xyxy pixels, ``labels`` contiguous) -> (bbox results,
    segm results) in the COCO results format with the dataset's category ids."""
    boxes, segms = [], []
    for i in range(len(scores)):
        x1, y1, x2, y2 = (float(v) for v in bboxes[i])
        common = {"image_id": int(image_id), "category_id": int(cat_ids[int(labels[i])]), "score": float(scores[i])}
        boxes.append({**common, "bbox": [x1, y1, x2 - x1, y2 - y1]})
        if masks is not None:
            segms.append({**common, "segmentation": masks[i]})
    return boxes, segms


def load_gt(ann_file: Path | str) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


def _results_api(gt: COCO, results: list[dict]) -> COCO:
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(results)
    empty = COCO()
    empty.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"]),
                     "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def coco_evaluate(gt: COCO, results: list[dict], iou_type: str, img_ids: Sequence[int]) -> tuple[dict, dict, list]:
    """COCOeval of ``results`` on ``img_ids`` -> (``{AP, AP50, ...}`` in %, per-category AP in % by
    category id, undefined stat names). No results at all scores 0 where ground truth exists."""
    dt = _results_api(gt, results)
    ev = COCOeval(gt, dt, iouType=iou_type)
    ev.params.imgIds = list(img_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics, undefined = {}, []
    for name, value in zip(STATS, ev.stats[: len(STATS)], strict=True):
        if value < 0:
            undefined.append(name)
        else:
            metrics[name] = float(value) * 100
    per_class = {}
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[int(cat_id)] = float(p.mean() * 100) if p.size else None
    return metrics, per_class, undefined


class CocoInstanceMetric(BaseMetric):
    """mmengine metric: mmdet predictions -> COCO results -> ``bbox_AP``, ``segm_AP``, ... (percent)."""

    default_prefix = ""

    def __init__(self, ann_file: str, cat_ids: Sequence[int], iou_types: Sequence[str] = IOU_TYPES,
                 collect_device: str = "cpu", prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file, self.cat_ids, self.iou_types = ann_file, list(cat_ids), list(iou_types)
        self.details: dict = {}

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample["pred_instances"]
            masks = None
            if "segm" in self.iou_types:
                masks = encode_masks(pred["masks"].cpu().numpy())
            boxes, segms = to_coco_results(sample["img_id"], pred["bboxes"].cpu().numpy(),
                                           pred["scores"].cpu().numpy(), pred["labels"].cpu().numpy(),
                                           self.cat_ids, masks)
            self.results.append((int(sample["img_id"]), boxes, segms))

    def compute_metrics(self, results: list) -> dict[str, float]:
        return self.evaluate_results(results)

    def evaluate_results(self, results: list) -> dict[str, float]:
        """``results``: ``(image_id, bbox results, segm results)`` per image -> metrics; the
        per-category APs and undefined stats go to ``self.details``."""
        gt = load_gt(self.ann_file)
        img_ids = sorted({r[0] for r in results})
        metrics: dict[str, float] = {}
        self.details = {"evaluated_images": len(img_ids), "per_class_AP": {}, "undefined": [],
                        "detections": sum(len(r[1]) for r in results)}
        for iou_type in self.iou_types:
            dets = [d for r in results for d in (r[1] if iou_type == "bbox" else r[2])]
            values, per_class, undefined = coco_evaluate(gt, dets, iou_type, img_ids)
            metrics.update({f"{iou_type}_{k}": v for k, v in values.items()})
            self.details["per_class_AP"][iou_type] = {gt.cats[c]["name"]: v for c, v in per_class.items()}
            self.details["undefined"] += [f"{iou_type}_{k}" for k in undefined]
        return metrics
