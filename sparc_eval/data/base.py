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
import posixpath
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import DataError, DataIntegrityError
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
        """Problems found (empty when the dataset is usable). A ``DataIntegrityError`` (a corrupt
        or hostile file, not a missing one) is raised, not listed."""
        try:
            data = self.load(cfg)
        except DataIntegrityError:
            raise
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


def _unique_keys(path: Path) -> Callable[[list[tuple[str, Any]]], dict]:
    """A ``json.load`` object hook refusing an object with a key twice (json would keep the last)."""
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        out = dict(pairs)
        if len(out) != len(pairs):
            seen: set[str] = set()
            key = next(k for k, _ in pairs if k in seen or seen.add(k))
            raise DataIntegrityError(f"{path}: key {key!r} appears twice in one JSON object (keys "
                                     f"{[k for k, _ in pairs][:8]}); expected each key once (a JSON reader "
                                     f"would silently keep only the last)")
        return out
    return hook


def read_json(path: Path, what: str, unique_keys: bool = False) -> Any:
    """Parse a JSON annotation file with errors that name the file and position. ``unique_keys``: an
    object with a key twice is a ``DataIntegrityError`` (for files whose keys are sample ids, such as
    SugarCrepe's item indices; off by default, as it doubles the parse time of large files)."""
    if not path.is_file():
        raise DataError(f"{what}: annotation file {path} is missing")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=_unique_keys(path) if unique_keys else None)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno} ({e.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise DataIntegrityError(f"{path}: JSON nested too deeply to read (arrays or objects inside each other "
                                 f"thousands of levels deep); expected an annotation file") from None


def require_fields(obj: Any, fields: Sequence[str], where: str) -> None:
    if not isinstance(obj, Mapping):
        raise DataError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    missing = [f for f in fields if f not in obj]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}; found {sorted(obj)[:12]}")


def require_str(value: Any, where: str, what: str = "a string") -> str:
    """``value`` when it is a non-empty (not whitespace-only) string; a ``DataIntegrityError``
    naming ``where`` (file and field) otherwise."""
    if not isinstance(value, str):
        raise DataIntegrityError(f"{where}: expected {what}, found {type(value).__name__} {value!r:.60}")
    if not value.strip():
        raise DataIntegrityError(f"{where}: expected {what}, found an empty string {value!r}")
    return value


def require_id(value: Any, where: str) -> str:
    """A sample id (an integer or a non-empty string) as a string; ``DataIntegrityError`` for
    booleans, floats, null, lists and empty strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    raise DataIntegrityError(f"{where}: expected an id (an integer or a non-empty string), found "
                             f"{type(value).__name__} {value!r:.60}")


def check_caption(text: Any, where: str) -> str:
    """``text`` unchanged when it is a caption with something other than whitespace in it; an empty,
    whitespace-only or non-string caption is a ``DataIntegrityError`` (it would be encoded and scored)."""
    if not isinstance(text, str):
        raise DataIntegrityError(f"{where}: caption must be a string, found {type(text).__name__} {text!r:.60}")
    if not text.strip():
        raise DataIntegrityError(f"{where}: empty caption {text!r}; expected text to encode")
    return text


def check_unique(values: Sequence[Hashable], what: str, where: str,
                 entry: Callable[[int], str] = lambda i: f"entry {i}") -> None:
    """``DataIntegrityError`` naming the first value of ``values`` that occurs twice and both of its
    entries (``entry(i)`` describes position i, e.g. ``images[3]``)."""
    first: dict[Hashable, int] = {}
    for i, v in enumerate(values):
        j = first.setdefault(v, i)
        if j != i:
            raise DataIntegrityError(f"{where}: {what} {v!r} is listed twice ({entry(j)} and {entry(i)}); "
                                     f"expected each {what} once")


def safe_rel(rel: str, base: Path, where: str, allow_outside: bool = False) -> str:
    """``rel``, a path read from a dataset file, normalised lexically (``a/x/../b`` is ``a/b``, ``\\``
    is ``/``), so that what is opened is what was checked. Symbolic links are never resolved, so a
    dataset tree of links still works. An absolute ``rel`` (``/x``, ``C:\\x``, ``\\\\host``) or one that
    leaves ``base`` through ``..`` after normalisation is a ``DataIntegrityError`` naming ``where``,
    unless ``allow_outside`` (``dataset.allow_outside_root``, ``--allow-outside-root``: then ``rel``
    is returned as written)."""
    if "\x00" in rel:
        raise DataIntegrityError(f"{where}: path {rel!r} contains a NUL character; expected a file path")
    if allow_outside:
        return rel
    text = rel.replace("\\", "/")
    norm = posixpath.normpath(text)
    if text.startswith("/") or (len(text) > 1 and text[1] == ":" and text[0].isalpha()):
        problem = "is absolute"
    elif norm == ".." or norm.startswith("../"):
        problem = f"leads out of {base} through '..'"
    else:
        return norm
    raise DataIntegrityError(f"{where}: path {rel!r} {problem}; expected a path relative to {base} that stays "
                             f"inside it (--allow-outside-root, or --param allow_outside_root=true, reads it "
                             f"anyway)")


def safe_join(base: Path, rel: str, where: str, allow_outside: bool = False) -> Path:
    """``base / safe_rel(rel, ...)``: a file named by a dataset file, checked to stay inside ``base``."""
    return base / safe_rel(rel, base, where, allow_outside)


def path_key(rel: str) -> str:
    """A relative path normalised lexically (``a/./b``, ``a/x/../b`` and ``a\\b`` are all ``a/b``), for
    finding one image listed twice under different spellings."""
    return posixpath.normpath(rel.replace("\\", "/"))


def allow_outside_root(cfg: Mapping[str, Any]) -> bool:
    """The common ``dataset.allow_outside_root`` switch (default false)."""
    return bool(cfg.get("allow_outside_root", False))


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
