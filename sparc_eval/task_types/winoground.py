"""Winoground's 2x2 probe: text, image and group scores with strict inequalities (Thrush et al. 2022).

With s(c, i) the cosine similarity of caption c and image i (global l2-normalised embeddings from the
engine): text score = s(c0,i0) > s(c1,i0) and s(c1,i1) > s(c0,i1); image score = s(c0,i0) > s(c0,i1)
and s(c1,i1) > s(c1,i0); group score = both. Metrics are the percentages over items (chance 25, 25
and 16.7). Per-tag scores (``tag_field``, default the collapsed tag) go in details; records hold
each item's 2x2 scores.

The text-only controls of the caption-selection probes (``blind_acc``, ``artifact_acc``) are undefined
here, and the details say so: each caption is right for one image and wrong for the other, so a score
that ignores the image ranks the two captions alike for both images (text score 0 by construction),
and no text feature separates a right caption from a wrong one.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ..metrics.compositional import winoground_scores
from ..params import Param
from .base import EvalContext, TaskResult, TaskType

KEYS = ("text_score", "image_score", "group_score")
CONTROLS_UNDEFINED = ("blind_acc and artifact_acc are undefined for Winoground: every caption is the right one for "
                      "one image and the wrong one for the other, so a text-only score (the model's text prior, or a "
                      "classifier of the caption's words) ranks the two captions alike for both images and gets the "
                      "text score 0 by construction; the chance levels (25, 25, 16.7) are the controls")


class Winoground(TaskType):
    name = "winoground"
    dataset_kind = "winoground"
    description = "Winoground 2x2 image-caption matching: text, image and group scores (strict)"
    params: ClassVar[dict[str, Param]] = {
        "tag_field": Param("str", "collapsed_tag", "item metadata field broken down in details")}

    @classmethod
    def metric_keys(cls, params):
        return list(KEYS)

    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        data = self.load_data(ctx.limit)
        img = ctx.engine.image_embeddings(data.images, desc=f"{self.config.name}: images")
        texts = list(dict.fromkeys(c for it in data.items for c in it.captions))
        txt = ctx.engine.text_embeddings(texts, desc=f"{self.config.name}: captions")
        index = {t: i for i, t in enumerate(texts)}
        cap = torch.tensor([[index[c] for c in it.captions] for it in data.items])
        ims = torch.tensor([list(it.images) for it in data.items])
        s = torch.einsum("ncd,nid->nci", txt[cap], img[ims]).double().numpy()
        text, image, group = winoground_scores(s)
        metrics = {k: 100 * float(v.mean()) for k, v in zip(KEYS, (text, image, group))}
        aggregations = {k: {"kind": "mean", "field": k.split("_")[0], "scale": 100} for k in KEYS}
        records = [{"id": it.id, "cluster": it.id, "text": int(t), "image": int(i), "group": int(g),
                    "scores": [[round(float(v), 6) for v in row] for row in si], **it.tags}
                   for it, t, i, g, si in zip(data.items, text, image, group, s)]
        field = self.config.params["tag_field"]
        by_tag: dict[str, dict] = {}
        for tag in dict.fromkeys(str(it.tags.get(field)) for it in data.items if field in it.tags):
            mask = np.array([str(it.tags.get(field)) == tag for it in data.items])
            by_tag[tag] = {"n": int(mask.sum()), **{k: 100 * float(v[mask].mean())
                                                     for k, v in zip(KEYS, (text, image, group))}}
        details = {"n_items": len(data.items), "comparison": "strict inequalities (ties count as wrong)",
                   "controls": CONTROLS_UNDEFINED,
                   f"by_{field}": by_tag, "captions_truncated": ctx.engine.count_truncated(texts), **data.info}
        chance = {"text_score": 25.0, "image_score": 25.0, "group_score": 100 / 6}
        return TaskResult(metrics=metrics, main_metric=self.config.main_metric, records=records,
                          aggregations=aggregations, chance=chance, details=details, n_total=data.n_total,
                          n_used=len(data.items), dataset_fingerprint=data.fingerprint)
