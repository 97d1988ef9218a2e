"""Any ImageFolder (torchvision layout): one sub-folder per class, images inside (searched recursively).

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

Labels follow torchvision's ``ImageFolder``: class folders sorted by name, files sorted within each.
Class names: the folder names, or the ``classnames`` file. When every folder name is in the file,
folders are paired by name and the file's order is the label order (the shapes world's
``classnames.txt``); listed classes without a folder have no images in this split but stay in the
classifier. Otherwise line i names the i-th folder in sorted order, and the counts must agree. A class
folder without images is an error, as is a name list that matches only some folders.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileio import sha256_json
from ..params import Param
from .base import IMAGE_SUFFIXES, ImageSet, Reader, check_root, fingerprint
from .classification import ClassificationSet, read_lines, resolve_file


def walk_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, following links), in torchvision's order."""
    out = []
    for dirpath, _, files in sorted(os.walk(folder, followlinks=True)):
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                out.append(Path(dirpath) / name)
    return out


def class_folders(split_root: Path) -> list[str]:
    """Sorted names of the (non-hidden) sub-folders of ``split_root``."""
    return sorted(p.name for p in split_root.iterdir() if p.is_dir() and not p.name.startswith("."))


def images_by_class(split_root: Path, folders: list[str]) -> dict[str, list[Path]]:
    """Images of each class folder; a ``DataError`` names the first folder without images."""
    found = {f: walk_images(split_root / f) for f in folders}
    empty = [f for f, paths in found.items() if not paths]
    if empty:
        raise DataError(f"{split_root / empty[0]}: class folder has no images (looked for "
                        f"{', '.join(IMAGE_SUFFIXES)}){f'; {len(empty) - 1} more empty folder(s)' if len(empty) > 1 else ''}")
    return found


def image_set(split_root: Path, ordered: list[tuple[int, list[Path]]], fmt: str, extra=None) -> tuple[ImageSet, np.ndarray]:
    """ImageSet (ids = paths relative to ``split_root``) and labels from ``[(label, paths), ...]``."""
    paths = [p for _, ps in ordered for p in ps]
    labels = np.asarray([label for label, ps in ordered for _ in ps], dtype=np.int64)
    ids = [p.relative_to(split_root).as_posix() for p in paths]
    return ImageSet(paths, ids, fingerprint(fmt, [], paths, split_root, extra)), labels


def pair_names(folders: list[str], names: list[str], source: Path) -> list[int]:
    """Label of each sorted folder given a class-name list (see the module docstring)."""
    if set(folders) <= set(names):
        index = {n: i for i, n in enumerate(names)}
        return [index[f] for f in folders]
    shared = set(names) & set(folders)
    if shared:
        missing = sorted(set(folders) - set(names))[:5]
        raise DataError(f"{source}: class names match only {len(shared)} of {len(folders)} class folders "
                        f"(folders not listed: {missing}); list every folder name, or give names in sorted "
                        f"folder order")
    if len(names) != len(folders):
        raise DataError(f"{source} lists {len(names)} class names but the dataset has {len(folders)} class "
                        f"folders; expected one name per folder")
    return list(range(len(folders)))


class ImageFolderReader(Reader):
    format = "imagefolder"
    kind = "classification"
    params = {
        "root": Param("path", help="dataset folder"),
        "split": Param("str", "", "sub-folder of root holding the class folders ('' = root itself)"),
        "classnames": Param("str", "", "class-name file, one per line (relative to root or absolute); "
                                       "'' = the folder names"),
    }
    layout = """

    <root>/<split>/<class>/**/<image>.{jpg,jpeg,png,webp,...}   split '' = class folders directly in root
    <root>/classnames.txt          optional (dataset.classnames): one class name per line"""

    def load(self, cfg) -> ClassificationSet:
        root = check_root(cfg, "imagefolder")
        split_root = root / cfg["split"] if cfg["split"] else root
        if not split_root.is_dir():
            raise DataError(f"imagefolder: split folder {split_root} does not exist (dataset.split={cfg['split']!r})")
        folders = class_folders(split_root)
        if not folders:
            raise DataError(f"{split_root}: no class folders; expected <class>/<image> sub-folders")
        by_class = images_by_class(split_root, folders)
        if cfg["classnames"]:
            source = resolve_file(cfg["classnames"], root)
            names = read_lines(source, "imagefolder: dataset.classnames")
            labels = pair_names(folders, names, source)
        else:
            source, names, labels = None, folders, list(range(len(folders)))
        ordered = sorted(((labels[i], by_class[f]) for i, f in enumerate(folders)), key=lambda t: t[0])
        images, y = image_set(split_root, ordered, "imagefolder")
        fp = sha256_json({"images": images.fingerprint, "labels": y.tolist(), "classnames": names})
        return ClassificationSet(images, y, names, fp, len(images),
                                 info={"root": str(split_root), "classnames_file": str(source) if source else None})


READER = ImageFolderReader()
