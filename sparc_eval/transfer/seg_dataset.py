"""An mmsegmentation dataset that lists its (image, label map) pairs through a sparc-eval reader.

So the segmentation transfer tasks read VOC, ADE20K, Pascal Context, COCO-Stuff, Cityscapes and the
shapes world exactly as the zero-shot segmentation tasks do (same readers, same checks, same class
tables and ``reduce_zero_label``), while mmseg's pipeline loads and augments the files (label PNGs
with pillow ``unchanged`` decoding: palette indices, never colours). ``reader_cfg`` is the resolved
``dataset:`` mapping of a task (plain values, so the config stays text).
"""
from __future__ import annotations

from mmseg.datasets import BaseSegDataset

from ..data.base import get_reader


class ReaderSegDataset(BaseSegDataset):
    """``BaseSegDataset`` whose data list comes from ``get_reader(reader_cfg['format']).load(reader_cfg)``."""

    def __init__(self, reader_cfg: dict, **kwargs):
        self.reader_cfg = dict(reader_cfg)
        super().__init__(**kwargs)

    def load_data_list(self) -> list[dict]:
        data = get_reader(self.reader_cfg["format"]).load(self.reader_cfg)
        return [{"img_path": str(img), "seg_map_path": str(label), "label_map": self.label_map,
                 "reduce_zero_label": self.reduce_zero_label, "seg_fields": []}
                for img, label in zip(data.images.paths, data.labels, strict=True)]
