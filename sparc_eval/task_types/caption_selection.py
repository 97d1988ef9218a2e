"""Caption selection probes (SugarCrepe, ARO): does the image score its right caption strictly higher
than every wrong one?

Scores are cosine similarities of l2-normalised global embeddings from the engine (each distinct
image and caption encoded once, cached). An item is correct when its right option's score is
strictly greater than every other option's (ties count as wrong). Reports ``acc`` (over all items),
``acc.<category>`` for each category in the macro mean and ``macro_acc`` (their unweighted mean).
Categories enter the macro mean unless the reader's protocol excludes them (ARO's symmetric VG
relations) or they have fewer than ``min_category_count`` items (ARO VG-Attribution: 25). Records
(one per item, clustered by image) hold the option scores.
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
        return ["acc", "macro_acc"]

    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        data = self.load_data(ctx.limit)
        img = ctx.engine.image_embeddings(data.images, desc=f"{self.config.name}: images")
        texts = list(dict.fromkeys(o for it in data.items for o in it.options))
        txt = ctx.engine.text_embeddings(texts, desc=f"{self.config.name}: captions")
        scores = self._scores(data, img, txt, {t: i for i, t in enumerate(texts)})
        correct_idx = np.array([it.correct for it in data.items])
        correct = selection_correct(scores, correct_idx)
        categories = [it.category for it in data.items]
        per_cat = category_accuracy(correct, categories)
        eligible = eligible_categories(per_cat, self.config.params["min_category_count"], data.excluded_categories)
        if not eligible:
            largest = max(per_cat.items(), key=lambda kv: kv[1][1])
            raise ConfigError(f"task {self.config.name!r}: no category has min_category_count="
                              f"{self.config.params['min_category_count']} items (the largest, {largest[0]!r}, has "
                              f"{largest[1][1]}), so macro_acc is undefined; lower --param min_category_count")
        metrics = {"acc": 100 * float(correct.mean()), "macro_acc": 100 * macro_accuracy(per_cat, eligible)}
        metrics.update({f"acc.{c}": 100 * per_cat[c][0] for c in eligible})
        aggregations = {"acc": {"kind": "mean", "field": "correct", "scale": 100}}
        aggregations.update({f"acc.{c}": {"kind": "mean", "field": f"acc.{c}", "scale": 100} for c in eligible})
        if eligible:
            aggregations["macro_acc"] = {"kind": "mean_of", "metrics": [f"acc.{c}" for c in eligible]}
        in_macro = set(eligible)
        records = []
        for it, ok, row in zip(data.items, correct, scores):
            rec = {"id": it.id, "cluster": it.cluster or data.images.ids[it.image], "category": it.category,
                   "correct": int(ok),
                   "scores": [round(float(s), 6) for s in row[: len(it.options)]]}
            if it.category in in_macro:
                rec[f"acc.{it.category}"] = int(ok)
            records.append(rec)
        n_options = np.array([len(it.options) for it in data.items])
        ties = int(np.sum(scores[np.arange(len(scores)), correct_idx] == best_wrong_option(scores, correct_idx)))
        groups = {g: 100 * macro_accuracy(per_cat, [c for c in members if c in per_cat])
                  for g, members in self.config.params["category_groups"].items()}
        details = {"per_category": {c: {"acc": 100 * a, "n": n, "in_macro": c in in_macro}
                                    for c, (a, n) in per_cat.items()},
                   "excluded_categories": sorted(set(per_cat) & set(data.excluded_categories)),
                   "min_category_count": self.config.params["min_category_count"],
                   "group_means": groups, "n_items": len(data.items), "n_images": len(data.images),
                   "options_per_item": {"min": int(n_options.min()), "max": int(n_options.max())},
                   "tied_with_right_option": ties, "comparison": "strict: right option > every other option",
                   "captions_truncated": ctx.engine.count_truncated(texts), **data.info}
        chance = {"acc": 100 * float(np.mean(1 / n_options))}
        if eligible:
            cats = np.array(categories, dtype=object)
            chance["macro_acc"] = 100 * float(np.mean([np.mean(1 / n_options[cats == c]) for c in eligible]))
        return TaskResult(metrics=metrics, main_metric=self.config.main_metric, records=records,
                          aggregations=aggregations, chance=chance, details=details, n_total=data.n_total,
                          n_used=len(data.items), dataset_fingerprint=data.fingerprint)

    @staticmethod
    def _scores(data, img: torch.Tensor, txt: torch.Tensor, text_index: dict[str, int]) -> np.ndarray:
        """[N, K] cosine scores of each item's image with its options (NaN pads shorter items)."""
        k = max(len(it.options) for it in data.items)
        option_idx = np.full((len(data.items), k), -1, dtype=np.int64)
        for n, it in enumerate(data.items):
            option_idx[n, : len(it.options)] = [text_index[o] for o in it.options]
        image_idx = torch.tensor([it.image for it in data.items])
        out = np.empty(option_idx.shape, dtype=np.float64)
        for s in range(0, len(data.items), ITEM_BLOCK):
            opts = torch.from_numpy(option_idx[s:s + ITEM_BLOCK])
            block = torch.einsum("nd,nkd->nk", img[image_idx[s:s + ITEM_BLOCK]], txt[opts.clamp(min=0)]).double()
            out[s:s + ITEM_BLOCK] = block.masked_fill(opts < 0, float("nan")).numpy()
        return out
