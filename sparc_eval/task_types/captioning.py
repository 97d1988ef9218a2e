"""Score a captioner's output (``--predictions FILE``, COCO results format) against the references.

Reports BLEU_1..4, METEOR, ROUGE_L, CIDEr (pycocoevalcap, x100; SPICE when ``spice_dir`` holds its
jars), K-P / K-Pna (K-Precision of each caption against its image's references, all tokens / nouns
and adjectives) and, with an object vocabulary, CHAIR_i / CHAIR_s. No model is needed.

``score_captions`` is shared with ``caption_faithfulness`` (retrieved captions) and
``caption_transfer`` (captions of a decoder trained on a frozen backbone). Per-image records carry
every per-image value; K-P, K-Pna, CHAIR, ROUGE_L and CIDEr are aggregated from them (bootstrap
intervals over images). BLEU and METEOR are corpus statistics that are not a mean of per-image
values: they get no interval.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError, DataError
from ..metrics.captioning import require_java
from ..params import Param
from ..task_common.captions import (
    CAPTION_METRIC_PARAMS,
    SCORING_PARAMS,
    image_references,
    score_captions,
    scoring_keys,
)
from .base import EvalContext, TaskResult, TaskType

if TYPE_CHECKING:
    pass


class Captioning(TaskType):
    name = "captioning"
    dataset_kind = "retrieval"
    needs_model = False
    description = "score a captions file (--predictions, COCO results format): BLEU, METEOR, ROUGE-L, CIDEr, K-P, CHAIR"
    params = {**SCORING_PARAMS, **CAPTION_METRIC_PARAMS,
              "allow_missing": Param("bool", False, "score only the images that have a prediction (else an "
                                     "image without one is an error)")}

    @classmethod
    def metric_keys(cls, params):
        return scoring_keys(params, caption_metrics=True)

    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        from ..data.caption_results import read_caption_results

        if ctx.predictions is None:
            raise ConfigError(f"task {self.config.name!r} scores a captions file: pass --predictions FILE "
                              f"(COCO results format, [{{\"image_id\", \"caption\"}}])")
        require_java()
        full = self.load_data(None)
        data = full.limit(ctx.limit)
        preds = read_caption_results(ctx.predictions, full.images.ids)
        refs = image_references(data)
        used = [i for i, img_id in enumerate(data.images.ids) if img_id in preds]
        missing = [data.images.ids[i] for i in range(len(data.images)) if data.images.ids[i] not in preds]
        if missing and not self.config.params["allow_missing"]:
            raise DataError(f"{ctx.predictions}: no caption for {len(missing)} of {len(data.images)} image(s), e.g. "
                            f"image_id {missing[:5]}; pass --param allow_missing=true to score only predicted images")
        if not used:
            raise DataError(f"{ctx.predictions}: none of the predicted images is in the evaluated set")
        ids = [data.images.ids[i] for i in used]
        scored = score_captions(ids, [refs[i] for i in used], [preds[k] for k in ids], self.config.params, True,
                                self.config.dataset.get("root"), ctx.log)
        details = {**scored.details, "predictions": str(ctx.predictions), "images_without_prediction": len(missing),
                   "predictions_outside_evaluated_images": len(preds) - len(used), **data.info}
        return TaskResult(metrics=scored.metrics, main_metric=self.config.main_metric, records=scored.records,
                          aggregations=scored.aggregations, details=details, n_total=data.n_total_images,
                          n_used=len(used), dataset_fingerprint=data.fingerprint)
