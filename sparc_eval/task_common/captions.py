"""Scoring captions against references, shared by the caption task types (``captioning``: a
captioner's output; ``caption_faithfulness``: retrieved captions; ``caption_transfer``: a decoder on a
frozen backbone): K-P / K-Pna, CHAIR, and the pycocoevalcap metrics, with per-image records and
their aggregations (bootstrap intervals over images; BLEU and METEOR are corpus statistics without one).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DataError
from ..metrics.captioning import METRIC_KEYS, caption_scores, spice_missing
from ..metrics.chair import chair, chair_counts
from ..metrics.kprecision import REFERENCE_MODES, k_precision_refs
from ..params import Param

if TYPE_CHECKING:
    from ..text.pos import Token

MISSING_INSTANCES_WARN = 0.01  # fraction of evaluated images absent from the instances file that is logged


SCORING_PARAMS = {
    "kp_references": Param("str", "max", "K-Precision against each reference, max over them (max) or against "
                           "all references joined (union)", choices=REFERENCE_MODES),
    "chair_objects": Param("str", "", "CHAIR object vocabulary: coco, shapes, a synonyms file, or '' (no CHAIR)"),
    "instances": Param("str", "", "COCO instances JSON adding each image's annotated objects to the CHAIR ground "
                       "truth (relative to the dataset root); '' = objects of the references only"),
}


CAPTION_METRIC_PARAMS = {
    "spice_dir": Param("str", "", "folder with stanford-corenlp-3.6.0.jar and -models.jar to compute SPICE "
                       "('' = SPICE reported unavailable; never downloaded)"),
}


def scoring_keys(params: Mapping[str, Any], caption_metrics: bool) -> list[str]:
    keys = ["K-P", "K-Pna"]
    if params["chair_objects"]:
        keys += ["CHAIR_i", "CHAIR_s"]
    if caption_metrics:
        keys += list(METRIC_KEYS)
        if params["spice_dir"]:
            keys.append("SPICE")
    return keys


@dataclass
class ScoredCaptions:
    """Metrics, per-image records and their aggregations; with CHAIR, the object ``vocabulary`` and each
    image's ground-truth ``objects`` (for chance levels)."""

    metrics: dict[str, float]
    records: list[dict]
    aggregations: dict[str, dict]
    details: dict[str, Any] = field(default_factory=dict)
    vocabulary: Any = None
    objects: list[set[str]] | None = None


def ground_truth_objects(params: Mapping[str, Any], dataset_root: str | None, ids: Sequence[str],
                          references: Sequence[Sequence[str]], vocab, log: Callable[[str], None]
                          ) -> tuple[list[set[str]], dict]:
    """Each image's ground-truth objects; with ``instances``, a file that lists none of the images is
    a ``DataError`` and one missing more than ``MISSING_INSTANCES_WARN`` of them is logged."""
    from ..data.coco_objects import image_objects

    gt = [vocab.objects_in(list(refs)) for refs in references]
    info: dict[str, Any] = {"vocabulary": vocab.name, "n_objects": len(vocab.objects),
                            "ground_truth": "objects named in the references"}
    if params["instances"]:
        path = Path(params["instances"]).expanduser()
        if not path.is_absolute() and dataset_root:
            path = Path(dataset_root).expanduser() / path
        per_image = image_objects(path)
        unknown = sorted({n for names in per_image.values() for n in names if vocab.canonical(n) is None})
        if unknown:
            raise DataError(f"{path}: categories {unknown[:5]} are not in the {vocab.name!r} object vocabulary")
        missing = [img_id for img_id in ids if img_id not in per_image]
        if len(missing) == len(ids):
            raise DataError(f"{path}: none of the {len(ids)} evaluated images is in this instances file (e.g. "
                            f"image id {missing[0]!r}; the file has ids such as {sorted(per_image)[:3]}); expected "
                            f"the instances file of the evaluated split")
        if len(missing) > MISSING_INSTANCES_WARN * len(ids):
            log(f"warning: {path}: {len(missing)} of {len(ids)} evaluated images have no entry (e.g. image id "
                f"{missing[0]!r}); their CHAIR ground truth is the objects of their references only")
        for i, img_id in enumerate(ids):
            gt[i] |= {vocab.canonical(n) for n in per_image.get(img_id, ())}
        info.update({"ground_truth": "instance annotations + objects named in the references",
                     "instances": str(path), "images_without_instances": len(missing)})
    return gt, info


def score_captions(ids: Sequence[str], references: Sequence[Sequence[str]], captions: Sequence[str],
                   params: Mapping[str, Any], caption_metrics: bool, dataset_root: str | None = None,
                   log: Callable[[str], None] = print, tagged: Sequence[Sequence[Token]] | None = None
                   ) -> ScoredCaptions:
    """Score ``captions[i]`` (one per image ``ids[i]``) against ``references[i]``; ``tagged[i]`` is
    ``pos.analyse(captions[i])`` when the caller already has it (else the captions are tagged here)."""
    from ..text import pos
    from ..text.normalize import noun_adj_tokens, tokens

    mode = params["kp_references"]
    ref_tokens = [[tokens(r) for r in refs] for refs in references]
    if tagged is None:
        tagged = pos.analyse_many(captions)
    records: list[dict] = []
    no_content = 0
    for i, (img_id, cap) in enumerate(zip(ids, captions)):
        content = noun_adj_tokens(cap, tagged[i])
        no_content += not content
        records.append({"id": f"image:{img_id}", "cluster": img_id, "caption": cap,
                        "kp": k_precision_refs(tokens(cap), ref_tokens[i], mode),
                        "kpna": k_precision_refs(content, ref_tokens[i], mode), "n_noun_adj": len(content)})
    n = len(records)
    metrics = {"K-P": 100.0 * sum(r["kp"] for r in records) / n, "K-Pna": 100.0 * sum(r["kpna"] for r in records) / n}
    aggregations = {"K-P": {"kind": "mean", "field": "kp", "scale": 100},
                    "K-Pna": {"kind": "mean", "field": "kpna", "scale": 100}}
    details: dict[str, Any] = {
        "k_precision": {"references": mode, "normalisation": "lower-case, ASCII punctuation removed, articles "
                        "a/an/the removed, whitespace tokens (instruct-qa)",
                        "noun_adj": "tokens of words with a NOUN/PROPN/ADJ token, against all reference tokens",
                        "captions_without_nouns_adjectives": no_content, "pos_tagger": pos.pipeline_info()}}

    vocab, gt = None, None
    if params["chair_objects"]:
        from ..text.objects import load_vocabulary

        vocab = load_vocabulary(params["chair_objects"])
        gt, info = ground_truth_objects(params, dataset_root, ids, references, vocab, log)
        counts = [chair_counts([o for _, o in vocab.mentions(c)], g) for c, g in zip(captions, gt)]
        for r, c in zip(records, counts):
            r.update({"chair_mentions": c.mentions, "chair_hallucinated": len(c.hallucinated),
                      "chair_any": int(c.any_hallucinated), "hallucinated": list(c.hallucinated)})
        metrics.update(chair(counts))
        aggregations["CHAIR_i"] = {"kind": "ratio", "num": "chair_hallucinated", "den": "chair_mentions", "scale": 100}
        aggregations["CHAIR_s"] = {"kind": "mean", "field": "chair_any", "scale": 100}
        details["chair"] = {**info, "mentions": sum(c.mentions for c in counts)}

    if caption_metrics:
        log(f"caption metrics (pycocoevalcap) on {n} captions")
        spice_dir = params["spice_dir"] or None
        if spice_dir and spice_missing(spice_dir):
            raise ConfigError(f"params.spice_dir: {spice_missing(spice_dir)}")
        scores = caption_scores(dict(zip(ids, (list(r) for r in references))), dict(zip(ids, captions)), spice_dir)
        metrics.update(scores.metrics)
        for r, img_id in zip(records, ids):
            r.update(scores.per_image[img_id])
        aggregations["ROUGE_L"] = {"kind": "mean", "field": "ROUGE_L", "scale": 1}
        aggregations["CIDEr"] = {"kind": "mean", "field": "CIDEr", "scale": 1}
        details["caption_metrics"] = {
            "library": "pycocoevalcap 1.2 (PTB tokenizer, Bleu(4) closest ref length, METEOR 1.5 -l en -norm, "
                       "ROUGE-L beta 1.2, CIDEr-D sigma 6 with idf from these references)",
            "scale": "x100", "timings_s": {k: round(v, 3) for k, v in scores.timings.items()},
            "meteor_jvm_startup_s": round(scores.timings["meteor_startup"], 3),
            "no_interval": "BLEU_1..4 and METEOR are corpus statistics (not means of per-image values)",
            "spice": "computed" if "SPICE" in scores.metrics else spice_missing(None)}
    return ScoredCaptions(metrics, records, aggregations, details, vocab, gt)


def image_references(data) -> list[list[str]]:
    """The captions of each image of a ``RetrievalSet``, in image order."""
    refs: list[list[str]] = [[] for _ in range(len(data.images))]
    for cap, i in zip(data.captions, data.caption_image):
        refs[int(i)].append(cap)
    return refs


