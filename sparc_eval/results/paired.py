"""Differences between two results of one task, with a noise estimate (no torch).

- **paired**: bootstrap over the clusters (images) both sides share, with the same resampling
  weights on both sides (``aggregate.bootstrap_weights``): exact when both have per-sample records
  (or per-cluster sums, as a baseline file stores them) of the same dataset.
- **intervals**: when one side has no per-sample data, the two stored 95% intervals are combined
  as independent normal errors: half-width ``sqrt(h_a^2 + h_b^2)``.
- **none**: neither side has per-sample data or intervals: no interval and no p-value (NaN).

``ClusterSums`` keeps per-cluster sums, so a stored copy (``stored_sums``, rebuilt with
``ClusterSums.from_arrays``) reproduces every aggregation kind exactly without the records.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ResultsError
from .aggregate import N_BOOTSTRAP, ClusterSums, paired_bootstrap

Z95 = 1.959963984540054


@dataclass
class Difference:
    """``b - a`` for one metric; ``lo``/``hi`` a 95% interval of it, ``method`` how it was estimated."""

    metric: str
    a: float
    b: float
    diff: float
    lo: float = math.nan
    hi: float = math.nan
    p_value: float = math.nan
    n_clusters: int = 0
    method: str = "none"

    @property
    def has_noise(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    @property
    def significant(self) -> bool:
        """The 95% interval excludes 0 (False without a noise estimate)."""
        return self.has_noise and (self.lo > 0 or self.hi < 0)


def canonical_cluster(c: object) -> object:
    """Cluster ids as ``aggregate.ClusterSums`` keys them (JSON lists become tuples)."""
    return tuple(c) if isinstance(c, list) else c


def sums_to_json(sums: ClusterSums) -> dict:
    """``{"ids": [...], "count": [...], "fields": {field: {"sum": [...], "count"?: [...]}}, "groups"?: {...}}``.

    Integral numbers are written as integers; a field's ``count`` (records per cluster that have the
    field) is left out when it equals the shared top-level ``count``.
    """
    def plain(a: np.ndarray) -> list:
        return [int(x) if float(x).is_integer() else float(x) for x in a] if a.ndim == 1 else [plain(r) for r in a]

    counts = {f: [int(x) for x in c] for f, c in sums.counts.items()}
    shared = max(counts.values(), key=list(counts.values()).count) if counts else []
    fields = {f: {"sum": plain(sums.sums[f]), **({} if counts[f] == shared else {"count": counts[f]})} for f in sums.sums}
    out = {"ids": [list(c) if isinstance(c, tuple) else c for c in sums.clusters], "count": shared, "fields": fields}
    if sums.grouped:  # group_mean: non-zero (cluster, group) cells
        out["grouped"] = []
        for (field, group), (s, c) in sums.grouped.items():
            s, c = s.tocoo(), c.tocsr()
            out["grouped"].append({"field": field, "group": group, "rows": s.row.tolist(), "cols": s.col.tolist(),
                                   "sum": plain(s.data), "count": plain(np.asarray(c[s.row, s.col]).ravel())})
    return out


def stored_sums(data: Mapping, aggregations: Mapping[str, Mapping], where: str) -> ClusterSums:
    """Inverse of ``sums_to_json``; ``ResultsError`` naming ``where`` when shapes disagree."""
    try:
        ids = [canonical_cluster(c) for c in data["ids"]]
        sums, counts = {}, {}
        for f, arrays in data["fields"].items():
            sums[f] = np.asarray(arrays["sum"], dtype=np.float64)
            counts[f] = np.asarray(arrays.get("count", data.get("count")), dtype=np.float64)
            if len(sums[f]) != len(ids) or len(counts[f]) != len(ids):
                raise ValueError(f"field {f!r} has {len(sums[f])} sums and {len(counts[f])} counts for {len(ids)} clusters")
    except (KeyError, TypeError, ValueError) as e:
        raise ResultsError(f"{where}: per-cluster sums are malformed ({e}); expected "
                           f"{{'ids': [...], 'count': [...], 'fields': {{field: {{'sum': [...]}}}}}}") from None
    return ClusterSums.from_arrays(aggregations, ids, sums, counts, _grouped_from_json(data.get("grouped", []), len(ids)))


def _grouped_from_json(items: Sequence[Mapping], n_clusters: int) -> dict:
    from scipy import sparse

    out = {}
    for g in items:
        shape = (n_clusters, max(g["cols"], default=-1) + 1)
        out[(g["field"], g["group"])] = (sparse.csr_matrix((g["sum"], (g["rows"], g["cols"])), shape=shape),
                                         sparse.csr_matrix((g["count"], (g["rows"], g["cols"])), shape=shape))
    return out


def restrict(sums: ClusterSums, clusters: Sequence, aggregations: Mapping[str, Mapping]) -> ClusterSums:
    """The same sums over ``clusters`` (a subset, in that order) and only ``aggregations``."""
    index = {c: i for i, c in enumerate(sums.clusters)}
    rows = np.asarray([index[c] for c in clusters], dtype=np.int64)
    return ClusterSums.from_arrays(aggregations, clusters, {f: s[rows] for f, s in sums.sums.items()},
                                   {f: c[rows] for f, c in sums.counts.items()},
                                   {k: (s[rows], c[rows]) for k, (s, c) in sums.grouped.items()})


def paired_sums(a: ClusterSums, b: ClusterSums, metrics: Sequence[str], seed: int = 0,
                n: int = N_BOOTSTRAP) -> dict[str, Difference]:
    """``aggregate.paired_bootstrap`` of ``b - a`` as ``Difference``s for ``metrics`` (same clusters, same order)."""
    est = paired_bootstrap(a, b, seed, n)
    return {k: Difference(k, e["a"], e["b"], e["diff"], e["lo"], e["hi"], e["p_value"], e["n_clusters"], "paired")
            for k, e in est.items() if k in metrics}


def paired_with_sums(base: ClusterSums, records: Sequence[Mapping], aggregations: Mapping[str, Mapping],
                     metrics: Sequence[str], seed: int = 0, n: int = N_BOOTSTRAP) -> dict[str, Difference]:
    """Paired bootstrap of ``records - base`` over the clusters both share, in ``base``'s order."""
    common = {k: v for k, v in aggregations.items() if k in base.aggregations}
    have = {canonical_cluster(r.get("cluster", r.get("id"))) for r in records}
    shared = [c for c in base.clusters if c in have]
    if not shared or not common:
        return {}
    return paired_sums(restrict(base, shared, {k: base.aggregations[k] for k in common}),
                       ClusterSums(records, common, shared), metrics, seed, n)


def from_intervals(metric: str, a: float, b: float, iv_a: Sequence[float] | None,
                   iv_b: Sequence[float] | None) -> Difference:
    """Unpaired ``b - a`` with a normal-approximation interval from the two 95% intervals."""
    diff = b - a
    if iv_a is None or iv_b is None:
        return Difference(metric, a, b, diff)
    half = math.hypot((iv_a[1] - iv_a[0]) / 2, (iv_b[1] - iv_b[0]) / 2)
    if half <= 0:
        return Difference(metric, a, b, diff, diff, diff, 1.0 if diff == 0 else 0.0, 0, "intervals")
    z = abs(diff) / (half / Z95)
    return Difference(metric, a, b, diff, diff - half, diff + half, math.erfc(z / math.sqrt(2)), 0, "intervals")
