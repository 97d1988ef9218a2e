"""Semantic segmentation transfer: train a head on the model's vision tower, report mIoU (mmseg IoUMetric).

Heads (``params.head``): ``upernet`` (mmseg's ViT UperNet: simple feature pyramid, UperNet decode
head, FCN auxiliary head; the backbone ``frozen`` or ``finetune`` with layer-wise lr decay) or
``linear`` (the cheap probe: one 1x1 convolution on the frozen backbone's final-normalised patch
features, logits upsampled bilinearly). Trained with mmsegmentation through mmengine's Runner on the
training split; scored on the evaluation split with mmseg's ``IoUMetric`` counts (dataset-level
accumulation, ignore index dropped, nan-mean over classes): ``mIoU``, ``aAcc``, ``mAcc``, per-class
IoU/Acc in ``details``, one record per image (bootstrap intervals over images). Chance: the larger of
prior sampling and the majority class from the evaluated ground truth's class frequencies
(``metrics.controls.segmentation_chance``, the standard protocol; how, in ``details["chance_method"]``).

The dataset is read with the same readers as the zero-shot segmentation tasks (``voc``, ``ade20k``,
...): ``dataset:`` is the evaluation split, ``params.train_dataset`` holds the ``dataset:`` keys that
differ for the training split (VOC: ``{split: train}``; ADE20K: ``{split: training}``; VOC aug:
``{split: aug, label_dir: SegmentationClassAug}``).
"""
from __future__ import annotations

from ..data.base import get_reader
from ..errors import ConfigError, DataError
from ..metrics.segmentation import SEGMENTATION_AGGREGATIONS
from ..params import Param
from ..task_common.controls import segmentation_chance_of
from ..transfer.config import SEG_HEADS
from ..transfer.params import COMMON
from .base import EvalContext, TaskResult, TaskType


class SegmentationTransfer(TaskType):
    name = "segmentation_transfer"
    dataset_kind = "segmentation"
    description = "semantic segmentation transfer (UperNet or frozen linear head), mIoU"
    params = {
        "head": Param("str", "upernet", "upernet, linear (frozen backbone + 1x1 conv on patch features) or a "
                      "plugin's head (entry-point group sparc_eval.transfer_heads)", choices=tuple(SEG_HEADS.names())),
        "schedule": Param("str", "1x", "quick, 1x (80k) or 2x (160k) (see sparc_eval.transfer.schedules)",
                          choices=("quick", "1x", "2x")),
        "image_size": Param("int", 512, "training crop side; test images are resized to fit (4x, 1x) of it"),
        "scale_range": Param("list[float]", [0.5, 2.0], "random resize range [low, high] for training"),
        "test_mode": Param("str", "slide", "whole image or sliding window (crop = image_size, stride 2/3)",
                           choices=("whole", "slide")),
        "head_channels": Param("int", 512, "channels of the UperNet head"),
        "train_dataset": Param("dict", {"split": "train"}, "dataset keys that differ for the training split"),
        **COMMON,
        "layer_decay": Param("float", 0.65, "layer-wise lr decay of a fine-tuned backbone (1 = none; BEiT's 0.65)"),
    }

    @classmethod
    def metric_keys(cls, params):
        return ["mIoU", "aAcc", "mAcc"]

    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        import torch

        from ..transfer import bridge, config, runner, schedules
        from ..transfer.params import require_stack, versions

        require_stack()

        p = self.config.params
        data = self.load_data(ctx.limit)
        train_cfg = self._train_dataset()
        train = get_reader(train_cfg["format"]).load(train_cfg)
        if train.classes != data.classes or train.reduce_zero_label != data.reduce_zero_label:
            raise DataError(f"task {self.config.name!r}: the training split's classes differ from the evaluation "
                            f"split's ({len(train.classes)} vs {len(data.classes)} classes)")
        linear = p["head"] == "linear"
        if linear and p["backbone"] != "frozen":
            raise ConfigError("--param backbone=finetune: the linear head is a probe of frozen features; use "
                              "head=upernet to fine-tune")
        if len(p["scale_range"]) != 2 or not 0 < p["scale_range"][0] <= p["scale_range"][1]:
            raise ConfigError(f"params.scale_range: expected [low, high] with 0 < low <= high, "
                              f"found {p['scale_range']}")
        recipe = "linear" if linear else "upernet"
        sched = schedules.resolve(schedules.SEGMENTATION, p, recipe, runner.world_size())
        cuda = torch.cuda.is_available()
        synced = cuda and runner.launcher() != "none"  # SyncBatchNorm (CUDA only) pools the processes' images
        if not linear and (sched["batch_size"] if synced else sched["batch_per_gpu"]) < 2:
            raise ConfigError(f"--param batch_size={sched['batch_size']}: UperNet's BatchNorm needs at least 2 "
                              f"images per {'step' if synced else 'process'} ({sched['world_size']} process(es)"
                              f"{'' if synced or sched['world_size'] == 1 else ', no SyncBatchNorm on the CPU'})")
        frozen = p["backbone"] == "frozen"
        prepared = bridge.prepare(model, frozen=frozen, final_norm=linear, grad_checkpointing=p["grad_checkpointing"],
                                  seed=ctx.seed)
        amp = runner.amp_dtype(p["amp"], model.precision, cuda)
        workers = ctx.engine.num_workers if ctx.engine is not None and ctx.engine.num_workers is not None else 2

        test_indices = ctx.limit if ctx.limit is not None and ctx.limit < data.n_total else None
        cfg = config.segmentation_config(
            backbone=prepared.backbone, tower=prepared.tower, mean=prepared.mean, std=prepared.std,
            classes=data.classes, train=train_cfg, test=dict(self.config.dataset), train_indices=p["train_limit"],
            test_indices=test_indices, reduce_zero_label=data.reduce_zero_label, ignore_index=data.ignore_index,
            params=p, sched=sched, seed=ctx.seed, launcher=runner.launcher(), cuda=cuda, amp=amp, workers=workers,
            log_level="INFO" if ctx.progress else "WARNING")
        ctx.log(f"{self.config.name}: training {recipe} head ({p['backbone']} backbone, schedule {sched['name']}: "
                f"{sched['iters']} iterations at batch {sched['batch_size']})")
        done = runner.run(cfg, task=self.config.name, result_dir=ctx.work_dir, resume=p["resume"],
                          backbone_sha256=prepared.sha256_before, log=ctx.log)
        details = {
            "recipe": recipe, "protocol": "mmseg IoUMetric counts, dataset-level accumulation",
            "backbone": "frozen" if frozen else "finetune", "layer_decay": None if frozen else p["layer_decay"],
            "schedule": sched, "seed": ctx.seed, "image_size": p["image_size"], "scale_range": p["scale_range"],
            "test_mode": p["test_mode"], "amp": amp, "tower": prepared.tower, "classes": data.classes,
            "reduce_zero_label": data.reduce_zero_label, "ignore_index": data.ignore_index,
            "per_class": done.metric.per_class, **done.provenance,
            "backbone_sha256_before": prepared.sha256_before,
            "backbone_unchanged": done.provenance["backbone_sha256_after"] == prepared.sha256_before,
            "train_dataset": {k: v for k, v in train_cfg.items() if k != "root"},
            "train_fingerprint": train.fingerprint,
            "train_images": len(train.labels) if p["train_limit"] is None else min(p["train_limit"], len(train.labels)),
            "versions": versions(),
        }
        chance, details["chance_method"] = segmentation_chance_of(done.metric.records, "standard")
        return TaskResult(metrics=dict(done.metrics), main_metric=self.config.main_metric, records=done.metric.records,
                          aggregations=dict(SEGMENTATION_AGGREGATIONS), chance=chance, details=details, n_total=data.n_total,
                          n_used=len(data.labels), dataset_fingerprint=data.fingerprint)

    def _train_dataset(self) -> dict:
        """The resolved ``dataset:`` mapping of the training split (``params.train_dataset`` applied)."""
        reader = get_reader(self.config.dataset["format"])
        out = dict(self.config.dataset)
        for key, value in self.config.params["train_dataset"].items():
            if key not in reader.params or key == "root":
                raise ConfigError(f"params.train_dataset.{key}: not a dataset key of format "
                                  f"{reader.format!r} that may differ between splits; expected one of "
                                  f"{sorted(k for k in reader.params if k != 'root')}")
            out[key] = reader.params[key].coerce(value, f"params.train_dataset.{key}")
        if out == dict(self.config.dataset):
            raise ConfigError(f"params.train_dataset {self.config.params['train_dataset']}: the training split "
                              f"is the evaluation split; name a different split")
        return out
