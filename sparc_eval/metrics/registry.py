"""The metric registry: every metric key a task may report, registered once.

Each key has a unit, a direction (``higher_is_better``), a value range and, where it does not
depend on the dataset, a chance level. Proportions are in percent (0-100). Leaderboard ranking
and ``check`` read the direction from here (CHAIR is lower-is-better).

Families: ``i2t_R@{k}``, ``t2i_R@{k}`` and ``mean_R@{k}`` for any integer k, and a dotted subset
key ``<key>.<subset>`` (e.g. ``acc.swap_att``, ``top1.severity_3``) inherits the properties of
``<key>``. Dataset-dependent chance levels (1/C, k/N) are computed by the task and stored in the
result file's ``chance`` field.

Keys marked ``control`` describe the dataset or a model's text prior rather than the model's skill
(``blind_acc``, ``artifact_acc`` and their per-category forms; see ``metrics.controls``): tables show
them beside the metrics, and neither ranking nor ``check`` reads them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError, UnknownNameError


@dataclass(frozen=True)
class MetricInfo:
    key: str
    description: str
    unit: str = "%"
    higher_is_better: bool = True
    low: float = 0.0
    high: float | None = 100.0
    chance: float | None = None
    control: bool = False


_REGISTRY: dict[str, MetricInfo] = {}
_FAMILIES: list[tuple[re.Pattern[str], str, str]] = []


def _register(key: str, description: str, **kw) -> None:
    if key in _REGISTRY:
        raise ValueError(f"metric {key!r} registered twice")
    _REGISTRY[key] = MetricInfo(key, description, **kw)


def _family(pattern: str, template: str, description: str) -> None:
    _FAMILIES.append((re.compile(pattern), template, description))


# Retrieval (k-specific keys are families, see below).
_family(r"^i2t_R@(\d+)$", "i2t_R@{0}", "image->text recall@{0}: % of images with any of their captions in the top {0}")
_family(r"^t2i_R@(\d+)$", "t2i_R@{0}", "text->image recall@{0}: % of captions whose image is in the top {0}")
_family(r"^mean_R@(\d+)$", "mean_R@{0}", "mean of i2t_R@{0} and t2i_R@{0} (as DataComp's mean_recall@1)")

# Classification and probes.
_register("top1", "top-1 accuracy")
_register("top5", "top-5 accuracy")
_register("mean_per_class_recall", "mean over classes of the per-class recall (balanced accuracy)")
_register("acc", "accuracy of a binary or multiple-choice probe (strict: ties count as wrong)")
_register("macro_acc", "unweighted mean of per-category accuracies")
_register("text_score", "Winoground text score: each image scores its own caption strictly higher than the other", chance=25.0)
_register("image_score", "Winoground image score: each caption scores its own image strictly higher than the other", chance=25.0)
_register("group_score", "Winoground group score (text and image score)", chance=100 / 6)
_register("blind_acc", "control: probe accuracy when every option is scored against the dataset's mean image "
          "embedding (the model's text prior alone; strict)", higher_is_better=False, control=True)
_register("artifact_acc", "control: accuracy of a text-only logistic regression (length, word unigrams and "
          "bigrams; folds grouped by image) at picking the right option; > 60 at the lower bound is flagged",
          higher_is_better=False, control=True)

# Dense prediction.
_register("mIoU", "mean intersection-over-union over classes")
_register("aAcc", "pixel accuracy over all non-ignored pixels")
_register("mAcc", "mean over classes of per-class pixel accuracy")
_register("bbox_AP", "COCO box AP@[.50:.95]")
_register("bbox_AP50", "COCO box AP@.50")
_register("bbox_AP75", "COCO box AP@.75")
_register("bbox_APs", "COCO box AP, small objects")
_register("bbox_APm", "COCO box AP, medium objects")
_register("bbox_APl", "COCO box AP, large objects")
_register("segm_AP", "COCO mask AP@[.50:.95]")
_register("segm_AP50", "COCO mask AP@.50")
_register("segm_AP75", "COCO mask AP@.75")
_register("segm_APs", "COCO mask AP, small objects")
_register("segm_APm", "COCO mask AP, medium objects")
_register("segm_APl", "COCO mask AP, large objects")

# Caption faithfulness and captioning.
_register("K-P", "K-Precision over all caption tokens against the references")
_register("K-Pna", "K-Precision over nouns and adjectives only")
_register("CHAIR_i", "CHAIR-i: hallucinated object mentions / all object mentions", higher_is_better=False)
_register("CHAIR_s", "CHAIR-s: captions with a hallucinated object / all captions", higher_is_better=False)
_register("K-P_miss", "K-P over the images whose retrieved caption is not one of their own references")
_register("K-Pna_miss", "K-Pna over the images whose retrieved caption is not one of their own references")
_register("CHAIR_i_miss", "CHAIR-i over the images whose retrieved caption is not one of their own references",
          higher_is_better=False)
_register("CHAIR_s_miss", "CHAIR-s over the images whose retrieved caption is not one of their own references",
          higher_is_better=False)
for _n in range(1, 5):
    _register(f"BLEU_{_n}", f"corpus BLEU-{_n} (pycocoevalcap), x100")
_register("METEOR", "METEOR 1.5 (pycocoevalcap), x100")
_register("ROUGE_L", "ROUGE-L F-measure (pycocoevalcap), x100")
_register("CIDEr", "CIDEr-D (pycocoevalcap) x100, as commonly reported", unit="CIDEr x100", high=1000.0)
_register("SPICE", "SPICE (pycocoevalcap), x100")


def get(key: str) -> MetricInfo:
    """The registered info for ``key``; raises ``UnknownNameError`` for unregistered keys."""
    if key in _REGISTRY:
        return _REGISTRY[key]
    for pattern, _template, description in _FAMILIES:
        m = pattern.match(key)
        if m:
            return MetricInfo(key, description.format(*m.groups()))
    base, dot, subset = key.partition(".")
    if dot and subset:
        info = get(base)
        return MetricInfo(key, f"{info.description} (subset: {subset})", info.unit,
                          info.higher_is_better, info.low, info.high, info.chance, info.control)
    raise UnknownNameError("metric", key, known())


def is_registered(key: str) -> bool:
    try:
        get(key)
    except UnknownNameError:
        return False
    return True


def known() -> list[str]:
    """Registered keys plus one example of each family."""
    return sorted(_REGISTRY) + [t.format("1") for _, t, _ in _FAMILIES]


def check_keys(keys, where: str) -> None:
    """Raise ``ConfigError`` naming ``where`` if any key is unregistered."""
    bad = [k for k in keys if not is_registered(k)]
    if bad:
        raise ConfigError(f"{where}: unregistered metric key(s) {bad}; registered keys are listed by "
                          f"`sparc-eval list metrics` (e.g. {', '.join(known()[:8])}, ...).")


def better(key: str, a: float, b: float) -> bool:
    """Whether value ``a`` is strictly better than ``b`` for metric ``key``."""
    return a > b if get(key).higher_is_better else a < b
