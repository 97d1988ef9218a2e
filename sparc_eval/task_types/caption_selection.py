"""Caption selection probes (SugarCrepe, ARO): does the image score its right caption strictly higher
than every wrong one?

Scores are cosine similarities of l2-normalised global embeddings from the engine (each distinct
image and caption encoded once, cached). An item is correct when its right option's score is
strictly greater than every other option's (ties count as wrong). Reports ``acc`` (over all items),
``acc.<category>`` for each category in the macro mean and ``macro_acc`` (their unweighted mean).
Categories enter the macro mean unless the reader's protocol excludes them (ARO's symmetric VG
relations) or they have fewer than ``min_category_count`` items (ARO VG-Attribution: 25). Records
(one per item, clustered by image) hold the option scores.

Controls (``metrics.controls``), reported beside the metrics (registered as controls: never ranked):

- ``blind_acc`` (and ``blind_acc.<category>``): the same strict selection when every option is scored
  against the mean image embedding of the dataset instead of its own image -- the model's text prior
  alone. A probe answered as well blind as with the image does not measure image understanding.
- ``artifact_acc`` (and ``artifact_acc.<category>``): a text-only classifier (logistic regression on
  length and word unigram/bigram counts) fit to tell right options from wrong ones, cross-validated
  with folds grouped by image, with a bootstrap interval over images. A category whose interval's lower
  bound exceeds 60% is *flagged* (``details["artifact_flagged"]``): its negatives are told apart by
  their text alone, whatever the model.

Chance: the mean over items of 1/options, for every metric (``acc``, ``acc.<c>``, ``macro_acc`` and
the controls).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from ..metrics.compositional import (
    best_wrong_option,
    category_accuracy,
    eligible_categories,
    macro_accuracy,
    selection_correct,
)
from ..metrics.controls import ARTIFACT_FLAG, artifact_accuracy, blind_scores
from ..params import Param
from .base import EvalContext, TaskResult, TaskType

ITEM_BLOCK = 8192


class CaptionSelection(TaskType):
    name = "caption_selection"
    dataset_kind = "caption_selection"
    description = "pick the right caption among hard negatives (SugarCrepe, ARO); strict comparisons"
    params: ClassVar[dict[str, Param]] = {
        "min_category_count": Param("int", 0, "categories with fewer items are left out of the macro mean",
                                    min=0),
        "category_groups": Param("dict", {}, "named groups of categories whose mean accuracies go in details "
                                             "(e.g. SugarCrepe's add / replace / swap)"),
    }

    @classmethod
    def metric_keys(cls, params):
        return ["acc", "macro_acc", "blind_acc", "artifact_acc"]

    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        data = self.load_data(ctx.limit)
        img = ctx.engine.image_embeddings(data.images, desc=f"{self.config.name}: images")
        texts = list(dict.fromkeys(o for it in data.items for o in it.options))
        txt = ctx.engine.text_embeddings(texts, desc=f"{self.config.name}: captions")
        option_idx = self._option_index(data, {t: i for i, t in enumerate(texts)})
        scores = self._scores(data, img, txt, option_idx)
        blind = blind_scores(txt.float().numpy(), option_idx, img.float().numpy())
        correct_idx = np.array([it.correct for it in data.items])
        correct = selection_correct(scores, correct_idx)
        blind_ok = selection_correct(blind, correct_idx)
        categories = [it.category for it in data.items]
        per_cat = category_accuracy(correct, categories)
        blind_cat = category_accuracy(blind_ok, categories)
        eligible = eligible_categories(per_cat, self.config.params["min_category_count"], data.excluded_categories)
        if not eligible:
            largest = max(per_cat.items(), key=lambda kv: kv[1][1])
            raise ConfigError(f"task {self.config.name!r}: no category has min_category_count="
                              f"{self.config.params['min_category_count']} items (the largest, {largest[0]!r}, has "
                              f"{largest[1][1]}), so macro_acc is undefined; lower --param min_category_count")
        metrics = {"acc": 100 * float(correct.mean()), "macro_acc": 100 * macro_accuracy(per_cat, eligible)}
        metrics.update({f"acc.{c}": 100 * per_cat[c][0] for c in eligible})
        metrics["blind_acc"] = 100 * float(blind_ok.mean())
        metrics.update({f"blind_acc.{c}": 100 * blind_cat[c][0] for c in eligible})
        aggregations = {"acc": {"kind": "mean", "field": "correct", "scale": 100},
                        "blind_acc": {"kind": "mean", "field": "blind_correct", "scale": 100}}
        for c in eligible:
            aggregations[f"acc.{c}"] = {"kind": "mean", "field": f"acc.{c}", "scale": 100}
            aggregations[f"blind_acc.{c}"] = {"kind": "mean", "field": f"blind_acc.{c}", "scale": 100}
        if eligible:
            aggregations["macro_acc"] = {"kind": "mean_of", "metrics": [f"acc.{c}" for c in eligible]}
        in_macro = set(eligible)
        records = []
        for it, ok, b_ok, row, b_row in zip(data.items, correct, blind_ok, scores, blind):
            rec = {"id": it.id, "cluster": self._cluster(data, it), "category": it.category,
                   "correct": int(ok), "blind_correct": int(b_ok),
                   "scores": [round(float(s), 6) for s in row[: len(it.options)]],
                   "blind_scores": [round(float(s), 6) for s in b_row[: len(it.options)]]}
            if it.category in in_macro:
                rec[f"acc.{it.category}"] = int(ok)
                rec[f"blind_acc.{it.category}"] = int(b_ok)
            records.append(rec)
        artifact, intervals, artifact_details = self._artifact(data, eligible, ctx.seed)
        metrics.update(artifact)
        n_options = np.array([len(it.options) for it in data.items])
        ties = int(np.sum(scores[np.arange(len(scores)), correct_idx] == best_wrong_option(scores, correct_idx)))
        groups = {g: 100 * macro_accuracy(per_cat, [c for c in members if c in per_cat])
                  for g, members in self.config.params["category_groups"].items()}
        details = {"per_category": {c: {"acc": 100 * a, "blind_acc": 100 * blind_cat[c][0], "n": n,
                                        "in_macro": c in in_macro} for c, (a, n) in per_cat.items()},
                   "excluded_categories": sorted(set(per_cat) & set(data.excluded_categories)),
                   "min_category_count": self.config.params["min_category_count"],
                   "group_means": groups, "n_items": len(data.items), "n_images": len(data.images),
                   "options_per_item": {"min": int(n_options.min()), "max": int(n_options.max())},
                   "tied_with_right_option": ties, "comparison": "strict: right option > every other option",
                   "blind": "options scored against the l2-normalised mean of the dataset's image embeddings (the "
                            "model's text prior alone); strict, as acc",
                   **artifact_details,
                   "captions_truncated": ctx.engine.count_truncated(texts), **data.info}
        return TaskResult(metrics=metrics, main_metric=self.config.main_metric, records=records,
                          aggregations=aggregations, intervals=intervals,
                          chance=self._chance(metrics, categories, n_options, eligible), details=details,
                          n_total=data.n_total, n_used=len(data.items), dataset_fingerprint=data.fingerprint)

    @staticmethod
    def _cluster(data, it) -> str:
        return it.cluster or data.images.ids[it.image]

    @staticmethod
    def _chance(metrics: dict, categories: list[str], n_options: np.ndarray, eligible: list[str]) -> dict[str, float]:
        """1/options averaged over the items each metric counts (categories: their own items)."""
        cats = np.array(categories, dtype=object)
        per_cat = {c: 100 * float(np.mean(1 / n_options[cats == c])) for c in dict.fromkeys(categories)}
        overall = 100 * float(np.mean(1 / n_options))
        chance = {}
        for key in metrics:
            cat = key.partition(".")[2]
            if key == "macro_acc":
                if eligible:
                    chance[key] = float(np.mean([per_cat[c] for c in eligible]))
            elif cat:
                chance[key] = per_cat[cat]
            else:
                chance[key] = overall
        return chance

    def _artifact(self, data, eligible: list[str], seed: int) -> tuple[dict, dict, dict]:
        """``artifact_acc`` (over all items, one classifier) and ``artifact_acc.<c>`` (one per category of the
        macro mean), their intervals and the details: per category, and the flagged ones."""
        options = [list(it.options) for it in data.items]
        correct = [it.correct for it in data.items]
        groups = [self._cluster(data, it) for it in data.items]
        overall = artifact_accuracy(options, correct, groups, seed=seed)["all"]
        per_cat = artifact_accuracy(options, correct, groups, [it.category for it in data.items], seed=seed)
        metrics = {"artifact_acc": overall.acc}
        intervals = {"artifact_acc": list(overall.interval)}
        for c in eligible:
            metrics[f"artifact_acc.{c}"] = per_cat[c].acc
            intervals[f"artifact_acc.{c}"] = list(per_cat[c].interval)
        flagged = [c for c, r in per_cat.items() if r.flagged]
        details = {"artifact": {
            "classifier": "logistic regression (C=1, no intercept) on differences right - wrong option of: length in "
                          "words and characters/5, word unigram and bigram counts; 5 folds grouped by image (GroupKFold), "
                          "one classifier per category; 95% bootstrap interval over images",
            "flag_above": ARTIFACT_FLAG, "overall_flagged": overall.flagged,
            "per_category": {c: {"acc": r.acc, "interval": list(r.interval), "n": r.n, "flagged": r.flagged}
                             for c, r in per_cat.items()}},
            "artifact_flagged": flagged}
        return metrics, intervals, details

    @staticmethod
    def _option_index(data, text_index: dict[str, int]) -> np.ndarray:
        """[N, K] row of each item's options among the encoded texts (-1 pads shorter items)."""
        k = max(len(it.options) for it in data.items)
        option_idx = np.full((len(data.items), k), -1, dtype=np.int64)
        for n, it in enumerate(data.items):
            option_idx[n, : len(it.options)] = [text_index[o] for o in it.options]
        return option_idx

    @staticmethod
    def _scores(data, img: torch.Tensor, txt: torch.Tensor, option_idx: np.ndarray) -> np.ndarray:
        """[N, K] cosine scores of each item's image with its options (NaN pads shorter items)."""
        image_idx = torch.tensor([it.image for it in data.items])
        out = np.empty(option_idx.shape, dtype=np.float64)
        for s in range(0, len(data.items), ITEM_BLOCK):
            opts = torch.from_numpy(option_idx[s:s + ITEM_BLOCK])
            block = torch.einsum("nd,nkd->nk", img[image_idx[s:s + ITEM_BLOCK]], txt[opts.clamp(min=0)]).double()
            out[s:s + ITEM_BLOCK] = block.masked_fill(opts < 0, float("nan")).numpy()
        return out
