"""mIoU and the dense-prediction geometry: hand-computed cases, an independent confusion matrix,
mmsegmentation's IoUMetric, mmcv's rescale_size and mmseg's slide_inference on the same inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sparc_eval.metrics.segmentation import (
    dataset_metrics,
    intersect_and_union,
    present_class_scores,
    zero_counts,
)
from sparc_eval.results.aggregate import ClusterSums
from sparc_eval.task_common import windows as zs
from sparc_eval.task_types.zeroshot_segmentation import ZeroShotSegmentation


def test_hand_computed_iou():
    label = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 1, 0]])
    c = intersect_and_union(pred, label, 3)
    # class 0: I=1 (pixel 00), pred {00}, gt {00, 01} -> U=2; class 1: I=2, pred {01,02,10,11}, gt {02,10} -> U=4
    # class 2: I=0, pred {}, gt {11} -> U=1; the ignored pixel (pred 0) is not counted anywhere.
    assert c.intersect.tolist() == [1, 2, 0]
    assert c.union.tolist() == [2, 4, 1]
    assert c.label_area.tolist() == [2, 2, 1]
    assert c.pred_area.tolist() == [1, 4, 0]
    m = dataset_metrics(c)
    assert m["mIoU"] == pytest.approx((1 / 2 + 2 / 4 + 0) / 3)
    assert m["aAcc"] == pytest.approx(3 / 5)
    assert m["mAcc"] == pytest.approx((1 / 2 + 2 / 2 + 0) / 3)


def test_classes_with_empty_union_are_left_out_and_present_class_mean():
    label = np.array([[1, 1], [2, 2]])
    pred = np.array([[1, 1], [1, 2]])
    c = intersect_and_union(pred, label, 4)
    m = dataset_metrics(c)
    assert np.isnan(m["IoU"][0]) and np.isnan(m["IoU"][3])
    assert m["mIoU"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # predicted-only class: IoU 0 (counted), accuracy NaN (left out of mAcc)
    c2 = intersect_and_union(np.array([[3, 1]]), np.array([[1, 1]]), 4)
    m2 = dataset_metrics(c2)
    assert m2["IoU"][3] == 0 and np.isnan(m2["Acc"][3])
    assert m2["mIoU"] == pytest.approx((1 / 2 + 0) / 2)
    # sparc-paper per image: classes present in the ground truth, background (0) excluded
    label3 = np.array([[0, 0, 1, 2]])
    pred3 = np.array([[1, 0, 1, 1]])
    c3 = intersect_and_union(pred3, label3, 3)
    miou, macc = present_class_scores(c3, exclude=[0])
    assert miou == pytest.approx((1 / 3 + 0) / 2) and macc == pytest.approx((1 + 0) / 2)
    assert present_class_scores(intersect_and_union(np.zeros((2, 2)), np.zeros((2, 2), int), 3), [0]) is None


def _random_maps(rng, n, num_classes, shape=(23, 31)):
    out = []
    for _ in range(n):
        label = rng.integers(0, num_classes, shape)
        label[rng.random(shape) < 0.15] = 255
        pred = np.where(rng.random(shape) < 0.6, label, rng.integers(0, num_classes, shape))
        pred[pred == 255] = 0
        out.append((pred, label))
    return out


def test_agrees_with_independent_confusion_matrix_and_mmseg():
    from mmseg.evaluation.metrics import IoUMetric

    rng = np.random.default_rng(0)
    num_classes = 7
    maps = _random_maps(rng, 12, num_classes)
    maps.append((np.full((5, 5), 6), np.full((5, 5), 255)))  # an all-ignored image
    total = zero_counts(num_classes)
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    mm_results = []
    for pred, label in maps:
        total = total + intersect_and_union(pred, label, num_classes)
        keep = label != 255
        np.add.at(conf, (label[keep], pred[keep]), 1)
        mm_results.append(IoUMetric.intersect_and_union(torch.from_numpy(pred), torch.from_numpy(label),
                                                        num_classes, 255))
    ours = dataset_metrics(total)
    diag = np.diag(conf).astype(float)
    iou = diag / (conf.sum(0) + conf.sum(1) - diag)
    assert ours["IoU"] == pytest.approx(iou)
    assert ours["mIoU"] == pytest.approx(np.nanmean(iou))
    assert ours["aAcc"] == pytest.approx(diag.sum() / conf.sum())
    assert ours["mAcc"] == pytest.approx(np.nanmean(diag / conf.sum(1)))
    sums = [sum(r[k] for r in mm_results) for k in range(4)]
    mm = IoUMetric.total_area_to_metrics(*sums, metrics=["mIoU"])
    assert ours["IoU"] == pytest.approx(np.asarray(mm["IoU"]))
    assert ours["Acc"] == pytest.approx(np.asarray(mm["Acc"]))
    assert ours["aAcc"] == pytest.approx(float(mm["aAcc"]))
    metric = IoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = {"classes": [str(c) for c in range(num_classes)]}
    summary = metric.compute_metrics(mm_results)
    assert round(100 * ours["mIoU"], 2) == pytest.approx(summary["mIoU"])
    assert round(100 * ours["mAcc"], 2) == pytest.approx(summary["mAcc"])
    assert round(100 * ours["aAcc"], 2) == pytest.approx(summary["aAcc"])


def test_records_recompute_the_metrics_through_results_aggregate():
    rng = np.random.default_rng(1)
    maps = _random_maps(rng, 6, 5)
    records, total = [], zero_counts(5)
    for k, (pred, label) in enumerate(maps):
        c = intersect_and_union(pred, label, 5)
        total = total + c
        records.append({"cluster": k, "intersect": c.intersect.tolist(), "union": c.union.tolist(),
                        "label_area": c.label_area.tolist(), "correct": int(c.intersect.sum()),
                        "valid": int(c.label_area.sum())})
    aggs = {"mIoU": {"kind": "classwise_ratio", "num": "intersect", "den": "union", "scale": 100},
            "mAcc": {"kind": "classwise_ratio", "num": "intersect", "den": "label_area", "scale": 100},
            "aAcc": {"kind": "ratio", "num": "correct", "den": "valid", "scale": 100}}
    got = ClusterSums(records, aggs).compute()
    m = dataset_metrics(total)
    for k in aggs:
        assert got[k][0] == pytest.approx(100 * m[k])


def test_rescale_size_matches_mmcv():
    import mmcv

    for w, h in [(500, 375), (375, 500), (2048, 1024), (640, 100), (100, 3000), (64, 64)]:
        assert zs.rescale_size(w, h, 448, 2048) == mmcv.rescale_size((w, h), (2048, 448))


class _FakeSegmentor:
    """The attributes mmseg's EncoderDecoder.slide_inference reads, around a scoring function."""

    def __init__(self, crop, stride, score, channels=3):
        from types import SimpleNamespace

        self.test_cfg = SimpleNamespace(crop_size=(crop, crop), stride=(stride, stride))
        self.out_channels, self.score = channels, score

    def encode_decode(self, crop_img, metas):
        return self.score(crop_img)


def test_sliding_windows_and_canvas_match_mmseg_slide_inference():
    from mmseg.models.segmentors import EncoderDecoder

    torch.manual_seed(0)
    crop, stride = 16, 6
    weight = torch.randn(3, 3)

    def window_scores(img):  # [B, 3, h, w] -> [B, 3, h, w] via a 4x4 patch grid, as our task does
        grid = torch.nn.functional.avg_pool2d(img, 4)
        grid = torch.einsum("oc,bchw->bohw", weight, grid)
        return torch.nn.functional.interpolate(grid, size=img.shape[-2:], mode="bilinear", align_corners=False)

    for h, w in [(16, 40), (37, 23), (16, 16)]:
        img = torch.randn(1, 3, h, w)
        expected = EncoderDecoder.slide_inference(_FakeSegmentor(crop, stride, window_scores), img, [{}])[0]
        windows = zs.sliding_windows(h, w, crop, stride)
        grids = torch.stack([torch.einsum("oc,chw->ohw", weight, torch.nn.functional.avg_pool2d(
            img[0, :, y1:y2, x1:x2], 4)) for y1, y2, x1, x2 in windows])
        got = ZeroShotSegmentation._slide_scores(grids, windows, (h, w), crop, (h, w), slice(None))
        assert torch.allclose(got, expected, atol=1e-6)


def test_chunked_argmax_equals_plain_argmax_with_lowest_id_ties(monkeypatch):
    monkeypatch.setattr(zs, "CHUNK_ELEMENTS", 2 * 6 * 5)  # two classes per chunk
    x = torch.randint(0, 3, (7, 6, 5)).float()  # many exact ties
    got = zs.chunked_argmax(7, (6, 5), lambda sl: x[sl])
    assert torch.equal(got, x.argmax(dim=0))
    allowed = torch.tensor([False, True, False, True, True, False, False])
    masked = x.masked_fill(~allowed[:, None, None], float("-inf"))
    assert torch.equal(zs.chunked_argmax(7, (6, 5), lambda sl: x[sl], allowed), masked.argmax(dim=0))
