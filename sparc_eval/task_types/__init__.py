"""Task-type registry: the built-in types below (``type: retrieval`` -> ``Retrieval``); plugins add types
through the ``sparc_eval.task_types`` entry-point group. Each type's ``name`` must equal its registered name."""
from __future__ import annotations

from ..registry import Registry
from .base import EvalContext, TaskResult, TaskType

__all__ = ["TASK_TYPES", "EvalContext", "TaskResult", "TaskType", "get_task_type", "task_types"]

TASK_TYPES: Registry[type[TaskType]] = Registry("task type", "sparc_eval.task_types", {
    "retrieval": "sparc_eval.task_types.retrieval:Retrieval",
    "zeroshot_classification": "sparc_eval.task_types.zeroshot_classification:ZeroShotClassification",
    "linear_probe": "sparc_eval.task_types.linear_probe:LinearProbe",
    "zeroshot_segmentation": "sparc_eval.task_types.zeroshot_segmentation:ZeroShotSegmentation",
    "caption_selection": "sparc_eval.task_types.caption_selection:CaptionSelection",
    "winoground": "sparc_eval.task_types.winoground:Winoground",
    "caption_faithfulness": "sparc_eval.task_types.caption_faithfulness:CaptionFaithfulness",
    "captioning": "sparc_eval.task_types.captioning:Captioning",
    "caption_transfer": "sparc_eval.task_types.caption_transfer:CaptionTransfer",
    "detection_transfer": "sparc_eval.task_types.detection_transfer:DetectionTransfer",
    "segmentation_transfer": "sparc_eval.task_types.segmentation_transfer:SegmentationTransfer",
}, base=TaskType, name_attr="name")


def get_task_type(name: str) -> type[TaskType]:
    return TASK_TYPES.get(name)


def task_types() -> dict[str, type[TaskType]]:
    """Every known task type (imports them all)."""
    return TASK_TYPES.all()
