"""Detection and segmentation transfer: any loaded model's vision tower as an mmdet/mmseg backbone.

- ``towers``: the vision tower of an adapter (open_clip ViT and timm ConvNeXt, transformers CLIP and
  SigLIP, SPARC checkpoints built from open_clip towers, or an adapter's own ``transfer_tower()``);
- ``pyramid``: ViTDet's simple feature pyramid for plain ViTs;
- ``backbone``: the mmdet/mmseg backbone module wrapping a tower, frozen or fine-tuned;
- ``optim``: layer-wise learning-rate decay; ``checkpoint``: checkpoints loadable with
  ``torch.load(weights_only=True)``; ``log_hook``: logging without JSON files in results folders;
- ``coco_results`` / ``seg_metric``: the evaluation metrics; ``seg_dataset``: mmseg datasets listed
  through sparc-eval's segmentation readers;
- ``schedules``, ``config``: recipes and schedule presets as mmengine configs;
- ``bridge`` and ``runner``: from an adapter to a finished mmengine run (resumable, torchrun-aware);
- ``registry``: registers the components above with mmengine (imported by generated configs).

Used by the ``detection_transfer`` and ``segmentation_transfer`` task types. Needs the ``transfer``
extra (mmengine, mmcv with ops, mmdet, mmsegmentation); the task types import only ``params`` at
load time, the rest when they run.
"""
