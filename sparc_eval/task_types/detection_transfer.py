"""Detection and instance-segmentation transfer: train a detector on the model's vision tower, report COCO AP.

The recipe (``params.recipe``): Mask R-CNN (boxes + masks) or Faster R-CNN (boxes) on a ViTDet-style
simple feature pyramid (hierarchical towers: FPN), trained with mmdetection through mmengine's
Runner on the dataset's training split and evaluated on its evaluation split with pycocotools'
COCOeval (``bbox_AP`` ... ``bbox_APl``, ``segm_AP``/``AP50``/``AP75``; mask APs by object size are in
``details``). The backbone is ``frozen`` by default (the protocol's tier A: only the pyramid and heads
learn, so backbones are compared on equal terms) or ``finetune`` with layer-wise lr decay. Details
record the recipe, the resolved schedule, iterations, seed, config file, checkpoint, per-category AP
and whether a frozen backbone's weights are unchanged. AP has no per-image decomposition, so the
result has no bootstrap intervals. See ``sparc_eval.transfer`` and ``protocols.md`` section 2.
"""
from __future__ import annotations

from ..errors import ConfigError, DataError
from ..params import Param
from ..transfer.params import COMMON
from .base import EvalContext, TaskResult, TaskType

BBOX_KEYS = ["bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APs", "bbox_APm", "bbox_APl"]
SEGM_KEYS = ["segm_AP", "segm_AP50", "segm_AP75", "segm_APs", "segm_APm", "segm_APl"]


class DetectionTransfer(TaskType):
    name = "detection_transfer"
    dataset_kind = "detection"
    description = "detection / instance segmentation transfer (Mask R-CNN, ViTDet pyramid), COCO AP"
    params = {
        "recipe": Param("str", "mask_rcnn", "mask_rcnn (box + mask AP) or faster_rcnn (box AP)",
                        choices=("mask_rcnn", "faster_rcnn")),
        "schedule": Param("str", "1x", "quick, 1x or 100e (see sparc_eval.transfer.schedules)",
                          choices=("quick", "1x", "100e")),
        "image_size": Param("int", 1024, "side of the square training crop and test canvas (pixels)"),
        "scale_range": Param("list[float]", [0.1, 2.0], "large-scale-jitter resize range [low, high]"),
        "fc_channels": Param("int", 1024, "width of the box head's fully connected layer"),
        "rois_per_image": Param("int", 512, "RoIs sampled per image for the box/mask heads"),
        "detections_per_image": Param("int", 100, "detections kept per test image (COCO's maxDets is 100)"),
        **COMMON,
    }

    @classmethod
    def metric_keys(cls, params):
        return BBOX_KEYS + (SEGM_KEYS if params["recipe"] == "mask_rcnn" else [])

    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        import torch

        from ..transfer import bridge, config, runner, schedules
        from ..transfer.params import require_stack, versions

        require_stack()

        p = self.config.params
        data = self.load_data(ctx.limit)
        if data.train is None:
            raise ConfigError(f"task {self.config.name!r}: detection transfer trains on a training split; set "
                              f"dataset.train_annotations and dataset.train_images")
        masks = p["recipe"] == "mask_rcnn"
        if masks and not (data.has_masks and data.train.has_masks):
            raise DataError(f"{data.annotation_file}: recipe mask_rcnn needs a 'segmentation' in every annotation "
                            f"of both splits; use --param recipe=faster_rcnn for boxes only")
        if len(p["scale_range"]) != 2 or not 0 < p["scale_range"][0] <= p["scale_range"][1]:
            raise ConfigError(f"params.scale_range: expected [low, high] with 0 < low <= high, "
                              f"found {p['scale_range']}")
        sched = schedules.resolve(schedules.DETECTION, p, p["recipe"], runner.world_size())
        frozen = p["backbone"] == "frozen"
        prepared = bridge.prepare(model, frozen=frozen, grad_checkpointing=p["grad_checkpointing"], seed=ctx.seed)
        cuda = torch.cuda.is_available()
        amp = runner.amp_dtype(p["amp"], model.precision, cuda)
        workers = ctx.engine.num_workers if ctx.engine is not None and ctx.engine.num_workers is not None else 2
        cfg = config.detection_config(
            backbone=prepared.backbone, tower=prepared.tower, mean=prepared.mean, std=prepared.std,
            classes=data.classes, cat_ids=data.cat_ids, train_ann=data.train.annotation_file,
            train_images=data.train.image_dir, test_ann=data.annotation_file, test_images=data.image_dir,
            test_indices=ctx.limit if ctx.limit is not None and ctx.limit < data.n_total_images else None,
            train_indices=p["train_limit"], params=p, sched=sched, seed=ctx.seed, launcher=runner.launcher(),
            cuda=cuda, amp=amp, workers=workers, pad_divisor=prepared.pad_divisor,
            log_level="INFO" if ctx.progress else "WARNING")
        ctx.log(f"{self.config.name}: training {p['recipe']} ({p['backbone']} backbone, schedule {sched['name']}: "
                f"{sched['iters']} iterations at batch {sched['batch_size']})")
        done = runner.run(cfg, task=self.config.name, result_dir=ctx.work_dir, resume=p["resume"],
                          backbone_sha256=prepared.sha256_before, log=ctx.log)
        keys = self.metric_keys(p)
        metrics = {k: v for k, v in done.metrics.items() if k in keys}
        extra = {k: v for k, v in done.metrics.items() if k not in keys}
        details = {
            "recipe": p["recipe"], "protocol": "ViTDet-style transfer, COCOeval (pycocotools)",
            "backbone": p["backbone"], "layer_decay": p["layer_decay"] if not frozen else None,
            "schedule": sched, "seed": ctx.seed, "image_size": p["image_size"], "scale_range": p["scale_range"],
            "amp": amp, "tower": prepared.tower, "classes": data.classes, "category_ids": data.cat_ids,
            "metrics_not_registered": extra, **(done.metric.details or {}), **done.provenance,
            "backbone_sha256_before": prepared.sha256_before,
            "backbone_unchanged": done.provenance["backbone_sha256_after"] == prepared.sha256_before,
            "train_images": len(data.train.image_ids) if p["train_limit"] is None
            else min(p["train_limit"], len(data.train.image_ids)),
            "versions": versions(),
        }
        return TaskResult(metrics=metrics, main_metric=self.config.main_metric, details=details,
                          n_total=data.n_total_images, n_used=len(data.image_ids),
                          dataset_fingerprint=data.fingerprint)
