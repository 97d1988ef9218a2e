"""Transfer metrics: oracles through our COCO-results and mmseg paths, agreement with mmdet/mmseg metrics,
checkpoints that load with ``weights_only=True``."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from sparc_eval.data.coco_instances import READER as COCO_READER
from sparc_eval.results.aggregate import ClusterSums


def _shapes_val(world):
    cfg = {"root": str(world), "annotations": "annotations/instances_val.json", "images": "images",
           "train_annotations": None, "train_images": None}
    return COCO_READER.load(cfg)


def _gt_predictions(data, relabel=lambda labels: labels, jitter: float = 0.0, seed: int = 0) -> list[dict]:
    """mmdet-style data samples (as the Evaluator passes them) whose predictions are the ground truth."""
    coco = COCO(str(data.annotation_file))
    rng = np.random.default_rng(seed)
    samples = []
    for img_id in data.image_ids:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        info = coco.imgs[img_id]
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], dtype=np.float32)
        boxes = boxes + rng.normal(0, jitter, boxes.shape).astype(np.float32) if jitter else boxes
        labels = relabel(np.array([data.cat_ids.index(a["category_id"]) for a in anns]))
        masks = np.stack([coco.annToMask(a).astype(bool) for a in anns])
        scores = rng.uniform(0.5, 1.0, len(anns)) if jitter else np.ones(len(anns))
        samples.append({"img_id": img_id, "ori_shape": (info["height"], info["width"]),
                        "pred_instances": {"bboxes": torch.from_numpy(boxes), "scores": torch.as_tensor(scores),
                                           "labels": torch.as_tensor(labels), "masks": torch.from_numpy(masks)}})
    return samples


def _our_coco_metric(data):
    from sparc_eval.transfer.coco_results import CocoInstanceMetric

    return CocoInstanceMetric(ann_file=str(data.annotation_file), cat_ids=data.cat_ids)


def test_ground_truth_boxes_and_masks_score_100(small_world):
    data = _shapes_val(small_world)
    metric = _our_coco_metric(data)
    metric.process({}, _gt_predictions(data))
    m = metric.evaluate_results(metric.results)
    assert m["bbox_AP"] == 100.0 and m["segm_AP"] == 100.0
    assert m["bbox_AP50"] == m["bbox_AP75"] == m["segm_AP50"] == m["segm_AP75"] == 100.0
    assert metric.details["evaluated_images"] == 24
    # every shape is smaller than 32x32 px: medium/large AP are undefined and left out, not -1
    assert {"bbox_APm", "bbox_APl", "segm_APm", "segm_APl"} == set(metric.details["undefined"])
    assert set(metric.details["per_class_AP"]["bbox"]) == {"circle", "square", "triangle", "diamond", "star", "cross"}


def test_permuted_labels_score_zero(small_world):
    data = _shapes_val(small_world)
    metric = _our_coco_metric(data)
    metric.process({}, _gt_predictions(data, relabel=lambda labels: (labels + 1) % len(data.cat_ids)))
    m = metric.evaluate_results(metric.results)
    assert m["bbox_AP"] == 0.0 and m["segm_AP"] == 0.0


def test_agrees_with_mmdet_coco_metric_on_noisy_predictions(small_world):
    from mmdet.evaluation.metrics import CocoMetric

    data = _shapes_val(small_world)
    rng = np.random.default_rng(3)
    samples = _gt_predictions(data, relabel=lambda labels: np.where(rng.random(len(labels)) < 0.2,
                                                                    (labels + 2) % 6, labels), jitter=1.5)
    ours = _our_coco_metric(data)
    ours.process({}, samples)
    mine = ours.evaluate_results(ours.results)
    ref = CocoMetric(ann_file=str(data.annotation_file), metric=["bbox", "segm"])
    ref.dataset_meta = {"classes": tuple(data.classes)}
    ref.process({}, samples)
    theirs = ref.compute_metrics(ref.results)
    assert 5 < mine["bbox_AP"] < 95
    for k in ("AP", "AP50", "AP75", "APs"):
        for t in ("bbox", "segm"):
            key = {"AP": "mAP", "AP50": "mAP_50", "AP75": "mAP_75", "APs": "mAP_s"}[k]
            assert mine[f"{t}_{k}"] / 100 == pytest.approx(theirs[f"{t}_{key}"], abs=5e-4), (t, k)


def test_no_detections_score_zero(small_world):
    data = _shapes_val(small_world)
    metric = _our_coco_metric(data)
    empty = {"bboxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long),
             "masks": torch.zeros(0, 64, 64, dtype=torch.bool)}
    metric.process({}, [{"img_id": i, "pred_instances": empty} for i in data.image_ids])
    assert metric.evaluate_results(metric.results) == {f"{t}_{k}": 0.0 for t in ("bbox", "segm")
                                                       for k in ("AP", "AP50", "AP75", "APs")}


def _seg_test_dataset(world, classes):
    """The evaluation dataset exactly as our segmentation config builds it (reader, pipeline)."""
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    from sparc_eval.transfer import registry  # noqa: F401
    from sparc_eval.transfer.config import segmentation_config

    register_all_modules(init_default_scope=True)
    reader_cfg = {"format": "voc", "name": "shapes", "root": str(world / "VOCdevkit/VOC2012"), "split": "val",
                  "class_table": "shapes", "reduce_zero_label": False, "image_dir": "JPEGImages",
                  "label_dir": "SegmentationClass", "split_dir": "ImageSets/Segmentation"}
    params = {"head": "linear", "image_size": 128, "scale_range": [0.8, 1.25], "test_mode": "whole",
              "backbone": "frozen", "layer_decay": 0.65}
    sched = {"iters": 1, "batch_per_gpu": 1, "lr": 1e-3, "weight_decay": 0.0, "warmup_iters": 0, "policy": "poly",
             "milestones": [], "checkpoint_interval": 1, "log_interval": 1}
    cfg = segmentation_config(backbone={}, tower={"channels": [8], "strides": [8], "hierarchical": False},
                              mean=[0, 0, 0], std=[1, 1, 1], classes=classes, train=reader_cfg, test=reader_cfg,
                              train_indices=None, test_indices=None, reduce_zero_label=False, ignore_index=255,
                              params=params, sched=sched, seed=0, launcher="none", cuda=False, amp=None, workers=0,
                              log_level="WARNING")
    return DATASETS.build(cfg["test_dataloader"]["dataset"])


def _seg_samples(dataset, mapping=None) -> list[dict]:
    out = []
    for i in range(len(dataset)):
        sample = dataset[i]["data_samples"]
        gt = sample.gt_sem_seg.data
        pred = gt.clone() if mapping is None else torch.where(gt == 255, gt, mapping[gt.clamp(max=6).long()])
        out.append({"pred_sem_seg": {"data": pred}, "gt_sem_seg": {"data": gt}, "img_path": sample.img_path})
    return out


SHAPES_CLASSES = ["background", "circle", "square", "triangle", "diamond", "star", "cross"]


def test_ground_truth_label_maps_through_our_mmseg_path_score_100(small_world):
    from sparc_eval.metrics.segmentation import SEGMENTATION_AGGREGATIONS as AGGREGATIONS
    from sparc_eval.transfer.seg_metric import RecordedIoUMetric

    dataset = _seg_test_dataset(small_world, SHAPES_CLASSES)
    assert len(dataset) == 40
    metric = RecordedIoUMetric(ignore_index=255)
    metric.dataset_meta = {"classes": SHAPES_CLASSES}
    metric.process({}, _seg_samples(dataset))
    assert metric.compute_metrics(metric.results) == {"mIoU": 100.0, "aAcc": 100.0, "mAcc": 100.0}
    assert [r["id"] for r in metric.records[:2]] == [Path(dataset[i]["data_samples"].img_path).stem for i in (0, 1)]
    # labels shifted by one class (a derangement of the 7 ids): nothing is right
    wrong = RecordedIoUMetric(ignore_index=255)
    wrong.dataset_meta = {"classes": SHAPES_CLASSES}
    wrong.process({}, _seg_samples(dataset, mapping=torch.tensor([1, 2, 3, 4, 5, 6, 0], dtype=torch.uint8)))
    values = wrong.compute_metrics(wrong.results)
    assert values == {"mIoU": 0.0, "aAcc": 0.0, "mAcc": 0.0}
    recomputed = ClusterSums(wrong.records, AGGREGATIONS).compute()
    assert {k: float(v[0]) for k, v in recomputed.items()} == values


def test_seg_metric_agrees_with_mmseg_iou_metric_the_zeroshot_metric_and_the_records():
    from mmseg.evaluation.metrics import IoUMetric

    from sparc_eval.metrics.segmentation import SEGMENTATION_AGGREGATIONS as AGGREGATIONS
    from sparc_eval.transfer.seg_metric import RecordedIoUMetric

    rng = np.random.default_rng(0)
    classes = [f"c{i}" for i in range(5)]
    samples = []
    for i in range(6):
        gt = torch.from_numpy(rng.integers(0, 4, (1, 20, 30)))  # class 4 never in the ground truth
        gt[:, :3] = 255
        pred = torch.from_numpy(rng.integers(0, 5, (1, 20, 30)))
        pred[gt == 2] = 2
        samples.append({"pred_sem_seg": {"data": pred}, "gt_sem_seg": {"data": gt}, "img_path": f"/x/{i}.png"})
    ours, ref = RecordedIoUMetric(ignore_index=255), IoUMetric(ignore_index=255)
    ours.dataset_meta = ref.dataset_meta = {"classes": classes}
    ours.process({}, samples)
    ref.process({}, samples)
    mine, theirs = ours.compute_metrics(ours.results), ref.compute_metrics(ref.results)
    # mmseg rounds to 2 decimals (in float32)
    assert {k: round(v, 2) for k, v in mine.items()} == pytest.approx({k: float(v) for k, v in theirs.items()},
                                                                      abs=1e-4)
    # hand check: class 2 is always right, so its IoU is |gt==2| / (|gt==2| + |pred==2 elsewhere|)
    gt = torch.cat([s["gt_sem_seg"]["data"].flatten() for s in samples])
    pred = torch.cat([s["pred_sem_seg"]["data"].flatten() for s in samples])
    valid = gt != 255
    inter = int(((gt == 2) & valid).sum())
    false_pos = int(((pred == 2) & valid & (gt != 2)).sum())
    assert ours.per_class["IoU"]["c2"] == pytest.approx(100 * inter / (inter + false_pos))
    recomputed = ClusterSums(ours.records, AGGREGATIONS).compute()
    assert {k: float(v[0]) for k, v in recomputed.items()} == pytest.approx(mine, abs=1e-9)
    # the zero-shot segmentation tasks' standard-protocol mIoU on the same maps
    from sparc_eval.metrics.segmentation import dataset_metrics, intersect_and_union, zero_counts

    total = zero_counts(5)
    for smp in samples:
        pred, gt = smp["pred_sem_seg"]["data"][0].numpy(), smp["gt_sem_seg"]["data"][0].numpy()
        total = total + intersect_and_union(pred, gt, 5)
    zs = dataset_metrics(total)
    assert {k: 100 * zs[k] for k in ("mIoU", "aAcc", "mAcc")} == pytest.approx(mine, abs=1e-9)


def test_checkpoint_values_become_plain_and_history_buffers_come_back(tmp_path):
    from mmengine.logging import HistoryBuffer

    from sparc_eval.transfer.checkpoint import PlainCheckpointHook, to_plain

    buf = HistoryBuffer([1.0, 2.0], [1, 1])
    ckpt = {"meta": {"seed": np.int64(3), "lr": np.float64(0.5), "arr": np.arange(3)},
            "state_dict": {"w": torch.ones(2)},
            "message_hub": {"log_scalars": {"train/loss": buf}, "runtime_info": {"iter": np.int64(4)},
                            "resumed_keys": {"iter": True}},
            "param_schedulers": [{"milestones": Counter({3: 1})}]}
    PlainCheckpointHook().before_save_checkpoint(None, ckpt)
    torch.save(ckpt, tmp_path / "c.pth")
    loaded = torch.load(tmp_path / "c.pth", weights_only=True)
    assert loaded["meta"] == {"seed": 3, "lr": 0.5, "arr": [0, 1, 2]} and type(loaded["meta"]["seed"]) is int
    assert loaded["param_schedulers"] == [{"milestones": {3: 1}}]
    PlainCheckpointHook().after_load_checkpoint(None, loaded)
    back = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(back, HistoryBuffer) and back.data[0].tolist() == [1.0, 2.0]
    with pytest.raises(TypeError, match=r"checkpoint.meta.bad: object cannot be stored"):
        to_plain({"meta": {"bad": object()}})
