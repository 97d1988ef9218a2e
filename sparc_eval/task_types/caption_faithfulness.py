"""Retrieval-based caption faithfulness (the SPARC paper's Table 4 protocol, paper.md §3 item 3).

For every image, the top-1 caption of the pool of *all* captions of the evaluated images (its own
references included, so retrieving one of them scores 100) is scored with K-Precision against the
image's references: over all tokens (``K-P``) and over the tokens of nouns and adjectives (``K-Pna``),
max over references by default (``kp_references: union`` joins them). Optionally CHAIR on the
retrieved captions (``chair_objects``). Embeddings come from the engine (cached, shared with retrieval).

Ties: among captions whose score equals the image's best score exactly, the one with the lowest
pseudo-random priority (a hash of image index, caption index and ``--seed``) is taken: a seeded random
tie-break, independent across images, so a degenerate model with all scores equal retrieves a random
caption per image (chance in expectation), not the pool's first. The number of tied
captions is recorded per image and images with ties are counted in the details.

Faithfulness apart from retrieval: ``K-P_miss``, ``K-Pna_miss``, ``CHAIR_i_miss``, ``CHAIR_s_miss`` are
the same metrics over the images whose retrieved caption is not one of their own references (each
record carries ``own_caption`` and the ``*_miss`` fields of ``metrics.controls.miss_fields``), so a
model that retrieves well reads apart from one whose wrong captions are still faithful. A metric over
no missed image (an oracle) is not reported.

Chance (``chance: true``): the exact expected value of a caption drawn uniformly from the pool,
averaged over images (``metrics.kprecision.chance_k_precision``, ``metrics.controls.faithfulness_chance``)
-- the value of a model that retrieves at random, and the score of the permuted oracle in
expectation -- for K-P, K-Pna, CHAIR_i and CHAIR_s; for the ``*_miss`` metrics the pool without the
image's own references. A model that ignores the image need not retrieve at random: a random text
tower retrieves the same few captions for every image, and lands above or below chance with them.
``details["controls"]["shuffled"]`` is the control for that: the expected metrics when each image gets
the caption this model retrieved for a uniformly drawn image (its own retrievals shuffled across
images). A model that uses the image scores above its shuffled value; one that does not, at it.
"""
from __future__ import annotations

import numpy as np
import torch

from ..metrics.controls import MISS_AGGREGATIONS, faithfulness_chance, miss_fields, miss_metrics
from ..params import Param
from ..task_common.captions import SCORING_PARAMS, image_references, score_captions, scoring_keys
from ..task_common.controls import faithfulness_miss_chance
from ..text import pos
from .base import EvalContext, TaskResult, TaskType

_NO_TIE = 1 << 40


def tie_priority(rows: torch.Tensor, cols: torch.Tensor, seed: int) -> torch.Tensor:
    """Pseudo-random int64 priorities in [0, 2^32) of (row, col) pairs (broadcast), a hash of (row, col,
    seed): independent across rows, so tied images do not all pick the same text."""
    x = (rows * 73856093) ^ (cols * 19349663) ^ (seed * 83492791 + 0x1B873593)
    x = x & 0xFFFFFFFF
    for _ in range(2):
        x = ((x ^ (x >> 15)) * 0x2545F491) & 0xFFFFFFFF
    return x ^ (x >> 13)


def top1_texts(image_emb: torch.Tensor, text_emb: torch.Tensor, block: int = 1024, text_block: int = 8192,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of each image's best-scoring text [N] and how many texts tie at that score [N].

    Scores are dot products, computed in blocks of ``block`` images x ``text_block`` texts (memory
    bounded); among exact ties the text with the lowest ``tie_priority(image, text, seed)`` wins.
    """
    img, txt = image_emb.float(), text_emb.float()
    n, m = img.shape[0], txt.shape[0]
    if m == 0:
        raise ValueError("no texts to retrieve from")
    best_s = torch.full((n,), -float("inf"))
    best_j = torch.zeros(n, dtype=torch.int64)
    best_p = torch.full((n,), _NO_TIE, dtype=torch.int64)
    tied = torch.zeros(n, dtype=torch.int64)
    for a in range(0, n, block):
        b = min(a + block, n)
        for ta in range(0, m, text_block):
            tb = min(ta + text_block, m)
            s = img[a:b] @ txt[ta:tb].T
            mx, arg = s.max(1)
            eq = s == mx[:, None]
            n_eq = eq.sum(1)
            rows = torch.arange(a, b)
            p_min = tie_priority(rows, ta + arg, seed)
            multi = (n_eq > 1).nonzero().squeeze(1)
            if multi.numel():
                prio = tie_priority(rows[multi, None], torch.arange(ta, tb)[None, :], seed)
                p_multi, arg_multi = torch.where(eq[multi], prio, _NO_TIE).min(1)
                p_min[multi], arg[multi] = p_multi, arg_multi
            cur_s, cur_p = best_s[a:b], best_p[a:b]
            better, same = mx > cur_s, mx == cur_s
            take = better | (same & (p_min < cur_p))
            best_j[a:b] = torch.where(take, arg + ta, best_j[a:b])
            best_p[a:b] = torch.where(take, p_min, cur_p)
            tied[a:b] = torch.where(better, n_eq, torch.where(same, tied[a:b] + n_eq, tied[a:b]))
            best_s[a:b] = torch.maximum(cur_s, mx)
    return best_j, tied


class CaptionFaithfulness(TaskType):
    name = "caption_faithfulness"
    dataset_kind = "retrieval"
    description = "K-Precision (K-P, K-Pna) of each image's top-1 retrieved caption against its references"
    params = {**SCORING_PARAMS,
              "block": Param("int", 1024, "images per block of the chunked top-1 search (memory bound)", min=1),
              "chance": Param("bool", True, "compute the expected K-P/K-Pna of a uniformly random pool caption")}

    @classmethod
    def metric_keys(cls, params):
        return scoring_keys(params, caption_metrics=False)

    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        data = self.load_data(ctx.limit)
        img = ctx.engine.image_embeddings(data.images, desc=f"{self.config.name}: images")
        txt = ctx.engine.text_embeddings(data.captions, desc=f"{self.config.name}: captions")
        best, tied = top1_texts(img, txt, block=self.config.params["block"], seed=ctx.seed)
        refs = image_references(data)
        retrieved = [data.captions[int(j)] for j in best]
        # The pool is tagged once when chance needs all of it; the retrieved captions index into it.
        pool_tags = pos.analyse_many(data.captions) if self.config.params["chance"] else None
        scored = score_captions(data.images.ids, refs, retrieved, self.config.params, False,
                                self.config.dataset.get("root"), ctx.log,
                                tagged=None if pool_tags is None else [pool_tags[int(j)] for j in best])
        own = 0
        for i, r in enumerate(scored.records):
            j = int(best[i])
            r.update({"retrieved_caption_id": data.caption_ids[j], "own_caption": int(data.caption_image[j]) == i,
                      "ties": int(tied[i])})
            r.update(miss_fields(r, r["own_caption"]))
            own += r["own_caption"]
        metrics, aggregations = dict(scored.metrics), dict(scored.aggregations)
        missed = miss_metrics(scored.records)
        metrics.update(missed)
        aggregations.update({k: v for k, v in MISS_AGGREGATIONS.items() if k in missed})
        chance, controls = {}, {}
        if pool_tags is not None:
            chance, controls = self._chance(data, pool_tags, refs, scored, [int(j) for j in best])
            chance = {k: v for k, v in chance.items() if k in metrics}
        details = {**scored.details, "n_images": len(data.images), "pool_captions": len(data.captions),
                   "own_caption_retrieved": own, "images_with_tied_top1": int((tied > 1).sum()),
                   "ties": "seeded random tie-break among exactly equal best scores (--seed)",
                   "miss": "*_miss metrics: over the images whose retrieved caption is not one of their own "
                           f"references ({len(data.images) - own} of {len(data.images)})",
                   **controls, "captions_truncated": ctx.engine.count_truncated(data.captions), **data.info}
        return TaskResult(metrics=metrics, main_metric=self.config.main_metric, records=scored.records,
                          aggregations=aggregations, chance=chance, details=details, n_total=data.n_total_images,
                          n_used=len(data.images), dataset_fingerprint=data.fingerprint)

    def _chance(self, data, pool_tags: list, refs: list[list[str]], scored, best: list[int]) -> tuple[dict, dict]:
        """Chance levels of every metric (a uniformly drawn pool caption; for ``*_miss``, one that is not
        the image's own) and the shuffled-retrieval control; ``pool_tags[j]`` = ``pos.analyse(pool[j])``."""
        from ..metrics.kprecision import chance_k_precision, k_precision_refs
        from ..text.normalize import noun_adj_tokens, tokens

        mode = self.config.params["kp_references"]
        pool = data.captions
        ref_tokens = [[tokens(r) for r in rs] for rs in refs]
        pool_tokens = [tokens(c) for c in pool]
        content = [noun_adj_tokens(c, t) for c, t in zip(pool, pool_tags)]
        kp = chance_k_precision(pool_tokens, ref_tokens, mode)
        kpna = chance_k_precision(content, ref_tokens, mode)
        own_rows: list[list[int]] = [[] for _ in refs]
        for j, i in enumerate(data.caption_image):
            own_rows[int(i)].append(j)
        own_kp = np.array([sum(k_precision_refs(pool_tokens[j], ref_tokens[i], mode) for j in rows)
                           for i, rows in enumerate(own_rows)])
        own_kpna = np.array([sum(k_precision_refs(content[j], ref_tokens[i], mode) for j in rows)
                             for i, rows in enumerate(own_rows)])
        pool_objects = image_objects = retrieved_objects = None
        if scored.vocabulary is not None:
            vocab = scored.vocabulary
            column = {o: k for k, o in enumerate(vocab.objects)}
            pool_objects = np.zeros((len(pool), len(column)))
            for j, cap in enumerate(pool):
                for _, o in vocab.mentions(cap):
                    pool_objects[j, column[o]] += 1
            image_objects = np.zeros((len(refs), len(column)))
            for i, objs in enumerate(scored.objects):
                image_objects[i, [column[o] for o in objs if o in column]] = 1
            retrieved_objects = pool_objects[best]
        full = faithfulness_chance(kp, kpna, pool_objects, image_objects)
        chance = dict(full.values)
        chance.update(faithfulness_miss_chance(kp, kpna, own_kp, own_kpna, np.array([len(r) for r in own_rows]),
                                               len(pool), pool_objects, image_objects, own_rows))
        method = dict(full.method)
        method.update({k: "expected value of a caption drawn uniformly from the pool without the image's own "
                          "references, over the images that have other captions" for k in chance if k.endswith("_miss")})
        shuffled = faithfulness_chance(chance_k_precision([pool_tokens[j] for j in best], ref_tokens, mode),
                                       chance_k_precision([content[j] for j in best], ref_tokens, mode),
                                       retrieved_objects, image_objects)
        controls = {"chance_method": method, "controls": {"shuffled": {
            "what": "expected metrics when each image gets the caption this model retrieved for a uniformly drawn "
                    "image (its retrievals shuffled across images): the value of its retrievals without the image",
            "metrics": shuffled.values, "distinct_retrieved_captions": len(set(best))}}}
        return chance, controls
