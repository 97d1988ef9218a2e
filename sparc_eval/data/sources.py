"""Where the public datasets come from, and how ``sparc-eval data download NAME`` lays them out.

Each :class:`DatasetSource` lists files with stable URLs, what to extract from them and where, under the
data root, so that the shipped task YAMLs (``${data_root}/coco``, ``${data_root}/VOCdevkit/VOC2012``, ...)
and CLIP_benchmark's layouts (``mscoco_captions`` reads ``<data root>/coco`` unchanged) find them.
Downloads go through :mod:`sparc_eval.download` (progress, resume, sha256: a published sum where the
provider has one, none of these do, so the sum is recorded in ``<data root>/SHA256SUMS`` on first download
and checked afterwards); archives are kept under ``<data root>/.downloads/`` and extracted once, refusing
members with absolute paths, ``..``, links or devices. Datasets behind a login (ImageNet, Flickr30k images,
Winoground) have ``login`` instructions instead: exactly what to fetch and where to put it.
"""
from __future__ import annotations

import contextlib
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ..download import SUMS_NAME, Downloaded, download, read_sums
from ..errors import DataError, DataIntegrityError, UnknownNameError
from ..fileio import atomic_write_text, sha256_file

DOWNLOADS = ".downloads"
KARPATHY = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
CB_ANNOTATIONS = "https://github.com/mehdidc/retrieval_annotations/releases/download/1.0.0"
SUGAR_CREPE = "https://raw.githubusercontent.com/RAIVNLab/sugar-crepe/main/data"
SUGAR_CREPE_CATEGORIES = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")


@dataclass(frozen=True)
class Source:
    """One file. ``into`` is the folder under the data root it lands in: an archive is extracted there (only
    ``members`` if given, each at its archive path), any other file is stored there under its name."""

    url: str
    into: str
    sha256: str | None = None
    members: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return PurePosixPath(self.url.split("?")[0]).name

    @property
    def archive(self) -> bool:
        return self.name.endswith((".zip", ".tar", ".tar.gz", ".tgz"))


@dataclass(frozen=True)
class DatasetSource:
    """A dataset ``data download`` knows: its files, the tasks it serves, the datasets it needs too
    (``requires``) and, for datasets behind a login, the instructions printed instead of downloading."""

    name: str
    description: str
    sources: tuple[Source, ...] = ()
    tasks: tuple[str, ...] = ()
    login: str | None = None
    requires: tuple[str, ...] = ()


CATALOGUE: dict[str, DatasetSource] = {d.name: d for d in [
    DatasetSource("coco", "MSCOCO 2014 validation images (val2014, 6.2 GiB) with the Karpathy split "
                  "(dataset_coco.json) and CLIP_benchmark's coco_test_karpathy.json",
                  (Source("http://images.cocodataset.org/zips/val2014.zip", "coco"),
                   Source(KARPATHY, "coco", members=("dataset_coco.json",)),
                   Source(f"{CB_ANNOTATIONS}/coco_test_karpathy.json", "coco")),
                  ("coco-retrieval", "coco-faithfulness", "mscoco_captions")),
    DatasetSource("coco2017", "MSCOCO 2017 validation images (val2017, 0.8 GiB) and their caption and instance "
                  "annotations", (Source("http://images.cocodataset.org/zips/val2017.zip", "coco"),
                                  Source("http://images.cocodataset.org/annotations/annotations_trainval2017.zip", "coco",
                                         members=("annotations/captions_val2017.json",
                                                  "annotations/instances_val2017.json"))),
                  ("coco2017-retrieval",)),
    DatasetSource("sugar_crepe", "SugarCrepe's 7 category JSONs (images: coco2017)",
                  tuple(Source(f"{SUGAR_CREPE}/{c}.json", "sugar_crepe/data") for c in SUGAR_CREPE_CATEGORIES),
                  ("sugarcrepe",), requires=("coco2017",)),
    DatasetSource("voc2012", "PASCAL VOC 2012 trainval (2 GiB): images and segmentation masks",
                  (Source("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar", ""),),
                  ("voc-zeroshot-seg", "voc20-zeroshot-seg", "voc-linear-seg", "voc-seg-transfer")),
    DatasetSource("ade20k", "ADE20K scene parsing (ADEChallengeData2016, 0.9 GiB)",
                  (Source("http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip", "ade"),),
                  ("ade20k-zeroshot-seg", "ade20k-seg-transfer")),
    DatasetSource("flickr30k", "Flickr30k: the Karpathy split files are fetched; the images need a form",
                  (Source(KARPATHY, "flickr30k", members=("dataset_flickr30k.json",)),
                   Source(f"{CB_ANNOTATIONS}/flickr30k_test_karpathy.txt", "flickr30k")),
                  ("flickr30k-retrieval", "flickr30k"),
                  login="the images are given out after a form at https://shannon.cs.illinois.edu/DenotationGraph/ "
                        "(or Kaggle: `kaggle datasets download -d hsankesara/flickr-image-dataset`); put the 31,783 "
                        "JPEGs in {root}/flickr30k/flickr30k-images/ for flickr30k-retrieval, and directly in "
                        "{root}/flickr30k/ (beside flickr30k_test_karpathy.txt) for CLIP_benchmark's flickr30k"),
    DatasetSource("imagenet", "ImageNet-1k validation (ILSVRC2012): needs an image-net.org account",
                  tasks=("imagenet-zeroshot", "imagenet1k"),
                  login="sign in at https://image-net.org/download-images.php, download ILSVRC2012_img_val.tar "
                        "(6.3 GiB) and ILSVRC2012_devkit_t12.tar.gz, then sort the 50,000 images into "
                        "{root}/imagenet/val/<wnid>/ (e.g. torchvision.datasets.ImageNet(root='{root}/imagenet', "
                        "split='val') does it from the two archives placed in {root}/imagenet)"),
    DatasetSource("winoground", "Winoground (gated on the Hugging Face Hub)", tasks=("winoground",),
                  login="accept the terms at https://huggingface.co/datasets/facebook/winoground, set HF_TOKEN, then "
                        "`hf download facebook/winoground --repo-type dataset --local-dir {root}/winoground`"),
]}


def get_source(name: str) -> DatasetSource:
    if name in CATALOGUE:
        return CATALOGUE[name]
    raise UnknownNameError("downloadable dataset", name, sorted(CATALOGUE) + ["wds/<name>"])


def plan(name: str) -> list[DatasetSource]:
    """``name`` and the datasets it requires, requirements first (what ``data download NAME`` fetches)."""
    out: list[DatasetSource] = []
    for req in get_source(name).requires:
        out += [d for d in plan(req) if d not in out]
    return out + [get_source(name)]


# -- archives ---------------------------------------------------------------------------------------------------
def _safe_name(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and p.parts[0].endswith(":")):
        raise DataIntegrityError(f"{archive}: member {name!r} has an unsafe path (absolute or with '..'); refusing the "
                                 f"archive")
    return p


def _members(archive: Path, stack: contextlib.ExitStack) -> list[tuple[PurePosixPath, Callable[[], IO[bytes]] | None]]:
    """(path, opener) of every member (opener None for a folder), the archive kept open by ``stack``; unsafe
    members (absolute, ``..``, links, devices) refuse the whole archive."""
    out: list[tuple[PurePosixPath, Callable[[], IO[bytes]] | None]] = []
    if zipfile.is_zipfile(archive):
        z = stack.enter_context(zipfile.ZipFile(archive))
        for info in z.infolist():
            path = _safe_name(info.filename, archive)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataIntegrityError(f"{archive}: member {info.filename!r} is a link; refusing the archive")
            out.append((path, None if info.is_dir() else (lambda i=info: z.open(i))))
        return out
    try:
        t = stack.enter_context(tarfile.open(archive, "r:*"))
    except tarfile.TarError as e:
        raise DataError(f"{archive}: neither a zip nor a tar archive ({e})") from None
    for m in t.getmembers():
        path = _safe_name(m.name, archive)
        if m.isdir():
            out.append((path, None))
        elif m.isfile():
            out.append((path, lambda m=m: t.extractfile(m)))
        else:
            raise DataIntegrityError(f"{archive}: member {m.name!r} is a link or special file; refusing the archive")
    return out


def extract(archive: Path, dest: Path, members: tuple[str, ...] | None = None) -> list[Path]:
    """Extract ``archive`` (zip or tar) into ``dest``: every member is checked first, files are written into a
    temp folder inside ``dest`` and then moved into place, so an interrupted run leaves no half-written file.
    ``members`` limits it to those paths (placed at that path; found in the archive at it or by its file name)."""
    with contextlib.ExitStack() as stack:
        entries = [(p, o) for p, o in _members(archive, stack) if o is not None]
        if members is not None:
            picked = []
            for want in members:
                hit = [(p, o) for p, o in entries if p.as_posix() == want or p.name == PurePosixPath(want).name]
                if not hit:
                    raise DataError(f"{archive}: has no member {want!r}")
                picked.append((PurePosixPath(want), hit[0][1]))
            entries = picked
        dest.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
        written = []
        try:
            for path, opener in entries:
                target = tmp.joinpath(*path.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with opener() as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            for path, _ in entries:
                final = dest.joinpath(*path.parts)
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp.joinpath(*path.parts).replace(final)
                written.append(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return written


# -- download -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fetched:
    source: Source
    file: Downloaded
    placed: tuple[Path, ...]


def fetch(dataset: DatasetSource, data_root: Path | str, *, offline: bool = False, progress: bool = True,
          log: Callable[[str], None] = print) -> list[Fetched]:
    """Download ``dataset``'s files into ``data_root`` (resuming, checking sums) and place them. An archive is
    extracted once: a marker ``.downloads/<archive>.extracted`` holding its sha256 and the members placed skips
    it on the next run."""
    root = Path(data_root).expanduser()
    done = []
    for src in dataset.sources:
        into = root / src.into if src.into else root
        if src.archive:
            file = download(src.url, root / DOWNLOADS / src.name, sha256=src.sha256, sums_file=root / SUMS_NAME,
                            offline=offline, progress=progress)
            marker = root / DOWNLOADS / f"{src.name}.extracted"
            key = f"{file.sha256} {' '.join(src.members or ('*',))} -> {src.into or '.'}"
            if marker.is_file() and key in marker.read_text().splitlines():
                log(f"{src.name}: already extracted into {into}")
                done.append(Fetched(src, file, ()))
                continue
            log(f"{src.name}: extracting into {into}")
            placed = extract(file.path, into, src.members)
            lines = marker.read_text().splitlines() if marker.is_file() else []
            atomic_write_text(marker, "\n".join(lines + [key]) + "\n")
            done.append(Fetched(src, file, tuple(placed)))
        else:
            file = download(src.url, into / src.name, sha256=src.sha256, sums_file=root / SUMS_NAME, offline=offline,
                            progress=progress)
            done.append(Fetched(src, file, (file.path,)))
        log(f"{src.name}: {file.checked} sha256 {file.sha256[:16]}...")
    return done


def verify_sums(data_root: Path | str) -> list[str]:
    """Problems with the files recorded in ``<data root>/SHA256SUMS`` (changed or missing); [] when all match."""
    root = Path(data_root).expanduser()
    problems = []
    for name, digest in sorted(read_sums(root / SUMS_NAME).items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{path}: recorded in {root / SUMS_NAME} but missing")
        elif sha256_file(path) != digest:
            problems.append(f"{path}: sha256 differs from the one recorded at download ({digest})")
    return problems
