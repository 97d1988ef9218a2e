"""ARO (Yuksekgonul et al., ICLR 2023): VG-Relation, VG-Attribution, COCO-Order, Flickr30k-Order.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

VG items: the image is cropped to the item's box before preprocessing; options are [false, true]
(the right one is index 1); categories are relation names (VG-R) or ``<attr0>_<attr1>`` (VG-A).
VG-R's macro mean leaves out the relations ARO's notebook lists as symmetric
(``resources/compositional/aro_vg_relation_excluded.txt``); VG-A's counts attribute pairs with at
least 25 items (the task's ``min_category_count``).

Order items: every caption of every image, options = the caption and four perturbations (shuffle
nouns and adjectives; shuffle all but nouns and adjectives; shuffle within trigrams; shuffle
trigrams), all through BLIP's ``pre_caption`` (lower case, ``.!"()*#:;~`` removed, at most
``max_words`` words). Nouns (NN, NNS, NNP, NNPS) and adjectives (JJ, JJR, JJS) are Penn Treebank
tags from an offline tagger (``sparc_eval.text.pos``, spaCy ``en_core_web_sm``, as ARO); trigrams
are taken over the same tokens (ARO uses NLTK's ``word_tokenize`` there). Each item's shuffles
are drawn from its own seeded generator (``seed``, item number), so ``--limit`` keeps them.
Perturbations equal to the original caption are dropped (they are not negatives; ARO's argmax
would count such ties as correct), and so are items left with no perturbation (counted in ``info``).

An empty annotation list, a VG box coordinate that is not a number (``null``, text) and an Order
file whose every item is dropped are ``DataError``s naming the file (and the item and field). Empty
or non-string captions, names and image paths, an Order file listing one image twice, and an image
path that is absolute or leaves the image folder through ``..`` (unless ``dataset.allow_outside_root``)
are ``DataIntegrityError``s.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import DataError, DataIntegrityError
from ..params import Param
from .base import (
    ImageSet,
    Reader,
    allow_outside_root,
    check_caption,
    check_images_exist,
    check_root,
    check_unique,
    fingerprint,
    path_key,
    read_json,
    require_fields,
    require_str,
    safe_join,
)
from .probes import CaptionItem, CaptionSelectionSet

SUBSETS = {"vg_relation": "visual_genome_relation.json", "vg_attribution": "visual_genome_attribution.json",
           "coco_order": "coco_karpathy_test.json", "flickr30k_order": "flickr30k_test.json"}
EXCLUDED_RELATIONS = Path(__file__).with_name("resources") / "compositional" / "aro_vg_relation_excluded.txt"
NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
ADJ_TAGS = frozenset({"JJ", "JJR", "JJS"})
PERTURBATIONS = ("shuffle_nouns_and_adj", "shuffle_allbut_nouns_and_adj", "shuffle_within_trigrams",
                 "shuffle_trigrams")

# A tagger maps captions to their tokens with Penn Treebank tags: [[(token, tag), ...], ...].
Tagger = Callable[[Sequence[str]], list[list[tuple[str, str]]]]


def pre_caption(caption: str, max_words: int = 30) -> str:
    """BLIP's caption normalisation (used by ARO): lower case, ``.!"()*#:;~`` -> space, runs of
    whitespace -> one space, stripped, cut to ``max_words`` space-separated words."""
    text = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    text = re.sub(r"\s{2,}", " ", text).rstrip("\n").strip(" ")
    words = text.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else text


def _shuffle_positions(tokens: list[str], positions: Sequence[int], rng: np.random.Generator) -> None:
    if len(positions) > 1:
        values = [tokens[i] for i in positions]
        for i, j in zip(positions, rng.permutation(len(values))):
            tokens[i] = values[j]


def _trigrams(tokens: Sequence[str]) -> list[list[str]]:
    return [list(tokens[i:i + 3]) for i in range(0, len(tokens), 3)]


def perturb(tagged: Sequence[tuple[str, str]], rng: np.random.Generator) -> list[str]:
    """The four ARO order perturbations of one tagged caption, in ``PERTURBATIONS`` order, each the
    shuffled tokens joined by single spaces."""
    tokens = [t for t, _ in tagged]
    nouns = [i for i, (_, tag) in enumerate(tagged) if tag in NOUN_TAGS]
    adjs = [i for i, (_, tag) in enumerate(tagged) if tag in ADJ_TAGS]
    rest = [i for i, (_, tag) in enumerate(tagged) if tag not in NOUN_TAGS | ADJ_TAGS]
    a = list(tokens)
    _shuffle_positions(a, nouns, rng)
    _shuffle_positions(a, adjs, rng)
    b = list(tokens)
    _shuffle_positions(b, rest, rng)
    within = []
    for tri in _trigrams(tokens):
        within += [tri[j] for j in rng.permutation(len(tri))]
    tris = _trigrams(tokens)
    across = [w for j in rng.permutation(len(tris)) for w in tris[j]]
    return [" ".join(x) for x in (a, b, within, across)]


def default_tagger() -> tuple[Tagger, dict]:
    """The offline spaCy tagger of ``sparc_eval.text.pos`` (Penn tags) and a description of it."""
    from ..text import pos

    def tag(texts: Sequence[str]) -> list[list[tuple[str, str]]]:
        return [[(t.text, t.tag) for t in toks] for toks in pos.analyse_many(list(texts))]

    return tag, pos.pipeline_info()


def order_options(captions: Sequence[str], seed: int, max_words: int, tagger: Tagger,
                  first_index: int = 0) -> list[list[str] | None]:
    """For each caption: [original, distinct perturbations...] after ``pre_caption``, or ``None``
    when every perturbation equals the original. Item k uses the generator (``seed``, first_index + k)."""
    out: list[list[str] | None] = []
    for k, (caption, tagged) in enumerate(zip(captions, tagger(list(captions)))):
        rng = np.random.default_rng([seed, first_index + k])
        original = pre_caption(caption, max_words)
        negatives = [pre_caption(p, max_words) for p in perturb(tagged, rng)]
        negatives = [n for n in negatives if n != original]
        out.append([original, *negatives] if negatives else None)
    return out


def _box_value(value, where: str) -> float:
    """A finite box coordinate (``DataError`` naming ``where`` for null, non-numeric or non-finite values)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataError(f"{where} is {value!r:.60}; expected a number")
    try:
        out = float(value)
    except ValueError:
        raise DataError(f"{where} is {value!r:.60}; expected a number") from None
    if not math.isfinite(out):
        raise DataError(f"{where} is {value!r:.60}; expected a finite number")
    return out


class AROReader(Reader):
    format = "aro"
    kind = "caption_selection"
    params: ClassVar[dict[str, Param]] = {
        "root": Param("path", help="dataset folder"),
        "subset": Param("str", help="which ARO benchmark", choices=tuple(SUBSETS)),
        "annotations": Param("str", None, "annotation file under root (default: the subset's file name)"),
        "image_dir": Param("str", None, "image folder under root (default: images for VG, root for Order)"),
        "exclude_symmetric": Param("bool", True, "vg_relation: leave ARO's symmetric relations out of the macro"),
        "seed": Param("int", 1, "order subsets: seed of the perturbations (recorded)"),
        "max_words": Param("int", 30, "order subsets: pre_caption word limit", min=1),
    }
    layout = """

    vg_relation:     <root>/visual_genome_relation.json     [{image_path, bbox_x, bbox_y, bbox_w, bbox_h,
                                                               true_caption, false_caption, relation_name}]
                     <root>/images/<image_path>             the VG/GQA image subset (vgr_vga_images.zip)
    vg_attribution:  <root>/visual_genome_attribution.json  same fields, with ``attributes`` (a pair)
                     <root>/images/<image_path>
    coco_order:      <root>/coco_karpathy_test.json         BLIP format: [{image: "val2014/COCO_val2014_...jpg",
                                                               caption: [str, ...]}]; images under root
    flickr30k_order: <root>/flickr30k_test.json             BLIP format: [{image: "flickr30k-images/...jpg", ...}]"""

    def load(self, cfg, tagger: Tagger | None = None) -> CaptionSelectionSet:
        root = check_root(cfg, f"aro {cfg['subset']}")
        ann = root / (cfg.get("annotations") or SUBSETS[cfg["subset"]])
        data = read_json(ann, f"aro {cfg['subset']}")
        if not isinstance(data, list):
            raise DataError(f"{ann}: expected a JSON list of items, found {type(data).__name__}")
        if not data:
            raise DataError(f"{ann}: the annotation list is empty; expected the items of ARO {cfg['subset']}")
        if cfg["subset"].startswith("vg_"):
            return self._vg(cfg, root, ann, data)
        return self._order(cfg, root, ann, data, tagger)

    def _vg(self, cfg, root: Path, ann: Path, data: list) -> CaptionSelectionSet:
        image_dir = root / (cfg.get("image_dir") if cfg.get("image_dir") is not None else "images")
        relation = cfg["subset"] == "vg_relation"
        key = "relation_name" if relation else "attributes"
        outside = allow_outside_root(cfg)
        paths, boxes, items = [], [], []
        for n, e in enumerate(data):
            where = f"{ann}: item {n}"
            require_fields(e, ["image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "true_caption", "false_caption",
                               key], where)
            if relation:
                category = require_str(e[key], f"{where}: {key}", "a relation name (string)")
            else:
                pair = e[key]
                if not isinstance(pair, list) or len(pair) != 2:
                    raise DataError(f"{where}: 'attributes' must be a pair, found {pair!r:.60}")
                category = "_".join(require_str(a, f"{where}: attributes[{j}]", "an attribute (string)")
                                    for j, a in enumerate(pair))
            image = require_str(e["image_path"], f"{where}: image_path", "an image path (string)")
            paths.append(safe_join(image_dir, image, f"{where}: image_path", outside))
            boxes.append(tuple(_box_value(e[k], f"{where}: {k}") for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")))
            options = [check_caption(e[k], f"{where}: {k}") for k in ("false_caption", "true_caption")]
            items.append(CaptionItem(str(n), n, options, 1, category.replace(" ", "_"), cluster=image))
        check_images_exist(sorted(set(paths)), f"aro {cfg['subset']}")
        excluded = []
        if relation and cfg["exclude_symmetric"]:
            excluded = [line.strip().replace(" ", "_") for line in EXCLUDED_RELATIONS.read_text().splitlines()
                        if line.strip() and not line.startswith("#")]
        fp = fingerprint("aro", [ann], sorted(set(paths)), root, {"subset": cfg["subset"], "excluded": excluded})
        ids = [f"{n}:{p.name}" for n, p in enumerate(paths)]
        info = {"subset": cfg["subset"], "annotations": str(ann), "crop": "image cropped to the item's box",
                "options": "[false_caption, true_caption]"}
        if excluded:
            info["excluded_relations"] = str(EXCLUDED_RELATIONS)
        return CaptionSelectionSet(ImageSet(paths, ids, fp, boxes), items, fp, len(items), info, excluded)

    def _order(self, cfg, root: Path, ann: Path, data: list, tagger: Tagger | None) -> CaptionSelectionSet:
        image_dir = root / (cfg.get("image_dir") or "")
        outside = allow_outside_root(cfg)
        captions, keys, names, paths = [], [], [], []
        for n, e in enumerate(data):
            where = f"{ann}: item {n}"
            require_fields(e, ["image", "caption"], where)
            image = require_str(e["image"], f"{where}: image", "an image path (string)")
            names.append(image)
            paths.append(safe_join(image_dir, image, f"{where}: image", outside))
            caps = e["caption"] if isinstance(e["caption"], list) else [e["caption"]]
            if not caps:
                raise DataIntegrityError(f"{where}: caption is an empty list; expected the image's captions")
            for j, c in enumerate(caps):
                captions.append(check_caption(c, f"{where}: caption[{j}]" if isinstance(e["caption"], list)
                                              else f"{where}: caption"))
                keys.append(image)
        check_unique(names, "image", str(ann), lambda k: f"item {k}")
        check_unique([path_key(str(p)) for p in paths], "image file", str(ann),
                     lambda k: f"item {k}")
        index = {name: i for i, name in enumerate(names)}
        check_images_exist(paths, f"aro {cfg['subset']}")
        tag_fn, tagger_info = (tagger, {"tagger": "caller-supplied"}) if tagger is not None else default_tagger()
        options = order_options(captions, cfg["seed"], cfg["max_words"], tag_fn)
        items = [CaptionItem(str(k), index[key], opts, 0, "order")
                 for k, (key, opts) in enumerate(zip(keys, options)) if opts is not None]
        dropped = sum(1 for o in options if o is None)
        if not items:
            raise DataError(f"{ann}: none of the {len(captions)} caption(s) has a perturbation that differs from "
                            f"the caption itself (after pre_caption, max_words={cfg['max_words']}); nothing to "
                            f"evaluate")
        fp = fingerprint("aro", [ann], paths, root, {"subset": cfg["subset"], "seed": cfg["seed"],
                                                     "max_words": cfg["max_words"], "tagger": tagger_info})
        info = {"subset": cfg["subset"], "annotations": str(ann), "seed": cfg["seed"], "max_words": cfg["max_words"],
                "perturbations": list(PERTURBATIONS), "pos_tagger": tagger_info,
                "items_without_distinct_perturbation": dropped}
        return CaptionSelectionSet(ImageSet(paths, names, fp), items, fp, len(items), info)


READER = AROReader()
