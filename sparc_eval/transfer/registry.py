"""Registers our transfer components in mmengine's root registries (seen from mmdet and mmseg scopes).

Imported by the generated configs (``custom_imports``), so a saved ``*.mmengine.py`` also builds with
plain mmengine tooling. Names: ``SparcTransferBackbone``, ``SparcSimpleFPN``, ``SparcLN2d`` (norm
layer for the heads), ``SparcLayerDecayOptimWrapperConstructor``, ``SparcPlainCheckpointHook``,
``SparcTextLoggerHook``, ``SparcCocoInstanceMetric``, ``SparcRecordedIoUMetric``,
``SparcReaderSegDataset``.
"""
from __future__ import annotations

from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from .backbone import TransferBackbone
from .checkpoint import PlainCheckpointHook
from .coco_results import CocoInstanceMetric
from .log_hook import TextLoggerHook
from .optim import LayerDecayOptimWrapperConstructor
from .pyramid import LayerNorm2d, SimpleFeaturePyramid
from .seg_dataset import ReaderSegDataset
from .seg_metric import RecordedIoUMetric

MODELS.register_module("SparcTransferBackbone", module=TransferBackbone, force=True)
MODELS.register_module("SparcSimpleFPN", module=SimpleFeaturePyramid, force=True)
MODELS.register_module("SparcLN2d", module=LayerNorm2d, force=True)
OPTIM_WRAPPER_CONSTRUCTORS.register_module("SparcLayerDecayOptimWrapperConstructor",
                                           module=LayerDecayOptimWrapperConstructor, force=True)
HOOKS.register_module("SparcPlainCheckpointHook", module=PlainCheckpointHook, force=True)
HOOKS.register_module("SparcTextLoggerHook", module=TextLoggerHook, force=True)
METRICS.register_module("SparcCocoInstanceMetric", module=CocoInstanceMetric, force=True)
METRICS.register_module("SparcRecordedIoUMetric", module=RecordedIoUMetric, force=True)
DATASETS.register_module("SparcReaderSegDataset", module=ReaderSegDataset, force=True)
