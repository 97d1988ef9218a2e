"""A CSV of ``path,label`` rows: the simplest way to bring any labelled image set.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

``file`` may contain ``{split}`` (default ``{split}.csv``), so a linear probe finds its train file.
A label is an integer class index (needs ``classnames``) or a class name (from ``classnames``, or,
without it, the sorted distinct names of the file). Rows keep the file's order. An image listed
twice, an empty path, and a path that is absolute or leaves root through ``..`` (unless
``dataset.allow_outside_root``) are ``DataIntegrityError``s naming the line.
"""
from __future__ import annotations

import csv

import numpy as np

from ..errors import DataError
from ..fileio import sha256_json
from ..params import Param
from .base import (
    ImageSet,
    Reader,
    allow_outside_root,
    check_images_exist,
    check_root,
    check_unique,
    fingerprint,
    path_key,
    require_str,
    safe_join,
)
from .classification import ClassificationSet, read_lines, resolve_file

HEADER_CELLS = {"path", "file", "filepath", "filename", "image"}
LABEL_CELLS = {"label", "class"}


class CsvClassificationReader(Reader):
    format = "csv_classification"
    kind = "classification"
    params = {
        "root": Param("path", help="dataset folder (image paths are relative to it)"),
        "split": Param("str", "test", "split name, substituted for {split} in file"),
        "file": Param("str", "{split}.csv", "CSV file relative to root"),
        "classnames": Param("str", "", "class-name file, one per line in label order ('' = names from the CSV)"),
    }
    layout = """

    <root>/<file>              e.g. test.csv (UTF-8, a BOM is fine): rows "images/0001.jpg,3" or
                               "images/0001.jpg,golden retriever"; an optional header row whose first cell
                               is path/file/filepath/filename/image or whose second is label/class
    <root>/<image paths>       paths relative to root (absolute or '..' paths need allow_outside_root)
    <root>/classnames.txt      optional (dataset.classnames): class names, one per line, in label order"""

    def load(self, cfg) -> ClassificationSet:
        root = check_root(cfg, "csv_classification")
        path = resolve_file(cfg["file"].replace("{split}", cfg["split"]), root)
        if not path.is_file():
            raise DataError(f"csv_classification: file {path} does not exist")
        rows = self._rows(path)
        names = read_lines(resolve_file(cfg["classnames"], root), "csv_classification: dataset.classnames") \
            if cfg["classnames"] else None
        raw = [label for _, label, _ in rows]
        if names is None:
            if any(label.lstrip("-").isdigit() for label in raw):
                raise DataError(f"{path}: integer labels need dataset.classnames (a file with one class name per line)")
            names = sorted(set(raw))
        index = {n: i for i, n in enumerate(names)}
        labels = []
        for (_, label, lineno) in rows:
            if label in index:
                labels.append(index[label])
            elif label.lstrip("-").isdigit() and 0 <= int(label) < len(names):
                labels.append(int(label))
            else:
                raise DataError(f"{path}:{lineno}: label {label!r} is neither a class name nor a class index "
                                f"in [0, {len(names)})")
        outside = allow_outside_root(cfg)
        paths = [safe_join(root, require_str(p, f"{path}:{lineno}: image path", "an image path"),
                           f"{path}:{lineno}: image path", outside) for p, _, lineno in rows]
        check_unique([path_key(str(p)) for p in paths], "image", str(path), lambda k: f"line {rows[k][2]}")
        check_images_exist(paths, str(path))
        ids = [p for p, _, _ in rows]
        images = ImageSet(paths, ids, fingerprint("csv_classification", [], paths, root))
        y = np.asarray(labels, dtype=np.int64)
        fp = sha256_json({"images": images.fingerprint, "labels": y.tolist(), "classnames": names})
        return ClassificationSet(images, y, names, fp, len(paths), info={"file": str(path)})

    @staticmethod
    def _rows(path) -> list[tuple[str, str, int]]:
        rows = []
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                for row in reader:
                    lineno = reader.line_num
                    if not row or not any(c.strip() for c in row):
                        continue
                    if len(row) < 2:
                        raise DataError(f"{path}:{lineno}: expected 'path,label', found {','.join(row)!r:.60}")
                    if lineno == 1 and (row[0].strip().lower() in HEADER_CELLS or row[1].strip().lower() in LABEL_CELLS):
                        continue
                    rows.append((row[0].strip(), row[1].strip(), lineno))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the CSV as UTF-8") from None
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: not a readable CSV row ({e})") from None
        except OSError as e:
            raise DataError(f"{path}: cannot read the CSV ({e.strerror})") from None
        if not rows:
            raise DataError(f"{path}: no rows; expected 'path,label' lines")
        return rows


READER = CsvClassificationReader()
