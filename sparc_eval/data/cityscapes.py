"""Cityscapes: 19 evaluation classes as train ids, 255 ignored.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

The ``labelTrainIds`` maps come from cityscapesScripts (``createTrainIdLabelImgs``) or
mmsegmentation's ``tools/dataset_converters/cityscapes.py``.
"""
from __future__ import annotations

from typing import ClassVar

from ..params import Param
from .segmentation import SegmentationReader, files_with_suffix, paired_by_stem


class CityscapesReader(SegmentationReader):
    format = "cityscapes"
    default_table = "cityscapes"
    fixed_reduce_zero_label = False
    params: ClassVar[dict[str, Param]] = dict(SegmentationReader.common_params)
    layout = """

    <root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png          split: val (500 images)
    <root>/gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png      train ids 0-18, 255 ignored"""

    def _pairs(self, cfg, root):
        image_dir = root / "leftImg8bit" / cfg["split"]
        images = files_with_suffix(image_dir, "_leftImg8bit.png", self.format)
        return paired_by_stem(images, "_leftImg8bit.png", root / "gtFine" / cfg["split"], "_gtFine_labelTrainIds.png",
                              image_dir), []


READER = CityscapesReader()
