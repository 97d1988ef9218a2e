"""Classification results shared by ``zeroshot_classification`` and ``linear_probe``: metrics,
per-image records and aggregations from class counts, and the dataset-kind check."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.classification import ClassificationSet
from ..errors import ConfigError
from ..metrics.classification import (
    ClassCounts,
    chance,
    classification_metrics,
    hit_probability,
)

KS = (1, 5)  # the top-k accuracies reported


def classification_result(data: ClassificationSet, heads: dict[str, list[ClassCounts]], subsets: Sequence[str] = ()
                          ) -> tuple[dict, list[dict], dict, dict, dict]:
    """(metrics, per-sample records, aggregations, chance, per-run metrics) of classifiers on ``data``.

    ``heads`` maps a metric-key suffix ("" for the main classifier, ".5shot" for few-shot probes) to
    the counts of one or more runs (seeds); a head's metrics are the mean over its runs, and its
    record fields the per-image mean hit probabilities, so the aggregations recompute them exactly.
    ``top1.<subset>`` is reported for the main head and each subset the data provides.
    """
    n_classes = data.n_classes
    fields: dict[str, np.ndarray] = {}
    metrics: dict[str, float] = {}
    runs: dict[str, dict[str, list[float]]] = {}
    for sfx, counts_list in heads.items():
        per_run = [classification_metrics(c, data.labels, n_classes, KS) for c in counts_list]
        runs[sfx] = {m: [r[m] for r in per_run] for m in per_run[0]}
        metrics.update({f"{m}{sfx}": float(np.mean(v)) for m, v in runs[sfx].items()})
        for k in KS:
            fields[f"top{k}{sfx}"] = np.mean([hit_probability(c, k) for c in counts_list], axis=0)
    main = heads.get("", [])
    present = [s for s in subsets if main and s in data.subsets and data.subsets[s].any()]
    for s in present:
        metrics[f"top1.{s}"] = 100.0 * float(fields["top1"][data.subsets[s]].mean())
    single = main[0] if len(main) == 1 else None
    clusters = data.cluster_ids()
    records = []
    for i, img_id in enumerate(data.images.ids):
        r = {"id": img_id, "cluster": clusters[i], "label": int(data.labels[i])}
        if single is not None:
            r.update(pred=int(single.pred[i]), rank=int(single.above[i]), ties=int(single.tied[i]))
        r.update({f: float(v[i]) for f, v in fields.items()})
        for s in present:
            if data.subsets[s][i]:
                r[f"top1.{s}"] = float(fields["top1"][i])
        records.append(r)
    aggregations = {}
    ch = chance(n_classes, KS)
    chance_out = {}
    for sfx in heads:
        for k in KS:
            aggregations[f"top{k}{sfx}"] = {"kind": "mean", "field": f"top{k}{sfx}", "scale": 100}
        aggregations[f"mean_per_class_recall{sfx}"] = {"kind": "group_mean", "field": f"top1{sfx}", "group": "label",
                                                       "scale": 100}
        chance_out.update({f"{m}{sfx}": v for m, v in ch.items()})
    for s in present:
        aggregations[f"top1.{s}"] = {"kind": "mean", "field": f"top1.{s}", "scale": 100}
        chance_out[f"top1.{s}"] = ch["top1"]
    return metrics, records, aggregations, chance_out, runs


def require_classification(data, task: str) -> ClassificationSet:
    if not isinstance(data, ClassificationSet):
        raise ConfigError(f"task {task!r}: the dataset is a {type(data).__name__}, expected single-label "
                          f"classification data (check dataset.format and, for wds, dataset_type.txt)")
    return data


