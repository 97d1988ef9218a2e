"""mmengine configs (plain dicts) for the transfer recipes: Mask/Faster R-CNN, UperNet, linear head.

The detection recipe follows ViTDet (mmdetection ``projects/ViTDet``, Li et al. 2022): simple
feature pyramid (hierarchical backbones: mmdet's FPN), RPN with two convolutions, Shared4Conv1FC box
head and FCN mask head with LayerNorm, large-scale jitter (random resize by ``scale_range`` of a
square ``image_size``, crop, flip; padding value 114 at test time), AdamW with layer-wise lr decay.
Segmentation follows mmseg's ViT UperNet (pyramid neck, UperNet head with pool scales 1/2/3/6, FCN
auxiliary head with weight 0.4; random resize of ``(4 * crop, crop)`` by ``scale_range``, crop with
``cat_max_ratio=0.75``, flip, photometric distortion) or a linear head (one 1x1 convolution on the
frozen, final-normalised patch features, logits upsampled bilinearly). The values that vary between
tasks come from the task params and the schedule (``schedules.py``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..registry import Registry

LN = {"type": "SparcLN2d"}


def backbone_config(*, spec: str, pretrained: str | None, seed: int, tower_key: str, frozen: bool,
                    final_norm: bool = False, grad_checkpointing: bool = False) -> dict:
    return {"type": "SparcTransferBackbone", "model": spec, "pretrained": pretrained, "seed": seed,
            "tower_key": tower_key, "frozen": frozen, "final_norm": final_norm,
            "grad_checkpointing": grad_checkpointing}


def _pyramid(tower: dict, channels: int, extra_level: bool) -> dict:
    return {"type": "SparcSimpleFPN", "in_channels": tower["channels"][-1], "in_stride": tower["strides"][-1],
            "out_channels": channels, "strides": [4, 8, 16, 32], "extra_level": extra_level}


def _optim(sched: dict, layer_decay: float, amp: str | None) -> dict:
    wrapper = {"type": "AmpOptimWrapper", "dtype": amp} if amp else {"type": "OptimWrapper"}
    return {**wrapper, "constructor": "SparcLayerDecayOptimWrapperConstructor",
            "optimizer": {"type": "AdamW", "lr": sched["lr"], "betas": (0.9, 0.999),
                          "weight_decay": sched["weight_decay"]},
            "paramwise_cfg": {"layer_decay": layer_decay}}


def _schedulers(sched: dict) -> list[dict]:
    out = []
    if sched["warmup_iters"] > 0:
        out.append({"type": "LinearLR", "start_factor": 1e-3, "by_epoch": False, "begin": 0,
                    "end": sched["warmup_iters"]})
    if sched["policy"] == "poly" and sched["warmup_iters"] < sched["iters"]:
        out.append({"type": "PolyLR", "eta_min": 0.0, "power": 1.0, "by_epoch": False,
                    "begin": sched["warmup_iters"], "end": sched["iters"]})
    elif sched["milestones"]:
        out.append({"type": "MultiStepLR", "by_epoch": False, "begin": 0, "end": sched["iters"],
                    "milestones": list(sched["milestones"]), "gamma": 0.1})
    return out


def _runtime(sched: dict, *, scope: str, seed: int, launcher: str, cuda: bool, log_level: str) -> dict:
    """Loops, hooks, logging and environment shared by every recipe."""
    out = {
        "default_scope": scope,
        "custom_imports": {"imports": ["sparc_eval.transfer.registry"], "allow_failed_imports": False},
        "train_cfg": {"type": "IterBasedTrainLoop", "max_iters": sched["iters"], "val_interval": sched["iters"]},
        "test_cfg": {"type": "TestLoop"},
        "param_scheduler": _schedulers(sched),
        "default_hooks": {
            "timer": {"type": "IterTimerHook"},
            "logger": {"type": "SparcTextLoggerHook", "interval": sched["log_interval"], "log_metric_by_epoch": False},
            "param_scheduler": {"type": "ParamSchedulerHook"},
            "checkpoint": {"type": "CheckpointHook", "by_epoch": False, "interval": sched["checkpoint_interval"],
                           "max_keep_ckpts": 1, "save_last": True},
            "sampler_seed": {"type": "DistSamplerSeedHook"},
        },
        "custom_hooks": [{"type": "SparcPlainCheckpointHook"}],
        "log_processor": {"type": "LogProcessor", "window_size": sched["log_interval"], "by_epoch": False},
        "visualizer": {"type": "Visualizer", "vis_backends": None},
        "log_level": log_level,
        "env_cfg": {"cudnn_benchmark": False, "mp_cfg": {"mp_start_method": "fork", "opencv_num_threads": 0},
                    "dist_cfg": {"backend": "nccl" if cuda else "gloo"}},
        "launcher": launcher,
        "randomness": {"seed": seed, "deterministic": False},
        "load_from": None,
    }
    if launcher != "none" and not cuda:  # DDP on CPU processes (gloo): no device ids
        out["model_wrapper_cfg"] = {"type": "MMDistributedDataParallel", "device_ids": None,
                                    "broadcast_buffers": False}
    return out


def _loader(dataset: dict, batch: int, workers: int, train: bool) -> dict:
    sampler = {"type": "InfiniteSampler", "shuffle": True} if train else {"type": "DefaultSampler", "shuffle": False}
    return {"batch_size": batch, "num_workers": workers, "persistent_workers": workers > 0,
            "sampler": sampler, "dataset": dataset}


def detection_config(*, backbone: dict, tower: dict, mean: Sequence[float], std: Sequence[float],
                     classes: Sequence[str], cat_ids: Sequence[int], train_ann: Path, train_images: Path,
                     test_ann: Path, test_images: Path, test_indices: int | None, train_indices: int | None,
                     params: dict, sched: dict, seed: int, launcher: str, cuda: bool, amp: str | None,
                     workers: int, pad_divisor: int, log_level: str) -> dict:
    """Mask R-CNN (``recipe=mask_rcnn``) or Faster R-CNN (``faster_rcnn``) on a COCO-format dataset."""
    masks = params["recipe"] == "mask_rcnn"
    k = len(classes)
    ch, size = params["neck_channels"], params["image_size"]
    square = (size, size)
    if tower["hierarchical"]:
        neck = {"type": "FPN", "in_channels": list(tower["channels"]), "out_channels": ch, "num_outs": 5}
    else:
        neck = _pyramid(tower, ch, extra_level=True)
    roi_head = {
        "type": "StandardRoIHead",
        "bbox_roi_extractor": {"type": "SingleRoIExtractor",
                               "roi_layer": {"type": "RoIAlign", "output_size": 7, "sampling_ratio": 0},
                               "out_channels": ch, "featmap_strides": [4, 8, 16, 32]},
        "bbox_head": {"type": "Shared4Conv1FCBBoxHead", "in_channels": ch, "conv_out_channels": ch,
                      "fc_out_channels": params["fc_channels"], "norm_cfg": LN, "roi_feat_size": 7,
                      "num_classes": k,
                      "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4,
                                     "target_stds": [0.1, 0.1, 0.2, 0.2]},
                      "reg_class_agnostic": False,
                      "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0},
                      "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}},
    }
    if masks:
        roi_head["mask_roi_extractor"] = {"type": "SingleRoIExtractor",
                                          "roi_layer": {"type": "RoIAlign", "output_size": 14, "sampling_ratio": 0},
                                          "out_channels": ch, "featmap_strides": [4, 8, 16, 32]}
        roi_head["mask_head"] = {"type": "FCNMaskHead", "num_convs": 4, "in_channels": ch, "conv_out_channels": ch,
                                 "norm_cfg": LN, "num_classes": k,
                                 "loss_mask": {"type": "CrossEntropyLoss", "use_mask": True, "loss_weight": 1.0}}
    rcnn_train = {"assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.5, "min_pos_iou": 0.5,
                               "match_low_quality": True, "ignore_iof_thr": -1},
                  "sampler": {"type": "RandomSampler", "num": params["rois_per_image"], "pos_fraction": 0.25,
                              "neg_pos_ub": -1, "add_gt_as_proposals": True},
                  "pos_weight": -1, "debug": False}
    rcnn_test = {"score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5},
                 "max_per_img": params["detections_per_image"]}
    if masks:
        rcnn_train["mask_size"] = 28
        rcnn_test["mask_thr_binary"] = 0.5
    model = {
        "type": "MaskRCNN" if masks else "FasterRCNN",
        "data_preprocessor": {"type": "DetDataPreprocessor", "mean": list(mean), "std": list(std), "bgr_to_rgb": True,
                              "pad_mask": masks, "pad_size_divisor": pad_divisor,
                              "batch_augments": [{"type": "BatchFixedSizePad", "size": square, "pad_mask": masks}]},
        "backbone": backbone,
        "neck": neck,
        "rpn_head": {"type": "RPNHead", "in_channels": ch, "feat_channels": ch, "num_convs": 2,
                     "anchor_generator": {"type": "AnchorGenerator", "scales": [8], "ratios": [0.5, 1.0, 2.0],
                                          "strides": [4, 8, 16, 32, 64]},
                     "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4,
                                    "target_stds": [1.0] * 4},
                     "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": True, "loss_weight": 1.0},
                     "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}},
        "roi_head": roi_head,
        "train_cfg": {
            "rpn": {"assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.7, "neg_iou_thr": 0.3, "min_pos_iou": 0.3,
                                 "match_low_quality": True, "ignore_iof_thr": -1},
                    "sampler": {"type": "RandomSampler", "num": 256, "pos_fraction": 0.5, "neg_pos_ub": -1,
                                "add_gt_as_proposals": False},
                    "allowed_border": -1, "pos_weight": -1, "debug": False},
            "rpn_proposal": {"nms_pre": 2000, "max_per_img": 1000, "nms": {"type": "nms", "iou_threshold": 0.7},
                             "min_bbox_size": 0},
            "rcnn": rcnn_train},
        "test_cfg": {
            "rpn": {"nms_pre": 1000, "max_per_img": 1000, "nms": {"type": "nms", "iou_threshold": 0.7},
                    "min_bbox_size": 0},
            "rcnn": rcnn_test},
    }
    lo, hi = params["scale_range"]
    train_pipeline = [
        {"type": "LoadImageFromFile"},
        {"type": "LoadAnnotations", "with_bbox": True, "with_mask": masks},
        {"type": "RandomResize", "scale": square, "ratio_range": (lo, hi), "keep_ratio": True},
        {"type": "RandomCrop", "crop_type": "absolute_range", "crop_size": square, "recompute_bbox": True,
         "allow_negative_crop": True},
        {"type": "FilterAnnotations", "min_gt_bbox_wh": (0.01, 0.01)},
        {"type": "RandomFlip", "prob": 0.5},
        {"type": "PackDetInputs"},
    ]
    test_pipeline = [
        {"type": "LoadImageFromFile"},
        {"type": "Resize", "scale": square, "keep_ratio": True},
        {"type": "Pad", "size": square, "pad_val": {"img": (114, 114, 114)}},
        {"type": "PackDetInputs", "meta_keys": ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")},
    ]
    meta = {"classes": tuple(classes)}

    def dataset(ann: Path, images: Path, pipeline: list, test: bool, indices: int | None) -> dict:
        d = {"type": "CocoDataset", "data_root": "", "ann_file": str(ann), "data_prefix": {"img": f"{images}/"},
             "metainfo": meta, "pipeline": pipeline, "test_mode": test}
        if not test:
            d["filter_cfg"] = {"filter_empty_gt": True, "min_size": 32}
        if indices is not None:
            d["indices"] = indices
        return d

    return {
        "model": model,
        "train_dataloader": _loader(dataset(train_ann, train_images, train_pipeline, False, train_indices),
                                    sched["batch_per_gpu"], workers, True),
        "test_dataloader": _loader(dataset(test_ann, test_images, test_pipeline, True, test_indices), 1, workers,
                                   False),
        "test_evaluator": {"type": "SparcCocoInstanceMetric", "ann_file": str(test_ann), "cat_ids": list(cat_ids),
                           "iou_types": ["bbox", "segm"] if masks else ["bbox"]},
        "optim_wrapper": _optim(sched, params["layer_decay"] if params["backbone"] == "finetune" else 1.0, amp),
        **_runtime(sched, scope="mmdet", seed=seed, launcher=launcher, cuda=cuda, log_level=log_level),
    }


def linear_head(tower: dict, params: dict, k: int, norm: dict, loss: dict, ignore_index: int) -> tuple:
    """(neck, decode head, auxiliary head) of the linear probe: one 1x1 convolution on the last features."""
    dim = tower["channels"][-1]
    decode = {"type": "FCNHead", "in_channels": dim, "in_index": 0, "channels": dim, "num_convs": 0,
              "concat_input": False, "dropout_ratio": 0.0, "num_classes": k, "norm_cfg": norm,
              "align_corners": False, "ignore_index": ignore_index, "loss_decode": loss}
    return None, decode, None


def upernet_head(tower: dict, params: dict, k: int, norm: dict, loss: dict, ignore_index: int) -> tuple:
    """(neck, decode head, auxiliary head) of UperNet: a simple pyramid (plain ViTs), the UperNet head
    with pool scales 1/2/3/6 and an FCN auxiliary head weighted 0.4."""
    ch, hc = params["neck_channels"], params["head_channels"]
    if tower["hierarchical"]:
        neck, in_channels = None, list(tower["channels"])
    else:
        neck, in_channels = _pyramid(tower, ch, extra_level=False), [ch] * 4
    decode = {"type": "UPerHead", "in_channels": in_channels, "in_index": [0, 1, 2, 3],
              "pool_scales": (1, 2, 3, 6), "channels": hc, "dropout_ratio": 0.1, "num_classes": k,
              "norm_cfg": norm, "align_corners": False, "ignore_index": ignore_index, "loss_decode": loss}
    aux = {"type": "FCNHead", "in_channels": in_channels[2], "in_index": 2, "channels": max(1, hc // 2),
           "num_convs": 1, "concat_input": False, "dropout_ratio": 0.1, "num_classes": k, "norm_cfg": norm,
           "align_corners": False, "ignore_index": ignore_index, "loss_decode": {**loss, "loss_weight": 0.4}}
    return neck, decode, aux


SEG_HEADS: Registry = Registry("segmentation head", "sparc_eval.transfer_heads", {
    "upernet": f"{__name__}:upernet_head",
    "linear": f"{__name__}:linear_head",
})


def segmentation_config(*, backbone: dict, tower: dict, mean: Sequence[float], std: Sequence[float],
                        classes: Sequence[str], train: dict, test: dict, train_indices: int | None,
                        test_indices: int | None, reduce_zero_label: bool, ignore_index: int,
                        params: dict, sched: dict, seed: int, launcher: str, cuda: bool, amp: str | None,
                        workers: int, log_level: str) -> dict:
    """UperNet (``head=upernet``) or linear head (``head=linear``). ``train``/``test``: the resolved
    ``dataset:`` mappings of the two splits, read through sparc-eval's readers (``SparcReaderSegDataset``)."""
    k = len(classes)
    crop = params["image_size"]
    norm = {"type": "BN", "requires_grad": True}
    loss = {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0}
    neck, decode, aux = SEG_HEADS.get(params["head"])(tower, params, k, norm, loss, ignore_index)
    if params["test_mode"] == "slide":
        stride = max(1, crop * 2 // 3)
        test_cfg = {"mode": "slide", "crop_size": (crop, crop), "stride": (stride, stride)}
    else:
        test_cfg = {"mode": "whole"}
    model = {"type": "EncoderDecoder",
             "data_preprocessor": {"type": "SegDataPreProcessor", "mean": list(mean), "std": list(std),
                                   "bgr_to_rgb": True, "pad_val": 0, "seg_pad_val": ignore_index,
                                   "size": (crop, crop)},
             "backbone": backbone, "decode_head": decode, "train_cfg": {}, "test_cfg": test_cfg}
    if neck is not None:
        model["neck"] = neck
    if aux is not None:
        model["auxiliary_head"] = aux
    scale = (4 * crop, crop)
    lo, hi = params["scale_range"]
    load_ann = {"type": "LoadAnnotations"}  # reduce_zero_label comes from the dataset
    train_pipeline = [{"type": "LoadImageFromFile"}, load_ann,
                      {"type": "RandomResize", "scale": scale, "ratio_range": (lo, hi), "keep_ratio": True},
                      {"type": "RandomCrop", "crop_size": (crop, crop), "cat_max_ratio": 0.75},
                      {"type": "RandomFlip", "prob": 0.5}, {"type": "PhotoMetricDistortion"},
                      {"type": "PackSegInputs"}]
    test_pipeline = [{"type": "LoadImageFromFile"}, {"type": "Resize", "scale": scale, "keep_ratio": True},
                     load_ann, {"type": "PackSegInputs"}]

    def dataset(reader_cfg: dict, pipeline: list, test: bool, indices: int | None) -> dict:
        d = {"type": "SparcReaderSegDataset", "reader_cfg": reader_cfg, "metainfo": {"classes": tuple(classes)},
             "reduce_zero_label": reduce_zero_label, "ignore_index": ignore_index, "pipeline": pipeline,
             "test_mode": test}
        if indices is not None:
            d["indices"] = indices
        return d

    frozen = params["backbone"] == "frozen" or params["head"] == "linear"
    return {
        "model": model,
        "train_dataloader": _loader(dataset(train, train_pipeline, False, train_indices), sched["batch_per_gpu"],
                                    workers, True),
        "test_dataloader": _loader(dataset(test, test_pipeline, True, test_indices), 1, workers, False),
        "test_evaluator": {"type": "SparcRecordedIoUMetric", "ignore_index": ignore_index, "iou_metrics": ["mIoU"]},
        "optim_wrapper": _optim(sched, 1.0 if frozen else params["layer_decay"], amp),
        **({"sync_bn": "torch"} if launcher != "none" and cuda else {}),  # SyncBatchNorm is CUDA-only
        **_runtime(sched, scope="mmseg", seed=seed, launcher=launcher, cuda=cuda, log_level=log_level),
    }
