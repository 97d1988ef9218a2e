"""Metrics recomputed from per-sample records: the basis of intervals, paired bootstrap and `check`.

A result file stores, for each metric, an *aggregation spec* saying how the metric follows from the
per-sample records of its JSONL file, so that any tool (without torch or the task's code) can
recompute it under resampling. Kinds:

- ``{"kind": "mean", "field": F, "scale": s}``: ``s * mean(record[F])`` over records that have F.
- ``{"kind": "ratio", "num": F, "den": G, "scale": s}``: ``s * sum(record[F]) / sum(record[G])``.
- ``{"kind": "classwise_ratio", "num": F, "den": G, "scale": s}``: F and G hold per-class lists;
  ``s * nanmean_c(sum(F)[c] / sum(G)[c])`` with classes whose denominator sums to 0 left out
  (mIoU, mAcc as mmsegmentation's IoUMetric).
- ``{"kind": "mean_of", "metrics": [m1, m2, ...]}``: unweighted mean of other metrics.
- ``{"kind": "group_mean", "field": F, "group": G, "scale": s}``: ``s * mean_g(mean(record[F]) over the
  records with record[G] == g)`` over the groups present (mean per-class recall: F the hit, G the
  label); sums are kept per (cluster, group), so a cluster may hold records of several groups.

Resampling is over *clusters* (the ``cluster`` field of each record, e.g. the image id, so a
caption follows its image): each bootstrap replicate draws clusters with replacement, which is
equivalent to giving every cluster an integer multiplicity weight.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ResultsError

KINDS = ("mean", "ratio", "classwise_ratio", "mean_of", "group_mean")
N_BOOTSTRAP = 1000
CONFIDENCE = 0.95


class ClusterSums:
    """Per-cluster sums of the record fields that a set of aggregations needs.

    ``records`` is a sequence of dicts with a ``cluster`` key; ``clusters`` fixes the cluster order
    (defaults to first-seen order), so two result sets can be resampled with the same weights.
    """

    def __init__(self, records: Sequence[Mapping], aggregations: Mapping[str, Mapping],
                 clusters: Sequence | None = None):
        self.aggregations = dict(aggregations)
        fields = _fields(self.aggregations)
        grouped = {(spec["field"], spec["group"]) for spec in self.aggregations.values()
                   if spec.get("kind") == "group_mean"}
        if clusters is None:
            clusters = list(dict.fromkeys(_cluster_of(r) for r in records))
        self.clusters = list(clusters)
        index = {c: i for i, c in enumerate(self.clusters)}
        n = len(self.clusters)
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        cells: dict[tuple[str, str], dict[tuple[int, object], list[float]]] = {k: {} for k in grouped}
        for field, vector in fields.items():
            width = None
            for r in records:
                if field in r:
                    width = len(r[field]) if vector else None
                    break
            shape = (n, width) if vector and width is not None else (n,)
            self.sums[field] = np.zeros(shape, dtype=np.float64)
            self.counts[field] = np.zeros(n, dtype=np.float64)
        for r in records:
            c = index.get(_cluster_of(r))
            if c is None:
                continue
            for field in fields:
                if field in r and r[field] is not None:
                    self.sums[field][c] += np.asarray(r[field], dtype=np.float64)
                    self.counts[field][c] += 1
            for (field, group), table in cells.items():
                if r.get(field) is not None and r.get(group) is not None:
                    cell = table.setdefault((c, r[group]), [0.0, 0.0])
                    cell[0] += float(r[field])
                    cell[1] += 1.0
        self.grouped = {key: _grouped_matrices(table, n) for key, table in cells.items()}

    @classmethod
    def from_arrays(cls, aggregations: Mapping[str, Mapping], clusters: Sequence, sums: Mapping[str, np.ndarray],
                    counts: Mapping[str, np.ndarray], grouped: Mapping | None = None) -> "ClusterSums":
        """Rebuild from stored per-cluster arrays (e.g. a baseline file) instead of records; ``grouped`` maps
        (field, group) to the sparse per-(cluster, group) (sums, counts) of ``group_mean``."""
        obj = cls.__new__(cls)
        obj.aggregations, obj.clusters = dict(aggregations), list(clusters)
        obj.sums, obj.counts, obj.grouped = dict(sums), dict(counts), dict(grouped or {})
        return obj

    def compute(self, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Metric values for cluster weights ``[R, n_clusters]`` (None: each cluster once) -> ``{metric: [R]}``."""
        w = np.ones((1, len(self.clusters))) if weights is None else np.atleast_2d(weights).astype(np.float64)
        out: dict[str, np.ndarray] = {}
        pending = dict(self.aggregations)
        while pending:
            progressed = False
            for name, spec in list(pending.items()):
                kind = spec["kind"]
                scale = float(spec.get("scale", 1.0))
                if kind == "mean_of":
                    parts = spec["metrics"]
                    if not all(p in out for p in parts):
                        continue
                    out[name] = np.mean([out[p] for p in parts], axis=0)
                elif kind == "mean":
                    f = spec["field"]
                    out[name] = scale * _div(w @ self.sums[f], w @ self.counts[f])
                elif kind == "ratio":
                    out[name] = scale * _div(w @ self.sums[spec["num"]], w @ self.sums[spec["den"]])
                elif kind == "group_mean":
                    sums, counts = self.grouped[(spec["field"], spec["group"])]
                    num = np.asarray(sums.T @ w.T).T
                    den = np.asarray(counts.T @ w.T).T
                    valid = den > 0
                    per_group = np.where(valid, num / np.where(valid, den, 1), 0.0)
                    out[name] = scale * _div(per_group.sum(axis=1), valid.sum(axis=1))
                elif kind == "classwise_ratio":
                    num = w @ self.sums[spec["num"]]
                    den = w @ self.sums[spec["den"]]
                    with np.errstate(invalid="ignore", divide="ignore"):
                        per_class = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
                    valid = ~np.isnan(per_class)
                    total = np.where(valid, per_class, 0).sum(axis=1)
                    out[name] = scale * _div(total, valid.sum(axis=1))
                del pending[name]
                progressed = True
            if not progressed:
                raise ResultsError(f"aggregations {sorted(pending)} refer to metrics that are not defined")
        return out


def _grouped_matrices(table: Mapping[tuple[int, object], list[float]], n_clusters: int):
    """Sparse [n_clusters, n_groups] sums and counts from {(cluster, group): [sum, count]}."""
    from scipy import sparse

    codes = {g: i for i, g in enumerate(dict.fromkeys(g for _, g in table))}
    rows = [c for c, _ in table]
    cols = [codes[g] for _, g in table]
    shape = (n_clusters, len(codes))
    sums = sparse.csr_matrix(([v[0] for v in table.values()], (rows, cols)), shape=shape)
    counts = sparse.csr_matrix(([v[1] for v in table.values()], (rows, cols)), shape=shape)
    return sums, counts


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _cluster_of(record: Mapping):
    c = record.get("cluster", record.get("id"))
    return tuple(c) if isinstance(c, list) else c


def _fields(aggregations: Mapping[str, Mapping]) -> dict[str, bool]:
    """Record fields used by the aggregations -> whether each holds a per-class vector."""
    fields: dict[str, bool] = {}
    for name, spec in aggregations.items():
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ResultsError(f"aggregation of {name!r}: unknown kind {kind!r}; expected one of {KINDS}")
        if kind == "mean":
            fields[spec["field"]] = False
        elif kind in ("ratio", "classwise_ratio"):
            vector = kind == "classwise_ratio"
            fields[spec["num"]] = vector
            fields[spec["den"]] = vector
    return fields


def bootstrap_weights(n_clusters: int, n: int = N_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """``[n, n_clusters]`` multiplicities of clusters drawn with replacement, seeded."""
    rng = np.random.default_rng(seed)
    w = np.empty((n, n_clusters), dtype=np.float32)
    for b in range(n):
        w[b] = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)
    return w


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Central percentile interval of bootstrap samples (NaNs dropped)."""
    s = samples[~np.isnan(samples)]
    if s.size == 0:
        return (float("nan"), float("nan"))
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(s, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def intervals(records: Sequence[Mapping], aggregations: Mapping[str, Mapping], seed: int = 0,
              n: int = N_BOOTSTRAP, block: int = 100) -> dict[str, list[float]]:
    """95% bootstrap intervals of each aggregated metric, resampling clusters (seeded)."""
    sums = ClusterSums(records, aggregations)
    if not sums.clusters:
        return {}
    samples: dict[str, list[np.ndarray]] = {}
    weights = bootstrap_weights(len(sums.clusters), n, seed)
    for start in range(0, n, block):
        for k, v in sums.compute(weights[start:start + block]).items():
            samples.setdefault(k, []).append(v)
    return {k: list(percentile_interval(np.concatenate(v))) for k, v in samples.items()}


def paired_bootstrap(a: ClusterSums, b: ClusterSums, seed: int = 0, n: int = N_BOOTSTRAP) -> dict[str, dict]:
    """Paired bootstrap of ``b - a`` per metric both define; ``a`` and ``b`` hold the same clusters in
    the same order and are resampled with the same weights.

    Returns ``{metric: {"a", "b", "diff", "lo", "hi", "p_value", "n_clusters"}}``; the two-sided
    p-value is the bootstrap estimate of P(diff has the other sign), doubled and capped at 1.
    """
    if list(a.clusters) != list(b.clusters):
        raise ValueError("a paired bootstrap needs the same clusters in the same order on both sides")
    point_a, point_b = a.compute(), b.compute()
    w = bootstrap_weights(len(a.clusters), n, seed)
    da, db = a.compute(w), b.compute(w)
    out = {}
    for k in (k for k in da if k in db):
        d = db[k] - da[k]
        diff = float(point_b[k][0] - point_a[k][0])
        d_ok = d[~np.isnan(d)]
        if d_ok.size and diff != 0:
            p = min(1.0, 2 * float(np.mean(d_ok <= 0) if diff > 0 else np.mean(d_ok >= 0)))
        else:
            p = 1.0
        lo, hi = percentile_interval(d)
        out[k] = {"a": float(point_a[k][0]), "b": float(point_b[k][0]), "diff": diff, "lo": lo, "hi": hi,
                  "p_value": p, "n_clusters": len(a.clusters)}
    return out


def paired_differences(records_a: Sequence[Mapping], aggs_a: Mapping[str, Mapping],
                       records_b: Sequence[Mapping], aggs_b: Mapping[str, Mapping],
                       seed: int = 0, n: int = N_BOOTSTRAP) -> dict[str, dict[str, float]]:
    """``paired_bootstrap`` of two record sets over the clusters both share (in ``records_a``'s order)."""
    seen_a = list(dict.fromkeys(_cluster_of(r) for r in records_a))
    in_b = {_cluster_of(r) for r in records_b}
    shared = [c for c in seen_a if c in in_b]
    common = {k: v for k, v in aggs_a.items() if k in aggs_b}
    if not shared or not common:
        return {}
    return paired_bootstrap(ClusterSums(records_a, common, shared),
                            ClusterSums(records_b, {k: aggs_b[k] for k in common}, shared), seed, n)
