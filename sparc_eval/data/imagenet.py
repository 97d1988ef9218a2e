"""ImageNet-1k and its evaluation variants (V2, Sketch, R, A, C), labelled by WordNet id.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

Labels are indices into the 1000 WordNet ids in sorted order (= the order of the OpenAI class-name
list and of torchvision's ``ImageFolder`` on wnid folders); ImageNet-V2 folders are read as
``int(folder name)``, never in ``ImageFolder``'s lexicographic order ("0, 1, 10, 100, ...").
ImageNet-R/-A/-O keep only their 200 classes (the classifier has 200 rows, in sorted-wnid order).
ImageNet-C images carry subsets ``<corruption>`` and ``severity_<s>``; the 75 copies of one
validation image form one bootstrap cluster. Class names: OpenAI's ImageNet names (shipped), or
``dataset.classnames``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, DataIntegrityError
from ..fileio import sha256_json
from ..params import Param
from .base import Reader, allow_outside_root, check_root, path_key, require_str, safe_join
from .classification import ClassificationSet, classnames_override, resource_lines, subset_masks
from .imagefolder import class_folders, image_set, images_by_class

VARIANTS = ("imagenet", "v2", "sketch", "r", "a", "o", "c")
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
SEVERITIES = (1, 2, 3, 4, 5)


def wnids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in sorted order (label i = wnids()[i])."""
    return resource_lines("imagenet1k_wnids.txt")


def classnames() -> list[str]:
    """OpenAI's 1000 ImageNet class names, in label order."""
    return resource_lines("imagenet1k_classnames.txt")


def subset_wnids(variant: str) -> list[str]:
    """The 200 wnids of ImageNet-R (``r``), ImageNet-A (``a``) or ImageNet-O (``o``), sorted."""
    return resource_lines(f"imagenet_{variant}_wnids.txt")


def _wnid_classes(folder: Path, allowed: dict[str, int], what: str) -> list[tuple[int, list[Path]]]:
    """(label, images) of each wnid folder under ``folder``; unknown folder names are errors."""
    folders = class_folders(folder)
    if not folders:
        raise DataError(f"{folder}: no class folders; expected <wnid>/<image> sub-folders ({what})")
    unknown = [f for f in folders if f not in allowed]
    if unknown:
        raise DataError(f"{folder}: folder(s) {unknown[:5]} are not {what} WordNet ids (expected names like "
                        f"{next(iter(allowed))})")
    by_class = images_by_class(folder, folders)
    return sorted(((allowed[f], by_class[f]) for f in folders), key=lambda t: t[0])


def _v2_classes(folder: Path) -> list[tuple[int, list[Path]]]:
    folders = class_folders(folder)
    if not folders:
        raise DataError(f"{folder}: no class folders; expected ImageNet-V2 folders named 0..999")
    bad = [f for f in folders if not (f.isdigit() and int(f) < 1000 and str(int(f)) == f)]
    if bad:
        raise DataError(f"{folder}: ImageNet-V2 folder(s) {bad[:5]} are not class indices 0..999")
    by_class = images_by_class(folder, folders)
    return sorted(((int(f), by_class[f]) for f in folders), key=lambda t: t[0])


def _flat_csv(folder: Path, csv_path: Path, index: dict[str, int],
              allow_outside: bool = False) -> list[tuple[int, list[Path]]]:
    """Kaggle layout: flat images + ``LOC_<split>_solution.csv`` (label = first wnid of PredictionString).
    An ImageId listed twice, an empty one, or one that names a path outside ``folder`` (absolute or
    through ``..``, unless ``allow_outside``) is a ``DataIntegrityError`` naming the line."""
    per_class: dict[int, list[Path]] = {}
    first_line: dict[str, int] = {}
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
                raise DataError(f"{csv_path}: expected columns ImageId,PredictionString; found {reader.fieldnames}")
            for row in reader:
                tokens = (row["PredictionString"] or "").split()
                if not tokens or tokens[0] not in index:
                    raise DataError(f"{csv_path}:{reader.line_num}: PredictionString {row['PredictionString']!r:.40} "
                                    f"does not start with an ImageNet WordNet id")
                where = f"{csv_path}:{reader.line_num}: ImageId"
                image_id = require_str(row["ImageId"], where, "an image id")
                key = path_key(image_id)
                if key in first_line:
                    raise DataIntegrityError(f"{where} {image_id!r} is listed twice (lines {first_line[key]} and "
                                             f"{reader.line_num}); expected each image once")
                first_line[key] = reader.line_num
                path = safe_join(folder, f"{image_id}.JPEG", where, allow_outside)
                per_class.setdefault(index[tokens[0]], []).append(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{csv_path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except csv.Error as e:
        raise DataError(f"{csv_path}: not a readable CSV ({e})") from None
    except OSError as e:
        raise DataError(f"{csv_path}: cannot read ({e.strerror})") from None
    missing = [p for ps in per_class.values() for p in ps if not p.is_file()]
    if missing:
        raise DataError(f"{csv_path}: {len(missing)} listed image(s) missing, e.g. {missing[0]}")
    return sorted(((label, sorted(ps)) for label, ps in per_class.items()), key=lambda t: t[0])


class ImageNetReader(Reader):
    format = "imagenet"
    kind = "classification"
    params = {
        "root": Param("path", help="folder of the chosen variant"),
        "variant": Param("str", "imagenet", "imagenet, v2, sketch, r, a, o or c", choices=VARIANTS),
        "split": Param("str", "val", "imagenet variant only: split folder (val, train)"),
        "corruptions": Param("list[str]", list(CORRUPTIONS), "ImageNet-C corruptions to use", choices=CORRUPTIONS),
        "severities": Param("list[int]", list(SEVERITIES), "ImageNet-C severities to use", choices=SEVERITIES),
        "classnames": Param("str", "", "class-name file, one per line in label order ('' = OpenAI's names)"),
    }
    layout = """

    imagenet  <root>/<split>/<wnid>/*.JPEG                       class folders (torchvision / valprep.sh)
              or <root>/ILSVRC/Data/CLS-LOC/<split>/*.JPEG        Kaggle: flat files +
                 <root>/LOC_<split>_solution.csv                  ImageId,PredictionString ("wnid x y x y ...")
    v2        <root>/<0..999>/*.jpeg                              ImageNet-V2: folder = class index (not a wnid)
    sketch    <root>/<wnid>/*.JPEG                                ImageNet-Sketch, 1000 classes
    r, a, o   <root>/<wnid>/*.jpg                                 ImageNet-R / -A / -O: 200 of the 1000 classes
    c         <root>/<corruption>/<1..5>/<wnid>/*.JPEG            ImageNet-C: 15 corruptions x 5 severities"""

    def load(self, cfg) -> ClassificationSet:
        root = check_root(cfg, f"imagenet ({cfg['variant']})")
        variant = cfg["variant"]
        all_wnids = wnids()
        index = {w: i for i, w in enumerate(all_wnids)}
        names = classnames()
        clusters = subsets = None
        extra: dict = {"variant": variant}
        if variant in ("r", "a", "o"):
            keep = subset_wnids(variant)
            names = [names[index[w]] for w in keep]
            ordered = _wnid_classes(root, {w: i for i, w in enumerate(keep)}, f"ImageNet-{variant.upper()}")
            base = root
        elif variant == "v2":
            ordered, base = _v2_classes(root), root
        elif variant == "sketch":
            ordered, base = _wnid_classes(root, index, "ImageNet-1k"), root
        elif variant == "c":
            ordered, base, clusters, subsets = self._imagenet_c(root, cfg, index)
            extra.update(corruptions=cfg["corruptions"], severities=cfg["severities"])
        else:
            ordered, base = self._imagenet(root, cfg["split"], index, allow_outside_root(cfg)), root
            extra["split"] = cfg["split"]
        images, labels = image_set(base, ordered, "imagenet", extra)
        names = classnames_override(cfg, root, len(names), f"imagenet ({variant})") or names
        fp = sha256_json({"images": images.fingerprint, "labels": labels.tolist(), "classnames": names})
        return ClassificationSet(images, labels, names, fp, len(images), clusters=clusters,
                                 subsets=subsets or {}, info=extra)

    @staticmethod
    def _imagenet(root: Path, split: str, index: dict[str, int], allow_outside: bool) -> list[tuple[int, list[Path]]]:
        for folder in (root / split, root / "ILSVRC" / "Data" / "CLS-LOC" / split):
            if not folder.is_dir():
                continue
            if class_folders(folder):
                return _wnid_classes(folder, index, "ImageNet-1k")
            csv_path = root / f"LOC_{split}_solution.csv"
            if csv_path.is_file():
                return _flat_csv(folder, csv_path, index, allow_outside)
            raise DataError(f"{folder}: flat image folder but {csv_path} (the labels) is missing")
        raise DataError(f"imagenet: neither {root / split}/<wnid>/ (class folders) nor "
                        f"{root / 'ILSVRC/Data/CLS-LOC' / split}/ with LOC_{split}_solution.csv exists")

    @staticmethod
    def _imagenet_c(root: Path, cfg, index: dict[str, int]):
        ordered: list[tuple[int, list[Path]]] = []
        clusters: list[str] = []
        tags: dict[str, list[str]] = {"corruption": [], "severity": []}
        for corruption in cfg["corruptions"]:
            for severity in cfg["severities"]:
                folder = root / corruption / str(severity)
                if not folder.is_dir():
                    raise DataError(f"imagenet-c: folder {folder} is missing (expected <corruption>/<severity>/<wnid>/)")
                part = _wnid_classes(folder, index, "ImageNet-1k")
                ordered.extend(part)
                n = sum(len(ps) for _, ps in part)
                clusters.extend(p.stem for _, ps in part for p in ps)
                tags["corruption"].extend([corruption] * n)
                tags["severity"].extend([f"severity_{severity}"] * n)
        return ordered, root, clusters, subset_masks(tags)

    def verify(self, cfg) -> list[str]:
        """Loading problems, plus classes without images (a partial copy of the dataset)."""
        try:
            data = self.load(cfg)
        except DataIntegrityError:
            raise
        except (DataError, ConfigError) as e:
            return [str(e)]
        present = set(np.unique(data.labels).tolist())
        expected = range(data.n_classes)
        missing = [i for i in expected if i not in present]
        if missing:
            return [(f"{len(missing)} of {data.n_classes} classes have no images (e.g. class {missing[0]} "
                     f"{data.classnames[missing[0]]!r})")]
        return []


READER = ImageNetReader()
