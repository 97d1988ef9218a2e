"""Zero-shot semantic segmentation from dense patch embeddings and class-name prompts.

Per image: patch embeddings (``ctx.engine.patch_embeddings``; the model's dense path, e.g. MaskCLIP's
value path with ``--dense maskclip``) are l2-normalised and scored against the class text embeddings
(each class: its prompt name in every template, embeddings averaged and re-normalised) -> cosine
scores [C, h, w]; then

- ``mode: whole``: the image is resized to ``resolution`` x ``resolution`` (aspect not kept: ViT
  position embeddings fix the input size) and the scores are resized bilinearly
  (``align_corners=False``) to the input size and then to the label size, as mmsegmentation's
  ``whole_inference`` + post-processing;
- ``mode: slide``: the image is resized keeping its aspect (shorter side ``short_side``, longer side
  at most ``max_long_side``, mmcv's ``rescale_size``), windows of ``resolution`` pixels every ``stride``
  pixels (mmsegmentation's ``slide_inference`` grid, last window flush with the border) are encoded,
  each window's scores resized bilinearly to the window, summed on a canvas and divided by the
  per-pixel window count, and the canvas resized bilinearly to the label size. This equals
  mmsegmentation's ``slide_inference`` except when the resized image is smaller than a window along
  an axis: mmseg then encodes a smaller crop, here the window is zero-padded (bottom/right) to the
  model's input size and its scores over the padding are dropped. Each image is decoded and resized
  once (a DataLoader worker cuts all its windows) and windows of several images fill each forward
  batch (``engine.patch_embeddings``, shared out across ranks under torchrun);
- ``upsample: patch-argmax`` instead takes the argmax per patch and enlarges the label grid with
  nearest-neighbour sampling (the order of operations the SPARC paper states; whole mode only);

then argmax over classes (ties: lowest class id). The ground truth is never resized. Background, when
the label space scores one (VOC 21, Context 60), comes from ``background: threshold`` (a constant
score channel, as TCL) or ``background: prompt`` (the best of the ``background_prompts`` classes).
Memory stays bounded: scores live per batch at patch resolution, and full-resolution maps are built
for one image and a chunk of classes at a time (running max over class chunks), on the model's
device.

Metrics (see ``metrics.segmentation``): ``protocol: standard`` accumulates intersections and unions
over the dataset (mmsegmentation's ``IoUMetric``); ``protocol: sparc-paper`` averages, over images,
each image's mean IoU over the foreground classes present in its ground truth. Per-image records
carry the per-class counts, so intervals resample images.

Chance (``chance``; how in ``details["chance_method"]``): for mIoU, mAcc and aAcc the larger of two
predictors that ignore the image but know the evaluated ground truth's class frequencies: sampling each
pixel's class from them, and always predicting the most frequent class (``metrics.controls``). With
``candidates: present`` the model is told which classes each image holds, which no such predictor is:
the stated chance is then too low, and the details say so.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from functools import partial
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .. import progress
from ..data.segmentation import image_size
from ..errors import ConfigError, SparcEvalError
from ..metrics.segmentation import (
    SEGMENTATION_AGGREGATIONS,
    AreaCounts,
    counts_record,
    dataset_metrics,
    intersect_and_union,
    present_class_scores,
    zero_counts,
)
from ..models.transforms import build_image_transform
from ..params import Param
from ..task_common.controls import segmentation_chance_of
from ..task_common.windows import SlideWindows, WindowBatches, chunked_argmax, resize_scores, whole_scores
from .base import EvalContext, TaskResult, TaskType

PROTOCOLS = {
    "standard": "dataset-level: per-class intersections and unions summed over all images; mIoU = mean of "
                "IoU over classes with a non-empty union (mmsegmentation IoUMetric)",
    "sparc-paper": "per image: mean IoU over the foreground classes present in the ground truth; mIoU = mean "
                   "over images with at least one such class (SPARC paper, following PACL)",
}


class ZeroShotSegmentation(TaskType):
    name = "zeroshot_segmentation"
    dataset_kind = "segmentation"
    requires = ("image_patches",)
    description = "zero-shot semantic segmentation from patch embeddings and class prompts (mIoU)"
    params: ClassVar[dict[str, Param]] = {
        "protocol": Param("str", "standard", "mIoU protocol", tuple(PROTOCOLS)),
        "templates": Param("list[str]", ["a photo of a {}."], "prompt templates with {} for the class prompt name",
                           nonempty=True),
        "background": Param("str", "none", "how a scored background class is predicted",
                            ("none", "threshold", "prompt")),
        "background_threshold": Param("float", None, "constant cosine score of the background channel"),
        "background_prompts": Param("list[str]", ["background"], "prompt names whose best score is background",
                                    nonempty=True),
        "mode": Param("str", "whole", "whole-image or sliding-window inference", ("whole", "slide")),
        "resolution": Param("int", None, "model input side (whole) / window side (slide); default: the model's",
                            min=1),
        "short_side": Param("int", 448, "slide: shorter side after the aspect-preserving resize", min=1),
        "max_long_side": Param("int", 2048, "slide: cap on the longer side", min=1),
        "stride": Param("int", None, "slide: window stride in pixels; default: half the window", min=1),
        "upsample": Param("str", "bilinear", "score upsampling before argmax, or argmax per patch then nearest",
                          ("bilinear", "patch-argmax")),
        "candidates": Param("str", "all", "classes competing in each image: all, or only those in its ground "
                                          "truth", ("all", "present")),
    }

    @classmethod
    def metric_keys(cls, params):
        return ["mIoU", "mAcc", "aAcc"]

    # -- setup ----------------------------------------------------------------------------------------
    def _check(self, data, pre: dict) -> dict:
        p = dict(self.config.params)
        for t in p["templates"]:
            if "{}" not in t:
                raise ConfigError(f"task {self.config.name}: template {t!r} has no '{{}}' for the class name")
        if data.background_index is not None and p["background"] == "none":
            raise ConfigError(f"task {self.config.name}: the label space scores a background class "
                              f"({data.classes[data.background_index]!r}, id {data.background_index}); set "
                              f"params.background to 'threshold' or 'prompt', or reduce_zero_label: true")
        if data.background_index is None and p["background"] != "none":
            raise ConfigError(f"task {self.config.name}: background={p['background']!r} but the label space has no "
                              f"background class; use background: none")
        if p["background"] == "threshold" and p["background_threshold"] is None:
            raise ConfigError(f"task {self.config.name}: background: threshold needs params.background_threshold")
        missing = [k for k in ("resolution", "interpolation", "mean", "std") if k not in pre]
        if missing:
            raise SparcEvalError(f"task {self.config.name}: the model's preprocessing lacks {missing}; zero-shot "
                                 f"segmentation builds its own resize/normalise transform from them")
        p["resolution"] = int(p["resolution"] or pre["resolution"])
        if p["mode"] == "slide":
            p["stride"] = int(p["stride"] or max(1, p["resolution"] // 2))
            if not 0 < p["stride"] <= p["resolution"]:
                raise ConfigError(f"task {self.config.name}: stride {p['stride']} must be in 1..{p['resolution']} "
                                  f"(the window side), or windows would leave gaps")
            if p["upsample"] == "patch-argmax":
                raise ConfigError(f"task {self.config.name}: upsample: patch-argmax is defined for mode: whole only")
        return p

    def _text(self, ctx: EvalContext, data, p: dict) -> tuple[torch.Tensor, list[str]]:
        """Text rows [M, D]: every non-background class (label-id order), then the background prompts."""
        names = [n for i, n in enumerate(data.prompts) if i != data.background_index]
        if p["background"] == "prompt":
            names += list(p["background_prompts"])
        texts = [t.format(n) for n in names for t in p["templates"]]
        emb = ctx.engine.text_embeddings(texts, desc=f"{self.config.name}: class prompts")
        emb = emb.view(len(names), len(p["templates"]), -1).mean(dim=1)
        return F.normalize(emb, dim=-1), names

    def _scores(self, patches: torch.Tensor, grid: tuple[int, int], text: torch.Tensor, data, p: dict) -> torch.Tensor:
        """Cosine scores [B, C, h, w] in label-id order (background channel inserted)."""
        b = patches.shape[0]
        s = F.normalize(patches, dim=-1) @ text.to(patches.device).T
        s = s.reshape(b, grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous()
        bg = data.background_index
        if bg is None:
            return s
        n_fg = data.num_classes - 1
        fg = s[:, :n_fg]
        if p["background"] == "prompt":
            back = s[:, n_fg:].max(dim=1, keepdim=True).values
        else:
            back = torch.full_like(fg[:, :1], float(p["background_threshold"]))
        return torch.cat([fg[:, :bg], back, fg[:, bg:]], dim=1)

    # -- evaluation -----------------------------------------------------------------------------------
    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        data = self.load_data(ctx.limit)
        pre = dict(model.preprocessing)
        p = self._check(data, pre)
        text, text_names = self._text(ctx, data, p)
        records: dict[int, dict] = {}
        total = zero_counts(data.num_classes)

        def finish(i: int, pred: torch.Tensor, label: np.ndarray) -> None:
            nonlocal total
            counts = intersect_and_union(pred.cpu().numpy(), label, data.num_classes, data.ignore_index)
            total = total + counts
            records[i] = self._record(data, i, counts, p)
            ph.advance(1)

        with progress.phase("patches", len(data.images), bars=ctx.progress) as ph:
            if p["mode"] == "whole":
                self._whole(ctx, data, p, pre, text, finish)
            else:
                self._slide(ctx, data, p, pre, text, finish)
        ordered = [records[i] for i in range(len(data.images))]
        return self._result(data, p, pre, ordered, total, text_names)

    def _allowed(self, data, label: np.ndarray, p: dict) -> torch.Tensor | None:
        if p["candidates"] == "all":
            return None
        present = np.zeros(data.num_classes, dtype=bool)
        values = np.unique(label)
        present[values[values != data.ignore_index].astype(np.int64)] = True
        return torch.from_numpy(present)

    def _whole(self, ctx, data, p, pre, text, finish) -> None:
        res = p["resolution"]
        device = ctx.engine.model.device
        transform = build_image_transform({**pre, "resolution": res, "crop": "squash"})
        for index, pe in ctx.engine.patch_embeddings(data.images, transform=transform):
            scores = self._scores(pe.embeddings.to(device), pe.grid, text, data, p)
            for b, i in enumerate(index.tolist()):
                label = data.read_label(i, image_size(data.images.paths[i]))
                hw = label.shape
                allowed = self._allowed(data, label, p)
                grid = scores[b]
                if p["upsample"] == "patch-argmax":
                    lab = chunked_argmax(data.num_classes, tuple(grid.shape[-2:]), grid.__getitem__, allowed)
                    pred = F.interpolate(lab[None, None].float(), size=hw, mode="nearest-exact")[0, 0].long()
                else:
                    pred = chunked_argmax(data.num_classes, hw, partial(whole_scores, grid, (res, res), hw), allowed,
                                          extra_elements=res * res)
                finish(i, pred, label)

    def _slide(self, ctx, data, p, pre, text, finish) -> None:
        """Images with the same number of windows go through the engine together; each batch holds
        about ``engine.batch_size`` windows."""
        crop = p["resolution"]
        device = ctx.engine.model.device
        windows = SlideWindows(p["short_side"], p["max_long_side"], crop, p["stride"], pre["interpolation"],
                               pre["mean"], pre["std"])
        sizes = [image_size(path) for path in data.images.paths]
        groups: dict[int, list[int]] = defaultdict(list)
        for i, size in enumerate(sizes):
            groups[len(windows.windows(size))].append(i)
        bs = ctx.engine.batch_size
        for n_win, members in sorted(groups.items()):
            engine = dataclasses.replace(ctx.engine, model=WindowBatches(ctx.engine.model, bs),
                                         batch_size=max(1, bs // n_win))
            for index, pe in engine.patch_embeddings(data.images, indices=members, transform=windows):
                b, rows = len(index), pe.grid[0] // n_win
                per_window = pe.embeddings.to(device).reshape(b * n_win, rows * pe.grid[1], -1)
                scores = self._scores(per_window, (rows, pe.grid[1]), text, data, p)
                scores = scores.reshape(b, n_win, *scores.shape[1:])
                for k, i in enumerate(index.tolist()):
                    label = data.read_label(i, sizes[i])
                    hw = windows.resized_hw(sizes[i])
                    chunk = partial(self._slide_scores, scores[k], windows.windows(sizes[i]), hw, crop, label.shape)
                    pred = chunked_argmax(data.num_classes, label.shape, chunk, self._allowed(data, label, p),
                                          extra_elements=hw[0] * hw[1] + n_win * crop * crop)
                    finish(i, pred, label)

    @staticmethod
    def _slide_scores(grids: torch.Tensor, windows, hw: tuple[int, int], crop: int, out_hw: tuple[int, int],
                      sl: slice) -> torch.Tensor:
        """Window-averaged scores of the classes ``sl`` [c, H, W] at the label size, from the windows'
        patch scores ``grids`` [n_win, C, h, w]: all windows upsampled to the window size in one call,
        summed on the resized image's canvas, divided by the per-pixel window count, resized."""
        up = F.interpolate(grids[:, sl], size=(crop, crop), mode="bilinear", align_corners=False)
        canvas = up.new_zeros((up.shape[1], *hw))
        count = up.new_zeros(hw)
        for g, (y1, y2, x1, x2) in zip(up, windows):
            canvas[:, y1:y2, x1:x2] += g[:, : y2 - y1, : x2 - x1]
            count[y1:y2, x1:x2] += 1
        return resize_scores(canvas / count, out_hw)

    # -- results --------------------------------------------------------------------------------------
    @staticmethod
    def _record(data, i: int, counts: AreaCounts, p: dict) -> dict:
        rec = counts_record(data.images.ids[i], counts)
        if p["protocol"] == "sparc-paper":
            exclude = [] if data.background_index is None else [data.background_index]
            scores = present_class_scores(counts, exclude)
            if scores is not None:
                rec["image_mIoU"], rec["image_mAcc"] = scores
        return rec

    def _result(self, data, p, pre, records, total: AreaCounts, text_names) -> TaskResult:
        std = dataset_metrics(total)
        aggregations = dict(SEGMENTATION_AGGREGATIONS)
        if p["protocol"] == "standard":
            metrics = {"mIoU": 100 * std["mIoU"], "mAcc": 100 * std["mAcc"]}
        else:
            scored = [r for r in records if "image_mIoU" in r]
            nan = float("nan")
            metrics = {"mIoU": 100 * float(np.mean([r["image_mIoU"] for r in scored])) if scored else nan,
                       "mAcc": 100 * float(np.mean([r["image_mAcc"] for r in scored])) if scored else nan}
            aggregations.update({"mIoU": {"kind": "mean", "field": "image_mIoU", "scale": 100},
                                 "mAcc": {"kind": "mean", "field": "image_mAcc", "scale": 100}})
        metrics["aAcc"] = 100 * std["aAcc"]

        def per_class(values: np.ndarray) -> dict:
            return {name: (None if np.isnan(v) else round(100 * float(v), 4)) for name, v in zip(data.classes, values)}

        details = {
            "protocol": p["protocol"], "protocol_definition": PROTOCOLS[p["protocol"]],
            "num_classes": data.num_classes, "class_names": data.classes, "prompt_names": data.prompts,
            "text_rows": text_names, "templates": p["templates"],
            "background": {"index": data.background_index, "mode": p["background"],
                           **({"threshold": p["background_threshold"]} if p["background"] == "threshold" else {}),
                           **({"prompts": p["background_prompts"]} if p["background"] == "prompt" else {})},
            "inference": {"mode": p["mode"], "resolution": p["resolution"], "upsample": p["upsample"],
                          "candidates": p["candidates"], "interpolation": pre["interpolation"],
                          "mean": pre["mean"], "std": pre["std"], "dense_path": pre.get("dense", "model default"),
                          **({"short_side": p["short_side"], "max_long_side": p["max_long_side"],
                              "stride": p["stride"]} if p["mode"] == "slide" else {})},
            "ignore_index": data.ignore_index, "reduce_zero_label": data.reduce_zero_label,
            "per_class_IoU": per_class(std["IoU"]), "per_class_Acc": per_class(std["Acc"]),
            "dataset_level": {"mIoU": 100 * std["mIoU"], "mAcc": 100 * std["mAcc"]},
            **data.info,
        }
        if p["protocol"] == "sparc-paper":
            details["images_without_foreground"] = sum(1 for r in records if "image_mIoU" not in r)
        exclude = [] if data.background_index is None else [data.background_index]
        chance, details["chance_method"] = segmentation_chance_of(records, p["protocol"], exclude)
        if p["candidates"] == "present":
            details["chance_note"] = ("candidates: present tells the model which classes each image holds; the chance "
                                      "levels are those of predictors not told, so they understate chance here")
        return TaskResult(metrics=metrics, main_metric=self.config.main_metric, records=records,
                          aggregations=aggregations, chance=chance, details=details, n_total=data.n_total,
                          n_used=len(data.images), dataset_fingerprint=data.fingerprint)
