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
equivalent to giving every cluster an integer multiplicity weight. The weights are drawn from one
seeded stream and used ``BLOCK`` replicates at a time, so memory stays O(BLOCK x clusters).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat

import numpy as np

from ..errors import ResultsError

KINDS = ("mean", "ratio", "classwise_ratio", "mean_of", "group_mean")
N_BOOTSTRAP = 1000
CONFIDENCE = 0.95
BLOCK = 100


class ClusterSums:
    """Per-cluster sums of the record fields that a set of aggregations needs.

    ``records`` is a sequence of dicts with a ``cluster`` key; ``clusters`` fixes the cluster order
    (defaults to first-seen order), so two result sets can be resampled with the same weights.
    Records of clusters outside ``clusters`` are ignored, and so are fields that are absent or None.
    Sums are accumulated in record order (``np.bincount``/``np.add.at``), as a loop over the records would.
    """

    def __init__(self, records: Sequence[Mapping], aggregations: Mapping[str, Mapping],
                 clusters: Sequence | None = None):
        self.aggregations = dict(aggregations)
        fields = _fields(self.aggregations)
        grouped = list(dict.fromkeys((spec["field"], spec["group"]) for spec in self.aggregations.values()
                                     if spec.get("kind") == "group_mean"))
        keys = [cluster_key(r.get("cluster", r.get("id"))) for r in records]
        if clusters is None:  # first-seen order
            index: dict = {}
            rows = np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.int64, count=len(keys))
        else:
            index = {c: i for i, c in enumerate(clusters)}
            rows = np.fromiter(map(index.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
        self.clusters = list(index) if clusters is None else list(clusters)
        n = len(self.clusters)
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        for field, vector in fields.items():
            self.sums[field], self.counts[field] = _field_sums(records, rows, field, vector, n)
        self.grouped = {(f, g): _grouped_sums(records, rows, f, g, n) for f, g in grouped}

    @classmethod
    def from_arrays(cls, aggregations: Mapping[str, Mapping], clusters: Sequence, sums: Mapping[str, np.ndarray],
                    counts: Mapping[str, np.ndarray], grouped: Mapping | None = None) -> ClusterSums:
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
                    per_group = _div(num, den, fill=0.0)
                    out[name] = scale * _div(per_group.sum(axis=1), (den > 0).sum(axis=1))
                elif kind == "classwise_ratio":
                    per_class = _div(w @ self.sums[spec["num"]], w @ self.sums[spec["den"]])
                    valid = ~np.isnan(per_class)
                    total = np.where(valid, per_class, 0).sum(axis=1)
                    out[name] = scale * _div(total, valid.sum(axis=1))
                del pending[name]
                progressed = True
            if not progressed:
                raise ResultsError(f"aggregations {sorted(pending)} refer to metrics that are not defined")
        return out


def _field_sums(records: Sequence[Mapping], rows: np.ndarray, field: str, vector: bool, n: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums ``[n]`` (``[n, C]`` for per-class lists) and counts ``[n]`` of one field;
    ``rows`` [len(records)] is each record's cluster index (-1: not counted)."""
    values = [r.get(field) for r in records]
    keep = np.fromiter((v is not None for v in values), dtype=bool, count=len(values)) & (rows >= 0)
    at = rows[keep]
    kept = [v for v, k in zip(values, keep.tolist()) if k]
    counts = np.bincount(at, minlength=n).astype(np.float64)
    try:
        width = next((len(v) for v in values if v is not None), None) if vector else None
        data = np.asarray(kept, dtype=np.float64).reshape(len(kept), *(() if width is None else (width,)))
    except (TypeError, ValueError):
        raise ResultsError(f"record field {field!r}: expected {'per-class lists of one length' if vector else 'numbers'}"
                           f" in every record") from None
    if width is None:
        return np.bincount(at, weights=data, minlength=n), counts
    sums = np.zeros((n, width), dtype=np.float64)
    np.add.at(sums, at, data)
    return sums, counts


def _grouped_sums(records: Sequence[Mapping], rows: np.ndarray, field: str, group: str, n: int):
    """Sparse [n, n_groups] sums and counts of ``field`` per (cluster, ``group`` value); groups are
    numbered in first-seen order."""
    from scipy import sparse

    values = [r.get(field) for r in records]
    groups = [r.get(group) for r in records]
    keep = np.flatnonzero(np.fromiter((v is not None and g is not None for v, g in zip(values, groups)), dtype=bool,
                                      count=len(records)) & (rows >= 0))
    kept = [groups[i] for i in keep]
    codes = {g: i for i, g in enumerate(dict.fromkeys(kept))}
    n_groups = max(len(codes), 1)
    col = np.fromiter(map(codes.__getitem__, kept), dtype=np.int64, count=len(kept))
    cell, inverse = np.unique(rows[keep] * n_groups + col, return_inverse=True)
    data = np.asarray([values[i] for i in keep], dtype=np.float64)
    where = (cell // n_groups, cell % n_groups)
    shape = (n, len(codes))
    sums = sparse.csr_matrix((np.bincount(inverse, weights=data, minlength=len(cell)), where), shape=shape)
    counts = sparse.csr_matrix((np.bincount(inverse, minlength=len(cell)).astype(np.float64), where), shape=shape)
    return sums, counts


def _div(num: np.ndarray, den: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """``num / den`` where ``den > 0``, else ``fill``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), fill)


def cluster_key(cluster: object) -> object:
    """A cluster id as a hashable key (JSON lists become tuples)."""
    return tuple(cluster) if isinstance(cluster, list) else cluster


def cluster_of(record: Mapping) -> object:
    """The bootstrap cluster of a record: its ``cluster`` (else its ``id``), as a key."""
    return cluster_key(record.get("cluster", record.get("id")))


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


def bootstrap_blocks(n_clusters: int, n: int = N_BOOTSTRAP, seed: int = 0, block: int = BLOCK) -> Iterator[np.ndarray]:
    """The ``bootstrap_weights`` matrix, ``block`` rows at a time (memory O(block x n_clusters)): one
    seeded stream, replicate after replicate, so the rows are the same whatever the block size."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, block):
        w = np.empty((min(block, n - start), n_clusters), dtype=np.float32)
        for b in range(len(w)):
            w[b] = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)
        yield w


def bootstrap_weights(n_clusters: int, n: int = N_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """``[n, n_clusters]`` multiplicities of clusters drawn with replacement, seeded."""
    return np.concatenate(list(bootstrap_blocks(n_clusters, n, seed)), axis=0) if n else \
        np.empty((0, n_clusters), dtype=np.float32)


def replicates(sums: Sequence[ClusterSums], seed: int = 0, n: int = N_BOOTSTRAP, block: int = BLOCK
               ) -> list[dict[str, np.ndarray]]:
    """Bootstrap replicates ``{metric: [n]}`` of each of ``sums`` (same clusters), all resampled with the
    same weights, computed ``block`` replicates at a time."""
    parts: list[dict[str, list[np.ndarray]]] = [{} for _ in sums]
    for w in bootstrap_blocks(len(sums[0].clusters), n, seed, block):
        for s, out in zip(sums, parts):
            for k, v in s.compute(w).items():
                out.setdefault(k, []).append(v)
    return [{k: np.concatenate(v) for k, v in out.items()} for out in parts]


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Central percentile interval of bootstrap samples (NaNs dropped)."""
    s = samples[~np.isnan(samples)]
    if s.size == 0:
        return (float("nan"), float("nan"))
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(s, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def intervals(records: Sequence[Mapping], aggregations: Mapping[str, Mapping], seed: int = 0,
              n: int = N_BOOTSTRAP, block: int = BLOCK) -> dict[str, list[float]]:
    """95% bootstrap intervals of each aggregated metric, resampling clusters (seeded)."""
    sums = ClusterSums(records, aggregations)
    if not sums.clusters:
        return {}
    (samples,) = replicates([sums], seed, n, block)
    return {k: list(percentile_interval(v)) for k, v in samples.items()}


def paired_bootstrap(a: ClusterSums, b: ClusterSums, seed: int = 0, n: int = N_BOOTSTRAP) -> dict[str, dict]:
    """Paired bootstrap of ``b - a`` per metric both define; ``a`` and ``b`` hold the same clusters in
    the same order and are resampled with the same weights.

    Returns ``{metric: {"a", "b", "diff", "lo", "hi", "p_value", "n_clusters"}}``; the two-sided
    p-value is the bootstrap estimate of P(diff has the other sign), doubled and capped at 1.
    """
    if list(a.clusters) != list(b.clusters):
        raise ValueError("a paired bootstrap needs the same clusters in the same order on both sides")
    point_a, point_b = a.compute(), b.compute()
    da, db = replicates([a, b], seed, n)
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
