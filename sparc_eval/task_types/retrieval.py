"""Zero-shot image-text retrieval: recall@k in both directions over every caption of every image.

Reports ``i2t_R@k`` (image query, any of its captions counts), ``t2i_R@k`` (caption query) and
``mean_R@k``; ties resolved by expectation (see ``metrics.retrieval``). Per-sample records hold, for
each query, ``rank`` (non-matches strictly above its best match, i.e. its 0-based rank when ties
are broken in its favour) and ``ties``; the cluster of every record is its image, so captions
follow their image in the bootstrap. For ``examples`` image queries the record also keeps the ids of
its top-5 captions (``top``, ``top_hit``; ``task_common.examples``), shown on the leaderboard page.
"""
from __future__ import annotations

import numpy as np

from ..metrics.retrieval import chance_recall, hits_at_k, recall_from_hits, retrieval_counts, topk_hits_faiss
from ..params import Param
from ..task_common import examples
from .base import EvalContext, TaskResult, TaskType


class Retrieval(TaskType):
    name = "retrieval"
    dataset_kind = "retrieval"
    description = "image->text and text->image recall@k (Karpathy / COCO captions)"
    params = {
        "recall_at": Param("list[int]", [1, 5, 10], "the k of recall@k", min=1, max=10**9, nonempty=True),
        "block": Param("int", 1024, "images per block of the chunked score computation (memory bound)", min=1,
                       affects_numbers=False),
        "stream": Param("bool", False, "read embeddings block by block from the on-disk cache instead of memory",
                        affects_numbers=False),
        "backend": Param("str", "exact", "exact: tie-aware counts (torch); faiss: running top-k with faiss "
                         "(ties broken arbitrarily)", choices=("exact", "faiss")),
        "per_sample": Param("bool", True, "write per-query records (needed for intervals, check, compare)"),
        "examples": examples.PARAM,
    }

    @classmethod
    def metric_keys(cls, params):
        return [f"{d}_R@{k}" for k in params["recall_at"] for d in ("i2t", "t2i", "mean")]

    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        p = self.config.params
        data = self.load_data(ctx.limit)
        ks = p["recall_at"]
        if p["stream"]:
            img = ctx.engine.image_source(data.images, desc=f"{self.config.name}: images")
            txt = ctx.engine.text_source(data.captions, desc=f"{self.config.name}: captions")
        else:
            img = ctx.engine.image_embeddings(data.images, desc=f"{self.config.name}: images")
            txt = ctx.engine.text_embeddings(data.captions, desc=f"{self.config.name}: captions")
        if p["backend"] == "faiss":
            i2t_hits, t2i_hits = topk_hits_faiss(img, txt, data.caption_image, ks, block=p["block"])
            i2t = {k: i2t_hits[:, c] for c, k in enumerate(ks)}
            t2i = {k: t2i_hits[:, c] for c, k in enumerate(ks)}
            ranks = None
        else:
            ranks = retrieval_counts(img, txt, data.caption_image, block=p["block"])
            i2t, t2i = hits_at_k(ranks, ks)
        metrics = recall_from_hits(i2t, t2i)
        aggregations = {}
        for k in ks:
            aggregations[f"i2t_R@{k}"] = {"kind": "mean", "field": f"i2t_R@{k}", "scale": 100}
            aggregations[f"t2i_R@{k}"] = {"kind": "mean", "field": f"t2i_R@{k}", "scale": 100}
            aggregations[f"mean_R@{k}"] = {"kind": "mean_of", "metrics": [f"i2t_R@{k}", f"t2i_R@{k}"]}
        caps = np.bincount(data.caption_image, minlength=len(data.images))
        chance = {}
        for k in ks:
            chance.update(chance_recall(caps, k))
        details = {"n_images": len(data.images), "n_captions": len(data.captions),
                   "captions_per_image": {"min": int(caps.min()), "max": int(caps.max())},
                   "captions_truncated": ctx.engine.count_truncated(data.captions),
                   "caption_text": "raw (as written in the annotation file, surrounding whitespace stripped)",
                   "backend": p["backend"], "streamed": p["stream"],
                   "ties": "expected value over random tie order" if p["backend"] == "exact"
                   else "broken in faiss's order", **data.info}
        records = self._records(data, i2t, t2i, ranks, ks) if p["per_sample"] else None
        if records and p["examples"]:
            details["examples"] = self._examples(data, img, txt, records, p["examples"])
        return TaskResult(metrics=metrics, main_metric=self.config.main_metric, records=records,
                          aggregations=aggregations if records else {}, chance=chance, details=details,
                          n_total=data.n_total_images, n_used=len(data.images), dataset_fingerprint=data.fingerprint)

    @staticmethod
    def _examples(data, img, txt, records: list[dict], count: int) -> dict:
        """Top-5 captions of ``count`` image queries, kept in their records (the first records are the images')."""
        idx = examples.example_indices(len(data.images), count)
        top = examples.top_candidates(examples.rows_of(img, idx), txt)
        texts = {}
        for q, i in enumerate(idx):
            records[i]["top"] = [str(data.caption_ids[j]) for j in top[q]]
            records[i]["top_hit"] = [int(data.caption_image[j] == i) for j in top[q]]
            texts.update({str(data.caption_ids[j]): data.captions[j] for j in top[q]})
        return examples.examples_details(data.images, idx, "image → captions", texts)

    @staticmethod
    def _records(data, i2t, t2i, counts, ks) -> list[dict]:
        records = []
        for i, img_id in enumerate(data.images.ids):
            r = {"id": f"image:{img_id}", "cluster": img_id, "direction": "i2t"}
            if counts is not None:
                r.update(rank=int(counts.i2t_gt[i]), ties=int(counts.i2t_eq[i]))
            r.update({f"i2t_R@{k}": float(i2t[k][i]) for k in ks})
            records.append(r)
        for j, cap_id in enumerate(data.caption_ids):
            img_id = data.images.ids[data.caption_image[j]]
            r = {"id": f"caption:{cap_id}", "cluster": img_id, "direction": "t2i"}
            if counts is not None:
                r.update(rank=int(counts.t2i_gt[j]), ties=int(counts.t2i_eq[j]))
            r.update({f"t2i_R@{k}": float(t2i[k][j]) for k in ks})
            records.append(r)
        return records
