"""What the semantic-segmentation readers share: the dataset value, label-map decoding, class tables.

Label maps are decoded as class *indices*: palette PNGs (mode ``P``, VOC and Pascal Context) through
``np.asarray`` of the PIL image, which gives the palette indices, never the colours (the pillow
``unchanged`` decoding of mmsegmentation's ``LoadAnnotations``); greyscale PNGs (mode ``L``) as
they are. ``reduce_zero_label`` is mmsegmentation's: 0 -> 255 (ignored), v -> v - 1, 255 stays 255.

Class tables (``resources/segmentation/<name>.tsv``: ``id``, dataset ``name``, ``prompt`` name, with
their provenance in the header comments) keep the name a dataset uses separate from the name put
into text prompts. Readers whose label maps use id 0 for background (VOC, Pascal Context) require a
table whose row 0 is named ``background``; it is dropped under ``reduce_zero_label``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..errors import DataError
from ..fileio import sha256_json
from ..metrics.segmentation import IGNORE_INDEX
from ..params import Param
from .base import ImageSet, Reader, check_images_exist, check_root, fingerprint

RESOURCES = Path(__file__).with_name("resources") / "segmentation"
LABEL_MODES = ("P", "L", "I", "I;16")


@dataclass
class ClassTable:
    """Class names by label id: ``names`` as the dataset spells them, ``prompts`` for text prompts."""

    names: list[str]
    prompts: list[str]
    source: Path

    def __len__(self) -> int:
        return len(self.names)


def load_class_table(name_or_path: str) -> ClassTable:
    """A bundled table by name (``voc``, ``pascal_context``, ``ade20k``, ``coco_stuff``,
    ``cityscapes``, ``shapes``) or a TSV file with columns ``id``, ``name``, ``prompt`` (ids 0..C-1
    in order; lines starting with ``#`` are comments)."""
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        path = RESOURCES / f"{name_or_path}.tsv"
    if not path.is_file():
        bundled = sorted(p.stem for p in RESOURCES.glob("*.tsv"))
        raise DataError(f"class table {name_or_path!r}: no such file, and not a bundled table; expected a TSV "
                        f"file (id, name, prompt) or one of {bundled}")
    rows = [line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines(True)
            if line.strip() and not line.startswith("#")]
    if not rows or rows[0] != ["id", "name", "prompt"]:
        raise DataError(f"{path}: expected a header line 'id<TAB>name<TAB>prompt', found {rows[:1]}")
    names, prompts = [], []
    for n, row in enumerate(rows[1:]):
        if len(row) != 3 or row[0] != str(n) or not row[2].strip():
            raise DataError(f"{path}: data line {n + 1} is {row!r}; expected '{n}<TAB>name<TAB>prompt' "
                            f"(ids 0..C-1 in order, a non-empty prompt)")
        names.append(row[1])
        prompts.append(row[2].strip())
    if not names:
        raise DataError(f"{path}: the class table has no classes")
    return ClassTable(names, prompts, path)


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """mmsegmentation's ``reduce_zero_label``: 0 -> 255, v -> v - 1, 255 -> 255."""
    out = label.astype(np.int32) - 1
    out[(label == 0) | (label == IGNORE_INDEX)] = IGNORE_INDEX
    return out.astype(label.dtype) if label.dtype == np.uint8 else out


def read_label_map(path: Path, reduce: bool = False) -> np.ndarray:
    """The class-index map [H, W] of a label PNG (palette indices for mode ``P``)."""
    try:
        with Image.open(path) as im:
            if im.mode not in LABEL_MODES:
                raise DataError(f"{path}: label map has PIL mode {im.mode!r}; expected class indices in a palette "
                                f"('P') or greyscale ('L') PNG, not colours")
            label = np.array(im)
    except FileNotFoundError:
        raise DataError(f"{path}: label file is missing") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable label image ({type(e).__name__}: {e})") from None
    if label.ndim != 2:
        raise DataError(f"{path}: label map has shape {label.shape}; expected a single-channel [H, W] map")
    return reduce_zero_label(label) if reduce else label


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header (``DataError`` when unreadable)."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise DataError(f"{path}: image file is missing") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def check_label_map(label: np.ndarray, num_classes: int, path: Path, image_size: tuple[int, int] | None = None,
                    reduced: bool = False) -> None:
    """``DataError`` when the map's size differs from ``image_size`` (w, h) or it holds ids outside
    0..num_classes-1 other than 255."""
    if image_size is not None and (label.shape[1], label.shape[0]) != tuple(image_size):
        raise DataError(f"{path}: label map is {label.shape[1]}x{label.shape[0]} (w x h) but its image is "
                        f"{image_size[0]}x{image_size[1]}; masks must have the image's size")
    values = np.unique(label)
    bad = values[(values != IGNORE_INDEX) & ((values < 0) | (values >= num_classes))]
    if bad.size:
        note = " after reduce_zero_label (stored value = id + 1)" if reduced else ""
        raise DataError(f"{path}: label ids {bad[:10].tolist()} out of range{note}; expected 0..{num_classes - 1} "
                        f"or {IGNORE_INDEX} (ignored) for the {num_classes}-class table")


@dataclass
class SegmentationSet:
    """Images with their label maps; ``classes``/``prompts`` are indexed by label id (after
    ``reduce_zero_label`` when set). ``background_index`` is the id of a scored background class
    (VOC 21, Context 60), ``None`` when the label space has none."""

    images: ImageSet
    labels: list[Path]
    classes: list[str]
    prompts: list[str]
    background_index: int | None
    reduce_zero_label: bool
    fingerprint: str
    n_total: int
    info: dict = field(default_factory=dict)
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def limit(self, n: int | None) -> SegmentationSet:
        """The first ``n`` images (reader order)."""
        if n is None or n >= len(self.images):
            return self
        return SegmentationSet(self.images.subset(range(n)), self.labels[:n], self.classes, self.prompts,
                               self.background_index, self.reduce_zero_label,
                               sha256_json([self.fingerprint, "limit", n]), self.n_total, self.info, self.ignore_index)

    def read_label(self, i: int, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """Decoded (and reduced) label map of sample ``i``, checked against the class table and the
        image size (w, h) when given."""
        label = read_label_map(self.labels[i], self.reduce_zero_label)
        check_label_map(label, self.num_classes, self.labels[i], image_size, self.reduce_zero_label)
        return label


class SegmentationReader(Reader):
    """Base of the segmentation readers: subclasses list (image, label, id) triples in ``_pairs`` and
    name their bundled class table; ``table_has_background`` says whether its row 0 is background."""

    kind = "segmentation"
    default_table: ClassVar[str]
    table_has_background: ClassVar[bool] = False
    fixed_reduce_zero_label: ClassVar[bool | None] = None
    common_params: ClassVar[dict[str, Param]] = {
        "root": Param("path", help="dataset folder"),
        "split": Param("str", "val", "split to evaluate"),
        "class_table": Param("str", None, "class table: a bundled name or a TSV file (id, name, prompt); "
                                          "default: the dataset's bundled table"),
    }

    def _pairs(self, cfg: Mapping[str, Any], root: Path) -> tuple[list[tuple[Path, Path, str]], list[Path]]:
        """(image path, label path, sample id) in order, and the list files that define them."""
        raise NotImplementedError

    def verify(self, cfg) -> list[str]:
        """Layout problems, then decoding problems in up to 20 label maps spread over the split
        (palette indices, ids in range, mask size = image size)."""
        problems = super().verify(cfg)
        if problems:
            return problems
        data = self.load(cfg)
        for i in list(range(0, len(data.images), max(1, len(data.images) // 20)))[:20]:
            try:
                data.read_label(i, image_size(data.images.paths[i]))
            except DataError as e:
                problems.append(str(e))
        return problems

    def load(self, cfg) -> SegmentationSet:
        root = check_root(cfg, self.format)
        pairs, list_files = self._pairs(cfg, root)
        if not pairs:
            raise DataError(f"{self.format}: no images found for split {cfg['split']!r} under {root}")
        images = [p for p, _, _ in pairs]
        labels = [lab for _, lab, _ in pairs]
        check_images_exist(images, f"{self.format} split {cfg['split']!r}")
        missing = [lab for lab in labels if not lab.is_file()]
        if missing:
            raise DataError(f"{self.format} split {cfg['split']!r}: {len(missing)} label map(s) missing, e.g. "
                            f"{', '.join(str(p) for p in missing[:3])}")
        reduce = self.fixed_reduce_zero_label
        if reduce is None:
            reduce = bool(cfg["reduce_zero_label"])
        table = load_class_table(cfg.get("class_table") or self.default_table)
        names, prompts = list(table.names), list(table.prompts)
        if self.table_has_background and names[0].strip().lower() != "background":
            raise DataError(f"{table.source}: row 0 is {names[0]!r}, but {self.format} label maps use id 0 for "
                            f"background; expected a table whose first data line is '0<TAB>background<TAB>...' "
                            f"(class ids 1..C-1 follow)")
        background = 0 if self.table_has_background else None
        if reduce and self.table_has_background:
            names, prompts, background = names[1:], prompts[1:], None
        fp = fingerprint(self.format, [table.source, *list_files], images + labels, root,
                         {"split": cfg["split"], "reduce_zero_label": reduce, "classes": names, "prompts": prompts})
        info = {"root": str(root), "split": cfg["split"], "class_table": str(table.source),
                "reduce_zero_label": reduce, "num_classes": len(names)}
        return SegmentationSet(ImageSet(images, [i for _, _, i in pairs], fp), labels, names, prompts, background,
                               reduce, fp, len(pairs), info)


def read_list_file(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of the non-empty lines of an ``ImageSets/...`` list file."""
    if not path.is_file():
        raise DataError(f"{what}: split list {path} is missing")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    return [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]


def files_with_suffix(folder: Path, suffix: str, what: str) -> list[Path]:
    """Files under ``folder`` (recursively) whose name ends with ``suffix``, sorted by path."""
    if not folder.is_dir():
        raise DataError(f"{what}: folder {folder} does not exist")
    return sorted(p for p in folder.rglob(f"*{suffix}") if p.is_file())


def paired_by_stem(images: Sequence[Path], image_suffix: str, label_dir: Path, label_suffix: str,
                   image_dir: Path) -> list[tuple[Path, Path, str]]:
    """(image, label, id) for images ``<image_dir>/<rel>/<stem><image_suffix>`` with labels
    ``<label_dir>/<rel>/<stem><label_suffix>`` (the mmsegmentation folder convention)."""
    out = []
    for img in images:
        rel = img.relative_to(image_dir)
        stem = rel.name[: -len(image_suffix)]
        out.append((img, label_dir / rel.parent / f"{stem}{label_suffix}", str(rel.parent / stem)))
    return out
