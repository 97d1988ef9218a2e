"""Classification readers on fixtures written here with the real files' quirks, and the shipped lists."""
from __future__ import annotations

import io
import json
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sparc_eval.data.base import RetrievalSet, get_reader
from sparc_eval.data.classification import ClassificationSet, resource_lines
from sparc_eval.errors import DataError
from sparc_eval.params import validate

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:
    from numpy.core.multiarray import _reconstruct


def _img(path: Path, colour=(200, 10, 10), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path, format=fmt)
    return path


def _load(fmt: str, **cfg):
    reader = get_reader(fmt)
    return reader.load(validate(cfg, {**reader.params}, fmt))


# -- resources ----------------------------------------------------------------------------------------

def test_shipped_lists_equal_the_published_ones():
    import ast

    import open_clip.zero_shot_metadata as meta
    import timm
    from clip_benchmark.datasets import builder

    assert resource_lines("imagenet1k_classnames.txt") == list(meta.IMAGENET_CLASSNAMES)
    assert resource_lines("templates_openai_imagenet.txt") == [t("{c}") for t in meta.OPENAI_IMAGENET_TEMPLATES]
    assert resource_lines("templates_simple_imagenet.txt") == [t("{c}") for t in meta.SIMPLE_IMAGENET_TEMPLATES]
    site = Path(builder.__file__).parent
    cb_templates = json.loads((site / "en_zeroshot_classification_templates.json").read_text())
    assert resource_lines("templates_cifar.txt") == cb_templates["cifar10"] == cb_templates["cifar100"]
    assert resource_lines("templates_openai_imagenet.txt") == cb_templates["imagenet1k"]
    lists = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.walk(ast.parse(Path(builder.__file__).read_text()))
             if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
             and n.targets[0].id in ("all_imagenet_wordnet_ids", "imagenet_r_wnids", "imagenet_a_wnids",
                                     "imagenet_o_wnids")}
    info = Path(timm.__file__).parent / "data" / "_info"
    wnids = resource_lines("imagenet1k_wnids.txt")
    assert wnids == lists["all_imagenet_wordnet_ids"] == (info / "imagenet_synsets.txt").read_text().split()
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000
    for v, key in (("r", "imagenet_r_wnids"), ("a", "imagenet_a_wnids")):
        sub = resource_lines(f"imagenet_{v}_wnids.txt")
        assert len(sub) == 200 and sub == sorted(lists[key]) == (info / f"imagenet_{v}_synsets.txt").read_text().split()
    assert resource_lines("imagenet_o_wnids.txt") == sorted(lists["imagenet_o_wnids"]) and len(lists["imagenet_o_wnids"]) == 200
    a_idx = [int(i) for i in (info / "imagenet_a_indices.txt").read_text().split()]
    assert [wnids.index(w) for w in resource_lines("imagenet_a_wnids.txt")] == a_idx
    c100 = resource_lines("cifar100_classnames.txt")
    assert len(c100) == 100 and [n.replace(" ", "_") for n in c100] == sorted(n.replace(" ", "_") for n in c100)
    assert len(resource_lines("cifar10_classnames.txt")) == 10


# -- imagefolder --------------------------------------------------------------------------------------

def test_imagefolder_on_the_shapes_world_matches_torchvision(shapes_root):
    from torchvision.datasets import ImageFolder

    data = _load("imagefolder", root=str(shapes_root / "imagefolder"), split="test", classnames="classnames.txt")
    assert data.classnames == (shapes_root / "imagefolder" / "classnames.txt").read_text().split()
    tv = ImageFolder(str(shapes_root / "imagefolder" / "test"))
    ours = {str(p): data.classnames[y] for p, y in zip(data.images.paths, data.labels)}
    assert ours == {p: tv.classes[y] for p, y in tv.samples}


def test_imagefolder_pairs_names_by_position_and_rejects_bad_inputs(tmp_path):
    for cls in ("b_dog", "a_cat"):
        _img(tmp_path / "ds" / cls / "x1.png")
        _img(tmp_path / "ds" / cls / "sub" / "x2.jpg")
    (tmp_path / "ds" / "names.txt").write_text("cat\ndog\n")
    data = _load("imagefolder", root=str(tmp_path / "ds"), classnames="names.txt")
    assert data.classnames == ["cat", "dog"] and data.labels.tolist() == [0, 0, 1, 1]
    assert data.images.ids == ["a_cat/x1.png", "a_cat/sub/x2.jpg", "b_dog/x1.png", "b_dog/sub/x2.jpg"]  # torchvision's
    (tmp_path / "ds" / "three.txt").write_text("cat\ndog\nbird\n")
    with pytest.raises(DataError, match="lists 3 class names but the dataset has 2 class folders"):
        _load("imagefolder", root=str(tmp_path / "ds"), classnames="three.txt")
    (tmp_path / "ds" / "partial.txt").write_text("a_cat\ndog\n")
    with pytest.raises(DataError, match="match only 1 of 2 class folders"):
        _load("imagefolder", root=str(tmp_path / "ds"), classnames="partial.txt")
    (tmp_path / "ds" / "c_empty").mkdir()
    (tmp_path / "ds" / "c_empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="c_empty: class folder has no images"):
        _load("imagefolder", root=str(tmp_path / "ds"))


# -- ImageNet family ------------------------------------------------------------------------------------

def test_imagenet_class_folders_and_kaggle_flat_layout(tmp_path):
    wnids = resource_lines("imagenet1k_wnids.txt")
    for w in ("n15075141", "n01440764", "n01443537"):
        _img(tmp_path / "cf" / "val" / w / f"ILSVRC2012_val_{w}.JPEG", fmt="JPEG")
    data = _load("imagenet", root=str(tmp_path / "cf"))
    assert data.labels.tolist() == [0, 1, 999] and data.classnames[0] == "tench" and data.n_classes == 1000
    flat = tmp_path / "kaggle" / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    rows = [("ILSVRC2012_val_00000002", "n15075141 1 2 3 4"), ("ILSVRC2012_val_00000001", "n01751748 5 6 7 8 n01751748 1 1 2 2")]
    for image_id, _ in rows:
        _img(flat / f"{image_id}.JPEG", fmt="JPEG")
    (tmp_path / "kaggle" / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n" + "".join(f"{i},{p}\n" for i, p in rows))
    data = _load("imagenet", root=str(tmp_path / "kaggle"))
    assert dict(zip(data.images.ids, data.labels.tolist())) == {
        "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG": wnids.index("n01751748"),
        "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000002.JPEG": 999}
    _img(tmp_path / "bad" / "val" / "not_a_wnid" / "x.JPEG", fmt="JPEG")
    with pytest.raises(DataError, match="not ImageNet-1k WordNet ids"):
        _load("imagenet", root=str(tmp_path / "bad"))


def test_imagenet_v2_integer_folders_are_class_indices_not_imagefolder_order(tmp_path):
    from torchvision.datasets import ImageFolder

    for name in ("0", "1", "10", "100", "2", "999"):
        _img(tmp_path / "v2" / name / "a.jpeg", fmt="JPEG")
    data = _load("imagenet", root=str(tmp_path / "v2"), variant="v2")
    assert {i.split("/")[0]: int(y) for i, y in zip(data.images.ids, data.labels)} == {
        "0": 0, "1": 1, "2": 2, "10": 10, "100": 100, "999": 999}
    scrambled = {Path(p).parent.name: y for p, y in ImageFolder(str(tmp_path / "v2")).samples}
    assert scrambled["10"] == 2 and scrambled["2"] == 4  # what a plain ImageFolder would get wrong
    _img(tmp_path / "v2" / "010" / "a.jpeg", fmt="JPEG")
    with pytest.raises(DataError, match=r"\['010'\] are not class indices"):
        _load("imagenet", root=str(tmp_path / "v2"), variant="v2")


def test_imagenet_r_and_a_have_200_classes_in_sorted_wnid_order(tmp_path):
    wnids = resource_lines("imagenet1k_wnids.txt")
    names = resource_lines("imagenet1k_classnames.txt")
    for v in ("r", "a"):
        sub = resource_lines(f"imagenet_{v}_wnids.txt")
        for w in (sub[-1], sub[0], sub[100]):
            _img(tmp_path / v / w / "x.jpg")
        (tmp_path / v / "README.txt").write_text("not a class")
        data = _load("imagenet", root=str(tmp_path / v), variant=v)
        assert data.n_classes == 200 and data.labels.tolist() == [0, 100, 199]
        assert data.classnames == [names[wnids.index(w)] for w in sub]
    _img(tmp_path / "r" / "n01440764" / "x.jpg")  # tench is not one of ImageNet-R's classes
    with pytest.raises(DataError, match="not ImageNet-R WordNet ids"):
        _load("imagenet", root=str(tmp_path / "r"), variant="r")


def test_imagenet_sketch_and_imagenet_c_subsets_and_clusters(tmp_path):
    _img(tmp_path / "sketch" / "n01443537" / "sketch_0.JPEG", fmt="JPEG")
    assert _load("imagenet", root=str(tmp_path / "sketch"), variant="sketch").labels.tolist() == [1]
    for corruption in ("fog", "gaussian_noise"):
        for severity in (1, 3):
            for w, stem in (("n01440764", "ILSVRC2012_val_00000293"), ("n01443537", "ILSVRC2012_val_00000236")):
                _img(tmp_path / "c" / corruption / str(severity) / w / f"{stem}.JPEG", fmt="JPEG")
    data = _load("imagenet", root=str(tmp_path / "c"), variant="c", corruptions=["gaussian_noise", "fog"],
                 severities=[1, 3])
    assert len(data.images) == 8 and data.labels.tolist() == [0, 1] * 4
    assert data.subsets["fog"].tolist() == [False] * 4 + [True] * 4
    assert data.subsets["severity_3"].tolist() == [False, False, True, True] * 2
    assert set(data.cluster_ids()) == {"ILSVRC2012_val_00000293", "ILSVRC2012_val_00000236"}
    with pytest.raises(DataError, match="imagenet-c: folder .*snow/1 is missing"):
        _load("imagenet", root=str(tmp_path / "c"), variant="c", corruptions=["snow"], severities=[1])
    reader = get_reader("imagenet")
    problems = reader.verify(validate({"root": str(tmp_path / "sketch"), "variant": "sketch"}, reader.params, "t"))
    assert problems == ["999 of 1000 classes have no images (e.g. class 0 'tench')"]


# -- CIFAR ----------------------------------------------------------------------------------------------

class Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2's cPickle wrote the official CIFAR batches: str as BINSTRING and
    numpy's reconstructor under its numpy 1.x module name."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _binstring(self, data: bytes):
        n = len(data)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + data)

    def _save_bytes(self, obj):
        self._binstring(obj)
        self.memoize(obj)

    def _save_str(self, obj):
        self._binstring(obj.encode("latin1"))
        self.memoize(obj)

    dispatch[bytes] = _save_bytes
    dispatch[str] = _save_str

    def save_global(self, obj, name=None):
        if obj is _reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _write_py2(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        Py2Pickler(f, protocol=2).dump(obj)


def _cifar(root: Path, variant: str, n: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    names = [c.replace(" ", "_") for c in resource_lines(f"{variant}_classnames.txt")]
    out = {}
    if variant == "cifar10":
        folder, files = root / "cifar-10-batches-py", {f"data_batch_{i}": "train" for i in range(1, 6)}
        files["test_batch"] = "test"
        _write_py2(folder / "batches.meta", {"num_cases_per_batch": n, "label_names": names, "num_vis": 3072})
    else:
        folder, files = root / "cifar-100-python", {"train": "train", "test": "test"}
        _write_py2(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"super{i}" for i in range(20)]})
    for fname, split in files.items():
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, len(names), size=n).tolist()
        batch = {"batch_label": f"{split} batch", "data": data, "filenames": [f"img_{i}.png" for i in range(n)]}
        if variant == "cifar10":
            batch["labels"] = labels
        else:
            batch.update(fine_labels=labels, coarse_labels=[0] * n)
        _write_py2(folder / fname, batch)
        out.setdefault(split + "_data", []).append(data)
        out.setdefault(split + "_labels", []).extend(labels)
    return {k: np.concatenate(v) if k.endswith("data") else np.asarray(v) for k, v in out.items()}


def test_cifar_batches_in_the_official_format(tmp_path):
    truth = _cifar(tmp_path / "c10", "cifar10")
    raw = pickle.loads((tmp_path / "c10" / "cifar-10-batches-py" / "test_batch").read_bytes(), encoding="bytes")
    assert set(raw) == {b"batch_label", b"data", b"filenames", b"labels"}  # what the official loader sees
    train = _load("cifar", root=str(tmp_path / "c10"), split="train")
    assert train.labels.tolist() == truth["train_labels"].tolist() and len(train.images) == 20
    img = np.asarray(Image.open(train.images.paths[7]))
    assert np.array_equal(img, truth["train_data"][7].reshape(3, 32, 32).transpose(1, 2, 0))
    assert train.classnames == resource_lines("cifar10_classnames.txt") and train.info["variant"] == "cifar10"
    again = _load("cifar", root=str(tmp_path / "c10"), split="train")
    assert again.images.paths == train.images.paths and again.fingerprint == train.fingerprint
    truth100 = _cifar(tmp_path / "c100", "cifar100", n=6)
    test = _load("cifar", root=str(tmp_path / "c100"), split="test")
    assert test.n_classes == 100 and test.labels.tolist() == truth100["test_labels"].tolist()
    assert "aquarium fish" in test.classnames
    meta = _load("cifar", root=str(tmp_path / "c100"), split="test", classnames="meta")
    assert "aquarium_fish" in meta.classnames


class _Exploit:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


def test_cifar_refuses_a_malicious_pickle(tmp_path):
    _cifar(tmp_path / "c10", "cifar10")
    marker = tmp_path / "pwned"
    evil = tmp_path / "c10" / "cifar-10-batches-py" / "test_batch"
    evil.write_bytes(pickle.dumps({"data": _Exploit(marker)}, protocol=2))
    with pytest.raises(DataError, match=r"refused to load \(global (posix|os)\.system is not allowed"):
        _load("cifar", root=str(tmp_path / "c10"), split="test")
    assert not marker.exists()
    evil.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="not a CIFAR python batch"):
        _load("cifar", root=str(tmp_path / "c10"), split="test")


# -- CSV --------------------------------------------------------------------------------------------------

def test_csv_classification(tmp_path):
    for i in range(3):
        _img(tmp_path / "images" / f"{i}.png")
    (tmp_path / "classnames.txt").write_text("cat\ndog\n")
    (tmp_path / "test.csv").write_text("filepath,label\nimages/0.png,1\nimages/1.png,dog\nimages/2.png,0\n")
    data = _load("csv_classification", root=str(tmp_path), classnames="classnames.txt")
    assert data.labels.tolist() == [1, 1, 0] and data.images.ids == ["images/0.png", "images/1.png", "images/2.png"]
    (tmp_path / "train.csv").write_text("images/0.png,zebra\nimages/1.png,ant\n")
    data = _load("csv_classification", root=str(tmp_path), split="train")
    assert data.classnames == ["ant", "zebra"] and data.labels.tolist() == [1, 0]
    (tmp_path / "bad.csv").write_text("images/0.png,7\n")
    with pytest.raises(DataError, match=r"bad.csv:1: label '7' is neither a class name nor a class index in \[0, 2\)"):
        _load("csv_classification", root=str(tmp_path), file="bad.csv", classnames="classnames.txt")


# -- CLIP_benchmark WebDataset folders -------------------------------------------------------------------

def _wds_classification(root: Path, n: int = 7) -> list[int]:
    """Write a wds_* folder with CLIP_benchmark's own converter."""
    from clip_benchmark.webdataset_builder import convert_dataset

    class DS(list):
        classes = ["circle", "square", "star"]
        templates = ["a photo of a {c}.", "a drawing of a {c}."]

    items = DS((Image.new("RGB", (8, 8), (30 * i, 5, 5)), i % 3) for i in range(n))
    convert_dataset(items, "test", str(root), image_format="png", max_count=3, verbose=False)
    return [i % 3 for i in range(n)]


def test_wds_classification_written_by_clip_benchmark(tmp_path):
    from clip_benchmark.datasets.builder import build_wds_dataset

    labels = _wds_classification(tmp_path / "wds")
    data = _load("wds", root=str(tmp_path / "wds"))
    assert isinstance(data, ClassificationSet) and data.labels.tolist() == labels
    assert data.classnames == ["circle", "square", "star"] and data.templates == ["a photo of a {c}.", "a drawing of a {c}."]
    assert data.info["shards"] == 3
    ref = build_wds_dataset("x", transform=None, split="test", data_dir=str(tmp_path / "wds"))
    ref_items = list(ref)
    assert [int(y) for _, y in ref_items] == labels and ref.classes == data.classnames
    for (img, _), path in zip(ref_items, data.images.paths):
        assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(Image.open(path).convert("RGB")))
    assert _load("wds", root=str(tmp_path / "wds")).images.paths == data.images.paths  # read in place, indexed once


def test_wds_retrieval(tmp_path):
    from clip_benchmark.webdataset_builder import convert_retrieval_dataset

    items = [(Image.new("RGB", (8, 8), (9 * i, 0, 0)), [f"caption {i} a", f"caption {i} b"][: 1 + i % 2])
             for i in range(5)]
    convert_retrieval_dataset(items, "test", str(tmp_path / "wds"), image_format="png", verbose=False)
    data = _load("wds", root=str(tmp_path / "wds"))
    assert isinstance(data, RetrievalSet) and len(data.images) == 5
    assert data.captions == ["caption 0 a", "caption 1 a", "caption 1 b", "caption 2 a", "caption 3 a",
                             "caption 3 b", "caption 4 a"]
    assert data.caption_image.tolist() == [0, 1, 1, 2, 3, 3, 4]


@pytest.mark.parametrize("member", ["../escape.cls", "/abs/escape.cls", "link"])
def test_wds_refuses_unsafe_members(tmp_path, member):
    root = tmp_path / "wds"
    (root / "test").mkdir(parents=True)
    (root / "test" / "nshards.txt").write_text("1\n")
    (root / "classnames.txt").write_text("a\n")
    with tarfile.open(root / "test" / "0.tar", "w") as tar:
        buf = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buf, format="PNG")
        for name, data in (("s0.png", buf.getvalue()), ("s0.cls", b"0")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"0"))
    with pytest.raises(DataError, match="refusing the shard"):
        _load("wds", root=str(root))
    assert not (tmp_path / "escape.cls").exists()


def test_csv_with_an_excel_bom_a_label_header_and_bad_encodings(tmp_path):
    for i in range(2):
        _img(tmp_path / "images" / f"{i}.png")
    # Excel's "CSV UTF-8": a byte-order mark before a header whose first cell is not a known path name
    (tmp_path / "test.csv").write_bytes("image_path,label\nimages/0.png,chat\nimages/1.png,chien\n".encode("utf-8-sig"))
    data = _load("csv_classification", root=str(tmp_path))
    assert data.classnames == ["chat", "chien"] and data.labels.tolist() == [0, 1]
    (tmp_path / "class.csv").write_text("img,class\nimages/0.png,a\n")
    assert _load("csv_classification", root=str(tmp_path), file="class.csv").classnames == ["a"]
    (tmp_path / "latin1.csv").write_bytes("images/0.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.csv: not UTF-8 text .*save the CSV as UTF-8"):
        _load("csv_classification", root=str(tmp_path), file="latin1.csv")
    (tmp_path / "huge.csv").write_text("images/0.png,a\nimages/1.png,\"" + "x" * 200_000 + "\"\n")
    with pytest.raises(DataError, match=r"huge.csv:2: not a readable CSV row \(field larger than field limit"):
        _load("csv_classification", root=str(tmp_path), file="huge.csv")


def test_imagenet_kaggle_csv_with_a_bom_and_bad_bytes(tmp_path):
    flat = tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    _img(flat / "ILSVRC2012_val_00000001.JPEG", fmt="JPEG")
    csv_path = tmp_path / "LOC_val_solution.csv"
    csv_path.write_bytes("ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2 3 4\n".encode("utf-8-sig"))
    assert _load("imagenet", root=str(tmp_path)).labels.tolist() == [0]
    csv_path.write_bytes(b"ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 \xff\n")
    with pytest.raises(DataError, match="LOC_val_solution.csv: not UTF-8 text"):
        _load("imagenet", root=str(tmp_path))


def test_cifar_checks_the_meta_file_and_the_labels_where_they_are_read(tmp_path):
    _cifar(tmp_path / "c10", "cifar10")
    folder = tmp_path / "c10" / "cifar-10-batches-py"
    batch = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    _write_py2(folder / "test_batch", {"data": batch[b"data"], "labels": [0, 1, 10, 2]})
    with pytest.raises(DataError, match=r"test_batch: label 10 of image 2 is outside \[0, 10\)"):
        _load("cifar", root=str(tmp_path / "c10"), split="test")
    _write_py2(folder / "batches.meta", {"label_names": ["a", "b"]})
    with pytest.raises(DataError, match=r"batches.meta: 'label_names' lists 2 classes; expected 10 for cifar10"):
        _load("cifar", root=str(tmp_path / "c10"), split="test")


def _wds_one_shard(root: Path, label: bytes, nshards: bytes = b"1\n") -> None:
    (root / "test").mkdir(parents=True)
    (root / "test" / "nshards.txt").write_bytes(nshards)
    (root / "classnames.txt").write_text("a\nb\n")
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    with tarfile.open(root / "test" / "0.tar", "w") as tar:
        for name, data in (("s0.png", buf.getvalue()), ("s0.cls", b"0"), ("s1.png", buf.getvalue()), ("s1.cls", label)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_wds_names_the_offending_label_and_unreadable_count_files(tmp_path):
    _wds_one_shard(tmp_path / "neg", b"-3")
    with pytest.raises(DataError, match=r"sample 's1' of shard 0.tar has class index -3, outside \[0, 2\)"):
        _load("wds", root=str(tmp_path / "neg"))
    _wds_one_shard(tmp_path / "enc", b"1", nshards=b"\xff\xfe1")
    with pytest.raises(DataError, match=r"nshards.txt: cannot read the number of shards \(not UTF-8"):
        _load("wds", root=str(tmp_path / "enc"))
    _wds_one_shard(tmp_path / "kind", b"1")
    (tmp_path / "kind" / "dataset_type.txt").write_bytes(b"\x80retrieval")
    with pytest.raises(DataError, match=r"dataset_type.txt: cannot read the dataset type"):
        _load("wds", root=str(tmp_path / "kind"))
