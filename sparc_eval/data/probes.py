"""Dataset values of the compositional probes: caption selection (SugarCrepe, ARO) and Winoground.

A ``CaptionSelectionSet`` holds items of one image and K candidate captions, one of them right; a
``WinogroundSet`` holds 2x2 items (two images, two captions, caption i belongs to image i). Images
are referenced by index into an ``ImageSet`` (a box, when set, crops the image before encoding).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..fileio import sha256_json
from .base import ImageSet


@dataclass
class CaptionItem:
    """``options[correct]`` is the right caption of image ``image``; ``category`` groups items for
    per-category and macro accuracies; ``cluster`` names the source image for bootstrap resampling
    when several entries of the ``ImageSet`` come from one file (ARO's per-item box crops; ``None``:
    the image's id)."""

    id: str
    image: int
    options: list[str]
    correct: int
    category: str
    cluster: str | None = None


@dataclass
class CaptionSelectionSet:
    """``excluded_categories`` are left out of the macro mean by the benchmark's protocol (ARO's
    symmetric VG relations)."""

    images: ImageSet
    items: list[CaptionItem]
    fingerprint: str
    n_total: int
    info: dict = field(default_factory=dict)
    excluded_categories: list[str] = field(default_factory=list)

    def limit(self, n: int | None) -> CaptionSelectionSet:
        """The first ``n`` items, with only the images they use."""
        if n is None or n >= len(self.items):
            return self
        items = self.items[:n]
        used = list(dict.fromkeys(it.image for it in items))
        remap = {old: new for new, old in enumerate(used)}
        kept = [dataclasses.replace(it, image=remap[it.image]) for it in items]
        return CaptionSelectionSet(self.images.subset(used), kept, sha256_json([self.fingerprint, "limit", n]),
                                   self.n_total, self.info, self.excluded_categories)


@dataclass
class WinogroundItem:
    """Caption ``captions[k]`` belongs to image ``images[k]``; ``tags`` holds the item's metadata."""

    id: str
    images: tuple[int, int]
    captions: tuple[str, str]
    tags: dict = field(default_factory=dict)


@dataclass
class WinogroundSet:
    images: ImageSet
    items: list[WinogroundItem]
    fingerprint: str
    n_total: int
    info: dict = field(default_factory=dict)

    def limit(self, n: int | None) -> WinogroundSet:
        """The first ``n`` items with their images."""
        if n is None or n >= len(self.items):
            return self
        items = self.items[:n]
        used = list(dict.fromkeys(i for it in items for i in it.images))
        remap = {old: new for new, old in enumerate(used)}
        kept = [WinogroundItem(it.id, (remap[it.images[0]], remap[it.images[1]]), it.captions, it.tags) for it in items]
        return WinogroundSet(self.images.subset(used), kept, sha256_json([self.fingerprint, "limit", n]), self.n_total,
                             self.info)


def unique_images(keys: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Distinct keys in first-seen order and the index of each."""
    order = list(dict.fromkeys(keys))
    return order, {k: i for i, k in enumerate(order)}
