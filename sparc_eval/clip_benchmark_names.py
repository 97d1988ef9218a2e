"""CLIP_benchmark's dataset names as sparc-eval tasks: the mapping, its protocol and its root templates.

A CLIP_benchmark user runs ``clip_benchmark eval --dataset NAME --dataset_root DIR``; here ``--task NAME
--data-root DIR`` reads the same folder unchanged and evaluates with CLIP_benchmark 1.6.2's protocol
(``clip_benchmark/datasets/builder.py`` and ``metrics/``): its class names and prompt templates, every
caption of every image, its image order, and its metric definitions. :func:`lookup` gives the
:class:`CbTask` of a name (task type, reader format, dataset and task parameters), :func:`task_config`
a complete task definition (the shape of a task YAML) for a data root, :func:`dataset_root` expands
CLIP_benchmark's ``{dataset}``/``{dataset_cleaned}`` templates, and :func:`map_metrics` renames its
result keys to ours (fractions to percent).

Covered: mscoco_captions, flickr30k, flickr8k, imagenet1k, imagenetv2, imagenet_sketch, imagenet-a,
imagenet-r, imagenet-o, cifar10, cifar100, sugar_crepe/<subset>, winoground, and wds/<name> (wds/vtab/<name>
included) for any CLIP_benchmark webdataset folder or Hub repo ``clip-benchmark/wds_<name with / -> ->``.
``vtab/<name>`` (TFDS + task_adaptation) and ``tfds/<name>`` are refused with the wds/ name to use; other
CLIP_benchmark names (torchvision downloads) point to their wds/ copy on the Hub. Data only: this module
imports nothing above floor 0.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, UnknownNameError

CB_VERSION = "1.6.2"
HUB_ORG = "clip-benchmark"
HUB_URL = "https://huggingface.co/datasets/{repo}/tree/{revision}"
DEFAULT_WDS_ROOT = "https://huggingface.co/datasets/clip-benchmark/wds_{dataset_cleaned}/tree/main"
RECALL_AT = [1, 5, 10]
CB_DEFAULT_RECALL_K = [5]  # clip_benchmark eval --recall_k default; sparc-eval reports 1, 5, 10 (5 included)
SUGAR_CREPE_SUBSETS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")

# CLIP_benchmark's webdataset copies on the Hub (benchmark/webdatasets.txt, LAION-AI/CLIP_benchmark).
HUB_WDS = (
    "mscoco_captions", "flickr8k", "flickr30k", "imagenet1k", "imagenetv2", "imagenet_sketch", "imagenet-a",
    "imagenet-r", "imagenet-o", "objectnet", "fer2013", "voc2007", "sun397", "cars", "fgvc_aircraft", "mnist",
    "stl10", "gtsrb", "country211", "renderedsst2", "vtab/caltech101", "vtab/cifar10", "vtab/cifar100",
    "vtab/clevr_count_all", "vtab/clevr_closest_object_distance", "vtab/diabetic_retinopathy", "vtab/dmlab",
    "vtab/dsprites_label_orientation", "vtab/dsprites_label_x_position", "vtab/dsprites_label_y_position",
    "vtab/dtd", "vtab/eurosat", "vtab/kitti_closest_vehicle_distance", "vtab/flowers", "vtab/pets", "vtab/pcam",
    "vtab/resisc45", "vtab/smallnorb_label_azimuth", "vtab/smallnorb_label_elevation", "vtab/svhn",
)
# Names CLIP_benchmark reads through torchvision or other downloaders that sparc-eval reads only as wds/ copies.
OTHER_CB_NAMES = (
    "objectnet", "imagenet-w", "imagenet1k-unverified", "babel_imagenet", "voc2007", "voc2007_multilabel",
    "food101", "sun397", "cars", "fgvc_aircraft", "dtd", "pets", "caltech101", "flowers", "mnist", "stl10", "eurosat",
    "gtsrb", "country211", "pcam", "renderedsst2", "fer2013", "multilingual_mscoco_captions", "crossmodal3600",
    "xtd10", "xtd200", "flickr30k-200", "dummy",
)
# clip_benchmark.datasets.builder.get_dataset_default_task: these are retrieval, sugar_crepe/winoground caption
# selection, everything else classification.
CB_RETRIEVAL = ("flickr30k", "flickr8k", "mscoco_captions", "multilingual_mscoco_captions", "flickr30k-200",
                "crossmodal3600", "xtd10", "xtd200")


@dataclass(frozen=True)
class CbTask:
    """One CLIP_benchmark dataset name as a sparc-eval task. ``dataset`` is the reader's block with ``root``
    relative to CLIP_benchmark's ``dataset_root`` ("" = that folder itself); ``ours`` is sparc-eval's own task
    on the same data (another layout, our protocol), for suggestions; ``layout`` what ``--data-root`` holds."""

    name: str
    cb_task: str
    type: str
    dataset: dict
    params: dict
    main_metric: str
    description: str
    layout: str
    ours: str | None = None
    groups: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def wds(self) -> bool:
        return self.name.startswith("wds/")

    @property
    def slug(self) -> str:
        """A file-name form of the name (``/`` -> ``_``), as CLIP_benchmark names its output files."""
        return self.name.replace("/", "_")


def _retrieval(name, fmt, extra, description, layout, ours, notes=()) -> CbTask:
    return CbTask(name, "zeroshot_retrieval", "retrieval", {"name": name, "format": fmt, "root": "", **extra},
                  {"recall_at": list(RECALL_AT)}, "mean_R@1", description, layout, ours, ("coarse", "retrieval"),
                  tuple(notes) + (f"CLIP_benchmark's --recall_k defaults to {CB_DEFAULT_RECALL_K}; recall@1, 5 and 10 "
                                  f"are reported (its recall@5 included)",))


def _imagenet(name, variant, sub, ours, layout, description) -> CbTask:
    ds = {"name": name, "format": "imagenet", "root": sub, "variant": variant}
    if variant == "imagenet":
        ds["split"] = "val"
    return CbTask(name, "zeroshot_classification", "zeroshot_classification", ds, {"templates": "openai_imagenet"},
                  "top1", description + "; OpenAI's class names and 80 prompt templates (CLIP_benchmark's "
                  "en_classnames.json / en_zeroshot_classification_templates.json 'imagenet1k')", layout, ours,
                  ("coarse", "classification", "imagenet"))


def _cifar(name) -> CbTask:
    n = name[5:]
    folder = "cifar-10-batches-py" if n == "10" else "cifar-100-python"
    return CbTask(name, "zeroshot_classification", "zeroshot_classification",
                  {"name": name, "format": "cifar", "root": "", "variant": name, "split": "test", "classnames": "meta"},
                  {"templates": "cifar"}, "top1",
                  f"CIFAR-{n} test (torchvision's python batches), zero-shot with CLIP's 18 CIFAR templates and the "
                  f"batch file's own class names, as CLIP_benchmark (torchvision's classes)",
                  f"DIR/{folder}/ (torchvision CIFAR{n}(root=DIR))", f"{name}-zeroshot", ("coarse", "classification"))


def _sugar_crepe(subset: str) -> CbTask:
    name = f"sugar_crepe/{subset}"
    return CbTask(name, "image_caption_selection", "caption_selection",
                  {"name": name, "format": "sugarcrepe", "root": "", "annotations": ".", "image_dir": "val2017",
                   "categories": [subset]}, {}, "acc",
                  f"SugarCrepe {subset}: a COCO val2017 image, its caption and one hard negative; accuracy",
                  f"DIR/{subset}.json and DIR/val2017/*.jpg", "sugarcrepe", ("fine-grained", "compositionality"),
                  ("CLIP_benchmark picks with argmax, so a tie counts as correct; sparc-eval counts ties as wrong "
                   "(equal only when no caption pair scores exactly equal)",))


_FIXED: dict[str, CbTask] = {t.name: t for t in [
    _retrieval("mscoco_captions", "cb_mscoco", {"split": "test"},
               "MSCOCO 5k test (Karpathy split, CLIP_benchmark's coco_test_karpathy.json), image<->text retrieval "
               "over every caption of every image",
               "DIR/val2014/*.jpg and DIR/coco_test_karpathy.json (COCO captions format)", "coco-retrieval"),
    _retrieval("flickr30k", "cb_flickr", {"split": "test", "annotations": "flickr30k_{split}_karpathy.txt"},
               "Flickr30k 1k test (Karpathy split, CLIP_benchmark's flickr30k_test_karpathy.txt), image<->text "
               "retrieval", "DIR/*.jpg and DIR/flickr30k_test_karpathy.txt (header line, then image.jpg,caption)",
               "flickr30k-retrieval"),
    _retrieval("flickr8k", "cb_flickr", {"split": "test", "annotations": "flickr8k_{split}_karpathy.txt"},
               "Flickr8k 1k test (Karpathy split, CLIP_benchmark's flickr8k_test_karpathy.txt), image<->text "
               "retrieval", "DIR/*.jpg and DIR/flickr8k_test_karpathy.txt (header line, then image.jpg,caption)",
               None),
    _imagenet("imagenet1k", "imagenet", "", "imagenet-zeroshot", "DIR/val/<wnid>/*.JPEG (torchvision ImageNet(root=DIR, "
              "split='val'))", "ImageNet-1k validation (50k images)"),
    _imagenet("imagenetv2", "v2", "ImageNetV2-matched-frequency", "imagenet-v2-matched-frequency",
              "DIR/ImageNetV2-matched-frequency/<0..999>/*.jpeg (as CLIP_benchmark unpacks it)",
              "ImageNet-V2 matched-frequency (10k images)"),
    _imagenet("imagenet_sketch", "sketch", "", "imagenet-sketch", "DIR/<wnid>/*.JPEG (the unzipped 'sketch' folder)",
              "ImageNet-Sketch (50k sketches, 1000 classes)"),
    _imagenet("imagenet-a", "a", "", "imagenet-a", "DIR/<wnid>/*.jpg (the untarred imagenet-a folder)",
              "ImageNet-A (7.5k images, 200 classes)"),
    _imagenet("imagenet-r", "r", "", "imagenet-r", "DIR/<wnid>/*.jpg (the untarred imagenet-r folder)",
              "ImageNet-R (30k renditions, 200 classes)"),
    _imagenet("imagenet-o", "o", "", None, "DIR/<wnid>/*.jpg (the untarred imagenet-o folder)",
              "ImageNet-O (2k out-of-distribution images, 200 classes), scored as CLIP_benchmark does: zero-shot "
              "accuracy over its 200 classes"),
    _cifar("cifar10"),
    _cifar("cifar100"),
    *[_sugar_crepe(s) for s in SUGAR_CREPE_SUBSETS],
    CbTask("winoground", "image_caption_selection", "winoground", {"name": "winoground", "format": "winoground",
                                                                     "root": ""}, {}, "group_score",
           "Winoground (400 items of two images and two captions): text, image and group scores",
           "the files of the Hub dataset facebook/winoground (gated): `hf download facebook/winoground --repo-type "
           "dataset --local-dir DIR` (CLIP_benchmark's DIR is a `datasets` cache, which is not read)", "winoground",
           ("fine-grained", "compositionality"),
           ("CLIP_benchmark's image_acc/text_acc/acc are Winoground's image/text/group scores (argmax: ties count "
            "as correct there, as wrong here)",)),
]}


# -- names and roots ----------------------------------------------------------------------------------------------
def short_name(name: str) -> str:
    """The name CLIP_benchmark fills its templates with: ``wds/`` removed (``wds/vtab/cifar10`` -> ``vtab/cifar10``)."""
    return name.replace("wds/", "", 1) if name.startswith("wds/") else name


def dataset_root(template: str, name: str) -> str:
    """CLIP_benchmark's ``--dataset_root`` rule: ``{dataset}`` is the name without ``wds/`` and
    ``{dataset_cleaned}`` the same with ``/`` replaced by ``-`` (``wds/vtab/cifar10`` -> ``vtab-cifar10``)."""
    short = short_name(name)
    try:
        root = template.format(dataset=short, dataset_cleaned=short.replace("/", "-"))
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"--data-root {template!r}: CLIP_benchmark templates may use only {{dataset}} and "
                          f"{{dataset_cleaned}} ({type(e).__name__}: {e})") from None
    return _URL_SLASHES.sub(r"\1://", root)  # a URL that went through a path type lost a slash


def has_template(root: str | Path) -> bool:
    """Whether a data root holds CLIP_benchmark's ``{dataset}`` / ``{dataset_cleaned}`` templates."""
    return bool(_TEMPLATE.search(str(root)))


def hub_repo(name: str) -> str:
    """The Hub dataset repo of a ``wds/`` name: ``clip-benchmark/wds_<name with / -> ->``."""
    return f"{HUB_ORG}/wds_{short_name(name).replace('/', '-')}"


def default_wds_root(name: str) -> str:
    """Where ``wds/<name>`` is read without ``--data-root``: its CLIP_benchmark repo on the Hub (main)."""
    return dataset_root(DEFAULT_WDS_ROOT, name)


_HUB_TREE = re.compile(r"^https?:/+[^/]+/datasets/([^/\s]+/[^/\s]+)/tree/([^/\s]+)/?$")
_URL_SLASHES = re.compile(r"^(https?):/+")
_TEMPLATE = re.compile(r"\{dataset(_cleaned)?\}")


def parse_hub_root(root: str) -> tuple[str, str] | None:
    """(repo, revision) of a data root in CLIP_benchmark's Hub form
    ``https://huggingface.co/datasets/ORG/NAME/tree/REV`` (any host: the download goes to ``HF_ENDPOINT``);
    None for a local path."""
    m = _HUB_TREE.match(root.strip())
    return (m.group(1), m.group(2)) if m else None


# -- lookup -------------------------------------------------------------------------------------------------------
def wds_type(folder: Path | str) -> str | None:
    """The ``dataset_type.txt`` of a local wds folder (``classification`` when the folder has none, as
    CLIP_benchmark assumes), or None when ``folder`` is not a local folder (a Hub URL, not fetched yet)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    path = folder / "dataset_type.txt"
    try:
        return path.read_text(encoding="utf-8").strip().lower() or "classification" if path.is_file() else "classification"
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the dataset type ({e})") from None


def _wds(name: str, kind: str | None = None) -> CbTask:
    short = short_name(name)
    if not short or short.startswith("/") or ".." in short.split("/"):
        raise ConfigError(f"task {name!r}: expected wds/<name> with a CLIP_benchmark dataset name, e.g. wds/cars")
    if kind not in (None, "classification", "retrieval"):
        raise ConfigError(f"task {name!r}: its dataset_type.txt says {kind!r}; sparc-eval reads classification and "
                          f"retrieval webdataset folders (CLIP_benchmark's multilabel mean average precision is not "
                          f"implemented)")
    retrieval = kind == "retrieval" if kind else short in CB_RETRIEVAL
    ds = {"name": name, "format": "wds", "root": "", "split": "test"}
    layout = ("DIR/<split>/{0..n-1}.tar + DIR/<split>/nshards.txt, DIR/classnames.txt, "
              "DIR/zeroshot_classification_templates.txt, DIR/dataset_type.txt; or the Hub repo "
              f"{hub_repo(name)} (the default without --data-root)")
    if retrieval:
        return CbTask(name, "zeroshot_retrieval", "retrieval", ds, {"recall_at": list(RECALL_AT)}, "mean_R@1",
                      f"{short} from CLIP_benchmark's webdataset copy, image<->text retrieval", layout,
                      "wds-flickr30k-retrieval" if short == "flickr30k" else None, ("coarse", "retrieval"),
                      (f"CLIP_benchmark's --recall_k defaults to {CB_DEFAULT_RECALL_K}; recall@1, 5 and 10 are reported",))
    ours = {"cifar10": "wds-cifar10-zeroshot", "imagenet1k": "wds-imagenet1k-zeroshot"}.get(short)
    return CbTask(name, "zeroshot_classification", "zeroshot_classification", ds, {"templates": "dataset"}, "top1",
                  f"{short} from CLIP_benchmark's webdataset copy, zero-shot with the class names and templates "
                  f"shipped in it", layout, ours, ("coarse", "classification"),
                  ("a local folder's dataset_type.txt decides the task (as CLIP_benchmark's reader; without a "
                   "local folder, the name does, as its get_dataset_default_task)",))


def is_cb_name(name: str) -> bool:
    """Whether ``name`` is a CLIP_benchmark dataset name this module maps (not an error-raising one)."""
    return name in _FIXED or (name.startswith("wds/") and len(name) > 4)


def lookup(name: str, wds_kind: str | None = None) -> CbTask:
    """The :class:`CbTask` of a CLIP_benchmark dataset name; ``ConfigError`` for names sparc-eval reads only
    as ``wds/`` copies (with the name to use), ``UnknownNameError`` for others. ``wds_kind`` is a wds folder's
    ``dataset_type.txt`` (:func:`wds_type`), which decides between classification and retrieval."""
    if name in _FIXED:
        return _FIXED[name]
    if name.startswith("wds/"):
        return _wds(name, wds_kind)
    if name.startswith(("vtab/", "tfds/")):
        rest = name.split("/", 1)[1]
        via = "TFDS and task_adaptation" if name.startswith("vtab/") else "tensorflow_datasets"
        hint = f"wds/vtab/{rest}" if name.startswith("vtab/") else f"wds/{rest}"
        raise ConfigError(f"task {name!r}: CLIP_benchmark reads {name.split('/')[0]}/ datasets through {via}, which "
                          f"sparc-eval does not use; use {hint!r} (the same data as webdataset shards, fetched from "
                          f"the Hub repo {hub_repo(hint)})")
    if name.startswith("sugar_crepe/"):
        raise UnknownNameError("SugarCrepe subset", name, [f"sugar_crepe/{s}" for s in SUGAR_CREPE_SUBSETS])
    if name in OTHER_CB_NAMES:
        wds = f"wds/{name}" if name in HUB_WDS else None
        vtab = f"wds/vtab/{name}" if f"vtab/{name}" in HUB_WDS else None
        use = wds or vtab
        raise ConfigError(f"task {name!r}: CLIP_benchmark downloads this dataset itself (torchvision or other "
                          f"sources); sparc-eval reads it as CLIP_benchmark's webdataset copy"
                          + (f": use {use!r} (Hub repo {hub_repo(use)})" if use else
                             ", and none is published for it; export one with clip_benchmark_export_wds and pass "
                             f"--task wds/{name} --data-root DIR"))
    raise UnknownNameError("CLIP_benchmark dataset", name, names())


def names() -> list[str]:
    """The CLIP_benchmark names with a fixed mapping, and the ``wds/`` names of its Hub copies."""
    return sorted(_FIXED) + [f"wds/{n}" for n in HUB_WDS]


def aliases() -> dict[str, str]:
    """CLIP_benchmark name -> sparc-eval's own task on the same data (for "did you mean" and listings)."""
    out = {n: t.ours for n, t in _FIXED.items() if t.ours}
    out.update({f"wds/{n}": t.ours for n in HUB_WDS if (t := _wds(f"wds/{n}")).ours})
    return out


def task_config(name: str, data_root: str | Path | None = None, *, split: str | None = None) -> dict:
    """A task definition (the keys of a task YAML) for the CLIP_benchmark name ``name`` reading ``data_root``
    (CLIP_benchmark's ``--dataset_root``, templates allowed). ``wds/`` names without a data root read their Hub
    repo (``dataset.root`` is then its URL: fetch it, e.g. with ``hub.fetch_wds``, and call again with the local
    folder, whose ``dataset_type.txt`` decides the task type). ``split`` overrides the dataset split
    (CLIP_benchmark's --split)."""
    if data_root is None:
        if not name.startswith("wds/"):
            raise ConfigError(f"task {name!r}: set --data-root to the folder clip_benchmark eval --dataset_root takes "
                              f"for it: {lookup(name).layout}")
        root = default_wds_root(name)
    else:
        root = dataset_root(str(data_root), name)
    hub_root = parse_hub_root(root) is not None
    if hub_root and not name.startswith("wds/"):
        raise ConfigError(f"task {name!r}: --data-root {root} is a Hub dataset repo, which CLIP_benchmark reads only "
                          f"for wds/ names; use --task wds/{short_name(name)} (its webdataset copy), or give "
                          f"{name!r} the local folder: {lookup(name).layout}")
    task = lookup(name, wds_type(root) if name.startswith("wds/") and not hub_root else None)
    if task.dataset["root"] and parse_hub_root(root) is None:
        root = str(Path(root) / task.dataset["root"])
    dataset = {**task.dataset, "root": root}
    if split is not None:
        if "split" not in dataset:
            raise ConfigError(f"task {name!r}: its dataset has no split to choose (CLIP_benchmark uses the test set)")
        dataset["split"] = split
    description = (f"{task.description}. CLIP_benchmark {CB_VERSION} name {name!r} ({task.cb_task}), read from "
                   f"CLIP_benchmark's layout: {task.layout}.")
    return {"name": name, "type": task.type, "version": 1, "description": description, "dataset": dataset,
            "params": dict(task.params), "main_metric": task.main_metric, "groups": list(task.groups) + ["clip_benchmark"]}


# -- result metrics -------------------------------------------------------------------------------------------------
_CLASSIFICATION = {"acc1": "top1", "acc5": "top5", "mean_per_class_recall": "mean_per_class_recall"}
_LINEAR_PROBE = {"lp_acc1": "top1", "lp_acc5": "top5", "lp_mean_per_class_recall": "mean_per_class_recall"}
_CAPTIONING = {"Bleu_1": "BLEU_1", "Bleu_2": "BLEU_2", "Bleu_3": "BLEU_3", "Bleu_4": "BLEU_4", "METEOR": "METEOR",
               "ROUGE_L": "ROUGE_L", "CIDEr": "CIDEr", "SPICE": "SPICE"}
_RECALL = re.compile(r"^(image|text)_retrieval_recall@(\d+)$")


def map_metric(name: str, cb_task: str, key: str) -> str | None:
    """Our metric key for CLIP_benchmark's ``key`` in a result of dataset ``name`` and task ``cb_task``; None when
    there is no equivalent. Its ``image_retrieval_recall@k`` is text->image (our ``t2i_R@k``) and its
    ``text_retrieval_recall@k`` image->text (``i2t_R@k``)."""
    if cb_task == "zeroshot_retrieval":
        m = _RECALL.match(key)
        return None if m is None else f"{'t2i' if m.group(1) == 'image' else 'i2t'}_R@{m.group(2)}"
    if cb_task == "zeroshot_classification":
        return _CLASSIFICATION.get(key)
    if cb_task == "linear_probe":
        return _LINEAR_PROBE.get(key)
    if cb_task == "captioning":
        return _CAPTIONING.get(key)
    if cb_task == "image_caption_selection":
        if short_name(name) == "winoground":
            return {"text_acc": "text_score", "image_acc": "image_score", "acc": "group_score"}.get(key)
        # SugarCrepe-style (one image, several captions): acc = text_acc = our accuracy; image_acc is always 1
        return "acc" if key == "acc" else None
    return None
