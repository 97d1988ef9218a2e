"""Dataset values handed from readers to task types, the reader contract, and the format registry.

A reader (one module per on-disk format, ``sparc_eval/data/<format>.py`` with a module-level
``READER``) declares its ``dataset.*`` parameters, the kind of value it returns (``retrieval``,
``classification``, ...), and the layout it expects (printed by ``data verify`` and the README).
Plugins add formats through the ``sparc_eval.datasets`` entry-point group.

Images are referenced by path and decoded later by the engine; a *fingerprint* identifies the data
(annotation file hashes plus each used image's relative path and size, not image bytes, so
fingerprinting ImageNet takes seconds) and keys the embedding cache and the results.
"""
from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import DataError
from ..fileio import sha256_file, sha256_json
from ..params import Param
from ..registry import Registry

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


@dataclass
class ImageSet:
    """Images in a fixed, deterministic order. ``boxes`` optionally crops each image (x, y, w, h)."""

    paths: list[Path]
    ids: list[str]
    fingerprint: str
    boxes: list[tuple[float, float, float, float] | None] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int]) -> ImageSet:
        idx = list(indices)
        fp = self.fingerprint if idx == list(range(len(self))) else sha256_json([self.fingerprint, idx])
        return ImageSet([self.paths[i] for i in idx], [self.ids[i] for i in idx], fp,
                        None if self.boxes is None else [self.boxes[i] for i in idx])


@dataclass
class RetrievalSet:
    """Images and captions; ``caption_image[j]`` is the index of caption j's image. Every caption of
    every image is kept (Karpathy files have images with more than 5)."""

    images: ImageSet
    captions: list[str]
    caption_image: np.ndarray
    caption_ids: list[str]
    fingerprint: str
    n_total_images: int = 0
    info: dict = field(default_factory=dict)

    def limit(self, n: int | None) -> RetrievalSet:
        """The first ``n`` images (in reader order) with all their captions."""
        if n is None or n >= len(self.images):
            return self
        keep = self.caption_image < n
        return RetrievalSet(self.images.subset(range(n)), [c for c, k in zip(self.captions, keep) if k],
                            self.caption_image[keep], [c for c, k in zip(self.caption_ids, keep) if k],
                            sha256_json([self.fingerprint, "limit", n]), self.n_total_images, self.info)


class Reader:
    """Base of on-disk format readers. Subclasses set ``format``, ``kind`` (one kind, or several
    joined by ``|``), ``params``, ``layout`` and implement ``load``; ``verify`` defaults to loading
    and checking every image file exists."""

    format: ClassVar[str]
    kind: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}
    layout: ClassVar[str] = ""

    def load(self, cfg: Mapping[str, Any]):
        """The dataset value for the validated ``cfg``. Readers that can may take a keyword
        ``check_images: bool = True``; tasks that never decode images (scoring a captions file)
        pass False, so the annotations alone suffice."""
        raise NotImplementedError

    def load_for(self, cfg: Mapping[str, Any], needs_images: bool = True):
        """``load``, skipping the image-existence check when images are not needed and the reader
        supports it."""
        if not needs_images and "check_images" in inspect.signature(self.load).parameters:
            return self.load(cfg, check_images=False)
        return self.load(cfg)

    def verify(self, cfg: Mapping[str, Any]) -> list[str]:
        """Problems found (empty when the dataset is usable)."""
        try:
            data = self.load(cfg)
        except DataError as e:
            return [str(e)]
        images = getattr(data, "images", None)
        if isinstance(images, ImageSet):
            # shard members (tar_index.TarMember) were found by indexing their shard: no file to stat
            return [f"{p}: image file is missing" for p in images.paths if isinstance(p, Path) and not p.is_file()][:50]
        return []


def check_root(cfg: Mapping[str, Any], what: str) -> Path:
    """``cfg['root']`` as an existing folder, or a ``DataError`` naming it."""
    root = Path(str(cfg["root"])).expanduser()
    if not root.is_dir():
        raise DataError(f"{what}: data folder {root} does not exist (set --data-root or SPARC_EVAL_DATA, or "
                        f"--param root=...); run `sparc-eval data verify` to see the expected layout")
    return root


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON annotation file with errors that name the file and position."""
    if not path.is_file():
        raise DataError(f"{what}: annotation file {path} is missing")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno} ({e.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None


def require_fields(obj: Any, fields: Sequence[str], where: str) -> None:
    if not isinstance(obj, Mapping):
        raise DataError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    missing = [f for f in fields if f not in obj]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}; found {sorted(obj)[:12]}")


def check_images_exist(paths: Sequence[Path], what: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{what}: {len(missing)} image file(s) missing: "
                        f"{', '.join(str(p) for p in missing[:5])}{more}")


def fingerprint(fmt: str, annotation_files: Sequence[Path], images: Sequence[Path], root: Path,
                extra: Any = None) -> str:
    """Identity of a dataset view: format, annotation bytes, image relative paths and sizes."""
    listing = []
    for p in images:
        try:
            size = p.stat().st_size
        except OSError:
            size = -1
        try:
            rel = str(p.relative_to(root))
        except ValueError:
            rel = str(p)
        listing.append((rel, size))
    return sha256_json({"format": fmt, "annotations": [sha256_file(f) for f in annotation_files],
                        "images": listing, "extra": extra})


READERS: Registry[Reader] = Registry("dataset format", "sparc_eval.datasets", {
    "ade20k": "sparc_eval.data.ade20k:READER",
    "aro": "sparc_eval.data.aro:READER",
    "cb_flickr": "sparc_eval.data.cb_flickr:READER",
    "cb_mscoco": "sparc_eval.data.cb_mscoco:READER",
    "cifar": "sparc_eval.data.cifar:READER",
    "cityscapes": "sparc_eval.data.cityscapes:READER",
    "coco_captions": "sparc_eval.data.coco_captions:READER",
    "coco_instances": "sparc_eval.data.coco_instances:READER",
    "coco_stuff": "sparc_eval.data.coco_stuff:READER",
    "csv_classification": "sparc_eval.data.csv_classification:READER",
    "csv_retrieval": "sparc_eval.data.csv_retrieval:READER",
    "imagefolder": "sparc_eval.data.imagefolder:READER",
    "imagenet": "sparc_eval.data.imagenet:READER",
    "karpathy": "sparc_eval.data.karpathy:READER",
    "pascal_context": "sparc_eval.data.pascal_context:READER",
    "sugarcrepe": "sparc_eval.data.sugarcrepe:READER",
    "voc": "sparc_eval.data.voc:READER",
    "wds": "sparc_eval.data.wds:READER",
    "winoground": "sparc_eval.data.winoground:READER",
}, base=Reader, name_attr="format")


def get_reader(fmt: str) -> Reader:
    """The reader for a ``dataset.format`` name."""
    return READERS.get(fmt)


def formats() -> dict[str, Reader]:
    """Every known format (imports all reader modules; used for listings and error messages)."""
    return READERS.all()
