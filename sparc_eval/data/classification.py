"""The value classification readers return, class-name files, and the shipped class/template lists.

``ClassificationSet`` is to classification what ``RetrievalSet`` is to retrieval: images (by path,
decoded later by the engine), one integer label per image in ``[0, len(classnames))`` and the class
names in label order. Shipped lists (``resources/classification/``, provenance in its README) are
read with ``resource_lines``; user class-name files (one name per line) with ``read_lines``.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..fileio import cache_root, sha256_json
from .base import ImageSet

RESOURCES = Path(__file__).resolve().parent / "resources" / "classification"


@dataclass
class ClassificationSet:
    """Single-label images. ``labels[i]`` is image i's class index into ``classnames``.

    ``clusters`` (default: the image ids) groups images for the bootstrap, e.g. the 75 corrupted
    copies of one ImageNet-C image; ``subsets`` maps a subset name (``gaussian_noise``,
    ``severity_3``) to a boolean mask [N] of its images; ``templates`` are prompt templates shipped
    with the data (CLIP_benchmark WebDataset folders), used when a task asks for ``templates: dataset``.
    """

    images: ImageSet
    labels: np.ndarray
    classnames: list[str]
    fingerprint: str
    n_total: int = 0
    templates: list[str] | None = None
    clusters: list[str] | None = None
    subsets: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels has shape {self.labels.shape}, expected ({len(self.images)},)")
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.classnames)):
            raise ValueError(f"labels outside [0, {len(self.classnames)})")

    @property
    def n_classes(self) -> int:
        return len(self.classnames)

    def cluster_ids(self) -> list[str]:
        return list(self.images.ids) if self.clusters is None else list(self.clusters)

    def subset(self, indices: Sequence[int]) -> ClassificationSet:
        """The images at ``indices`` (in that order), with their labels, clusters and subset masks."""
        idx = np.asarray(list(indices), dtype=np.int64)
        images = self.images.subset(idx.tolist())
        fp = self.fingerprint if images.fingerprint == self.images.fingerprint else sha256_json(
            [self.fingerprint, "subset", images.fingerprint])
        return ClassificationSet(images, self.labels[idx], self.classnames, fp, self.n_total,
                                 self.templates, None if self.clusters is None else [self.clusters[i] for i in idx],
                                 {k: v[idx] for k, v in self.subsets.items()}, self.info)

    def limit(self, n: int | None) -> ClassificationSet:
        """``n`` images evenly spaced over the reader order (so class-sorted folders keep every class
        when n >= the class count); the whole set when n is None or >= its size."""
        if n is None or n >= len(self.images):
            return self
        return self.subset(np.linspace(0, len(self.images) - 1, n).round().astype(np.int64))


def resource_path(name: str) -> Path:
    """A shipped list under ``resources/classification`` by file name."""
    return RESOURCES / name


def resource_lines(name: str) -> list[str]:
    """The lines of a shipped list (``imagenet1k_wnids.txt``, ``templates_openai_imagenet.txt``...)."""
    return read_lines(resource_path(name), "shipped list")


def read_lines(path: Path, what: str) -> list[str]:
    """Non-empty lines of a UTF-8 text file, stripped; ``DataError`` naming the file when unusable."""
    if not path.is_file():
        raise DataError(f"{what}: file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{what}: {path} is not a UTF-8 text file") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{what}: {path} is empty; expected one entry per line")
    return lines


def resolve_file(value: str, root: Path) -> Path:
    """A user-given file: absolute (or ``~``) as is; relative to the dataset root when it exists
    there, else relative to the working directory."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    return root / p if (root / p).exists() else p


def classnames_override(cfg: Mapping[str, Any], root: Path, n_classes: int, where: str) -> list[str] | None:
    """The ``classnames`` file of a reader config (one name per line, label order), checked to
    hold exactly ``n_classes`` names; None when the config leaves it empty."""
    value = cfg.get("classnames") or ""
    if not value:
        return None
    path = resolve_file(str(value), root)
    names = read_lines(path, f"{where}: dataset.classnames")
    if len(names) != n_classes:
        raise DataError(f"{where}: dataset.classnames {path} lists {len(names)} class names but the dataset has "
                        f"{n_classes} classes; expected one name per class, in label order")
    return names


def subset_masks(groups: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """``{"corruption": ["fog", "snow", ...]}`` style per-image tags -> ``{"fog": mask, ...}``."""
    out: dict[str, np.ndarray] = {}
    for tags in groups.values():
        arr = np.asarray(list(tags))
        for tag in dict.fromkeys(tags):
            out[str(tag)] = arr == tag
    return out


def cached_folder(kind: str, digest: str, fill: Callable[[Path], None]) -> Path:
    """``<cache>/extracted/<kind>/<digest>``, filled once by ``fill(folder)``: it writes into a temp
    folder that is renamed into place, so a killed run or a concurrent one never sees half of it."""
    target = cache_root() / "extracted" / kind / digest
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{digest[:12]}-"))
    try:
        fill(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
