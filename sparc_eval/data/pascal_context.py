"""Pascal Context (60 classes with background, or 59 with ``reduce_zero_label``), as mmsegmentation
prepares it.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

The label PNGs are those written by mmsegmentation's ``tools/dataset_converters/pascal_context.py``
(from ``trainval_merged.json`` with the Detail API); the bundled class table follows *that*
converter's label order (mmsegmentation 1.x ``PascalContextDataset``: the 59 names alphabetically),
which is not the order of the official ``59_labels.txt``. PNGs made by another converter need their
own ``class_table``.
"""
from __future__ import annotations

from typing import ClassVar

from ..params import Param
from .segmentation import SegmentationReader
from .voc import VOCReader


class PascalContextReader(VOCReader):  # the VOC reader's file pairing, Pascal Context's folders and classes
    format = "pascal_context"
    default_table = "pascal_context"
    params: ClassVar[dict[str, Param]] = {
        **SegmentationReader.common_params,
        "reduce_zero_label": Param("bool", False, "drop background: 59 classes (PascalContextDataset59)"),
        "image_dir": Param("str", "JPEGImages", "image folder under root"),
        "label_dir": Param("str", "SegmentationClassContext", "label folder under root"),
        "split_dir": Param("str", "ImageSets/SegmentationContext", "folder of the <split>.txt lists under root"),
    }
    layout = """

    <root>/JPEGImages/<id>.jpg
    <root>/SegmentationClassContext/<id>.png         0 background, 1-59 classes (255 ignored if present)
    <root>/ImageSets/SegmentationContext/<split>.txt one id per line (val: 5,105 images)"""


READER = PascalContextReader()
