"""CIFAR-10 and CIFAR-100 from the official python-pickle batches (Krizhevsky 2009).

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

The batches are data, not code: they are read with an unpickler that admits only the globals the
official files contain (numpy's array reconstructor, ``ndarray`` and ``dtype``); anything else is
refused before it runs. The engine reads images by path, so each split's images are written once
as PNG (lossless) into a content-addressed folder of the cache (``<cache>/extracted/cifar/<digest>``,
keyed by the batch files' sha256, written atomically). Class names: CLIP's lists (shipped; the
official label names with ``_`` read as a space), ``meta`` for the file's own names, or a file.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from ..fileio import sha256_file, sha256_json
from ..params import Param
from .base import ImageSet, Reader, check_root, fingerprint
from .classification import ClassificationSet, cached_folder, classnames_override, resource_lines

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 1.26
    from numpy.core.multiarray import _reconstruct

_ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
FILES = {
    "cifar10": {"folder": "cifar-10-batches-py", "meta": "batches.meta", "names_key": "label_names",
                "labels_key": "labels", "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"],
                "n_classes": 10},
    "cifar100": {"folder": "cifar-100-python", "meta": "meta", "names_key": "fine_label_names",
                 "labels_key": "fine_labels", "train": ["train"], "test": ["test"], "n_classes": 100},
}


class _Refused(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise _Refused(f"global {module}.{name} is not allowed in a CIFAR batch")


def load_batch(path: Path) -> dict:
    """One CIFAR pickle as a dict with ``str`` keys; ``DataError`` for anything but plain data."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read CIFAR batch ({e.strerror})") from None
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _Refused as e:
        raise DataError(f"{path}: refused to load ({e}); expected an official CIFAR python batch") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{path}: not a CIFAR python batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    out = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    for k, v in out.items():
        if isinstance(v, np.ndarray) and v.dtype.hasobject:
            raise DataError(f"{path}: field {k!r} is an object array; expected plain numbers")
    return out


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _locate(root: Path, variant: str) -> tuple[str, Path]:
    options = [variant] if variant != "auto" else list(FILES)
    for v in options:
        spec = FILES[v]
        for folder in (root / spec["folder"], root):
            if (folder / spec["meta"]).is_file() and all((folder / f).is_file() for f in spec["test"]):
                return v, folder
    expected = " or ".join(f"{root / FILES[v]['folder']}/{FILES[v]['meta']}" for v in options)
    raise DataError(f"cifar: no CIFAR python batches under {root}; expected {expected}")


def read_split(folder: Path, variant: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str], list[Path]]:
    """(images [N, 32, 32, 3] uint8, labels [N] in [0, n_classes), label names from meta, batch files) of a
    split; ``DataError`` naming the file whose content is off."""
    spec = FILES[variant]
    n_classes = spec["n_classes"]
    meta_path = folder / spec["meta"]
    meta = load_batch(meta_path)
    if spec["names_key"] not in meta:
        raise DataError(f"{meta_path}: missing field {spec['names_key']!r}; found {sorted(meta)}")
    names = [_text(n) for n in meta[spec["names_key"]]]
    if len(names) != n_classes:
        raise DataError(f"{meta_path}: {spec['names_key']!r} lists {len(names)} classes; expected {n_classes} "
                        f"for {variant}")
    files = [folder / f for f in spec[split]]
    images, labels = [], []
    for f in files:
        batch = load_batch(f)
        if "data" not in batch or spec["labels_key"] not in batch:
            raise DataError(f"{f}: missing field(s) 'data'/{spec['labels_key']!r}; found {sorted(batch)}")
        data = np.asarray(batch["data"])
        y = np.asarray(batch[spec["labels_key"]], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(y) != data.shape[0]:
            raise DataError(f"{f}: 'data' has dtype {data.dtype} and shape {data.shape} with {len(y)} labels; "
                            f"expected uint8 [N, 3072] and N labels")
        bad = np.flatnonzero((y < 0) | (y >= n_classes))
        if bad.size:
            raise DataError(f"{f}: label {int(y[bad[0]])} of image {int(bad[0])} is outside [0, {n_classes})")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels), names, files


def extract_pngs(images: np.ndarray, digest: str) -> list[Path]:
    """Each image as ``<cache>/extracted/cifar/<digest>/<i>.png``, written once (see ``cached_folder``)."""
    names = [f"{i:05d}.png" for i in range(len(images))]

    def fill(folder: Path) -> None:
        for name, img in zip(names, images):
            Image.fromarray(img, "RGB").save(folder / name)

    folder = cached_folder("cifar", digest, fill)
    return [folder / n for n in names]


class CifarReader(Reader):
    format = "cifar"
    kind = "classification"
    params = {
        "root": Param("path", help="folder holding cifar-10-batches-py/ or cifar-100-python/"),
        "variant": Param("str", "auto", "cifar10, cifar100 or auto (detected from the files)",
                         choices=("auto", "cifar10", "cifar100")),
        "split": Param("str", "test", "train or test", choices=("train", "test")),
        "classnames": Param("str", "", "'' = CLIP's names (shipped), 'meta' = the batch file's label names, "
                                       "or a class-name file"),
    }
    layout = """

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}
    (or those files directly in <root>)"""

    def load(self, cfg) -> ClassificationSet:
        root = check_root(cfg, "cifar")
        variant, folder = _locate(root, cfg["variant"])
        split = cfg["split"]
        missing = [f for f in FILES[variant][split] if not (folder / f).is_file()]
        if missing:
            raise DataError(f"cifar: {folder} has no {split} batch file(s) {missing}")
        images, labels, meta_names, files = read_split(folder, variant, split)
        if cfg["classnames"] == "meta":
            names = meta_names
        else:
            names = classnames_override(cfg, root, len(meta_names), "cifar") or resource_lines(f"{variant}_classnames.txt")
        digest = sha256_json([variant, split, [sha256_file(f) for f in files]])
        paths = extract_pngs(images, digest)
        base = paths[0].parent if paths else folder
        ids = [f"{split}/{i:05d}" for i in range(len(paths))]
        image_set = ImageSet(paths, ids, fingerprint("cifar", files, paths, base, {"variant": variant, "split": split}))
        fp = sha256_json({"images": image_set.fingerprint, "labels": labels.tolist(), "classnames": names})
        return ClassificationSet(image_set, labels, names, fp, len(paths),
                                 info={"variant": variant, "split": split, "batches": str(folder)})


READER = CifarReader()
